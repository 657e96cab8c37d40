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
from .learners import METHODS as REGISTRY
from .params import Config
from .results import duration
from .runs import FAILURE, METRICS, RESULTS, RunDamaged, RunFiles, holding, run_folder, run_id
from .training import Unmatched, run_method

LOG_SECONDS = 60  # when the output is not a terminal (a Slurm log, CI, a file): at most one progress or status
# line a minute per run or sweep while nothing changes; the pipeline and the sweep both follow it

KINDS = ("main", "bmp_embedding", "ablation", "convergence")


@dataclass(frozen=True, eq=False)
class PlannedRun:
    """One run of a profile: what it is for, its method, seed and resolved parameters."""

    kind: str
    method: str
    seed: int
    params: Config
    label: str
    point: tuple[str, float] | None = None  # an ablation run's (setting, value)

    @property
    def folder(self) -> Path:
        """The run folder (for the convergence trace: the folder of its CSV)."""
        if self.kind == "convergence":
            return self.trace_path.parent
        return run_folder(self.params, self.method, self.seed)

    @property
    def files(self) -> RunFiles:
        """The run's files (not for the convergence trace, which is one CSV)."""
        return RunFiles(self.params, self.method, self.seed)

    @property
    def locked(self) -> Path:
        """What whoever trains this run locks (``runs.run_lock``): its folder, or the trace's file."""
        return self.trace_path if self.kind == "convergence" else self.folder

    @property
    def trace_path(self) -> Path:
        """The convergence trace's CSV, named for what shapes it (the MMSUP run's id and the iterations
        traced): a trace of other parameters is never read back as this one."""
        shape = f"{run_id(self.params, 'mmsup', self.seed)}-{self.params.convergence_iterations}"
        digest = hashlib.sha1(shape.encode()).hexdigest()[:8]
        folder = Path(self.params.output_root) / self.params.profile / "convergence"
        return folder / f"trace-seed{self.seed}-{digest}.csv"

    @property
    def name(self) -> str:
        """A unique, file-name-safe name: the run folder's, or the trace's."""
        return f"convergence-{self.params.profile}-seed{self.seed}" if self.kind == "convergence" else self.folder.name

    @property
    def iterations(self) -> int:
        """How many iterations this run trains: the trace's own count, or the run's."""
        return self.params.convergence_iterations if self.kind == "convergence" else self.params.iterations

    def outcome(self) -> dict:
        """What the finished run recorded (results.json; the trace's JSON beside its CSV), or {}."""
        if self.kind != "convergence":
            try:
                return self.files.results() or {}
            except RunDamaged:
                return {}
        path = self.trace_path.with_suffix(".json")
        return json.loads(path.read_text()) if path.exists() else {}

    def damage(self) -> RunDamaged | None:
        """Why this run's files cannot be trusted (``RunFiles.damage``), or None."""
        return None if self.kind == "convergence" else self.files.damage()

    def state(self) -> tuple[str, int]:
        """(complete | diverged | damaged | failed | partial | missing, the iteration reached)."""
        if self.kind == "convergence":  # its JSON is written while it trains; its CSV only once complete
            return ("complete", self.iterations) if self.trace_path.exists() else ("missing", 0)
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

    def execute(self, distributions: list[Distribution] | None = None, progress: bool = True, wait: bool = True):
        """Train (or resume, or read back) this run; the convergence trace returns its table. With
        ``wait=False`` a run another process is training is skipped (None)."""
        if self.kind != "convergence":
            return run_method(self.params, self.method, self.seed, distributions, progress=progress, wait=wait)
        with holding(self.locked, self.params.output_root, wait) as held:
            if not held:
                return None
            dists = distributions if distributions is not None else load_distributions(self.params)
            return convergence.trace(self.params, self.seed, dists, self.trace_path)


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
        ("sparsity", v, "mmsup", base.replace(mmsup_sparsity_init=float(v), mmsup_learn_sparsity=False))
        for v in params.ablation_sparsity
    ]
    return points


def plan(params: Config, kinds: tuple[str, ...] = KINDS) -> list[PlannedRun]:
    """Every run the profile's notebooks need, of the given kinds, in the order the notebooks use them."""
    runs = []
    if "main" in kinds:
        matched_last = sorted(params.methods, key=lambda m: REGISTRY[m].matched_to is not None)  # after their match
        runs += [PlannedRun("main", m, s, params, f"{m} seed {s}") for m in matched_last for s in params.seeds]
    if "bmp_embedding" in kinds and "bmp" in params.methods:
        for form in dict.fromkeys(params.bmp_compare_embeddings):
            if form != params.bmp_embedding:
                variant = params.replace(bmp_embedding=form)
                runs += [PlannedRun("bmp_embedding", "bmp", s, variant, f"bmp ({form}) seed {s}") for s in params.seeds]
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
        runs.append(PlannedRun("convergence", "mmsup", seed, params, f"convergence trace seed {seed}"))
    return runs


def train(params: Config, kind: str, distributions: list[Distribution], methods: list[str] | None = None) -> list:
    """Train (or resume, or read back) the profile's planned runs of ``kind`` (of ``methods``), one after
    another, waiting for any that another process is training: what a notebook does. A matched control whose
    match did not complete is left untrained (``_train_one``)."""
    runs = [r for r in plan(params, (kind,)) if methods is None or r.method in methods]
    return [_train_one(run, distributions) for run in tqdm(runs, desc=f"{kind} runs", unit="run")]


def _train_one(run: PlannedRun, distributions: list[Distribution]):
    """The run's outcome; None, said in a line, for a matched control whose match did not complete (its
    comparisons name why: the match diverged or is damaged), so the other runs still train."""
    try:
        return run.execute(distributions)
    except Unmatched as exc:
        tqdm.write(f"{run.label} is not trained: {exc}")
        return None


def _progress_record(run: PlannedRun) -> Path | None:
    """The file an unfinished run last wrote its progress to (metrics.csv; the trace's JSON), or None."""
    if run.kind == "convergence":
        record = run.trace_path.with_suffix(".json")
        return record if record.exists() and not run.trace_path.exists() else None
    metrics = run.folder / METRICS
    return metrics if metrics.exists() and not (run.folder / RESULTS).exists() else None


def progress(runs: list[PlannedRun], since: float = 0.0) -> str | None:
    """The run being trained (the unfinished one that wrote its progress last, at or after the time
    ``since``) and how far it got: iteration, latest validation accuracy and time left at its pace so far;
    None if none is under way."""
    under_way = [(record, run) for run in runs if (record := _progress_record(run)) and record.stat().st_mtime >= since]
    if not under_way:
        return None
    record, run = max(under_way, key=lambda pair: pair[0].stat().st_mtime)
    if run.kind == "convergence":  # the trace validates nothing
        last = json.loads(record.read_text())
        done, seconds, accuracy = last["iteration"], last["train_seconds"], ""
    else:
        try:
            curve = run.files.metrics()
        except RunDamaged:
            return None
        if curve.empty:
            return None
        last = curve.iloc[-1]
        done, seconds = int(last["iteration"]), last["train_seconds"]
        accuracy = f", validation accuracy {last['val_accuracy']:.3f}"
    left = (run.iterations - done) * seconds / max(done, 1)
    return f"{run.label}: iteration {done}/{run.iterations}{accuracy}, about {duration(left)} left"


def states(runs: list[PlannedRun]) -> list[dict]:
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
