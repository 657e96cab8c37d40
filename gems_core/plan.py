"""Every run a profile's notebooks need, in one list: the sweep trains from it, the notebooks read from it.

A profile needs its main runs (each method and seed), BMP under each form in ``bmp_compare_embeddings``
(notebook 02), the ablation grid (notebook 04) and the convergence trace (notebook 05). ``plan``
lists them with their resolved parameters, and each planned run knows where it lives and what state
it is in, read from its folder: complete, diverged, failed (a sweep saw its process fail), partial
(a checkpoint to resume from, at some iteration), damaged (a file that is another run's or cannot be
read as a result: ``runs.RunFiles``) or missing. Because notebooks and sweeps both go
through this list, they can never disagree about which runs exist.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from . import checkpoints, convergence
from .data import Distribution, load_distributions
from .learners import LAYER_CHOOSER, SUBNETWORK_MASKER
from .learners import METHODS as REGISTRY
from .packed_runs import run_packed
from .params import Config
from .results import duration
from .runs import (
    FAILURE,
    METRICS,
    RESULTS,
    RunDamaged,
    RunFiles,
    Unmatched,
    holding,
    params_hash,
    run_folder,
    run_id,
)
from .training import run_method

LOG_SECONDS = 60  # when the output is not a terminal (a Slurm log, CI, a file): at most one progress or status
# line a minute per run or sweep while nothing changes; the pipeline and the sweep both follow it

KINDS = ("main", "bmp_embedding", "ablation", "convergence")


@dataclass(frozen=True, eq=False)
class PlannedRun:
    """One training run of a profile (kind ``main``, ``bmp_embedding`` or ``ablation``): what it is for, its
    method, seed and resolved parameters; it lives in its run folder (``runs``)."""

    kind: str
    method: str
    seed: int
    params: Config
    label: str
    point: tuple[str, float] | None = None  # an ablation run's (setting, value)

    @property
    def folder(self) -> Path:
        return run_folder(self.params, self.method, self.seed)

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.params, self.method, self.seed)

    @property
    def locked(self) -> Path:
        """What whoever trains this run locks (``runs.run_lock``)."""
        return self.folder

    @property
    def name(self) -> str:
        """A unique, file-name-safe name: the run folder's."""
        return self.folder.name

    @property
    def iterations(self) -> int:
        return self.params.iterations

    def progress_record(self) -> Path | None:
        """metrics.csv while the run is unfinished (what it last wrote its progress to), else None."""
        metrics = self.folder / METRICS
        return metrics if metrics.exists() and not (self.folder / RESULTS).exists() else None

    def reached(self) -> tuple[int, float, str] | None:
        """The iteration its curve reached, its training seconds so far and its latest validation accuracy
        (as words), or None before its first row (or with a damaged curve)."""
        try:
            curve = self.files.metrics()
        except RunDamaged:
            return None
        if curve.empty:
            return None
        last = curve.iloc[-1]
        return int(last["iteration"]), float(last["train_seconds"]), f", validation accuracy {last['val_accuracy']:.3f}"

    def outcome(self) -> dict:
        """What the finished run recorded (results.json), or {}."""
        try:
            return self.files.results() or {}
        except RunDamaged:
            return {}

    def damage(self) -> RunDamaged | None:
        """Why this run's files cannot be trusted (``RunFiles.damage``), or None."""
        return self.files.damage()

    def state(self) -> tuple[str, int]:
        """(complete | diverged | damaged | failed | partial | missing, the iteration reached)."""
        iteration = self.files.last_logged_iteration()
        if self.damage() is not None:
            return "damaged", iteration
        outcome = self.outcome()
        if outcome:
            return outcome["status"], outcome["iterations"]
        if (self.folder / FAILURE).exists():
            return "failed", iteration
        return (
            "partial"
            if (self.folder / checkpoints.NEWEST).exists() or (self.folder / checkpoints.PREVIOUS).exists()
            else "missing"
        ), iteration

    @property
    def parts(self) -> tuple[PlannedRun, ...]:
        """The runs this job trains: itself (a pack: its runs)."""
        return (self,)

    def execute(self, distributions: list[Distribution] | None = None, progress: bool = True, wait: bool = True):
        """Train (or resume, or read back) this run. With ``wait=False`` a run another process is training is
        skipped (None)."""
        return run_method(self.params, self.method, self.seed, distributions, progress=progress, wait=wait)


