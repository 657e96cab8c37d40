"""Every notebook end to end with papermill on the smoke parameters; assertions read the files the
notebooks write, not their cell outputs."""

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import DEVICES, PROJECT_ROOT

from gems_core import pipeline
from gems_core.device import device_name, resolve_device
from gems_core.learners import ROWS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=DEVICES)
def smoke_run(request, tmp_path_factory):
    """Run the whole pipeline once on parameters/smoke.yaml (on the CPU and, where present, CUDA),
    writing under a temporary folder."""
    from filelock import FileLock

    # one pipeline per test session, whichever parallel worker asks first (the others wait and reuse it)
    base = tmp_path_factory.getbasetemp()
    tmp = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / f"smoke-{request.param}"
    done = tmp / "executed.json"
    tmp.mkdir(exist_ok=True)
    with FileLock(tmp / ".lock"):
        if not done.exists():
            params = yaml.safe_load((PROJECT_ROOT / "parameters" / "smoke.yaml").read_text())
            params.update(output_root=str(tmp / "outputs"), data_root=str(tmp / "data"), device=request.param)
            params_file = tmp / "smoke.yaml"
            params_file.write_text(yaml.safe_dump(params))
            done.write_text(json.dumps([str(p) for p in pipeline.run_pipeline(params_file)]))
    return tmp / "outputs" / "smoke", [Path(p) for p in json.loads(done.read_text())]


def test_every_notebook_ran_and_rendered(smoke_run):
    out, executed = smoke_run
    assert [p.name for p in executed] == [p.name for p in pipeline.notebooks()]
    for nb in executed:
        assert nb.exists() and nb.with_suffix(".html").stat().st_size > 10_000


def test_data_prep_summary(smoke_run):
    out, _ = smoke_run
    summary = pd.read_csv(out / "data_summary.csv")
    assert summary["distribution"].tolist() == ["glyphs", "shapes"]
    assert (summary["train_classes"] + summary["validation_classes"] + summary["test_classes"] == 30).all()
    assert (summary["test_images"] == summary["test_classes"] * 6).all()
    for split in ("train", "validation", "test"):  # nothing absent or too small in the synthetic data
        assert (summary[f"{split}_missing_classes"] == 0).all() and (summary[f"{split}_too_few_images"] == 0).all()
        assert (summary[f"{split}_usable_classes"] == summary[f"{split}_classes"]).all()
    assert (summary["skipped_unreadable_images"] == 0).all()


def test_notebooks_in_git_carry_no_outputs():
    import nbformat
    from papermill.translators import PythonTranslator

    for path in pipeline.notebooks():
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assigned = [line.split("=")[0].strip() for line in cell.source.splitlines() if " = " in line]
        assert [p.name for p in PythonTranslator.inspect(cell)] == assigned, path.name  # papermill reads every one


def test_notebooks_only_call():
    """Logic lives in gems_core, where it is tested: no notebook defines a function or class, loops, or
    writes a file itself (gems_core.sections does, atomically)."""
    import ast

    import nbformat

    writes = {"to_csv", "write_text", "write_bytes", "open", "savefig", "dump"}
    for path in pipeline.notebooks():
        nb = nbformat.read(path, as_version=4)
        for cell in (c for c in nb.cells if c.cell_type == "code"):
            for node in ast.walk(ast.parse(cell.source)):
                assert not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.For | ast.While), (
                    path.name,
                    cell.source,
                )
                called = node.func.attr if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else ""
                called = node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else called
                assert called not in writes, (path.name, cell.source)


def test_baselines_wrote_runs_and_results(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "results.csv")
    baselines = table[table["method"].isin(["maml", "multi_maml"])]
    assert sorted(map(tuple, baselines[["method", "test_dataset"]].values)) == [
        ("maml", "glyphs"),
        ("maml", "shapes"),
        ("multi_maml", "glyphs"),
        ("multi_maml", "shapes"),
    ]
    assert (baselines["iterations"] == 6).all() and (baselines["train_datasets"] == "glyphs+shapes").all()
    for row in baselines.itertuples():  # every row is what its run folder says, not a copy of something else
        result = json.loads((out.parent / "runs" / row.run_id / "results.json").read_text())
        assert result["method"] == row.method and result["test"][row.test_dataset]["accuracy"] == row.accuracy
        assert result["test"][row.test_dataset]["tasks"] == 6
    assert baselines.groupby("method")["accuracy"].apply(tuple).nunique() == 2  # two methods, two outcomes


