"""Train every planned run of a profile here (CPUs or GPUs) or on a Slurm cluster, then render the notebooks.

    python -m gems_core.sweep parameters/demo.yaml --executor local --workers 2
    python -m gems_core.sweep parameters/paper/table2_cub_aircraft.yaml --executor local --gpus 0,1
    python -m gems_core.sweep parameters/paper/ablations.yaml --executor slurm --partition gpu --wait

The sweep trains the plan's missing, partial and failed runs (``gems_core.plan``), each under its run
lock, so runs that another sweep or a notebook is training are left to it and waited for. Executors:

- ``inline``: one run after another in this process (what the notebooks do).
- ``local``: one process per run: ``--gpus 0,1 --per-gpu K`` runs K at a time on each listed GPU (each
  process sees only its GPU), ``--workers N`` runs N at a time on the CPU. Each run logs to
  ``outputs/<profile>/sweep/logs/<run>.log``. Ctrl-C (or killing the sweep) stops every worker; every
  run resumes from its last checkpoint next time.
- ``slurm``: submitit submits the runs as one job array (partition, time limit, GPUs per task, array
  parallelism and extra sbatch options from flags or the ``slurm_*`` parameters). A job that reaches its
  time limit or is preempted requeues itself and resumes from its run folder. With ``--wait`` the sweep
  follows the jobs; without, it returns after submitting, and a later call reports on them.

A status line shows runs queued / running (with the iteration each reached) / complete / failed; the
sweep exits with status 1 naming every failed run and its log, and renders the notebooks with the
pipeline (unless ``--no-render``) once every run is complete or diverged.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from filelock import Timeout
from tqdm.auto import tqdm

from . import io
from .errors import run_cli
from .params import load_params
from .plan import KINDS, PlannedRun, plan
from .runs import FAILURE, run_lock
from .training import Stopped, resolve_device, stop_on_sigterm

EXECUTORS = ("inline", "local", "slurm")
TODO = ("missing", "partial", "failed")
LOCKED_ELSEWHERE = 75  # a worker's exit status when another process holds the run's lock
STOPPED = 143  # ... and when SIGTERM stopped it (128 + SIGTERM, as shells report it)
POLL_SECONDS = 1.0
LOG_SECONDS = 60  # when the output is not a terminal: at most one status line a minute while nothing changes


def sweep_dir(params: dict) -> Path:
    return Path(params["output_root"]) / params["profile"] / "sweep"


# --- one run, as a worker or a cluster job runs it -----------------------------------------------
def job_spec(run: PlannedRun) -> dict:
    """What a worker needs to train ``run``: JSON, so it travels as a file or a pickle."""
    return {
        "kind": run.kind,
        "method": run.method,
        "seed": run.seed,
        "params": run.params,
        "label": run.label,
        "point": list(run.point) if run.point else None,
    }


def from_spec(spec: dict) -> PlannedRun:
    return PlannedRun(
        spec["kind"],
        spec["method"],
        spec["seed"],
        spec["params"],
        spec["label"],
        tuple(spec["point"]) if spec["point"] else None,
    )


def train_one(spec: dict, wait: bool, progress: bool = False) -> str:
    """Train (resume, or read back) one planned run: 'done', 'locked elsewhere' or 'stopped' (SIGTERM). Its
    log lines reach the log file as they are written, so a job killed by a requeue or a time limit keeps them."""
    sys.stdout.reconfigure(line_buffering=True)
    run = from_spec(spec)
    if run.state()[0] not in ("complete", "diverged"):
        (run.folder / FAILURE).unlink(missing_ok=True)
    try:
        return "locked elsewhere" if run.execute(progress=progress, wait=wait) is None else "done"
    except Stopped as exc:
        print(f"{run.label}: {exc}", flush=True)
        return "stopped"


class SlurmRun:
    """A cluster job training one planned run. Checkpointable: on a time limit or preemption submitit
    calls ``checkpoint``, which requeues the same job; the run then resumes from its run folder."""

    def __call__(self, spec: dict) -> str:
        stop_on_sigterm()  # a requeue or scancel: save at the next iteration, so the next attempt resumes there
        outcome = train_one(spec, wait=True, progress=True)
        print(f"{spec['label']}: {outcome}", flush=True)
        return outcome

    def checkpoint(self, spec: dict):
        import submitit

        return submitit.helpers.DelayedSubmission(self, spec)  # the run folder holds the state


# --- status ------------------------------------------------------------------------------------
class Status:
    """The sweep's status: on a terminal a live bar; elsewhere (a Slurm log, CI, a file) one line whenever
    the counts change and at most one a minute in between; and the list of failures with their logs."""

    def __init__(self, runs: list[PlannedRun], desc: str):
        self.total, self.desc = len(runs), desc
        self.failures: dict[str, str] = {}
        self.live = sys.stderr.isatty()
        self.bar = tqdm(total=self.total, desc=desc, unit="run", disable=not self.live)
        self.counts: tuple | None = None
        self.printed_at = 0.0

    def show(self, queued: int, running: list[PlannedRun], done: int) -> None:
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

    def fail(self, run: PlannedRun, log: str, why: str) -> None:
        self.failures[run.label] = log
        io.write_json(run.folder / FAILURE, {"log": log, "why": why})
        tqdm.write(f"failed: {run.label} ({why}); log: {log}")

    def close(self) -> None:
        self.bar.close()


# --- executors ---------------------------------------------------------------------------------
def run_inline(runs: list[PlannedRun], status: Status) -> list[PlannedRun]:
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
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def worker_slots(gpus: list[str], per_gpu: int, workers: int) -> list[dict]:
    """The environment of each worker slot: one GPU each (K slots per GPU), or the CPU's threads shared."""
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": g} for g in gpus for _ in range(per_gpu)]
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return [{"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}] * workers


def run_local(runs: list[PlannedRun], status: Status, slots: list[dict], folder: Path) -> list[PlannedRun]:
    """One process per run, as many at once as there are slots; returns the runs locked elsewhere."""
    (folder / "jobs").mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    queue, running, elsewhere, done = list(runs), {}, [], 0
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
            for slot, (proc, run, log) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                del running[slot]
                done += 1
                if code == LOCKED_ELSEWHERE:
                    elsewhere.append(run)
                elif code != 0:
                    status.fail(run, log, f"exit status {code}")
            status.show(len(queue), [r for _, r, _ in running.values()], done - len(status.failures))
            time.sleep(POLL_SECONDS if running else 0)
    except KeyboardInterrupt:
        for proc, _, _ in running.values():
            proc.terminate()
        for proc, _, _ in running.values():
            proc.wait()
        raise
    return elsewhere


def gpus_per_task(params: dict, args) -> int:
    """GPUs each job asks for: the flag, else none for a CPU profile (a cluster without GPUs refuses any
    GPU request), else ``slurm_gpus_per_task``."""
    if args.gpus_per_task is not None:
        return args.gpus_per_task
    return 0 if params["device"] == "cpu" else params["slurm_gpus_per_task"]


def slurm_executor(params: dict, args, folder: Path):
    """A submitit executor for a job array with the resources from flags, else the ``slurm_*`` parameters."""
    import submitit

    executor = submitit.AutoExecutor(
        folder=folder / "slurm", cluster=args.submitit_cluster, slurm_max_num_timeout=params["slurm_max_requeues"]
    )
    extra = dict(option.split("=", 1) for option in (args.sbatch or params["slurm_sbatch_options"]))
    executor.update_parameters(
        name=f"gems-{params['profile']}",
        timeout_min=args.time_limit or params["slurm_time_limit_min"],
        slurm_partition=args.partition or params["slurm_partition"] or None,
        slurm_gpus_per_task=gpus_per_task(params, args) or None,  # None: no GPU request at all
        slurm_array_parallelism=args.array_parallelism or params["slurm_array_parallelism"],
        slurm_additional_parameters=extra,
    )
    return executor


def run_slurm(runs: list[PlannedRun], status: Status, params: dict, args, folder: Path) -> bool:
    """Submit the runs not already queued as one job array; with ``--wait`` follow all of them. Returns
    whether every job has ended."""
    import submitit

    record = folder / "slurm_jobs.json"
    known = json.loads(record.read_text()) if record.exists() else {}
    watched = (
        {name: submitit.SlurmJob(folder / "slurm", job_id) for name, job_id in known.items()}
        if args.submitit_cluster == "slurm"
        else {}
    )
    live = {name for name, job in watched.items() if not job.done()}
    new = [r for r in runs if r.name not in live]
    if new:
        jobs = slurm_executor(params, args, folder).map_array(SlurmRun(), [job_spec(r) for r in new])
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
        if not pending or not args.wait:
            break
        time.sleep(POLL_SECONDS)
    for name, run in by_name.items():
        job = watched.get(name)
        if job is not None and job.done() and job.exception() is not None:
            status.fail(run, str(job.paths.stdout), f"job {job.job_id} {job.state}")
    return not pending


# --- the command -------------------------------------------------------------------------------
def sweep(parameters_file: str, args) -> int:
    params = load_params(parameters_file)
    if args.executor != "slurm":
        resolve_device("cuda" if args.gpus else params["device"])
    runs = plan(params, tuple(args.kinds))
    todo = list({r.name: r for r in runs if r.state()[0] in TODO}.values())  # a folder shared by two is trained once
    tqdm.write(
        f"{params['profile']}: {len(runs)} planned runs, {len(runs) - len(todo)} complete or diverged, "
        f"{len(todo)} to train ({args.executor})"
    )
    folder = sweep_dir(params)
    status = Status(todo, f"sweep {params['profile']}")
    ended = True
    try:
        if args.executor == "inline":
            elsewhere = run_inline(todo, status)
        elif args.executor == "local":
            gpus = [g for g in (args.gpus or "").split(",") if g]
            elsewhere = run_local(todo, status, worker_slots(gpus, args.per_gpu, args.workers), folder)
        else:
            ended, elsewhere = run_slurm(todo, status, params, args, folder), []
        wait_for(elsewhere, status)
    except KeyboardInterrupt:
        status.close()
        print("stopped: workers ended, every run resumes from its last checkpoint next time", file=sys.stderr)
        return 130
    status.close()
    if status.failures:
        print(
            "error: runs failed:\n" + "\n".join(f"  {label}: log {log}" for label, log in status.failures.items()),
            file=sys.stderr,
        )
        return 1
    if not ended:
        print("jobs are queued or running; run the same command again to see them and collect the results")
        return 0
    if not args.no_render:
        from .pipeline import run_pipeline

        run_pipeline(parameters_file, args.only)
    return 0


def wait_for(runs: list[PlannedRun], status: Status) -> None:
    """Wait until runs another process is training are complete (their lock is free)."""
    for run in runs:
        tqdm.write(f"{run.label} is being trained by another process: waiting for it")
        lock = run_lock(run.locked)
        while True:
            try:
                lock.acquire(timeout=POLL_SECONDS)
                lock.release()
                break
            except Timeout:
                status.show(0, [run], status.total - 1)
        if run.state()[0] in TODO:
            status.fail(run, str(run.folder), "left unfinished by the process that trained it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parameters", nargs="?", help="parameters file, e.g. parameters/demo.yaml")
    parser.add_argument("--executor", choices=EXECUTORS, default="inline")
    parser.add_argument("--workers", type=int, default=1, help="local: runs at once on the CPU")
    parser.add_argument("--gpus", help="local: GPUs to use, e.g. 0,1")
    parser.add_argument("--per-gpu", type=int, default=1, help="local: runs at once on each GPU")
    parser.add_argument("--kinds", nargs="*", choices=KINDS, default=list(KINDS), help="which planned runs")
    parser.add_argument("--no-render", action="store_true", help="do not render the notebooks afterwards")
    parser.add_argument("--only", nargs="*", help="render only notebooks whose name starts with these, e.g. 06")
    parser.add_argument("--wait", action="store_true", help="slurm: follow the jobs until they end")
    parser.add_argument("--partition", help="slurm: partition (default: slurm_partition)")
    parser.add_argument("--time-limit", type=int, help="slurm: minutes per job (default: slurm_time_limit_min)")
    parser.add_argument("--gpus-per-task", type=int, help="slurm: default slurm_gpus_per_task")
    parser.add_argument("--array-parallelism", type=int, help="slurm: jobs of the array at once")
    parser.add_argument("--sbatch", action="append", metavar="KEY=VALUE", help="slurm: extra sbatch option")
    parser.add_argument(
        "--submitit-cluster",
        default="slurm",
        choices=("slurm", "local", "debug"),
        help="slurm: submitit's executor; local and debug run the jobs on this machine",
    )
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)  # a local worker: train one run
    args = parser.parse_args(argv)
    if args.job:
        stop_on_sigterm()  # the sweep died: save at the next iteration
        outcome = train_one(json.loads(args.job.read_text()), wait=False, progress=True)
        print(outcome, flush=True)
        return {"locked elsewhere": LOCKED_ELSEWHERE, "stopped": STOPPED}.get(outcome, 0)
    if not args.parameters:
        parser.error("the parameters file is required")
    if min(args.workers, args.per_gpu) < 1:
        parser.error("--workers and --per-gpu must be at least 1")
    return run_cli(lambda: sweep(args.parameters, args))


if __name__ == "__main__":
    raise SystemExit(main())
