"""Packed training (gems_core/packing.py, packed_runs.py) is the same arithmetic as runs trained alone: in
float64, P packed runs of each method and control equal the same runs trained one by one, over 20
meta-iterations, in every weight, buffer, optimiser state and running sum (losses, accuracies, choices'
sums, non-finite flags); and runs trained as a pack write what they write alone, diverge alone, catch up
when resumed at different iterations, and resume after a SIGKILL to the uninterrupted result."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from conftest import tiny_config

from gems_core import checkpoints
from gems_core.data import SplitImages, TaskBatch, load_distributions
from gems_core.learners import METHODS, Calibrated
from gems_core.members import build_members
from gems_core.packed_runs import run_packed
from gems_core.packing import Pack
from gems_core.runs import RunFiles, run_id
from gems_core.training import open_run, run_method

ITERATIONS = 20
TOLERANCE = 1e-10
WEIGHTS_FLOAT32 = 1e-4  # runs written by a pack, in float32: weights within a tenth of one Adam step (meta_lr
# 1e-3) of the run alone (grouped convolutions of other group counts round otherwise, and Adam scales a
# meta-gradient near zero to a step whatever its size). Conv biases aside: batch norm right after them
# leaves them no meta-gradient but rounding noise, so Adam moves them by whole steps either way (in
# float64 the noise is far below Adam's eps: they agree there too)


def _doubled(sample):
    """A sampler's draw in float64 (images arrive as float32)."""

    def draw(n):
        b = sample(n)
        return TaskBatch(b.support_x.double(), b.support_y, b.query_x.double(), b.query_y, b.distribution)

    return draw


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    params = tiny_config(tmp_path_factory.mktemp("packing"), hidden_size=4)
    dists = load_distributions(params)
    return params, SplitImages([d.splits["train"] for d in dists], torch.device("cpu"), 3)


def _members(params, train, method, seeds):
    """The members of ``method``'s runs with ``seeds``, in float64, calibrated where the learner needs it."""
    members = []
    for seed in seeds:
        for member in build_members(params, method, seed, train, 2, torch.device("cpu")):
            member.learner.double()
            member.sampler.sample = _doubled(member.sampler.sample)
            if isinstance(member.learner, Calibrated) and (n := member.learner.calibration_tasks()):
                member.learner.calibrate(member.sampler.sample(n))
            members.append(member)
    return members


def _largest_difference(alone, packed) -> float:
    worst = 0.0
    for a, b in zip(alone, packed, strict=True):
        theirs = b.learner.state_dict()
        for name, value in a.learner.state_dict().items():
            if value.is_floating_point():
                worst = max(worst, float((value - theirs[name]).abs().max()))
            else:
                assert torch.equal(value, theirs[name]), name
        assert a.sums.keys() == b.sums.keys()
        for name, value in a.sums.items():
            worst = max(worst, float((value.double() - b.sums[name].double()).abs().max()))
        states = zip(a.optimizer.state.values(), b.optimizer.state.values(), strict=True)
        for sa, sb in states:
            worst = max(worst, *(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa))
    return worst


@pytest.mark.parametrize(
    "method, seeds",
    [("maml", [21]), ("maml", [21, 42])]  # P = 1 and 2; every packable method and control at P = 3, mixed seeds
    + [(name, [42, 7, 21]) for name, method in METHODS.items() if method.matched_to is None],
)
def test_packed_runs_equal_the_same_runs_trained_alone(setting, method, seeds):
    params, train = setting
    alone, packed = _members(params, train, method, seeds), _members(params, train, method, seeds)
    for _ in range(ITERATIONS):
        for member in alone:
            member.update()
    pack = Pack(packed)
    for _ in range(ITERATIONS):
        pack.update()
    pack.sync()
    assert _largest_difference(alone, packed) < TOLERANCE
    losses = {float(m.sums["loss"]) for m in packed}
    assert len(losses) == len(packed) and min(losses) > 0  # each run its own: no run trained twice or not at all


def test_members_that_differ_in_shape_are_never_packed(setting):
    params, train = setting
    members = _members(params, train, "maml", [21]) + _members(params.replace(hidden_size=6), train, "maml", [21])
    with pytest.raises(ValueError, match="share every shape"):
        Pack(members)
    with pytest.raises(ValueError, match="share every shape"):
        Pack(_members(params, train, "maml", [21]) + _members(params, train, "bmp", [21]))


