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

With ``--pack P`` the seeds of each method at each setting train as packs of up to P runs in one worker
or job (``packed_runs``: one batched step, each run's files its own), and the sweep names each pack;
the default, 1, trains every run alone until a GPU measurement says what P pays (docs/sweeps.md).

A status line shows runs (or packs) queued / running (with the iteration each reached) / complete / failed; the
sweep exits with status 1 naming every failed run and its log, and renders the notebooks with the
pipeline (unless ``--no-render``) once every run is complete or diverged. This module is the sweep;
its command line is ``cli.sweep``, the executors and the status live in ``executors``, one run as a
worker or job trains it in ``jobs``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm.auto import tqdm

from . import io
from .data.sources import require_data
from .device import resolve_device
from .executors import TODO, Status, SweepOptions, run_inline, run_local, run_slurm, wait_for, worker_slots
from .params import Config, load_params
from .plan import PlannedPack, packed, plan

EXECUTORS = ("inline", "local", "slurm")


def sweep_dir(params: Config) -> Path:
    return Path(params.output_root) / params.profile / "sweep"


def sweep(parameters_file: str, options: SweepOptions) -> int:
    """Train the profile's planned runs of ``options.kinds`` with its executor, then render the notebooks;
    the exit status (0, 1 when runs failed, 130 on Ctrl-C)."""
    params = load_params(parameters_file, **options.overrides)  # the schema checks the flags' values
    require_data(params)  # a paper dataset neither cached nor fetched: said before any job is made
    if options.executor != "slurm":
        resolve_device("cuda" if options.gpus else params.device)
    runs = plan(params, options.kinds)
    todo = list({r.name: r for r in runs if r.state()[0] in TODO}.values())  # a folder shared by two is trained once
    tqdm.write(
        f"{params.profile}: {len(runs)} planned runs, {len(runs) - len(todo)} complete or diverged, "
        f"{len(todo)} to train ({options.executor})"
    )
    jobs = packed(todo, options.pack)
    if options.pack > 1 and params.device == "cpu":
        tqdm.write("note: on a CPU packs measured no faster than runs alone, slower at 84 px (docs/sweeps.md: packs)")
    for job in jobs:
        if isinstance(job, PlannedPack):
            tqdm.write(f"  one pack: {', '.join(part.name for part in job.parts)}")
    root = Path(params.output_root)
    io.make_folder(root, root / "runs")  # a file or a link where a folder belongs: one line, before any run
    folder = io.make_folder(root, sweep_dir(params))
    status = Status(jobs, f"sweep {params.profile}")
    ended = True
    try:
        if options.executor == "inline":
            elsewhere = run_inline(jobs, status)
        elif options.executor == "local":
            slots = worker_slots(list(options.gpus), options.per_gpu, options.workers)
            elsewhere = run_local(jobs, status, slots, folder)
        else:
            ended, elsewhere = run_slurm(jobs, status, params, options, folder), []
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
    if options.render:
        from .pipeline import run_pipeline

        run_pipeline(parameters_file, list(options.only) if options.only else None)
    return 0


if __name__ == "__main__":
    from .cli import sweep as command

    raise SystemExit(command())
