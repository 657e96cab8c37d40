"""The run store: where a run lives, what is in its folder, who may write it, and reading it back.

A run is one method and one seed at one set of resolved parameters, kept in
``<output_root>/runs/<run_id>/``, shared by every profile under that output root. Its id is
``<method>-seed<seed>-<hash>``, the hash covering exactly the parameters whose schema entry says they
shape that method's runs (``Param.affects_run``): a profile that needs a run another profile trained
(the ablations' default-setting runs and Table 2's, say) reads it back instead of training it again.

A run folder holds, each written atomically and each carrying the run's identity (its id, and
``params_hash``, the whole hash the id ends in), through ``RunFiles``:

- ``params.json``: the resolved parameters, with the method, seed and identity;
- ``metrics.csv``: the learning curve, a row per validation (a ``run_id`` column);
- ``checkpoint.pt`` and ``checkpoint.prev.pt``: the last two checkpoints (``checkpoints``; the identity
  inside the payload);
- ``results.json``: once the run is complete or diverged, its outcome and test results;
- ``test_accuracies.csv``: once complete, each fixed test task's accuracy (``run_id``, ``test_dataset``,
  ``task``, ``fingerprint``, ``accuracy``): every method and seed meets the same tasks, so runs compare
  task by task, matched by fingerprint (``FixedTasks.fingerprints``); ``test_accuracies.<control>.csv``
  the same for each test-time control tested on the run's weights;
- ``failure.json``: written by a sweep whose worker for the run failed;
- ``set-aside/<time>/``: files found damaged or belonging to another run, moved out of the way (never
  deleted) when the run is trained again.

Reading a file back checks it: a file of another run (copied, or linked, in), one that does not parse,
and numbers that cannot be a result (NaN or infinite accuracies, task counts other than the parameters')
raise ``RunDamaged`` naming the file and the reason. Such a run is ``damaged``: tables, pairs and pages
leave it out and name it, and training it again sets the damaged files aside and retrains or
re-evaluates it. Nothing is read or written through a symbolic link below ``output_root``.

Whoever trains a run holds its lock (``<output_root>/runs/.locks/<run_id>.lock``), an OS file lock
released when its process ends, however it ends.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from . import io
from .errors import KitError
from .learners import METHODS, TESTED_ON
from .params import SCHEMA, Config, shapes

PARAMS, METRICS, RESULTS, FAILURE = "params.json", "metrics.csv", "results.json", "failure.json"
TASK_ACCURACIES = "test_accuracies.csv"
SET_ASIDE = "set-aside"
STATUSES = ("complete", "diverged")
TASK_COLUMNS = ["run_id", "test_dataset", "task", "fingerprint", "accuracy"]
TEXT_COLUMNS = ("run_id", "test_dataset", "fingerprint")  # every other column of a run CSV is a number


class RunDamaged(KitError):
    """A run file that cannot give this run's numbers: another run's, unreadable, or implausible."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


def params_hash(params: Config, method: str) -> str:
    """SHA-1 (hex) of every parameter that shapes ``method``'s runs: the run's parameters, as a hash."""
    relevant = {
        k: v
        for k, v in params.as_dict().items()
        if k not in SCHEMA or (shapes(SCHEMA[k], method) and (SCHEMA[k].neutral is None or v != SCHEMA[k].neutral))
    }
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def run_id(params: Config, method: str, seed: int) -> str:
    """The folder name of a run: method, seed and a hash of every parameter that shapes its outcome.

    Arguments:
        params: resolved parameters (``params.validate``).
        method: one of the kit's methods.
        seed: the run's seed.

    Returns:
        ``<method>-seed<seed>-<the first 8 hex digits of params_hash>``.

    Example:
        >>> run_id(load_params("parameters/demo.yaml"), "bmp", 21)
        'bmp-seed21-f1d00e99'
    """
    return f"{method}-seed{seed}-{params_hash(params, method)[:8]}"


def run_folder(params: Config, method: str, seed: int) -> Path:
    """``<output_root>/runs/<run_id>``: shared by every profile under that output root."""
    return Path(params.output_root) / "runs" / run_id(params, method, seed)


def task_accuracies_path(folder: Path, control: str | None = None) -> Path:
    """Where a run keeps each test task's accuracy: ``test_accuracies.csv``, and for a test-time control
    evaluated on its weights ``test_accuracies.<control>.csv``."""
    return Path(folder) / (TASK_ACCURACIES if control is None else TASK_ACCURACIES.replace(".", f".{control}."))


