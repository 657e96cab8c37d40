"""The run store: where a run lives, what is in its folder, who may write it, and reading it back.

A run is one method and one seed at one set of resolved parameters, kept in
``<output_root>/runs/<run_id>/``, shared by every profile under that output root. Its id is
``<method>-seed<seed>-<hash>``, the hash covering exactly the parameters whose schema entry says they
shape that method's runs (``Param.affects_run``): a profile that needs a run another profile trained
(the ablations' default-setting runs and Table 2's, say) reads it back instead of training it again.

A run folder holds, each written atomically:

- ``params.json``: the resolved parameters, with the method and seed;
- ``metrics.csv``: the learning curve, a row per validation;
- ``checkpoint.pt`` and ``checkpoint.prev.pt``: the last two checkpoints (``checkpoints``);
- ``results.json``: once the run is complete or diverged, its outcome and test results;
- ``test_accuracies.csv``: once complete, each fixed test task's accuracy (``test_dataset``, ``task``,
  ``accuracy``): every method and seed meets the same tasks, so runs compare task by task;
- ``failure.json``: written by a sweep whose worker for the run failed.

Whoever trains a run holds its lock (``<output_root>/runs/.locks/<run_id>.lock``), an OS file lock
released when its process ends, however it ends.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from . import io
from .learners import FROZEN_MASK_OF
from .params import SCHEMA, Config

PARAMS, METRICS, RESULTS, FAILURE = "params.json", "metrics.csv", "results.json", "failure.json"
TASK_ACCURACIES = "test_accuracies.csv"


def run_id(params: Config, method: str, seed: int) -> str:
    """The folder name of a run: method, seed and a hash of every parameter that shapes its outcome.

    Arguments:
        params: resolved parameters (``params.validate``).
        method: one of the kit's methods.
        seed: the run's seed.

    Returns:
        ``<method>-seed<seed>-<8 hex digits>``.

    Example:
        >>> run_id(load_params("parameters/demo.yaml"), "bmp", 21)
        'bmp-seed21-f1d00e99'
    """
    relevant = {k: v for k, v in params.as_dict().items() if k not in SCHEMA or SCHEMA[k].shapes(method)}
    digest = hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]
    return f"{method}-seed{seed}-{digest}"


def run_folder(params: Config, method: str, seed: int) -> Path:
    """``<output_root>/runs/<run_id>``: shared by every profile under that output root."""
    return Path(params.output_root) / "runs" / run_id(params, method, seed)


def read_results(folder: Path) -> dict | None:
    """A run's ``results.json`` (complete or diverged), or None while it has none."""
    path = Path(folder) / RESULTS
    return json.loads(path.read_text()) if path.exists() else None


def task_accuracies_path(folder: Path, control: str | None = None) -> Path:
    """Where a run keeps each test task's accuracy: ``test_accuracies.csv``, and for the frozen-mask
    control evaluated on its weights ``test_accuracies.<control>.csv``."""
    return Path(folder) / (TASK_ACCURACIES if control is None else TASK_ACCURACIES.replace(".", f".{control}."))


def write_task_accuracies(folder: Path, table: pd.DataFrame, control: str | None = None) -> None:
    """Keep each test task's accuracy (columns test_dataset, task, accuracy) in the run folder."""
    io.write_text(task_accuracies_path(folder, control), table.to_csv(index=False))


def task_accuracies(folder: Path, control: str | None = None) -> pd.DataFrame | None:
    """Each test task's accuracy of a complete run (or of its frozen-mask ``control``), or None (not
    complete, or from an earlier kit)."""
    path = task_accuracies_path(folder, control)
    return pd.read_csv(path) if path.exists() else None


def row_task_accuracies(params: Config, row: str, seed: int) -> pd.DataFrame | None:
    """The per-task test accuracies of a results row's name (a method, or a frozen-mask control, whose
    numbers live in the folder of the run it evaluates) and seed."""
    if row in FROZEN_MASK_OF:
        return task_accuracies(run_folder(params, FROZEN_MASK_OF[row], seed), control=row)
    return task_accuracies(run_folder(params, row, seed))


def metrics(folder: Path) -> pd.DataFrame:
    """A run's learning curve (``metrics.csv``)."""
    return pd.read_csv(Path(folder) / METRICS)


def last_logged_iteration(folder: Path) -> int:
    """The iteration of the last row of a run's metrics.csv (written with each checkpoint), or 0."""
    path = Path(folder) / METRICS
    if not path.exists():
        return 0
    lines = path.read_text().strip().splitlines()
    return int(float(lines[-1].split(",")[0])) if len(lines) > 1 else 0


def run_lock(locked: Path) -> FileLock:
    """The lock whoever trains the run in folder (or file) ``locked`` holds: ``<parent>/.locks/<name>.lock``."""
    locks = Path(locked).parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(locks / f"{Path(locked).name}.lock")


@contextmanager
def holding(locked: Path, wait: bool) -> Iterator[bool]:
    """Hold the lock of ``locked`` for the block: wait for it, or with ``wait=False`` yield False at once
    if another process holds it."""
    lock = run_lock(locked)
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
