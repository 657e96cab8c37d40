"""The plan of a profile and the sweep over it: executors, locks, kills, Slurm (faked) and submitit."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pandas as pd
import pytest
from conftest import PROJECT_ROOT, smoke_file

from gems_core import checkpoints
from gems_core.cli import sweep as sweep_main
from gems_core.data import load_distributions
from gems_core.device import resolve_device
from gems_core.params import load_params
from gems_core.plan import plan, states
from gems_core.runs import FAILURE
from gems_core.training import Run, run_method

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the local workers' share of this CPU

pytestmark = pytest.mark.slow


def _sweep(params_file, *args, env=None, **popen):
    cmd = [sys.executable, "-m", "gems_core.sweep", str(params_file), "--no-render", *args]
    return subprocess.Popen(
        cmd,
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def _outcomes(params_file):
    """Per planned run: its test results (or its trace), read from its folder."""
    out = {}
    for run in plan(load_params(params_file)):
        if run.kind == "convergence":
            out[run.label] = pd.read_csv(run.trace_path).drop(columns=[]).to_dict("list")
        else:
            out[run.label] = json.loads((run.folder / "results.json").read_text())["test"]
    return out


def test_the_plan_of_the_smoke_and_paper_profiles():
    smoke = plan(load_params(PROJECT_ROOT / "parameters" / "smoke.yaml"))
    assert Counter(r.kind for r in smoke) == {"main": 5, "ablation": 3, "bmp_embedding": 1, "convergence": 1}
    table2 = plan(load_params(PROJECT_ROOT / "parameters" / "paper" / "table2_cub_aircraft.yaml"))
    assert Counter(r.kind for r in table2) == {"main": 12, "bmp_embedding": 3, "convergence": 1}
    ablations = plan(load_params(PROJECT_ROOT / "parameters" / "paper" / "ablations.yaml"))
    grid = [r for r in ablations if r.kind == "ablation"]
    assert len(grid) == 93 and Counter(r.point[0] for r in grid) == {
        "adaptation_steps": 30,
        "fast_lr": 36,
        "sparsity": 27,
    }
    # the grid's default-setting points (5 steps, fast lr 0.01) are the main runs, and Table 2's too
    main = {r.folder for r in ablations if r.kind == "main"}
    assert len({r.folder for r in grid} & main) == 6 and len({r.folder for r in ablations}) == 91
    assert main == {r.folder for r in table2 if r.kind == "main" and r.method in ("bmp", "mmsup")}


def test_states_read_from_the_run_folders(tiny_params, tmp_path):
    params = tiny_params(ablation_methods=[], ablation_sparsity=[], bmp_compare_embeddings=[])
    runs = {r.label: r for r in plan(params)}
    dists = load_distributions(params)
    assert {s["state"] for s in states(list(runs.values()))} == {"missing"}
    run_method(params, "maml", 21, dists, progress=False)
    partial = Run(params, "bmp", 21, dists, runs["bmp seed 21"].folder, resolve_device("cpu"))
    partial.calibrate()
    for _ in range(3):
        partial.step()
    partial.save_checkpoint()
    failed = runs["mmsup seed 21"].folder
    failed.mkdir(parents=True)
    (failed / FAILURE).write_text('{"log": "x.log"}')
    diverged = runs["multi_maml seed 21"].files
    diverged.make()
    diverged.write_results(
        {"status": "diverged", "method": "multi_maml", "seed": 21, "iterations": 4, "train_seconds": 1.0}
    )
    table = {s["run"]: (s["state"], s["iteration"]) for s in states(list(runs.values()))}
    assert table == {
        "maml seed 21": ("complete", 6),
        "bmp seed 21": ("partial", 0),
        "mmsup seed 21": ("failed", 0),
        "multi_maml seed 21": ("diverged", 4),
        "convergence trace seed 21": ("missing", 0),
    }


LIGHT = dict(ablation_methods=[], ablation_sparsity=[], bmp_compare_embeddings=[])  # main runs and the trace


def test_local_workers_end_with_the_same_results_as_inline(tmp_path):
    local, inline = smoke_file(tmp_path, "local", **LIGHT), smoke_file(tmp_path, "inline", **LIGHT)
    assert _sweep(local, "--executor", "local", "--workers", "2").wait(timeout=900) == 0
    assert _sweep(inline, "--executor", "inline", env=ONE_THREAD).wait(timeout=900) == 0
    assert _outcomes(local) == _outcomes(inline)
    logs = list((tmp_path / "local" / "smoke" / "sweep" / "logs").iterdir())
    assert len(logs) == len(plan(load_params(local))) and all("from iteration 0" in log.read_text() for log in logs)


def test_a_sweep_killed_mid_way_finishes_identically_when_restarted(tmp_path):
    overrides = dict(iterations=30, checkpoint_every=3, validation_every=15, ablation_iterations=30, **LIGHT)
    killed, whole = smoke_file(tmp_path, "killed", **overrides), smoke_file(tmp_path, "whole", **overrides)
    proc = _sweep(killed, "--executor", "local", "--workers", "2")
    runs = plan(load_params(killed))
    deadline = time.time() + 600
    while not any((r.folder / checkpoints.NEWEST).exists() for r in runs) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)  # its workers were told to stop when it died
    assert any(r.state()[0] != "complete" for r in runs), "the sweep finished before it could be killed"
    restarted = _sweep(killed, "--executor", "local", "--workers", "2")
    assert restarted.wait(timeout=900) == 0, restarted.stdout.read()
    assert all(r.state()[0] == "complete" for r in runs)
    assert _sweep(whole, "--executor", "inline", env=ONE_THREAD).wait(timeout=900) == 0
    assert _outcomes(killed) == _outcomes(whole)


def test_two_sweeps_started_together_never_train_the_same_run(tmp_path):
    shared = smoke_file(tmp_path, "shared", **LIGHT)
    first, second = (_sweep(shared, "--executor", "local", "--workers", "1") for _ in range(2))
    outputs = [proc.communicate(timeout=900)[0] for proc in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    logs = list((tmp_path / "shared" / "smoke" / "sweep" / "logs").iterdir())
    started = Counter(log.name for log in logs for line in log.read_text().splitlines() if "from iteration 0" in line)
    assert len(logs) == len(plan(load_params(shared))) and all(started[log.name] == 1 for log in logs)  # once each
    assert all(r.state()[0] == "complete" for r in plan(load_params(shared)))


FAKE = {  # the Slurm commands submitit calls, recording what they were asked in $FAKE_SLURM
    "sbatch": """
        import os, pathlib, shutil, sys
        record = pathlib.Path(os.environ["FAKE_SLURM"])
        n = len(list(record.glob("submitted-*.sh")))
        shutil.copy(sys.argv[-1], record / f"submitted-{n}.sh")
        print(f"Submitted batch job {4242 + n}")
    """,
    "sacct": """
        import os, pathlib, re, sys
        record = pathlib.Path(os.environ["FAKE_SLURM"])
        state = (record / "state").read_text().strip() if (record / "state").exists() else "RUNNING"
        print("JobID|State|NodeList")
        for n, script in enumerate(sorted(record.glob("submitted-*.sh"))):
            size = int(re.search(r"--array=0-(\\d+)", script.read_text()).group(1)) + 1
            for task in range(size):
                print(f"{4242 + n}_{task}|{state}|node1")
    """,
    "scontrol": """
        import os, pathlib, sys
        with open(pathlib.Path(os.environ["FAKE_SLURM"]) / "calls", "a") as f:
            f.write(" ".join(["scontrol"] + sys.argv[1:]) + "\\n")
    """,
}
FAKE["scancel"] = FAKE["squeue"] = FAKE["srun"] = FAKE["scontrol"]


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch, sacct, squeue, scancel, scontrol and srun on PATH, as small programs recording their calls."""
    bin_dir, record = tmp_path / "bin", tmp_path / "slurm-record"
    bin_dir.mkdir()
    record.mkdir()
    for name, body in FAKE.items():
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(record))
    return record


