"""Look inside a trained run, one test task at a time: its support images, what the method chose for
it (BMP's layer mask per inner step, MMSUP's kept and changed share per layer) and its query predictions.

``task_explorer`` shows a static figure first, so a headless (papermill/HTML) render keeps something
to read, then ipywidgets controls to pick the run, dataset and task in JupyterLab.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from . import checkpoints
from .data import Distribution
from .models import CONV_LABELS, LAYER_LABELS
from .notebook import headless
from .params import Config
from .runs import run_folder
from .training import Run, open_run


def load_run(params: Config, method: str, seed: int, distributions: list[Distribution]) -> Run:
    """A run with its last checkpoint's weights (raises if the run was never trained)."""
    run = open_run(params, method, seed, distributions)
    if not run.load_checkpoint(set_aside=False):  # a viewer: it moves nothing
        raise FileNotFoundError(f"no checkpoint for {method} seed {seed} in {run.folder}; train it first")
    return run


def inspect_task(run: Run, dataset: int, task: int) -> dict:
    """Adapt the run's learner to one fixed test task; return images, labels, predictions and choices."""
    batch = run.fixed_tasks("test")[dataset].task(task)
    learner = run.learner_for(dataset)
    logits, adaptation = learner.predict(batch)
    choices = {k: v.cpu() for k, v in learner.probe(adaptation).items()}
    return {
        "title": f"{run.method} seed {run.seed}, {run.distributions[dataset].name} test task {task}",
        "support": batch.support_x[0].cpu(),
        "support_y": batch.support_y[0].cpu(),
        "query": batch.query_x[0].cpu(),
        "query_y": batch.query_y[0].cpu(),
        "prediction": logits[0].argmax(-1).cpu(),
        "choices": choices,
    }


def predictions_line(seen: dict) -> str:
    """The task's query predictions in words: how many are right, and each true and predicted class."""
    right = int((seen["prediction"] == seen["query_y"]).sum())
    return (
        f"{seen['title']}: {right} of {len(seen['query_y'])} queries right; true "
        f"{' '.join(map(str, seen['query_y'].tolist()))}; predicted {' '.join(map(str, seen['prediction'].tolist()))}"
    )


def task_figure(run: Run, dataset: int, task: int, max_queries: int = 10, seen: dict | None = None):
    """Support row, the method's choices, and query images framed green (right) or red (wrong)."""
    seen = seen or inspect_task(run, dataset, task)
    shown = min(max_queries, len(seen["query"]))
    cols = max(len(seen["support"]), shown, 5)
    fig, axes = plt.subplots(3, cols, figsize=(1.3 * cols, 4.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, y in zip(axes[0], seen["support"], seen["support_y"]):
        ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(f"support {int(y)}", fontsize=7)
    choice_ax = fig.add_subplot(3, 1, 2)
    if "layer_masks" in seen["choices"]:
        masks = seen["choices"]["layer_masks"][0].numpy()
        choice_ax.imshow(masks, cmap="Greens", vmin=0, vmax=1, aspect="auto")
        choice_ax.set(
            yticks=range(len(masks)),
            yticklabels=[f"step {i + 1}" for i in range(len(masks))],
            xticks=range(len(LAYER_LABELS)),
            xticklabels=LAYER_LABELS,
            title="BMP: layers adapted (green) in each inner step",
        )
    elif f"masks_{CONV_LABELS[0]}" in seen["choices"]:
        final = [seen["choices"][f"masks_{c}"][0].float() for c in CONV_LABELS]
        initial = [seen["choices"][f"initial_{c}"][0].float() for c in CONV_LABELS]
        x = range(len(CONV_LABELS))
        choice_ax.bar([i - 0.2 for i in x], [float(m.mean()) for m in final], width=0.4, label="kept")
        changed = [float((m != i).float().mean()) for m, i in zip(final, initial)]
        choice_ax.bar([i + 0.2 for i in x], changed, width=0.4, label="changed by adaptation")
        choice_ax.set(
            xticks=list(x),
            xticklabels=CONV_LABELS,
            ylim=(0, 1),
            title="MMSUP: share of each conv layer's weights in this task's subnetwork (sampled positions)",
        )
        choice_ax.legend(fontsize=7)
    else:
        choice_ax.axis("off")
        choice_ax.set_title(f"{run.method}: every layer adapts, every weight is used")
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


def explorable_runs(params: Config, distributions: list[Distribution], methods: list[str]) -> tuple[dict, list[str]]:
    """The first seed's run of each method that has a checkpoint, loaded; and why each other run that has
    one cannot be explored (a damaged checkpoint, or one from an older kit), so one bad run does not
    take the explorer down."""
    runs, problems, seed = {}, [], params.seeds[0]
    for method in methods:
        if method in params.methods and (run_folder(params, method, seed) / checkpoints.NEWEST).exists():
            try:
                runs[method] = load_run(params, method, seed, distributions)
            except checkpoints.CheckpointUnreadable as exc:
                problems.append(f"{method}: {exc}")
    return runs, problems


def task_explorer(
    params: Config, distributions: list[Distribution], methods: list[str], interactive: bool | None = None
):
    """A static figure of the first method's first test task, then controls to pick another: by default
    (``interactive`` None) in JupyterLab, not in the pipeline's headless run (``notebook.headless``)."""
    import ipywidgets as widgets
    from IPython.display import display

    runs, problems = explorable_runs(params, distributions, methods)
    for problem in problems:
        print("cannot explore", problem)
    if not runs:
        print("no trained run to explore yet")
        return
    names = [d.name for d in distributions]

    def show(method: str, dataset: str, task: int):
        run = runs[method]
        seen = inspect_task(run, names.index(dataset), task)
        task_figure(run, names.index(dataset), task, seen=seen)
        plt.show()
        print(predictions_line(seen))

    show(next(iter(runs)), names[0], 0)
    if interactive is None:
        interactive = not headless()
    if not interactive:
        print("open this notebook in JupyterLab to pick another run, test dataset or task")
        return
    widgets.interact(
        show,
        method=widgets.Dropdown(options=list(runs), description="run"),
        dataset=widgets.Dropdown(options=names, description="dataset"),
        task=widgets.IntSlider(0, 0, params.test_tasks - 1, description="test task"),
    )
    display(widgets.HTML("<i>Interactive controls need a live kernel (JupyterLab); the figure above is static.</i>"))