def test_controls_comparisons_and_mechanism_scores_reach_the_tables_notebooks_and_page(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "results.csv")
    assert {"fixed_layers", "bmp_frozen_mask", "mmsup_frozen_mask"} <= set(table["method"])
    frozen = table[table["method"] == "bmp_frozen_mask"]
    assert set(frozen["run_id"]) == set(table.loc[table["method"] == "bmp", "run_id"])  # an evaluation of bmp's run
    paired = pd.read_csv(out / "comparisons.csv")
    pairs = set(map(tuple, paired[["method", "against"]].values))
    assert {
        ("bmp", "maml"),
        ("fixed_layers", "maml"),
        ("bmp", "bmp_frozen_mask"),
        ("mmsup", "mmsup_frozen_mask"),
    } <= pairs
    assert set(paired["verdict"]) <= {"better", "worse", "inconclusive", "equivalent within +-0.01"}
    scores = pd.read_csv(out / "mechanism.csv")
    assert set(scores["method"]) == {
        "bmp",
        "bmp_frozen_mask",
        "bmp_shuffled_masks",
        "bmp_random_masks",
        "mmsup",
        "mmsup_frozen_mask",
        "mmsup_random_mask",
    }
    assert {("bmp", "bmp_shuffled_masks"), ("bmp", "bmp_random_masks"), ("bmp", "fixed_layers")} <= pairs
    assert {("mmsup", "mmsup_random_mask")} <= pairs
    assert scores.loc[scores["method"] == "bmp_frozen_mask", "value"].eq(0).all()  # one mask tells nothing
    assert scores.loc[scores["method"] == "bmp_frozen_mask", "reading"].eq("constant").all()
    page = (out / "index.html").read_text()
    assert page.index("What the evidence says") < page.index("Table 2, reproduced")
    assert page.index("Does choosing per task help? bmp: vs bmp_shuffled_masks") < page.index("figures/forest.png")
    assert "Trained on glyphs + shapes, tested on glyphs," in page and "layer-mask information (bits" in page
    assert "p_holm" in page and "over 6 tasks of one seed" in page
    report = (out / "06_report.html").read_text()
    assert "Trained on glyphs + shapes, tested on shapes," in report and "Does choosing per task help?" in report
    assert "open this notebook in JupyterLab" in report and "widget-state" not in report  # headless: no widgets
    assert "BMP seed 21." in (out / "02_bmp.html").read_text()
    assert "MMSUP seed 21." in (out / "03_mmsup.html").read_text()


def _run_results(out, method):
    table = pd.read_csv(out / "results.csv")
    run_id = table.loc[table["method"] == method, "run_id"].iloc[0]
    return json.loads((out.parent / "runs" / run_id / "results.json").read_text()), run_id


def test_bmp_notebook_recorded_layer_adaptation(smoke_run):
    out, _ = smoke_run
    result, run_id = _run_results(out, "bmp")
    assert set(result["test"]) == {"glyphs", "shapes"}
    steps, tasks = 2, 6  # smoke: adaptation_steps, test_tasks
    for dataset in ("glyphs", "shapes"):
        record = result["records"][dataset]
        by_step = record["layer_adapt_frequency_by_step"]
        assert len(by_step) == steps and all(len(step) == 5 for step in by_step)
        for step in by_step:  # a share of the 6 test tasks
            assert all(abs(f * tasks - round(f * tasks)) < 1e-6 for f in step)
        overall = [sum(step[i] for step in by_step) / steps for i in range(5)]
        assert record["layer_adapt_frequency"] == pytest.approx(overall)
    curve = pd.read_csv(out.parent / "runs" / run_id / "metrics.csv")
    adapt = [c for c in curve.columns if c.startswith("adapt_")]
    assert sorted(adapt) == sorted(
        f"adapt_{layer}_{d}" for layer in ("conv1", "conv2", "conv3", "conv4", "head") for d in ("glyphs", "shapes")
    )
    html = (out / "02_bmp.html").read_text()
    assert html.count("Per test dataset, in most inner steps") >= 2  # the finding, in words, for each form
    assert sum(html.count(reading) for reading in ("a fixed freeze", "varies from task to task", "depends on")) >= 2
    embeddings = pd.read_csv(out / "bmp_embeddings.csv")
    assert set(embeddings["method"]) == {"bmp (standardized)", "bmp (paper)"}
    assert len(set(embeddings["run_id"])) == 2 and (embeddings.groupby("method")["seed"].apply(set) == {21}).all()


