"""Run folders, Multi-MAML, resuming after a real kill, and the results table."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import DEVICES, PROJECT_ROOT, smoke_file

from gems_core import checkpoints, stopping
from gems_core.data import load_distributions
from gems_core.data.splits import apply_split
from gems_core.device import resolve_device
from gems_core.params import load_params
from gems_core.results import COLUMNS, gather
from gems_core.runs import run_folder
from gems_core.training import Run, run_method


def test_run_folder_holds_params_metrics_checkpoint_results(tiny_params):
    params = tiny_params()
    results = run_method(params, "maml", 21, progress=False)
    folder = run_folder(params, "maml", 21)
    assert folder.parent == Path(params.output_root) / "runs"  # shared by every profile
    assert {p.name for p in folder.iterdir()} == {
        "params.json",
        "metrics.csv",
        "checkpoint.pt",
        "checkpoint.prev.pt",
        "results.json",
        "test_accuracies.csv",
    }
    assert json.loads((folder / "params.json").read_text())["method"] == "maml"
    curve = pd.read_csv(folder / "metrics.csv")
    assert curve["iteration"].tolist() == [3, 6]
    assert {"train_loss", "val_accuracy_glyphs", "val_accuracy_shapes", "train_seconds"} <= set(curve.columns)
    assert results["complete"] and results["iterations"] == 6 and set(results["test"]) == {"glyphs", "shapes"}
    assert results["test"]["glyphs"]["tasks"] == 6 and 0 <= results["test"]["glyphs"]["accuracy"] <= 1
    run_method(tiny_params(fast_lr=0.2), "maml", 21, progress=False)  # an ablation-like run: not gathered
    table = gather(folder.parents[1] / params.profile, params)
    assert list(table.columns[: len(COLUMNS)]) == COLUMNS and len(table) == 2
    assert (folder.parents[1] / params.profile / "results.csv").exists()


def test_complete_run_is_read_back_not_retrained(tiny_params):
    params = tiny_params()
    first = run_method(params, "maml", 21, progress=False)
    stamp = (run_folder(params, "maml", 21) / "results.json").stat().st_mtime_ns
    assert run_method(params, "maml", 21, progress=False) == first
    assert (run_folder(params, "maml", 21) / "results.json").stat().st_mtime_ns == stamp


def test_different_parameters_get_different_run_folders(tiny_params):
    assert run_folder(tiny_params(), "maml", 21) != run_folder(tiny_params(fast_lr=0.2), "maml", 21)
    assert run_folder(tiny_params(), "maml", 21) == run_folder(tiny_params(device="cpu", profile="t"), "maml", 21)
    # a method's own parameters re-key its runs only
    assert run_folder(tiny_params(), "maml", 21) == run_folder(tiny_params(mmsup_temperature=0.5), "maml", 21)
    assert run_folder(tiny_params(), "bmp", 21) == run_folder(tiny_params(mmsup_sparsity_init=0.3), "bmp", 21)
    assert run_folder(tiny_params(), "mmsup", 21) != run_folder(tiny_params(mmsup_temperature=0.5), "mmsup", 21)
    assert run_folder(tiny_params(), "bmp", 21) != run_folder(tiny_params(bmp_inp_embedding_init=0.5), "bmp", 21)


def test_multi_maml_member_is_a_maml_trained_on_its_own_distribution(tiny_params, tmp_path):
    params = tiny_params()
    dists = load_distributions(params)
    device = resolve_device("cpu")
    multi = Run(params, "multi_maml", 21, dists, tmp_path / "multi", device)
    assert [m.distributions for m in multi.members] == [[0], [1]]
    multi.train(progress=False)
    alone = Run(params, "maml", 21, dists[:1], tmp_path / "alone", device)
    alone.train(progress=False)
    for a, b in zip(multi.members[0].learner.parameters(), alone.members[0].learner.parameters()):
        assert torch.equal(a, b)
    assert multi.learner_for(1) is multi.members[1].learner
    assert not torch.equal(
        multi.members[1].learner.backbone["conv1__weight"], alone.members[0].learner.backbone["conv1__weight"]
    )


def run_folders(runs):
    """The run folders under ``outputs/runs`` (not its ``.locks``)."""
    return [p for p in runs.iterdir() if not p.name.startswith(".")]


def _train_cli(params_file, method="maml", **popen):
    cmd = [
        sys.executable,
        "-m",
        "gems_core.training",
        str(params_file),
        "--method",
        method,
        "--seed",
        "21",
        "--no-progress",
    ]
    return subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["maml", "multi_maml", "bmp", "mmsup"])
def test_killed_run_resumes_to_the_same_weights_and_metrics(tmp_path, method, device):
    # on a GPU, bit-for-bit repetition needs deterministic algorithms (docs/performance.md: GPU numerics)
    overrides = dict(
        iterations=40, validation_every=4, checkpoint_every=4, device=device, deterministic=device == "cuda"
    )
    killed_file, whole_file = smoke_file(tmp_path, "killed", **overrides), smoke_file(tmp_path, "whole", **overrides)
    run_method(load_params(whole_file), method, 21, progress=False)  # uninterrupted, in this process

    proc = _train_cli(killed_file, method)
    runs = tmp_path / "killed" / "runs"
    deadline = time.time() + 300
    while not list(runs.glob("*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # let it get a little further than the first checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (folder,) = run_folders(runs)
    assert not (folder / "results.json").exists(), "the run finished before it could be killed"
    interrupted_at = checkpoints.load(folder)[0]["state"]["iteration"]
    assert 0 < interrupted_at < 40
    assert _train_cli(killed_file, method).wait(timeout=600) == 0

    (whole,) = run_folders(tmp_path / "whole" / "runs")
    a, b = (checkpoints.load(f)[0]["members"] for f in (folder, whole))
    assert len(a) == len(b) == (2 if method == "multi_maml" else 1)
    for ma, mb in zip(a, b):
        assert all(torch.equal(ma["learner"][k], mb["learner"][k]) for k in mb["learner"])
    curve_a = pd.read_csv(folder / "metrics.csv").drop(columns="train_seconds")
    curve_b = pd.read_csv(whole / "metrics.csv").drop(columns="train_seconds")
    pd.testing.assert_frame_equal(curve_a, curve_b)
    ra, rb = (json.loads((f / "results.json").read_text()) for f in (folder, whole))
    assert ra["test"] == rb["test"] and ra["records"] == rb["records"]


def test_explorer_shows_a_tasks_choices_and_predictions(tiny_params):
    from gems_core import explore
    from gems_core.trained import load_learner

    params = tiny_params()
    dists = load_distributions(params)
    for method, choice in (("bmp", "layer_masks"), ("mmsup", "masks_conv1")):
        run_method(params, method, 21, dists, progress=False)
        trained = load_learner(run_folder(params, method, 21))
        seen = explore.inspect_task(trained, dists, 1, 2)
        assert seen["support"].shape == (3, 3, 16, 16) and seen["prediction"].shape == (6,)
        assert choice in seen["choices"]
        assert explore.task_figure(seen).axes
        line = explore.predictions_line(seen)
        right = int((seen["prediction"] == seen["query_y"]).sum())
        true, predicted = (line.split("; true ")[1]).split("; predicted ")
        assert line.startswith(f"{method} seed 21, shapes test task 2: {right} of 6 queries right")
        assert true.split() == [str(y) for y in seen["query_y"].tolist()]
        assert predicted.split() == [str(p) for p in seen["prediction"].tolist()]
    for name in (checkpoints.NEWEST, checkpoints.PREVIOUS):  # MMSUP's checkpoints damaged (or from an older kit)
        (run_folder(params, "mmsup", 21) / name).write_bytes(b"not a checkpoint")
    runs, problems = explore.explorable_runs(params, ["bmp", "mmsup", "maml"])
    assert list(runs) == ["bmp"] and len(problems) == 1 and problems[0].startswith("mmsup: ")


def test_proportional_task_sampling_weights_distributions_by_train_classes(tiny_params, tmp_path):
    params = tiny_params(task_sampling="proportional", synthetic_classes=30)
    dists = load_distributions(params)
    run = Run(params, "maml", 21, dists, tmp_path / "r", resolve_device("cpu"))
    assert run.members[0].sampler.weights.tolist() == [0.5, 0.5]  # 0.6 of 30 classes each: 18 and 18
    shapes = dists[1].splits["train"]
    kept = {"train": shapes.class_names[:12], "validation": [], "test": []}
    dists[1].splits["train"] = apply_split(shapes, kept)[0]["train"]  # 12 of shapes' 18 train classes
    run = Run(params, "maml", 21, dists, tmp_path / "s", resolve_device("cpu"))
    assert run.members[0].sampler.weights.tolist() == pytest.approx([18 / 30, 12 / 30])
    uniform = Run(tiny_params(), "maml", 21, dists, tmp_path / "u", resolve_device("cpu"))
    assert uniform.members[0].sampler.weights.tolist() == [0.5, 0.5]


def test_asking_for_cuda_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from gems_core.params import ParameterError

    with pytest.raises(ParameterError, match="'device' is 'cuda' but torch sees no CUDA device"):
        resolve_device("cuda")


def test_a_second_profile_reuses_a_run_and_bookkeeping_does_not_rekey_it(tiny_params):
    first = tiny_params(profile="table2")
    result = run_method(first, "bmp", 21, progress=False)
    stamp = (run_folder(first, "bmp", 21) / "results.json").stat().st_mtime_ns
    second = tiny_params(
        profile="ablations",
        validation_every=2,
        checkpoint_every=1,
        methods=["bmp"],
        ablation_fast_lr=[0.5],
        max_dropped_classes=0.5,
    )
    assert run_folder(second, "bmp", 21) == run_folder(first, "bmp", 21)
    assert run_method(second, "bmp", 21, progress=False) == result
    assert (run_folder(first, "bmp", 21) / "results.json").stat().st_mtime_ns == stamp  # read back, not retrained
    assert run_folder(tiny_params(test_tasks=5), "bmp", 21) != run_folder(first, "bmp", 21)  # changes its results
    assert run_folder(tiny_params(validation_tasks=2), "bmp", 21) != run_folder(first, "bmp", 21)  # its frozen mask
    assert run_folder(tiny_params(tf32=True), "bmp", 21) != run_folder(first, "bmp", 21)  # changes its weights


def test_train_seconds_count_meta_iterations_not_validation(tiny_params, tmp_path, monkeypatch):
    params = tiny_params(iterations=4, validation_every=2, checkpoint_every=2)
    run = Run(params, "maml", 21, load_distributions(params), tmp_path / "r", resolve_device("cpu"))
    real_evaluate = Run.evaluate

    def slow_evaluate(self, split, distribution):
        time.sleep(0.5)
        return real_evaluate(self, split, distribution)

    monkeypatch.setattr(Run, "evaluate", slow_evaluate)
    start = time.perf_counter()
    run.train(progress=False)
    wall = time.perf_counter() - start
    assert wall > 2.0  # two validations of two distributions at 0.5 s each
    assert 0 < run.state.train_seconds < wall - 1.9
    assert run.state.rows[-1]["train_seconds"] == run.state.train_seconds


def test_every_method_and_seed_sees_the_same_test_tasks_from_test_classes_only(tiny_params, tmp_path):
    params = tiny_params()
    dists = load_distributions(params)
    runs = [
        Run(params, m, s, dists, tmp_path / f"{m}{s}", resolve_device("cpu"))
        for m, s in (("maml", 21), ("bmp", 42), ("multi_maml", 56))
    ]
    for i, dist in enumerate(dists):
        tasks = [r.fixed_tasks("test")[i] for r in runs]
        assert all(torch.equal(t.idx, tasks[0].idx) for t in tasks)
        split = runs[0].splits["test"]
        # image index -> class: every image of every task lies in one of this distribution's test classes
        owner = torch.bucketize(tasks[0].idx.flatten(), split.class_start, right=True) - 1
        assert (split.class_owner[owner] == i).all()
        assert (tasks[0].idx.flatten() < (split.class_start + split.class_count)[owner]).all()
        names = {split.class_names[i][k] for k in (owner - int((split.class_owner < i).sum())).tolist()}
        assert names <= set(dist.splits["test"].class_names) and not names & set(dist.splits["train"].class_names)


def test_bmp_logs_how_often_each_distributions_tasks_adapted_each_layer(tiny_params, tmp_path):
    params = tiny_params(iterations=3, validation_every=3)
    run = Run(params, "bmp", 21, load_distributions(params), tmp_path / "b", resolve_device("cpu"))
    with torch.no_grad():  # force the mask: conv2 and the head never adapt, the others always
        run.members[0].learner.mask_mlp[-1].weight.zero_()
        run.members[0].learner.mask_mlp[-1].bias.copy_(torch.tensor([9.0, -9.0, 9.0, 9.0, -9.0]))
    run.train(progress=False)
    row = run.state.rows[-1]
    for dist in ("glyphs", "shapes"):
        assert [row[f"adapt_{layer}_{dist}"] for layer in ("conv1", "conv2", "conv3", "conv4", "head")] == [
            1,
            0,
            1,
            1,
            0,
        ]


def test_training_log_reads_the_interval_sums_before_resetting_them(tiny_params, tmp_path):
    params = tiny_params(iterations=2, validation_every=2)
    run = Run(params, "maml", 21, load_distributions(params), tmp_path / "m", resolve_device("cpu"))
    run.train(progress=False)
    assert run.state.rows[-1]["train_loss"] > 0.5  # cross-entropy of 3 ways starts near log 3 = 1.1
    assert all(bool((v == 0).all()) for v in run.members[0].sums.values())  # and the next interval starts at 0


def test_a_stop_request_saves_after_the_current_iteration_and_the_run_resumes_there(tiny_params, tmp_path):
    from gems_core import training

    settings = dict(iterations=6, checkpoint_every=5, validation_every=3)
    params = tiny_params(**settings)
    dists = load_distributions(params)
    whole = run_method(tiny_params(**settings, output_root=str(tmp_path / "whole")), "bmp", 21, progress=False)
    run = training.open_run(params, "bmp", 21, dists)
    stopping.STOP.set()  # as SIGTERM does in a sweep's job
    try:
        with pytest.raises(stopping.Stopped, match="stopped at iteration 1"):
            run.run(progress=False)
    finally:
        stopping.STOP.clear()
    assert checkpoints.load(run.folder)[0]["state"]["iteration"] == 1 and not (run.folder / "results.json").exists()
    assert run_method(params, "bmp", 21, dists, progress=False)["test"] == whole["test"]