def test_slurm_submits_one_array_with_its_resources_and_a_timed_out_job_requeues_and_resumes(tmp_path, fake_slurm):
    params_file = smoke_file(tmp_path, "cluster", iterations=300, checkpoint_every=10, validation_every=150, **LIGHT)
    args = [
        str(params_file),
        "--executor",
        "slurm",
        "--partition",
        "gpu",
        "--time-limit",
        "90",
        "--gpus-per-task",
        "1",
        "--array-parallelism",
        "2",
        "--sbatch",
        "qos=high",
        "--no-render",
    ]
    assert sweep_main(args) == 0
    script = (fake_slurm / "submitted-0.sh").read_text()
    for line in (
        "#SBATCH --array=0-5%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=90",
        "#SBATCH --gpus-per-task=1",
        "#SBATCH --qos=high",
        "#SBATCH --job-name=gems-smoke",
    ):
        assert line in script, line
    sweep_folder = tmp_path / "cluster" / "smoke" / "sweep"
    jobs = json.loads((sweep_folder / "slurm_jobs.json").read_text())
    assert len(jobs) == 6 and set(jobs.values()) == {f"4242_{i}" for i in range(6)}  # 5 methods and the trace
    assert sweep_main(args) == 0 and not (fake_slurm / "submitted-1.sh").exists()  # still running: not resubmitted

    # the cluster starts task 0, then sends the time-limit signal once the run has a checkpoint
    first = plan(load_params(params_file))[0]
    env = {
        **os.environ,
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4300",
        "SLURM_ARRAY_JOB_ID": "4242",
        "SLURM_ARRAY_TASK_ID": "0",
        "SLURM_NTASKS": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_JOB_NODELIST": "node1",
    }
    job = [sys.executable, "-u", "-m", "submitit.core._submit", str(sweep_folder / "slurm")]
    proc = subprocess.Popen(job, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (first.folder / checkpoints.NEWEST).exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR2)
    output = proc.communicate(timeout=300)[0]
    assert "scontrol requeue 4242_0" in (fake_slurm / "calls").read_text(), output
    assert first.state()[0] == "partial"
    # the requeued job resumes from the run folder and finishes with the same result as an uninterrupted run
    assert subprocess.run(job, cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=600).returncode == 0
    assert first.state()[0] == "complete"
    reference = smoke_file(tmp_path, "reference", iterations=300, checkpoint_every=10, validation_every=150)
    expected = run_method(load_params(reference), first.method, first.seed, progress=False)
    assert json.loads((first.folder / "results.json").read_text())["test"] == expected["test"]


