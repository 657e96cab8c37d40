"""One planned run as a sweep's worker process or a Slurm job trains it: the job's description (JSON, so
it travels as a file or a pickle), training it under its lock, and submitit's checkpointable callable."""

from __future__ import annotations

import io
import sys

from .params import validate
from .plan import Job, PlannedPack, PlannedRun, PlannedTrace
from .runs import FAILURE
from .stopping import Stopped, stop_on_sigterm

LOCKED_ELSEWHERE = 75  # a worker's exit status when another process holds the run's lock
STOPPED = 143  # ... and when SIGTERM stopped it (128 + SIGTERM, as shells report it)
EXIT_STATUS = {"done": 0, "locked elsewhere": LOCKED_ELSEWHERE, "stopped": STOPPED}


def job_spec(run: Job) -> dict:
    """What a worker needs to train ``run`` (or a pack of runs): JSON, so it travels as a file or a pickle."""
    if isinstance(run, PlannedPack):
        return {"kind": run.kind, "runs": [job_spec(part) for part in run.parts], "label": run.label}
    return {
        "kind": run.kind,
        "method": run.method,
        "seed": run.seed,
        "params": run.params.as_dict(),
        "label": run.label,
        "point": list(run.point) if run.point else None,
    }


def from_spec(spec: dict) -> Job:
    if spec["kind"] == PlannedPack.kind:
        parts = [from_spec(part) for part in spec["runs"]]
        return PlannedPack(tuple(part for part in parts if isinstance(part, PlannedRun)))
    params = validate(spec["params"])
    if spec["kind"] == PlannedTrace.kind:
        return PlannedTrace(spec["method"], spec["seed"], params, spec["label"])
    point = tuple(spec["point"]) if spec["point"] else None
    return PlannedRun(spec["kind"], spec["method"], spec["seed"], params, spec["label"], point)


def train_one(spec: dict, wait: bool, progress: bool = False) -> str:
    """Train (resume, or read back) one planned run: 'done', 'locked elsewhere' or 'stopped' (SIGTERM). Its
    log lines reach the log file as they are written, so a job killed by a requeue or a time limit keeps them."""
    if isinstance(sys.stdout, io.TextIOWrapper):  # not under a test's capture
        sys.stdout.reconfigure(line_buffering=True)
    run = from_spec(spec)
    for part in run.parts:
        if part.state()[0] not in ("complete", "diverged"):
            (part.folder / FAILURE).unlink(missing_ok=True)
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