@dataclass(frozen=True, eq=False)
class PlannedTrace:
    """The profile's convergence trace (kind ``convergence``, notebook 05): MMSUP traced for
    ``convergence_iterations`` from one seed, kept as one CSV, with its progress in a JSON beside it."""

    method: str
    seed: int
    params: Config
    label: str
    kind: str = "convergence"
    point: None = None

    @property
    def trace_path(self) -> Path:
        """The trace's CSV, named for what shapes it (the MMSUP run's id and the iterations traced): a
        trace of other parameters is never read back as this one."""
        shape = f"{run_id(self.params, self.method, self.seed)}-{self.params.convergence_iterations}"
        digest = hashlib.sha1(shape.encode()).hexdigest()[:8]
        folder = Path(self.params.output_root) / self.params.profile / "convergence"
        return folder / f"trace-seed{self.seed}-{digest}.csv"

    @property
    def folder(self) -> Path:
        """The folder of its CSV."""
        return self.trace_path.parent

    @property
    def locked(self) -> Path:
        return self.trace_path

    @property
    def name(self) -> str:
        return f"convergence-{self.params.profile}-seed{self.seed}"

    @property
    def iterations(self) -> int:
        return self.params.convergence_iterations

    def progress_record(self) -> Path | None:
        """The JSON it writes while it traces (the CSV comes only once complete), else None."""
        record = self.trace_path.with_suffix(".json")
        return record if record.exists() and not self.trace_path.exists() else None

    def reached(self) -> tuple[int, float, str] | None:
        """The iteration it reached and its seconds so far (it validates nothing), from its JSON."""
        last = self.outcome()
        return (last["iteration"], last["train_seconds"], "") if last else None

    def outcome(self) -> dict:
        """What the trace recorded (its JSON), or {}."""
        path = self.trace_path.with_suffix(".json")
        return json.loads(path.read_text()) if path.exists() else {}

    def damage(self) -> RunDamaged | None:
        return None  # one CSV, written atomically once complete

    def state(self) -> tuple[str, int]:
        """(complete | missing, the iteration reached)."""
        return ("complete", self.iterations) if self.trace_path.exists() else ("missing", 0)

    @property
    def parts(self) -> tuple[PlannedTrace, ...]:
        return (self,)

    def execute(self, distributions: list[Distribution] | None = None, progress: bool = True, wait: bool = True):
        """Trace (or read back) the convergence table; None with ``wait=False`` while another process traces."""
        with holding(self.locked, self.params.output_root, wait) as held:
            if not held:
                return None
            dists = distributions if distributions is not None else load_distributions(self.params)
            return convergence.trace(self.params, self.seed, dists, self.trace_path)


@dataclass(frozen=True, eq=False)
class PlannedPack:
    """Planned runs of one method at one setting, their seeds, trained as one pack (``packed_runs``): a
    sweep's job, run by its executors as they run one run (``--pack``)."""

    parts: tuple[PlannedRun, ...]
    kind: str = "pack"
    point: None = None

    @property
    def first(self) -> PlannedRun:
        return self.parts[0]

    @property
    def params(self) -> Config:
        return self.first.params

    @property
    def method(self) -> str:
        return self.first.method

    @property
    def label(self) -> str:
        return f"{self.first.label} + {len(self.parts) - 1} more seeds, as one pack"

    @property
    def name(self) -> str:
        return f"{self.first.name}-pack{len(self.parts)}"

    @property
    def folder(self) -> Path:
        return self.first.folder

    @property
    def iterations(self) -> int:
        return self.first.iterations

    def progress_record(self) -> Path | None:
        return next((r for p in self.parts if (r := p.progress_record()) is not None), None)

    def reached(self) -> tuple[int, float, str] | None:
        """Where its least advanced unfinished run is (the pack trains its runs in lockstep)."""
        unfinished = [p for p in self.parts if p.state()[0] not in ("complete", "diverged")] or list(self.parts)
        return min(unfinished, key=lambda p: p.state()[1]).reached()

    def outcome(self) -> dict:
        return {}

    def damage(self) -> RunDamaged | None:
        return next((d for p in self.parts if (d := p.damage()) is not None), None)

    def state(self) -> tuple[str, int]:
        """Its least advanced run's state: complete (or diverged) once every run is."""
        states = [p.state() for p in self.parts]
        unfinished = [s for s in states if s[0] not in ("complete", "diverged")]
        return min(unfinished or states, key=lambda s: s[1])

    def execute(self, distributions: list[Distribution] | None = None, progress: bool = True, wait: bool = True):
        """Train (or resume, or read back) the pack's runs; None if another process trains one of them (the
        others are trained all the same)."""
        seeds = [p.seed for p in self.parts]
        tqdm.write(f"pack of {len(seeds)}: {', '.join(p.name for p in self.parts)}")
        outcomes = run_packed(self.params, self.method, seeds, distributions, progress)
        return None if any(o is None for o in outcomes.values()) else outcomes


Planned = PlannedRun | PlannedTrace
"""Everything a profile plans: training runs and the convergence trace."""
Job = PlannedRun | PlannedTrace | PlannedPack
"""What a sweep's worker or Slurm job trains: one planned run, or a pack of them."""