def _finite_between(value, low: float, high: float) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and low <= value <= high
    )


def read_json_object(path: Path) -> dict:
    """The JSON object in a run file; RunDamaged, naming the file, if it is not one."""
    try:
        recorded = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDamaged(path, f"cannot be read as JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(recorded, dict):
        raise RunDamaged(path, "does not hold a JSON object")
    return recorded


@dataclass(frozen=True)
class RunFiles:
    """The files of one run (``method``, ``seed`` at ``params``): written with the run's identity, read back
    only when they are this run's and plausible (``RunDamaged`` otherwise)."""

    params: Config
    method: str
    seed: int
    folder: Path | None = None  # elsewhere than the run store (benchmarks, tests)

    @cached_property
    def params_hash(self) -> str:
        return params_hash(self.params, self.method)

    @cached_property
    def run_id(self) -> str:
        return run_id(self.params, self.method, self.seed)

    @cached_property
    def path(self) -> Path:
        return Path(self.folder) if self.folder is not None else run_folder(self.params, self.method, self.seed)

    @property
    def root(self) -> Path:
        """Below which no link is followed: ``output_root`` for the run store, else the folder's parent."""
        root = Path(self.params.output_root)
        return root if self.path.is_relative_to(root) else self.path.parent

    @property
    def identity(self) -> dict:
        """What every file of the run carries: its id and its parameters' hash."""
        return {"run_id": self.run_id, "params_hash": self.params_hash}

    @property
    def controls(self) -> list[str]:
        """The test-time controls tested on this run's weights (``Method.test_controls``)."""
        return [row for row, _ in METHODS[self.method].test_controls]

    @property
    def datasets(self) -> list[str]:
        return [d.name for d in self.params.distributions]

    # --- writing -----------------------------------------------------------------------------
    def make(self) -> Path:
        """Create the run folder, refusing a symbolic link anywhere below ``output_root``."""
        return io.make_folder(self.root, self.path)

    def write_params(self) -> None:
        io.write_json(
            self.path / PARAMS, {**self.params.as_dict(), "method": self.method, "seed": self.seed, **self.identity}
        )

    def write_metrics(self, rows: list[dict]) -> None:
        io.write_text(self.path / METRICS, pd.DataFrame(rows).assign(run_id=self.run_id).to_csv(index=False))

    def write_task_accuracies(self, table: pd.DataFrame, control: str | None = None) -> None:
        """Keep each test task's accuracy (columns test_dataset, task, accuracy) in the run folder."""
        table = table.assign(run_id=self.run_id)[TASK_COLUMNS]
        io.write_text(task_accuracies_path(self.path, control), table.to_csv(index=False))

    def write_results(self, results: dict) -> None:
        io.write_json(self.path / RESULTS, {**results, **self.identity})

    # --- reading -----------------------------------------------------------------------------
    def _file(self, name: str | Path) -> Path | None:
        """The path of a run file if it exists, after refusing a link (as damage, naming it)."""
        path = self.path / name
        try:
            io.no_links(self.root, path)
        except io.LinkRefused as exc:
            raise RunDamaged(
                path, f"is reached through a symbolic link ({exc.link}); a run's files must be its own"
            ) from None
        return path if path.exists() else None

    def _foreign(self, path: Path, recorded: dict) -> None:
        """RunDamaged unless ``recorded`` carries this run's identity."""
        if recorded.get("run_id") != self.run_id:
            raise RunDamaged(
                path, f"it belongs to run {str(recorded.get('run_id'))[:80]}, not to this run ({self.run_id}); left out"
            )
        if recorded.get("params_hash") != self.params_hash:
            raise RunDamaged(path, "its parameter hash is not this run's parameters' hash; left out")

    def foreign_checkpoint(self, ckpt: dict) -> str | None:
        """Why a checkpoint is not this run's (another run's id or parameters), or None."""
        if ckpt.get("run_id") != self.run_id or ckpt.get("params_hash") != self.params_hash:
            return f"it belongs to run {str(ckpt.get('run_id'))[:80]}, not to this run ({self.run_id})"
        return None

    def _json(self, name: str) -> dict | None:
        if (path := self._file(name)) is None:
            return None
        recorded = read_json_object(path)
        self._foreign(path, recorded)
        return recorded

    def recorded_params(self) -> dict | None:
        """params.json, if present and this run's; RunDamaged if it is another run's or unreadable."""
        return self._json(PARAMS)

    def results(self) -> dict | None:
        """results.json (complete or diverged), or None while the run has none; RunDamaged if it is another
        run's, unreadable, or holds numbers that cannot be this run's results."""
        results = self._json(RESULTS)
        if results is None:
            return None
        path = self.path / RESULTS
        p = self.params
        status = results.get("status")
        if status not in STATUSES or results.get("method") != self.method or results.get("seed") != self.seed:
            raise RunDamaged(path, "its status, method or seed is not that of a result of this run")
        if not _finite_between(results.get("train_seconds"), 0, math.inf):
            raise RunDamaged(path, f"train_seconds is {results.get('train_seconds')!r}, not a finite time")
        if not isinstance(iterations := results.get("iterations"), int) or not 0 <= iterations <= p.iterations:
            raise RunDamaged(path, f"iterations is {iterations!r}; this run trains {p.iterations}")
        if status == "complete":
            if iterations != p.iterations:
                raise RunDamaged(path, f"a complete run of {iterations} iterations; this run trains {p.iterations}")
            self._check_tests(path, results.get("test"), "test")
            controls = results.get("controls")
            tested = controls if isinstance(controls, dict) else {}
            for control in self.controls:
                outcome = tested.get(control)
                self._check_tests(path, outcome.get("test") if isinstance(outcome, dict) else None, f"{control}.test")
        return results

    def _check_tests(self, path: Path, tests, where: str) -> None:
        if not isinstance(tests, dict) or sorted(tests) != sorted(self.datasets):
            raise RunDamaged(path, f"{where} does not hold exactly the test datasets {self.datasets}")
        for name, outcome in tests.items():
            accuracy, ci95, tasks = (outcome.get(k) for k in ("accuracy", "ci95", "tasks"))
            one_task = self.params.test_tasks == 1  # whose interval has no width to give (NaN)
            if not _finite_between(accuracy, 0, 1) or not (_finite_between(ci95, 0, 1) or one_task):
                raise RunDamaged(path, f"{where}.{name}: accuracy {accuracy!r} ± {ci95!r} is not a finite accuracy")
            if tasks != self.params.test_tasks:
                raise RunDamaged(
                    path, f"{where}.{name}: {tasks!r} test tasks; the parameters ask for {self.params.test_tasks}"
                )

    def task_accuracies(self, control: str | None = None) -> pd.DataFrame | None:
        """Each test task's accuracy (of the test-time ``control``), or None if the file is absent;
        RunDamaged unless it is this run's, parses, and holds a finite accuracy for each of the
        parameters' test tasks of every test dataset."""
        name = task_accuracies_path(self.path, control).name
        if (path := self._file(name)) is None:
            return None
        table = self._csv(path, TASK_COLUMNS)
        if table["fingerprint"].isna().any():
            raise RunDamaged(path, "holds a task without its fingerprint")
        if not all(_finite_between(a, 0, 1) for a in table["accuracy"]):
            raise RunDamaged(path, "holds an accuracy that is not a finite number between 0 and 1")
        expected = list(range(self.params.test_tasks))
        for dataset in self.datasets:
            tasks = sorted(table.loc[table["test_dataset"] == dataset, "task"])
            if tasks != expected:
                raise RunDamaged(
                    path, f"holds {len(tasks)} tasks of {dataset}, not tasks 0..{len(expected) - 1}; left out"
                )
        if len(table) != len(expected) * len(self.datasets):
            raise RunDamaged(path, f"holds rows for test datasets other than {self.datasets}")
        return table

    def metrics(self) -> pd.DataFrame:
        """The learning curve (metrics.csv); RunDamaged if absent, another run's, or not numbers."""
        if (path := self._file(METRICS)) is None:
            raise RunDamaged(self.path / METRICS, "is missing")
        return self._csv(path, ["run_id", "iteration"])

    def _csv(self, path: Path, columns: list[str]) -> pd.DataFrame:
        """A run CSV with ``columns``, every other column numeric, and this run's id in every row."""
        try:
            table = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # pandas' parser errors are ValueErrors
            raise RunDamaged(path, f"cannot be read as CSV ({type(exc).__name__}: {str(exc)[:120]})") from None
        if missing := [c for c in columns if c not in table]:
            raise RunDamaged(path, f"has no column {missing[0]!r}")
        if set(table["run_id"]) != {self.run_id}:
            raise RunDamaged(path, f"holds rows of another run than {self.run_id}; left out")
        for column in (c for c in table if c not in TEXT_COLUMNS):
            converted = pd.to_numeric(table[column], errors="coerce")
            if converted.isna().sum() > table[column].isna().sum():
                raise RunDamaged(path, f"column {column!r} holds a value that is not a number")
        return table

    def last_logged_iteration(self) -> int:
        """The iteration of the last row of metrics.csv (written with each checkpoint), or 0 (none, or damaged)."""
        try:
            table = self.metrics()
        except RunDamaged:
            return 0
        return int(table["iteration"].iloc[-1]) if len(table) else 0

    def checked_results(self) -> dict | None:
        """results.json once every file the run has is read and checked as above (a complete run must also
        have its per-task accuracies and curve), or None while it has none; RunDamaged for the first bad one."""
        self.recorded_params()
        results = self.results()
        if results is not None and results["status"] == "complete":
            for control in (None, *self.controls):
                if self.task_accuracies(control) is None:
                    raise RunDamaged(task_accuracies_path(self.path, control), "is missing")
            self.metrics()
        return results

    def intact_results(self) -> dict | None:
        """The run's results if they and every file they rest on are intact and its own, else None."""
        try:
            return self.checked_results()
        except RunDamaged:
            return None

    def damage(self) -> RunDamaged | None:
        """Why the run's files cannot be trusted (``checked_results``), or None."""
        try:
            self.checked_results()
        except RunDamaged as exc:
            return exc
        return None

    def set_aside(self, names: list[str]) -> Path | None:
        """Move these files of the run (those present) into ``set-aside/<time>/`` of its folder; return it."""
        present = [name for name in names if (self.path / name).is_symlink() or (self.path / name).exists()]
        if not present:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 10**9:09d}"
        target = io.make_folder(self.root, self.path / SET_ASIDE / stamp)
        for name in present:
            (self.path / name).rename(target / name)
        return target

    def outputs(self) -> list[str]:
        """The names of the files a meta-test writes (set aside together when any is damaged)."""
        controls = [task_accuracies_path(self.path, c).name for c in self.controls]
        return [RESULTS, TASK_ACCURACIES, *controls]