# --- runs in a pack: what they write ------------------------------------------------------------------
def _same_outcome(a_params, b_params, method, seed):
    """The run of ``method`` and ``seed`` wrote the same results, curve and weights under both roots, to
    float32's rounding (the float64 tests above prove the arithmetic equal): weights within a tenth of an Adam
    step, the curve to 1e-3, each test accuracy within one query of the tasks'."""
    a, b = RunFiles(a_params, method, seed), RunFiles(b_params, method, seed)
    ra, rb = a.results(), b.results()
    assert ra["status"] == rb["status"] == "complete" and ra["iterations"] == rb["iterations"]
    for dataset, outcome in ra["test"].items():
        one_query = 1 / (outcome["tasks"] * a_params.ways * (a_params.test_queries or a_params.queries))
        assert abs(outcome["accuracy"] - rb["test"][dataset]["accuracy"]) <= one_query + 1e-12, dataset
    ca, cb = (f.metrics().drop(columns=["train_seconds", "run_id"]) for f in (a, b))
    pd.testing.assert_frame_equal(ca, cb, check_exact=False, rtol=1e-3)
    wa, wb = (checkpoints.load(f.path)[0]["members"] for f in (a, b))
    for ma, mb in zip(wa, wb, strict=True):
        shaped = [k for k in ma["learner"] if not (k.startswith("backbone.conv") and k.endswith("__bias"))]
        worst = max(float((ma["learner"][k] - mb["learner"][k]).abs().max()) for k in shaped)
        assert worst < WEIGHTS_FLOAT32, worst
        assert ma["optimizer"]["state"].keys() == mb["optimizer"]["state"].keys()


def _roots(tiny_params, tmp_path, **overrides):
    return (
        tiny_params(output_root=str(tmp_path / "alone"), **overrides),
        tiny_params(output_root=str(tmp_path / "packed"), **overrides),
    )


def test_runs_trained_as_a_pack_write_what_they_write_alone(tiny_params, tmp_path):
    alone, packed = _roots(tiny_params, tmp_path, seeds=[21, 42])
    for method in ("maml", "multi_maml"):  # MAML's packed step is bit for bit its step alone, in float32 too
        for seed in (21, 42):
            run_method(alone, method, seed, progress=False)
        outcomes = run_packed(packed, method, [21, 42], progress=False)
        assert outcomes[21]["packed_with"] == [run_id(packed, method, 42)]
        for seed in (21, 42):
            _same_outcome(alone, packed, method, seed)


def test_a_run_that_diverges_leaves_the_pack_and_the_others_go_on(tiny_params, tmp_path, monkeypatch):
    alone, packed = _roots(tiny_params, tmp_path, iterations=30, validation_every=10, checkpoint_every=10)
    run_method(alone, "maml", 21, progress=False)
    calls, update = [], Pack.update

    def poisoned(self):  # the second run's weights become non-finite in the pack's 7th update
        update(self)
        calls.append(1)
        if len(calls) == 7:
            with torch.no_grad():
                self.learner.backbone["head__weight"][1, 0, 0] = float("inf")

    monkeypatch.setattr(Pack, "update", poisoned)
    outcomes = run_packed(packed, "maml", [21, 42], progress=False)
    assert outcomes[42]["status"] == "diverged" and outcomes[42]["diverged"]["iteration"] == 8  # seen by the 8th
    assert outcomes[42]["diverged"]["quantities"] == ["loss", "meta-gradient", "weights"]  # from inf weights on
    _same_outcome(alone, packed, "maml", 21)  # untouched by its neighbour's divergence, to the last bit


def test_a_pack_of_a_resumed_and_a_new_run_catches_up_then_packs(tiny_params, tmp_path):
    alone, packed = _roots(tiny_params, tmp_path, seeds=[21, 42])
    for seed in (21, 42):
        run_method(alone, "maml", seed, progress=False)
    ahead = open_run(packed, "maml", 21, load_distributions(packed))
    ahead.begin(progress=False)
    ahead.train(progress=False, until=3)  # a checkpoint at 3 of 6, as a run stopped there leaves it
    assert checkpoints.load(ahead.folder)[0]["state"]["iteration"] == 3
    run_packed(packed, "maml", [21, 42], progress=False)  # 42 catches up alone to 3, then the two pack
    for seed in (21, 42):
        _same_outcome(alone, packed, "maml", seed)


@pytest.mark.slow
def test_a_killed_pack_resumes_every_run_to_the_uninterrupted_result(tmp_path):
    from conftest import PROJECT_ROOT, smoke_file

    from gems_core.params import load_params

    overrides = dict(iterations=40, validation_every=4, checkpoint_every=4, seeds=[21, 42], device="cpu")
    killed_file, whole_file = smoke_file(tmp_path, "killed", **overrides), smoke_file(tmp_path, "whole", **overrides)
    whole = load_params(whole_file)
    for seed in (21, 42):
        run_method(whole, "maml", seed, progress=False)  # each alone, uninterrupted
    command = [sys.executable, "-m", "gems_core.training", str(killed_file), "--method", "maml"]
    command += ["--seed", "21", "--seed", "42", "--no-progress"]
    proc = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    runs = tmp_path / "killed" / "runs"
    deadline = time.time() + 300
    while len(list(runs.glob("*/checkpoint.pt"))) < 2 and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = load_params(killed_file)
    for seed in (21, 42):
        assert RunFiles(killed, "maml", seed).results() is None, "the pack finished before it could be killed"
    assert subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, timeout=600).returncode == 0
    for seed in (21, 42):
        _same_outcome(whole, killed, "maml", seed)