def test_submitits_debug_executor_runs_the_sweep_end_to_end(tmp_path):
    params_file = smoke_file(tmp_path, "debug", **LIGHT)
    assert (
        sweep_main([str(params_file), "--executor", "slurm", "--submitit-cluster", "debug", "--wait", "--no-render"])
        == 0
    )
    assert all(r.state()[0] == "complete" for r in plan(load_params(params_file)))


def test_a_failing_run_is_named_with_its_log_and_the_sweep_exits_1(tmp_path):
    from test_faults import _damage_images, _image_folder

    _image_folder(tmp_path / "imgs")
    bad = _damage_images(tmp_path / "imgs")  # each worker's data load stops on them
    params_file = smoke_file(
        tmp_path,
        "broken",
        distributions=[{"name": "f", "source": "folder", "path": str(tmp_path / "imgs")}],
        split_fractions=[0.34, 0.33, 0.33],
        ways=2,
        queries=1,
        methods=["maml"],
    )
    proc = _sweep(params_file, "--executor", "local", "--workers", "1", "--kinds", "main")
    out = proc.communicate(timeout=600)[0]
    (run,) = plan(load_params(params_file), ("main",))
    log = tmp_path / "broken" / "smoke" / "sweep" / "logs" / f"{run.name}.log"
    assert proc.returncode == 1 and f"error: runs failed:\n  maml seed 21: log {log}" in out
    assert str(bad[0]) in log.read_text() and run.state()[0] == "failed"