def read_results(params: Config, method: str, seed: int) -> dict | None:
    """A run's checked results.json (complete or diverged), or None while it has none; RunDamaged as above."""
    return RunFiles(params, method, seed).results()


def row_task_accuracies(params: Config, row: str, seed: int) -> pd.DataFrame | None:
    """The per-task test accuracies of a results row's name (a method, or a test-time control, whose
    numbers live in the folder of the run it evaluates) and seed; RunDamaged as above."""
    if row in TESTED_ON:
        return RunFiles(params, TESTED_ON[row], seed).task_accuracies(control=row)
    return RunFiles(params, row, seed).task_accuracies()


class Unmatched(KitError):
    """A control matched to another method's run cannot be built: that run is not complete."""


def matched_options(params: Config, method: str, seed: int) -> dict | None:
    """A matched control's learner options, from the complete run of the same seed it is matched to
    (``Method.matched_to``); None for any other method. Unmatched if that run is not complete."""
    if (matching := METHODS[method].matched_to) is None:
        return None
    source, options = matching
    result = RunFiles(params, source, seed).intact_results()
    if result is None or result["status"] != "complete":
        state = "not trained yet" if result is None else result["status"]
        raise Unmatched(
            f"{method} seed {seed} trains with what {source} seed {seed} chose, and that run is {state}: "
            f"train {source} first (a profile trains it first when its methods name both)"
        )
    return options(result)


def run_lock(locked: Path, root: str | Path) -> FileLock:
    """The lock whoever trains the run in folder (or file) ``locked`` holds: ``<parent>/.locks/<name>.lock``."""
    locks = io.make_folder(root, Path(locked).parent / ".locks")
    lock = locks / f"{Path(locked).name}.lock"
    io.refuse_link(lock)
    return FileLock(lock)


@contextmanager
def holding(locked: Path, root: str | Path, wait: bool, waiting: str = "") -> Iterator[bool]:
    """Hold the lock of ``locked`` (below ``root``) for the block: wait for it (first printing ``waiting``,
    if given, when another process holds it), or with ``wait=False`` yield False at once if one does."""
    lock = run_lock(locked, root)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            yield False
            return
        if waiting:
            from tqdm.auto import tqdm

            tqdm.write(waiting)
        lock.acquire()
    try:
        yield True
    finally:
        lock.release()
