"""Look inside a trained run, one test task at a time: its support images, what the method chose for
it (drawn by its learner, ``Pictured.draw_choice``: BMP's layer mask per inner step, MMSUP's kept and
changed share per layer) and its query predictions. Runs are read with ``trained.load_learner``.

``task_explorer`` shows a static figure first, so a headless (papermill/HTML) render keeps something
to read, then ipywidgets controls to pick the run, dataset and task in JupyterLab.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from . import checkpoints, runs
from .data import Distribution
from .device import resolve_device
from .learners import METHODS, Pictured, Probed
from .notebook import headless
from .params import Config
from .runs import run_folder
from .trained import Trained, load_run


def inspect_task(run: Trained, distributions: list[Distribution], dataset: int, task: int) -> dict:
    """Adapt the run's learner to one fixed test task; return images, labels, predictions and choices."""
    batch = run.test_tasks(distributions)[dataset].task(task)
    learner = run.learner_for(dataset)
    logits, adaptation = learner.predict(batch)
    probed = learner.probe(adaptation) if isinstance(learner, Probed) else {}
    return {
        "title": f"{run.label}, {distributions[dataset].name} test task {task}",
        "support": batch.support_x[0].cpu(),
        "support_y": batch.support_y[0].cpu(),
        "query": batch.query_x[0].cpu(),
        "query_y": batch.query_y[0].cpu(),
        "prediction": logits[0].argmax(-1).cpu(),
        "choices": {k: v.cpu() for k, v in probed.items()},
        "method": run.method,
        "learner": learner,
    }


def predictions_line(seen: dict) -> str:
    """The task's query predictions in words: how many are right, and each true and predicted class."""
    right = int((seen["prediction"] == seen["query_y"]).sum())
    return (
        f"{seen['title']}: {right} of {len(seen['query_y'])} queries right; true "
        f"{' '.join(map(str, seen['query_y'].tolist()))}; predicted {' '.join(map(str, seen['prediction'].tolist()))}"
    )


def task_figure(seen: dict, max_queries: int = 10):
    """Support row, the method's choice (its learner draws it), and query images framed green (right) or
    red (wrong); ``seen``: ``inspect_task``'s."""
    shown = min(max_queries, len(seen["query"]))
    cols = max(len(seen["support"]), shown, 5)
    fig, axes = plt.subplots(3, cols, figsize=(1.3 * cols, 4.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, y in zip(axes[0], seen["support"], seen["support_y"]):
        ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(f"support {int(y)}", fontsize=7)
    choice_ax = fig.add_subplot(3, 1, 2)
    learner = seen["learner"]
    if isinstance(learner, Pictured):
        learner.draw_choice(choice_ax, seen["choices"])
        choice_ax.set_title(f"{seen['method']}: {choice_ax.get_title()}")
    else:
        choice_ax.axis("off")
        choice_ax.set_title(f"{seen['method']}: no per-task choice, every task adapts the same way")
    for ax, img, y, p in zip(axes[2], seen["query"][:shown], seen["query_y"], seen["prediction"]):
        ax.imshow(img.permute(1, 2, 0).numpy())
        ax.axis("on")
        ax.set(xticks=[], yticks=[])
        for spine in ax.spines.values():
            spine.set(color="green" if p == y else "red", linewidth=3)
        ax.set_title(f"true {int(y)} / pred {int(p)}", fontsize=7)
    accuracy = float((seen["prediction"] == seen["query_y"]).float().mean())
    fig.suptitle(f"{seen['title']}: query accuracy {accuracy:.2f}")
    fig.tight_layout()
    return fig


def explorable_runs(params: Config, methods: list[str] | None = None) -> tuple[dict[str, Trained], list[str]]:
    """The first seed's run of each method (the profile's, or ``methods``) that has a checkpoint, loaded;
    and why each other run that has one cannot be explored (a damaged checkpoint, or one from an older
    kit), so one bad run does not take the explorer down. By default the methods that draw a per-task
    choice (``Pictured``) come first, then the others, each in the registry's order."""
    loaded, problems, seed = {}, [], params.seeds[0]
    profile = [m for m in METHODS if m in params.methods]
    for method in methods or sorted(profile, key=lambda m: not issubclass(METHODS[m].learner, Pictured)):
        folder = run_folder(params, method, seed)
        if method in params.methods and (folder / checkpoints.NEWEST).exists():
            try:
                loaded[method] = load_run(params, method, seed, device=resolve_device(params.device))
            except (checkpoints.CheckpointUnreadable, runs.RunDamaged) as exc:
                problems.append(f"{method}: {exc}")
    return loaded, problems


def task_explorer(params: Config, distributions: list[Distribution], interactive: bool | None = None):
    """A static figure of the first method's first test task, then controls to pick another: by default
    (``interactive`` None) in JupyterLab, not in the pipeline's headless run (``notebook.headless``)."""
    import ipywidgets as widgets
    from IPython.display import display

    loaded, problems = explorable_runs(params)
    for problem in problems:
        print("cannot explore", problem)
    if not loaded:
        print("no trained run to explore yet")
        return
    names = [d.name for d in distributions]

    def show(method: str, dataset: str, task: int):
        seen = inspect_task(loaded[method], distributions, names.index(dataset), task)
        task_figure(seen)
        plt.show()
        print(predictions_line(seen))

    show(next(iter(loaded)), names[0], 0)
    if interactive is None:
        interactive = not headless()
    if not interactive:
        print("open this notebook in JupyterLab to pick another run, test dataset or task")
        return
    widgets.interact(
        show,
        method=widgets.Dropdown(options=list(loaded), description="run"),
        dataset=widgets.Dropdown(options=names, description="dataset"),
        task=widgets.IntSlider(0, 0, params.test_tasks - 1, description="test task"),
    )
    display(widgets.HTML("<i>Interactive controls need a live kernel (JupyterLab); the figure above is static.</i>"))