def packed(runs: list[Planned], size: int) -> list[Job]:
    """``runs`` with the seeds of each method at each setting (one ``params_hash``) grouped, in plan order,
    into packs of at most ``size``; a run alone in its group, a trace, and a control matched to another
    method's runs (its options differ by seed) stay as they are."""
    groups: dict[tuple[str, str], list[PlannedRun]] = {}
    order: list[Job | tuple[str, str]] = []
    for run in runs:
        if size > 1 and isinstance(run, PlannedRun) and REGISTRY[run.method].matched_to is None:
            key = (run.method, params_hash(run.params, run.method))
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(run)
        else:
            order.append(run)
    out: list[Job] = []
    for item in order:
        if not isinstance(item, tuple):
            out.append(item)
            continue
        group = groups[item]
        for start in range(0, len(group), size):
            chunk = group[start : start + size]
            out.append(PlannedPack(tuple(chunk)) if len(chunk) > 1 else chunk[0])
    return out


def ablation_grid(params: Config) -> list[tuple[str, float, str, Config]]:
    """(setting, value, method, run parameters) for every point of the supplement's Table 1 grid that the
    profile asks for: one setting differs from the profile's, and iterations are ``ablation_iterations``."""
    base = params.replace(iterations=params.ablation_iterations)
    points: list[tuple[str, float, str, Config]] = []
    for method in params.ablation_methods:
        points += [
            ("adaptation_steps", v, method, base.replace(adaptation_steps=v)) for v in params.ablation_adaptation_steps
        ]
        points += [("fast_lr", v, method, base.replace(fast_lr=float(v))) for v in params.ablation_fast_lr]
    points += [
        ("sparsity", v, SUBNETWORK_MASKER, base.replace(mmsup_sparsity_init=float(v), mmsup_learn_sparsity=False))
        for v in params.ablation_sparsity
    ]
    return points


def plan(params: Config, kinds: tuple[str, ...] = KINDS) -> list[Planned]:
    """Every run the profile's notebooks need, of the given kinds, in the order the notebooks use them."""
    runs: list[Planned] = []
    if "main" in kinds:
        matched_last = sorted(params.methods, key=lambda m: REGISTRY[m].matched_to is not None)  # after their match
        runs += [PlannedRun("main", m, s, params, f"{m} seed {s}") for m in matched_last for s in params.seeds]
    if "bmp_embedding" in kinds and LAYER_CHOOSER in params.methods:
        for form in dict.fromkeys(params.bmp_compare_embeddings):
            if form != params.bmp_embedding:
                variant = params.replace(bmp_embedding=form)
                label = f"{LAYER_CHOOSER} ({form}) seed"
                runs += [PlannedRun("bmp_embedding", LAYER_CHOOSER, s, variant, f"{label} {s}") for s in params.seeds]
    if "ablation" in kinds:
        runs += [
            PlannedRun(
                "ablation", method, s, run_params, f"ablation {setting}={value} {method} seed {s}", (setting, value)
            )
            for setting, value, method, run_params in ablation_grid(params)
            for s in params.seeds
        ]
    if "convergence" in kinds:
        seed = params.seeds[0]
        runs.append(PlannedTrace(convergence.METHOD, seed, params, f"convergence trace seed {seed}"))
    return runs


def train(params: Config, kind: str, distributions: list[Distribution], methods: list[str] | None = None) -> list:
    """Train (or resume, or read back) the profile's planned runs of ``kind`` (of ``methods``), one after
    another, waiting for any that another process is training: what a notebook does. A matched control whose
    match did not complete is left untrained (``_train_one``)."""
    runs = [r for r in plan(params, (kind,)) if methods is None or r.method in methods]
    return [_train_one(run, distributions) for run in tqdm(runs, desc=f"{kind} runs", unit="run")]


def _train_one(run: Planned, distributions: list[Distribution]):
    """The run's outcome; None, said in a line, for a matched control whose match did not complete (its
    comparisons name why: the match diverged or is damaged), so the other runs still train."""
    try:
        return run.execute(distributions)
    except Unmatched as exc:
        tqdm.write(f"{run.label} is not trained: {exc}")
        return None


def progress(runs: list[Planned], since: float = 0.0) -> str | None:
    """The run being trained (the unfinished one that wrote its progress last, at or after the time
    ``since``) and how far it got: iteration, latest validation accuracy and time left at its pace so far;
    None if none is under way."""
    under_way = [(record, run) for run in runs if (record := run.progress_record()) and record.stat().st_mtime >= since]
    if not under_way:
        return None
    _, run = max(under_way, key=lambda pair: pair[0].stat().st_mtime)
    reached = run.reached()
    if reached is None:
        return None
    done, seconds, accuracy = reached
    left = (run.iterations - done) * seconds / max(done, 1)
    return f"{run.label}: iteration {done}/{run.iterations}{accuracy}, about {duration(left)} left"


def states(runs: list[Planned]) -> list[dict]:
    """A row per planned run: its label, kind, folder name, state and iteration (for tables and pages)."""
    rows = []
    for run in runs:
        state, iteration = run.state()
        rows.append(
            {
                "run": run.label,
                "kind": run.kind,
                "name": run.name,
                "state": state,
                "iteration": iteration,
                "of": run.iterations,
            }
        )
    return rows