def test_mmsup_notebook_recorded_sparsity_and_overlap(smoke_run):
    out, _ = smoke_run
    result, run_id = _run_results(out, "mmsup")
    curve = pd.read_csv(out.parent / "runs" / run_id / "metrics.csv")
    sparsity = [f"sparsity_conv{i}" for i in range(1, 5)]
    assert sparsity == [c for c in curve.columns if c.startswith("sparsity_")]
    assert list(curve[sparsity].iloc[-1]) == pytest.approx(list(result["records"]["sparsity"].values()))
    assert (curve[sparsity] != 0.5).any().any() and curve[sparsity].stack().between(0, 0.99).all()  # learned, in range
    overlap = result["records"]["overlap"]
    assert set(overlap) == {"conv1", "conv2", "conv3", "conv4"}
    assert set(overlap["conv2"]) == {"glyphs|glyphs", "glyphs|shapes", "shapes|shapes"}
    assert set(result["records"]["changed_during_adaptation"]["conv1"]) == {"glyphs", "shapes"}
    assert "Task subnetworks overlap" in (out / "03_mmsup.html").read_text()


def test_ablation_notebook_ran_its_grid(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "ablations.csv")
    assert set(table["setting"]) == {"adaptation_steps", "fast_lr", "sparsity"}
    assert set(table.loc[table["setting"] == "sparsity", "method"]) == {"mmsup"}
    assert set(table.loc[table["setting"] == "fast_lr", "value"]) == {0.05}
    assert len(table) == 3 * 2 and (table["status"] == "complete").all()  # 3 grid points x 2 test datasets
    for row in table.itertuples():  # each row is its run's own result, and the run has the grid point's setting
        run = out.parent / "runs" / row.run_id
        result, params = (json.loads((run / f).read_text()) for f in ("results.json", "params.json"))
        assert result["test"][row.test_dataset]["accuracy"] == row.accuracy
        setting = {"sparsity": "mmsup_sparsity_init"}.get(row.setting, row.setting)
        assert params[setting] == row.value and params["iterations"] == 3  # smoke: ablation_iterations


def test_convergence_notebook_traced_losses_and_swaps(smoke_run):
    out, _ = smoke_run
    (path,) = (out / "convergence").glob("trace-seed21-*.csv")
    trace = pd.read_csv(path)
    assert trace["iteration"].tolist() == [1, 2, 3, 4, 5, 6]
    assert ((trace["loss_after"] - trace["loss_before"] - trace["delta"]).abs() < 1e-9).all()
    swaps = [f"swaps_conv{i}" for i in range(1, 5)]
    assert (trace[swaps] >= 0).all().all() and (trace["swaps"] == trace[swaps].sum(1)).all()


def test_report_notebook_wrote_table2(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "table2.csv", header=[0, 1], index_col=[0, 1])
    assert list(table.index) == [("glyphs+shapes", "glyphs"), ("glyphs+shapes", "shapes")]
    shown = [m for m in ROWS if m not in ("mmsup_static", "fixed_layers_matched")]  # but the controls smoke skips
    assert [m for m, _ in table.columns][::2] == shown  # the methods, then the controls
    runs = pd.read_csv(out / "results.csv")
    for row in runs.itertuples():  # one seed: Table 2's accuracy is that run's, from results.csv, to 3 decimals
        cell = table.loc[("glyphs+shapes", row.test_dataset), (row.method, "accuracy")]
        assert "±" not in str(cell) and float(str(cell)) == pytest.approx(row.accuracy, abs=5e-4)
    html = (out / "06_report.html").read_text()
    assert "not one of the supplement&#39;s pairs" in html or "not one of the supplement's pairs" in html


def test_results_page_ties_the_profile_together_and_every_link_resolves(smoke_run):
    from html.parser import HTMLParser

    class Page(HTMLParser):
        """The page's link targets and its table rows (as lists of cell texts)."""

        def __init__(self):
            super().__init__()
            self.targets, self.rows = [], []

        def handle_starttag(self, tag, attrs):
            self.targets += [v for k, v in attrs if k in ("href", "src")]
            if tag == "tr":
                self.rows.append([])
            if tag in ("td", "th"):
                self.rows[-1].append("")

        def handle_data(self, data):
            if self.rows and self.rows[-1]:
                self.rows[-1][-1] += data.strip()

    out, executed = smoke_run
    page_text = (out / "index.html").read_text()
    page = Page()
    page.feed(page_text)
    assert {f"{nb.stem}.html" for nb in executed} <= set(page.targets)  # every rendered notebook
    assert any(t.startswith("figures/") for t in page.targets)
    for target in page.targets:  # relative, and there: the page opens from the file system
        assert not target.startswith(("/", "http")) and (out / target).is_file(), target
    assert (
        "<script" not in page_text
        and "Table 2, reproduced" in page_text
        and "Paired comparisons and mechanism scores" in page_text
    )
    paired = pd.read_csv(out / "comparisons.csv")  # every other row against MAML, per test dataset
    against_maml = paired[paired["against"] == "maml"]
    assert sorted(map(tuple, against_maml[["method", "test_dataset"]].values)) == [
        (m, d) for m in ("bmp", "fixed_layers", "mmsup", "multi_maml") for d in ("glyphs", "shapes")
    ]
    assert set(paired["verdict"]) <= {"better", "worse", "inconclusive", "equivalent within +-0.01"}
    header = ["run", "kind", "state", "iteration", "training time", "device", "folder"]
    runs = [dict(zip(header, row)) for row in page.rows[page.rows.index(header) + 1 :] if len(row) == len(header)]
    device = device_name(resolve_device(yaml.safe_load((out.parents[1] / "smoke.yaml").read_text())["device"]))
    assert len(runs) == 10 and "maml seed 21" in {r["run"] for r in runs}  # every planned run of the smoke profile
    for run in runs:  # with its state, time and where it was trained
        assert run["state"] == "complete" and run["device"] == device, run
        assert re.fullmatch(r"\d+ s|\d+\.\d min", run["training time"]), run


