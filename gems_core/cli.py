"""The command lines of the kit: each parses its arguments and calls the library, nothing else.

    python -m gems_core.training PARAMS.yaml --method maml --seed 21    one run (resumes if interrupted)
    python -m gems_core.training PARAMS.yaml --method maml --seed 21 --seed 42   two runs, one pack
    python -m gems_core.sweep PARAMS.yaml --executor local --workers 2   every planned run of a profile
    python -m gems_core.pipeline PARAMS.yaml                             the notebooks, headless

A ``KitError`` is one line and exit status 2, Ctrl-C one line and status 130 (``errors.run_cli``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import packed_runs, training
from . import pipeline as notebook_pipeline
from . import sweep as sweeping
from .errors import run_cli
from .jobs import EXIT_STATUS, train_one
from .params import METHODS, load_params
from .plan import KINDS
from .stopping import stop_on_sigterm


def train(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one method with one seed (resumes if interrupted).")
    parser.add_argument("parameters")
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument(
        "--seed", type=int, required=True, action="append", help="repeat it to train those seeds as one pack"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    def run() -> int:
        params = load_params(args.parameters, methods=[args.method], seeds=args.seed)  # the schema checks both
        if len(args.seed) == 1:
            results = training.run_method(params, args.method, args.seed[0], progress=not args.no_progress)
            assert results is not None  # it waits for a run another process holds
            print(json.dumps(results["test"]))
            return 0
        packed = packed_runs.run_packed(params, args.method, args.seed, progress=not args.no_progress)
        for seed, outcome in packed.items():
            print(seed, json.dumps(outcome["test"]) if outcome else "trained by another process")
        return 0

    return run_cli(run)


SLURM_FLAGS = {  # the sweep's Slurm flags, checked by the schema as the parameters they override
    "partition": "slurm_partition",
    "time_limit": "slurm_time_limit_min",
    "gpus_per_task": "slurm_gpus_per_task",
    "array_parallelism": "slurm_array_parallelism",
    "sbatch": "slurm_sbatch_options",
}


def sweep(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=sweeping.__doc__.splitlines()[0])
    parser.add_argument("parameters", nargs="?", help="parameters file, e.g. parameters/demo.yaml")
    parser.add_argument("--executor", choices=sweeping.EXECUTORS, default="inline")
    parser.add_argument("--workers", type=int, default=1, help="local: runs at once on the CPU")
    parser.add_argument("--gpus", help="local: GPUs to use, e.g. 0,1")
    parser.add_argument("--per-gpu", type=int, default=1, help="local: runs at once on each GPU")
    parser.add_argument(
        "--pack", type=int, default=1, help="train the seeds of a method at a setting as packs of this many runs"
    )
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

        def work() -> int:
            outcome = train_one(json.loads(args.job.read_text()), wait=False, progress=True)
            print(outcome, flush=True)
            return EXIT_STATUS[outcome]

        return run_cli(work)  # Ctrl-C reaches the workers too: one line in their logs, no traceback
    if not args.parameters:
        parser.error("the parameters file is required")
    if min(args.workers, args.per_gpu, args.pack) < 1:
        parser.error("--workers, --per-gpu and --pack must be at least 1")
    options = sweeping.SweepOptions(
        executor=args.executor,
        workers=args.workers,
        gpus=tuple(g for g in (args.gpus or "").split(",") if g),
        per_gpu=args.per_gpu,
        pack=args.pack,
        kinds=tuple(args.kinds),
        render=not args.no_render,
        only=tuple(args.only) if args.only else None,
        wait=args.wait,
        gpus_per_task=args.gpus_per_task,
        submitit_cluster=args.submitit_cluster,
        overrides={name: getattr(args, flag) for flag, name in SLURM_FLAGS.items() if getattr(args, flag) is not None},
    )
    return run_cli(lambda: sweeping.sweep(args.parameters, options))


def pipeline(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=notebook_pipeline.__doc__.splitlines()[0])
    parser.add_argument("parameters", help="parameters file, e.g. parameters/demo.yaml")
    parser.add_argument("--only", nargs="*", help="run only notebooks whose name starts with these, e.g. 00 01")
    parser.add_argument(
        "--notebooks", type=Path, default=notebook_pipeline.NOTEBOOKS, help="folder of NN_name.ipynb notebooks"
    )
    args = parser.parse_args(argv)

    def run() -> int:
        try:
            notebook_pipeline.run_pipeline(args.parameters, args.only, args.notebooks)
        except notebook_pipeline.NotebookFailed as exc:  # its traceback is in the executed copy
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0

    return run_cli(run)