def test_a_cpu_profile_asks_slurm_for_no_gpu_unless_told(tiny_params):
    from gems_core.executors import SweepOptions, gpus_per_task

    cpu, gpu = tiny_params(device="cpu"), tiny_params(device="auto", slurm_gpus_per_task=2)
    assert gpus_per_task(cpu, SweepOptions()) == 0  # a GPU-less cluster refuses any GPU request
    assert gpus_per_task(gpu, SweepOptions()) == 2
    assert gpus_per_task(cpu, SweepOptions(gpus_per_task=1)) == 1


def test_packs_group_the_seeds_of_a_method_at_a_setting_and_nothing_else(tiny_params):
    from gems_core.plan import PlannedPack, packed
    from gems_core.runs import params_hash

    params = tiny_params(seeds=[21, 42, 56], methods=["maml", "bmp", "fixed_layers_matched"])
    runs = plan(params, ("main", "ablation", "convergence"))
    assert packed(runs, 1) == runs
    jobs = packed(runs, 2)
    packs = [job for job in jobs if isinstance(job, PlannedPack)]
    main = [(p.method, [r.seed for r in p.parts]) for p in packs if p.first.kind == "main"]
    assert main == [("maml", [21, 42]), ("bmp", [21, 42])]  # seed 56 of each: alone, the pack being full
    assert all(len({params_hash(r.params, r.method) for r in p.parts}) == 1 for p in packs)  # one setting a pack
    assert all(len({r.seed for r in p.parts}) == len(p.parts) <= 2 for p in packs)
    assert any(p.first.kind == "ablation" for p in packs)  # an ablation point's seeds too
    singles = [job for job in jobs if not isinstance(job, PlannedPack)]
    assert {r.method for r in singles if r.kind == "main"} >= {"fixed_layers_matched"}  # its options differ by seed
    assert any(r.kind == "convergence" for r in singles)
    assert sorted(r.name for job in jobs for r in job.parts) == sorted(r.name for r in runs)  # every run, once


def test_a_packed_local_sweep_trains_every_run_as_alone_and_its_logs_name_the_runs(tmp_path):
    settings = dict(seeds=[21, 42], methods=["maml", "multi_maml"], **LIGHT)
    packed_file, alone_file = smoke_file(tmp_path, "packed", **settings), smoke_file(tmp_path, "alone", **settings)
    proc = _sweep(packed_file, "--executor", "local", "--workers", "2", "--pack", "2")
    said = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, said
    runs = [r for r in plan(load_params(packed_file)) if r.kind == "main"]
    assert said.count("  one pack: ") == 2 and all(r.name in said for r in runs)
    assert _sweep(alone_file, "--executor", "inline", env=ONE_THREAD).wait(timeout=900) == 0
    packed_outcomes, alone_outcomes = _outcomes(packed_file), _outcomes(alone_file)
    assert packed_outcomes.keys() == alone_outcomes.keys()
    for label, tests in alone_outcomes.items():  # MAML's packed step: the results of the runs alone
        assert packed_outcomes[label] == tests, label
    logs = {p.name: p.read_text() for p in (tmp_path / "packed" / "smoke" / "sweep" / "logs").iterdir()}
    pack_logs = [text for name, text in logs.items() if "-pack2" in name]
    assert len(pack_logs) == 2 and all(text.count("pack of 2: ") == 1 for text in pack_logs)
    for run in runs:
        assert json.loads((run.folder / "results.json").read_text())["packed_with"]