def test_renders_and_page_name_no_folder_of_the_machine_that_made_them(smoke_run):
    out, executed = smoke_run
    for path in [out / "index.html", *(nb.with_suffix(".html") for nb in executed)]:
        assert str(PROJECT_ROOT) not in path.read_text(), path.name


def test_explorer_and_results_page_in_a_real_browser(smoke_run, request, tmp_path):
    """JupyterLab in Chromium: run 06_report of the smoke profile, change the explorer's run, test
    dataset and task and see its figure and predictions change; then open the results page from the
    file system. Screenshots go to this test's tmp_path."""
    if request.node.callspec.params["smoke_run"] != "cpu":
        pytest.skip("the browser drives the CPU smoke run's notebooks; CUDA changes nothing it sees")
    import browser

    executable = browser.chromium()
    out, executed = smoke_run
    with browser.jupyter_lab(out, tmp_path) as (lab, token), browser.page(executable, tmp_path / "failed.png") as page:
        page.goto(f"{lab}/tree/06_report.ipynb?token={token}")
        page.locator(".jp-Notebook").wait_for(timeout=60_000)
        # only once the kernel is up: "Run All" with no kernel yet can be lost
        page.locator(".jp-StatusBar-TextItem", has_text="(ipykernel) | Idle").wait_for(timeout=120_000)
        for menu, command in (("Edit", "Clear Outputs of All Cells"), ("Run", "Run All Cells")):
            page.locator(".lm-MenuBar-itemLabel", has_text=menu).click()
            page.locator(".lm-Menu-itemLabel", has_text=command).first.click()
        explorer = page.locator(".widget-interact")
        explorer.locator("select").first.wait_for(timeout=180_000)
        shown = explorer.locator(".widget-output")

        def seen() -> tuple[str, str]:
            """The explorer's figure (its PNG) and predictions line."""
            line = shown.get_by_text("queries right")
            line.wait_for(timeout=60_000)
            return shown.locator("img").first.get_attribute("src"), line.inner_text()

        def after(change, name: str, expected: str, before: tuple[str, str]) -> tuple[str, str]:
            """Make a change in the explorer; wait until it shows ``expected``; check its figure changed."""
            change()
            shown.get_by_text(expected).wait_for(timeout=60_000)
            now = seen()
            explorer.screenshot(path=tmp_path / f"{name}.png")
            assert now[0] != before[0], f"{name}: the figure did not change"
            return now

        state = seen()
        page.screenshot(path=tmp_path / "report-run-all.png")
        explorer.screenshot(path=tmp_path / "explorer-bmp.png")
        assert state[1].startswith("bmp seed 21, glyphs test task 0:"), state[1]
        runs, datasets = explorer.locator("select").nth(0), explorer.locator("select").nth(1)
        state = after(
            lambda: runs.select_option("mmsup"), "explorer-mmsup", "mmsup seed 21, glyphs test task 0:", state
        )
        state = after(
            lambda: datasets.select_option("shapes"), "explorer-shapes", "mmsup seed 21, shapes test task 0:", state
        )
        slider = explorer.locator(".widget-slider .noUi-handle, .widget-slider [role=slider]").first
        after(
            lambda: (slider.focus(), slider.press("ArrowRight"), slider.press("ArrowRight")),
            "explorer-task-2",
            "mmsup seed 21, shapes test task 2:",
            state,
        )

        page.goto((out / "index.html").as_uri())
        page.screenshot(path=tmp_path / "results-page.png", full_page=True)
        assert page.locator("table").count() >= 3 and page.locator("span.complete").count() == 10
        assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        links = page.locator("a").evaluate_all("links => links.map(a => a.href)")
        assert len(links) == len(executed)
        for link in links:  # each rendered notebook opens, from the file system
            page.goto(link)
            assert page.locator(".jp-Notebook, .jp-Cell").count() > 0, link
