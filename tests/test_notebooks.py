"""Every notebook end to end with papermill on the smoke parameters; assertions read the files the
notebooks write, not their cell outputs."""
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
    assert baselines["accuracy"].between(0, 1).all() and (baselines["iterations"] == 6).all()
    assert (baselines["train_datasets"] == "glyphs+shapes").all()
    for run_id in baselines["run_id"]:
        assert (out / "runs" / run_id / "metrics.csv").exists()


def _run_results(out, method):
    import json
    table = pd.read_csv(out / "results.csv")
    run_id = table.loc[table["method"] == method, "run_id"].iloc[0]
    return json.loads((out / "runs" / run_id / "results.json").read_text()), run_id


def test_bmp_notebook_recorded_layer_adaptation(smoke_run):
    out, _ = smoke_run
    result, _ = _run_results(out, "bmp")
    assert set(result["test"]) == {"glyphs", "shapes"}
    for dataset in ("glyphs", "shapes"):
        freq = result["records"][dataset]["layer_adapt_frequency"]
        assert len(freq) == 5 and all(0 <= f <= 1 for f in freq)


def test_mmsup_notebook_recorded_sparsity_and_overlap(smoke_run):
    out, _ = smoke_run
    result, run_id = _run_results(out, "mmsup")
    curve = pd.read_csv(out / "runs" / run_id / "metrics.csv")
    assert [f"sparsity_conv{i}" for i in range(1, 5)] == [c for c in curve.columns if c.startswith("sparsity_")]
    overlap = result["records"]["overlap"]
    assert set(overlap) == {"conv1", "conv2", "conv3", "conv4"}
    assert set(overlap["conv2"]) == {"glyphs|glyphs", "glyphs|shapes", "shapes|shapes"}
    assert all(0 < v <= 1 for layer in overlap.values() for v in layer.values())


def test_ablation_notebook_ran_its_grid(smoke_run):
    out, _ = smoke_run
    table = pd.read_csv(out / "ablations.csv")
    assert set(table["setting"]) == {"adaptation_steps", "fast_lr", "sparsity"}
    assert set(table.loc[table["setting"] == "sparsity", "method"]) == {"mmsup"}
    assert set(table.loc[table["setting"] == "fast_lr", "value"]) == {0.05}
    assert len(table) == 3 * 2 and table["accuracy"].between(0, 1).all()  # 3 grid points x 2 test datasets


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
    html = (out / "06_report.html").read_text()
    assert "not one of the supplement&#39;s pairs" in html or "not one of the supplement's pairs" in html
