"""Where a sweep's runs are trained: here one after another (``run_inline``), in worker processes on this
machine's CPUs or GPUs (``run_local``), or as a Slurm job array through submitit (``run_slurm``); with the
sweep's status display (``Status``) and the wait for runs another process holds (``wait_for``)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import Timeout
from tqdm.auto import tqdm

from . import io
from .errors import KitError
from .jobs import LOCKED_ELSEWHERE, SlurmRun, job_spec, train_one
from .params import Config
from .plan import KINDS, LOG_SECONDS, Job
from .runs import FAILURE, run_lock

TODO = ("missing", "partial", "failed", "damaged")  # run states a sweep trains (damaged: re-evaluated or retrained)
POLL_SECONDS = 1.0


class Status:
    """The sweep's status: on a terminal a live bar; elsewhere (a Slurm log, CI, a file) one line whenever
    the counts change and at most one a minute in between; and the list of failures with their logs."""

    def __init__(self, runs: list[Job], desc: str):
        self.total, self.desc = len(runs), desc
        self.failures: dict[str, str] = {}
        self.live = sys.stderr.isatty()
        self.bar = tqdm(total=self.total, desc=desc, unit="run", disable=not self.live)
        self.counts: tuple | None = None
        self.printed_at = 0.0

    def show(self, queued: int, running: list[Job], done: int) -> None:
        reached = ", ".join(f"{r.label} at {r.state()[1]}" for r in running[:3]) + (" ..." if len(running) > 3 else "")
        line = (
            f"queued {queued}, running {len(running)}{': ' + reached if running else ''}, "
            f"complete {done}, failed {len(self.failures)}"
        )
        if self.live:
            self.bar.n = done
            self.bar.set_postfix_str(line)
            return
        counts, now = (queued, len(running), done, len(self.failures)), time.time()
        if counts != self.counts or now - self.printed_at >= LOG_SECONDS:
            self.counts, self.printed_at = counts, now
            print(f"{self.desc}: {line}", flush=True)

    def fail(self, run: Job, log: str, why: str) -> None:
        self.failures[run.label] = log
        for part in run.parts:  # every run of a pack
            io.write_json(part.folder / FAILURE, {"log": log, "why": why})
        tqdm.write(f"failed: {run.label} ({why}); log: {log}")

    def close(self) -> None:
        self.bar.close()


# --- executors ---------------------------------------------------------------------------------
def run_inline(runs: list[Job], status: Status) -> list[Job]:
    """Train each run here, one after another; returns the runs locked by another process."""
    elsewhere = []
    for i, run in enumerate(runs):
        status.show(len(runs) - i - 1, [run], i)
        if train_one(job_spec(run), wait=False) == "locked elsewhere":
            elsewhere.append(run)
    status.show(0, [], len(runs))
    return elsewhere


def _die_with_parent() -> None:
    """In a worker, before exec: SIGTERM when the sweep dies, even by SIGKILL (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def worker_slots(gpus: list[str], per_gpu: int, workers: int) -> list[dict]:
    """The environment of each worker slot: one GPU each (K slots per GPU), or the CPU's threads shared."""
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": g} for g in gpus for _ in range(per_gpu)]
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return [{"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}] * workers


def run_local(runs: list[Job], status: Status, slots: list[dict], folder: Path) -> list[Job]:
    """One process per run, as many at once as there are slots; returns the runs locked elsewhere."""
    (folder / "jobs").mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    queue, elsewhere, done = list(runs), [], 0
    running: dict[int, tuple[subprocess.Popen, Job, str]] = {}
    try:
        while queue or running:
            for slot in [s for s in range(len(slots)) if s not in running]:
                if not queue:
                    break
                run = queue.pop(0)
                spec, log = folder / "jobs" / f"{run.name}.json", folder / "logs" / f"{run.name}.log"
                io.write_json(spec, job_spec(run))
                with open(log, "ab") as out:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "gems_core.sweep", "--job", str(spec)],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, **slots[slot]},
                        preexec_fn=_die_with_parent,
                    )
                running[slot] = (proc, run, str(log))
            for slot, (proc, run, log_name) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                del running[slot]
                done += 1
                if code == LOCKED_ELSEWHERE:
                    elsewhere.append(run)
                elif code != 0:
                    status.fail(run, log_name, f"exit status {code}")
            status.show(len(queue), [r for _, r, _ in running.values()], done - len(status.failures))
            time.sleep(POLL_SECONDS if running else 0)
    except KeyboardInterrupt:
        for proc, _, _ in running.values():
            proc.terminate()
        for proc, _, _ in running.values():
            proc.wait()
        raise
    return elsewhere


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep trains its runs: the sweep command's flags, typed (``cli.sweep`` builds them)."""

    executor: str = "inline"  # inline, local or slurm (``sweep.EXECUTORS``)
    workers: int = 1  # local: runs at once on the CPU
    gpus: tuple[str, ...] = ()  # local: the GPUs to use, one process per run on each
    per_gpu: int = 1  # local: runs at once on each GPU
    pack: int = 1  # the seeds of a method at a setting trained as packs of at most this many (1: no packs)
    kinds: tuple[str, ...] = KINDS  # which planned runs
    render: bool = True  # render the notebooks once every run has ended
    only: tuple[str, ...] | None = None  # render only the notebooks whose names start with these
    wait: bool = False  # slurm: follow the jobs until they end
    gpus_per_task: int | None = None  # slurm: GPUs per job (None: from the parameters and the device)
    submitit_cluster: str = "slurm"  # slurm: submitit's executor (local and debug run jobs on this machine)
    overrides: dict[str, Any] = field(default_factory=dict)  # slurm_* parameters the flags set


