"""Sweeps on a real one-node Slurm cluster (``slurm_cluster``): the smoke profile's sweep submitted as a job
array through submitit, one job requeued mid-run by ``scontrol requeue``, what ``--wait`` and a later call
report beside what ``sacct`` says, and the notebooks rendered from the runs. The edge cases a real cluster
cannot stage cheaply (time limits, preemption signals, failing jobs) stay with the fake commands in
test_sweep.py."""

import json
import re
import subprocess
import sys
import time

import pytest
from conftest import PROJECT_ROOT, smoke_file
from slurm_cluster import one_node_cluster, unavailable

from gems_core import checkpoints
from gems_core.params import load_params
from gems_core.plan import plan
from gems_core.training import run_method

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm_env():
    """The environment of a running one-node cluster (installed first where absent and permitted)."""
    reason = unavailable()
    if reason:
        pytest.skip(f"no real Slurm here: {reason}")
    with one_node_cluster() as env:
        yield env


def _sweep(params_file, env, *flags):
    command = [sys.executable, "-m", "gems_core.sweep", str(params_file), "--executor", "slurm", *flags]
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _sacct(env, job: str) -> list[tuple[str, str]]:
    """(job id, state) of every record sacct keeps for ``job`` and its array tasks, requeued ones included."""
    out = subprocess.run(
        ["sacct", "-D", "-X", "-n", "-P", "-o", "JobID,State", "-j", job], env=env, capture_output=True, text=True
    )
    return [tuple(line.split("|")) for line in out.stdout.split()]


def test_a_sweep_on_real_slurm_completes_survives_a_requeue_and_renders(slurm_env, tmp_path):
    settings = dict(iterations=200, checkpoint_every=5, validation_every=100)
    light = dict(ablation_methods=[], ablation_sparsity=[], bmp_compare_embeddings=[])  # five methods, a trace
    params_file = smoke_file(tmp_path, "cluster", **settings, **light)
    submitted = _sweep(params_file, slurm_env, "--no-render")
    folder = tmp_path / "cluster" / "smoke" / "sweep"
    jobs = json.loads((folder / "slurm_jobs.json").read_text())
    runs = plan(load_params(params_file))
    assert len(jobs) == len(runs) == 6 and "submitted 6 runs as job array" in submitted

    first = runs[0]  # requeue its job once the run has a checkpoint, before it completes
    deadline = time.time() + 300
    while not (first.folder / checkpoints.NEWEST).exists() and time.time() < deadline:
        time.sleep(0.1)
    assert first.state()[0] == "partial", first.state()
    requeue = subprocess.run(["scontrol", "requeue", jobs[first.name]], env=slurm_env, capture_output=True, text=True)
    assert requeue.returncode == 0, requeue.stderr
    # Slurm holds a requeued job back for two minutes (its BeginTime); an administrator may release it
    reason = ["squeue", "-h", "-j", jobs[first.name], "-o", "%r"]
    deadline = time.time() + 60
    while "BeginTime" not in subprocess.run(reason, env=slurm_env, capture_output=True, text=True).stdout:
        assert time.time() < deadline, "the requeued job never waited for its begin time"
        time.sleep(0.2)
    release = ["scontrol", "update", f"JobId={jobs[first.name]}", "StartTime=now"]
    assert subprocess.run(release, env=slurm_env, capture_output=True).returncode == 0

    followed = _sweep(params_file, slurm_env, "--wait", "--only", "06")  # follows the jobs, then renders the report
    array = jobs[first.name].split("_")[0]
    records = _sacct(slurm_env, array)
    assert {state for job, state in records if job == jobs[first.name]} == {"REQUEUED", "COMPLETED"}
    finals = {job: state for job, state in records}  # the last record of each task
    assert sorted(finals) == sorted(jobs.values()) and set(finals.values()) == {"COMPLETED"}
    statuses = [line for line in followed.splitlines() if line.startswith("sweep smoke: ")]
    to_train = int(re.search(r"6 planned runs, \d+ complete or diverged, (\d+) to train", followed).group(1))
    assert f"queued 0, running 0, complete {to_train}, failed 0" in statuses[-1], followed  # as sacct says
    assert "\r" not in followed and len(followed.splitlines()) < 30  # a log: one line per change, no repaints

    log = next((folder / "slurm").glob(f"{jobs[first.name]}_*_log.out")).read_text()
    assert "training from iteration 0 " in log and log.count("training from iteration") == 2
    resumed = int(log.split("training from iteration")[2].split()[0])
    stopped = int(log.split("stopped at iteration")[1].split()[0])  # SIGTERM of the requeue: saved, then stopped
    assert 0 < resumed == stopped < settings["iterations"], log  # the second attempt lost no iteration
    reference = smoke_file(tmp_path, "reference", **settings, **light)
    expected = run_method(load_params(reference), first.method, first.seed, progress=False)
    assert json.loads((first.folder / "results.json").read_text())["test"] == expected["test"]

    out = tmp_path / "cluster" / "smoke"
    assert (out / "index.html").is_file() and [p.name for p in out.glob("0*.html")] == ["06_report.html"]
    assert (out / "index.html").read_text().count('<span class="complete">') == 6  # the page read every run
    later = _sweep(params_file, slurm_env, "--no-render")  # a later call: nothing queued, nothing to train
    assert "6 planned runs, 6 complete or diverged, 0 to train" in later


def test_a_packed_sweep_on_real_slurm_trains_each_pack_as_one_job_whose_log_names_its_runs(slurm_env, tmp_path):
    light = dict(ablation_methods=[], ablation_sparsity=[], bmp_compare_embeddings=[])
    params_file = smoke_file(tmp_path, "packs", seeds=[21, 42], methods=["maml", "bmp"], **light)
    said = _sweep(params_file, slurm_env, "--pack", "2", "--wait", "--no-render")
    folder = tmp_path / "packs" / "smoke" / "sweep"
    jobs = json.loads((folder / "slurm_jobs.json").read_text())
    runs = plan(load_params(params_file))
    assert len(runs) == 5 and len(jobs) == 3 and "submitted 3 runs as job array" in said  # two packs, the trace
    assert all(run.state()[0] == "complete" for run in runs)
    for name, job in jobs.items():
        log = next((folder / "slurm").glob(f"{job}_*_log.out")).read_text()
        if name.endswith("-pack2"):
            (line,) = [line for line in log.splitlines() if line.startswith("pack of 2: ")]
            method = name.split("-seed")[0]
            assert all(run.name in line for run in runs if run.kind == "main" and run.method == method), log
