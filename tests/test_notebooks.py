"""Every notebook end to end with papermill on the smoke parameters; assertions read the files the
notebooks write, not their cell outputs."""
import json

import pandas as pd
import pytest
import yaml

from conftest import DEVICES, PROJECT_ROOT
from gems_core import pipeline


@pytest.fixture(scope="module", params=DEVICES)
def smoke_run(request, tmp_path_factory):
    """Run the whole pipeline once on parameters/smoke.yaml (on the CPU and, where present, CUDA),
    writing under a temporary folder."""
    tmp = tmp_path_factory.mktemp(f"smoke-{request.param}")
    params = yaml.safe_load((PROJECT_ROOT / "parameters" / "smoke.yaml").read_text())
    params.update(output_root=str(tmp / "outputs"), data_root=str(tmp / "data"), device=request.param)
    params_file = tmp / "smoke.yaml"
    params_file.write_text(yaml.safe_dump(params))
    executed = pipeline.run_pipeline(params_file)
    return tmp / "outputs" / "smoke", executed


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
    for path in pipeline.notebooks():
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), f"{path.name}: no parameters cell"


def test_baselines_wrote_runs_and_results(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "results.csv")
    baselines = table[table["method"].isin(["maml", "multi_maml"])]
    assert sorted(map(tuple, baselines[["method", "test_dataset"]].values)) == [
        ("maml", "glyphs"), ("maml", "shapes"), ("multi_maml", "glyphs"), ("multi_maml", "shapes")]
    assert (baselines["iterations"] == 6).all() and (baselines["train_datasets"] == "glyphs+shapes").all()
    for row in baselines.itertuples():  # every row is what its run folder says, not a copy of something else
        result = json.loads((out.parent / "runs" / row.run_id / "results.json").read_text())
        assert result["method"] == row.method and result["test"][row.test_dataset]["accuracy"] == row.accuracy
        assert result["test"][row.test_dataset]["tasks"] == 6
    assert baselines.groupby("method")["accuracy"].apply(tuple).nunique() == 2  # two methods, two outcomes


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
    assert sorted(adapt) == sorted(f"adapt_{layer}_{d}" for layer in ("conv1", "conv2", "conv3", "conv4", "head")
                                   for d in ("glyphs", "shapes"))
    html = (out / "02_bmp.html").read_text()
    assert html.count("The distributions got") >= 2  # the finding, in words, for each embedding form
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
    trace = pd.read_csv(out / "convergence" / "trace-seed21.csv")
    assert trace["iteration"].tolist() == [1, 2, 3, 4, 5, 6]
    assert ((trace["loss_after"] - trace["loss_before"] - trace["delta"]).abs() < 1e-9).all()
    swaps = [f"swaps_conv{i}" for i in range(1, 5)]
    assert (trace[swaps] >= 0).all().all() and (trace["swaps"] == trace[swaps].sum(1)).all()


def test_report_notebook_wrote_table2(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "table2.csv", header=[0, 1], index_col=[0, 1])
    assert list(table.index) == [("glyphs+shapes", "glyphs"), ("glyphs+shapes", "shapes")]
    assert {m for m, _ in table.columns} == {"maml", "multi_maml", "bmp", "mmsup"}
    runs = pd.read_csv(out / "results.csv")
    for row in runs.itertuples():  # one seed: Table 2's accuracy is that run's, from results.csv, to 3 decimals
        cell = table.loc[("glyphs+shapes", row.test_dataset), (row.method, "accuracy")]
        assert "±" not in str(cell) and float(str(cell)) == pytest.approx(row.accuracy, abs=5e-4)
    html = (out / "06_report.html").read_text()
    assert "not one of the supplement&#39;s pairs" in html or "not one of the supplement's pairs" in html