def gpus_per_task(params: Config, options: SweepOptions) -> int:
    """GPUs each job asks for: the flag, else none for a CPU profile (a cluster without GPUs refuses any
    GPU request), else ``slurm_gpus_per_task``."""
    if options.gpus_per_task is not None:
        return options.gpus_per_task
    return 0 if params.device == "cpu" else params.slurm_gpus_per_task


SLURM_MISSING = (
    "Slurm is not installed or not on PATH here (no {command}); run this profile on this machine instead "
    "with --executor local (--workers N, or --gpus 0,1) or --executor inline"
)


def slurm_executor(params: Config, options: SweepOptions, folder: Path):
    """A submitit executor for a job array with the resources of the ``slurm_*`` parameters (which the
    sweep's flags override)."""
    import submitit

    commands = ("sbatch", "srun", "squeue", "sacct") if options.submitit_cluster == "slurm" else ()
    if missing := next((c for c in commands if not shutil.which(c)), None):
        raise KitError(SLURM_MISSING.format(command=missing))
    executor = submitit.AutoExecutor(
        folder=folder / "slurm", cluster=options.submitit_cluster, slurm_max_num_timeout=params.slurm_max_requeues
    )
    extra = dict(option.split("=", 1) for option in params.slurm_sbatch_options)
    executor.update_parameters(
        name=f"gems-{params.profile}",
        timeout_min=params.slurm_time_limit_min,
        slurm_partition=params.slurm_partition or None,
        slurm_gpus_per_task=gpus_per_task(params, options) or None,  # None: no GPU request at all
        slurm_array_parallelism=params.slurm_array_parallelism,
        slurm_additional_parameters=extra,
    )
    return executor


def submit(executor, specs: list[dict]) -> list:
    """Submit the job array; KitError (one line: what is missing or what sbatch said, and how to run
    locally instead) when Slurm is absent or refuses it."""
    import submitit

    try:
        return executor.map_array(SlurmRun(), specs)
    except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError, OSError) as exc:
        said = " ".join(str(exc).split())[:300]
        raise KitError(
            f"Slurm refused the job array ({said}); check the partition, account and time limit (the slurm_* "
            "parameters, or the sweep's flags) with your cluster's documentation, or run here with --executor local"
        ) from None


def run_slurm(runs: list[Job], status: Status, params: Config, options: SweepOptions, folder: Path) -> bool:
    """Submit the runs not already queued as one job array; with ``--wait`` follow all of them. Returns
    whether every job has ended."""
    import submitit

    record = folder / "slurm_jobs.json"
    known = json.loads(record.read_text()) if record.exists() else {}
    watched: dict[str, submitit.SlurmJob] = (
        {name: submitit.SlurmJob(folder / "slurm", job_id) for name, job_id in known.items()}
        if options.submitit_cluster == "slurm"
        else {}
    )
    live = {name for name, job in watched.items() if not job.done()}
    new = [r for r in runs if r.name not in live]
    if new:
        jobs = submit(slurm_executor(params, options, folder), [job_spec(r) for r in new])
        known.update({r.name: job.job_id for r, job in zip(new, jobs)})
        io.write_json(record, known)
        watched.update({r.name: job for r, job in zip(new, jobs)})
        tqdm.write(
            f"submitted {len(new)} runs as job array {jobs[0].job_id.split('_')[0]} "
            f"(logs in {folder / 'slurm'}); {len(live)} still queued or running from before"
        )
    by_name = {r.name: r for r in runs}
    while True:
        pending = [n for n in by_name if n in watched and not watched[n].done()]
        running = [by_name[n] for n in pending if watched[n].state == "RUNNING"]
        status.show(len(pending) - len(running), running, len(by_name) - len(pending) - len(status.failures))
        if not pending or not options.wait:
            break
        time.sleep(POLL_SECONDS)
    for name, run in by_name.items():
        job = watched.get(name)
        if job is not None and job.done() and job.exception() is not None:
            status.fail(run, str(job.paths.stdout), f"job {job.job_id} {job.state}")
    return not pending


def wait_for(runs: list[Job], status: Status) -> None:
    """Wait until runs another process is training are complete (their lock is free)."""
    for run in (part for job in runs for part in job.parts):  # a pack's runs, one by one
        if run.state()[0] not in TODO:
            continue
        tqdm.write(f"{run.label} is being trained by another process: waiting for it")
        lock = run_lock(run.locked, run.params.output_root)
        while True:
            try:
                lock.acquire(timeout=POLL_SECONDS)
                lock.release()
                break
            except Timeout:
                status.show(0, [run], status.total - 1)
        if run.state()[0] in TODO:
            status.fail(run, str(run.folder), "left unfinished by the process that trained it")
