"""Meta-training runs: one method, one seed, one folder; resumable after a kill at any point.

A run lives in its folder of the run store (``runs``: its id, layout and lock); its checkpoints hold
everything needed to continue bit for bit (weights, optimiser, samplers' and torch's random states, the
curve so far; see ``checkpoints``), and every file is written atomically. Meta-test runs on fixed task
sets, so every method and seed of a profile is tested on the same tasks.

``Run.train`` is the algorithm: its collaborators each do one job: the members (``members``: sample a
meta-batch, meta-update, keep the log's running sums), the device seam (``graphs.MemberSteps``: eager or
a CUDA graph), the divergence watch (``divergence``), the metrics rows with validation (``log_row``) and
the checkpoints (``save_checkpoint``, from each member's ``state_dict``).

Command line (one run, e.g. from a cluster job): ``python -m gems_core.training PARAMS.yaml --method maml --seed 21``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import checkpoints, numerics, runs
from .cpu_share import CpuShare
from .data import (
    SPLITS,
    Distribution,
    FixedTasks,
    SplitImages,
    check_against_data,
    load_distributions,
)
from .device import device_name, resolve_device
from .divergence import Diverged, DivergenceWatch
from .evaluation import eval_batch_size, evaluate, fixed_task_sets
from .graphs import MemberSteps, synchronize
from .learners import MAML, Calibrated, Logged, Probed, Recorded, Scored
from .learners import METHODS as REGISTRY
from .members import build_members
from .params import Config
from .runs import RunFiles, holding, matched_options, run_folder
from .stopping import STOP, Stopped

DIVERGENCE_CHECK_EVERY = 25  # iterations between reads of the non-finite flags (one device sync each)


@dataclass
class RunState:
    iteration: int = 0
    train_seconds: float = 0.0
    rows: list = field(default_factory=list)
    interval_steps: int = 0  # iterations since the last metrics row


class Run:
    """A meta-training run of ``method`` with ``seed`` on ``distributions``, kept in ``folder``."""

    def __init__(
        self,
        params: Config,
        method: str,
        seed: int,
        distributions: list[Distribution],
        folder: Path,
        device: torch.device,
        matched: dict | None = None,
    ):
        self.params, self.method, self.seed, self.device = params, method, seed, device
        self.matched = matched or {}  # a matched control's options, read from the run it is matched to
        self.distributions, self.folder = distributions, Path(folder)
        self.files = RunFiles(params, method, seed, self.folder)
        self.label = f"{method} seed {seed}"
        numerics.configure(device, params.tf32, params.deterministic)
        need = params.shots + params.queries
        self.splits = {split: SplitImages([d.splits[split] for d in distributions], device, need) for split in SPLITS}
        self.members = build_members(
            params, method, seed, self.splits["train"], len(distributions), device, self.matched
        )
        self.state = RunState()
        self._fixed: dict[str, dict[int, FixedTasks]] = {}
        self.steps: MemberSteps | None = None
        self.watch = DivergenceWatch(params.loss_explosion_factor, params.ways)
        self.cpu_share = CpuShare(active=device.type == "cpu")  # held while ``run`` trains and tests
        self._clock = 0.0  # when the current stretch of timed training began (``start_clock``)

    @property
    def graphed(self) -> bool:
        """Whether meta-iterations are captured as CUDA graphs (``cuda_graph`` on a GPU)."""
        return self.device.type == "cuda" and self.params.cuda_graph

    # --- persistence -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        checkpoints.save(
            self.folder,
            {
                **self.files.identity,
                "method": self.method,
                "state": self.state.__dict__,
                "members": [m.state_dict() for m in self.members],
                "torch_rng": torch.get_rng_state(),
            },
        )
        self.write_metrics()

    def write_metrics(self) -> None:
        if self.state.rows:  # a checkpoint before the first validation has no metrics row to write
            self.files.write_metrics(self.state.rows)

    def load_checkpoint(self, set_aside: bool = True) -> bool:
        """Restore the newest checkpoint that is intact and this run's (the previous one if the newest is
        not). Each one refused is named in a line and, with ``set_aside``, moved to the run's ``set-aside/``
        (never kept as the previous one); without, CheckpointUnreadable if none is usable."""
        # on the CPU: random states stay CPU tensors
        ckpt, refused = checkpoints.load(self.folder, self.files.foreign_checkpoint)
        if set_aside and refused:
            aside = self.files.set_aside([path.name for path, _ in refused])
            for path, why in refused:
                tqdm.write(f"{self.label}: {path.name} is not used: {why}; moved to {aside}")
        if ckpt is None:
            if refused and not set_aside:
                raise checkpoints.none_usable(self.folder, refused)
            return False
        with checkpoints.restoring(ckpt, self.folder, self.method, len(self.members)) as saved:
            self.state = RunState(**ckpt["state"])
            for member, state in zip(self.members, saved):
                member.load_state_dict(state, self.device)
            torch.set_rng_state(ckpt["torch_rng"])
        return True

    # --- training ----------------------------------------------------------------------------
    def step(self) -> None:
        """One meta-iteration of every member, queued on the device without waiting for it."""
        if self.steps is None:  # built at the first iteration: a CUDA graph captures the restored state
            self.steps = MemberSteps(self.members, self.device, self.graphed, self.method)
        self.steps()
        self.count_step()

    def count_step(self) -> None:
        """One meta-iteration done (by this run's steps, or by the pack it trains in)."""
        self.state.iteration += 1
        self.state.interval_steps += 1

    @property
    def trained(self) -> bool:
        return self.state.iteration >= self.params.iterations

    def schedule(self) -> tuple[bool, bool]:
        """Whether this iteration writes a metrics row, and whether it saves a checkpoint."""
        it, p = self.state.iteration, self.params
        log = it % p.validation_every == 0 or it == p.iterations
        return log, it % p.checkpoint_every == 0 or it == p.iterations or STOP.is_set()

    def due(self) -> bool:
        """Whether this iteration logs or checkpoints (a pack writes its weights back first)."""
        return any(self.schedule())

    def calibrate(self) -> None:
        """Before the first iteration: let learners that need it (BMP's standardized embedding) measure
        their input statistics on tasks of their own training distributions."""
        for member in self.members:
            learner = member.learner
            if isinstance(learner, Calibrated) and (n := learner.calibration_tasks()):
                learner.calibrate(member.sampler.sample(n))

    def learner_for(self, distribution: int) -> MAML:
        return next(m.learner for m in self.members if distribution in m.distributions)

    def fixed_tasks(self, split: str) -> dict[int, FixedTasks]:
        """The fixed validation or test tasks of every distribution (drawn once per run object)."""
        if split not in self._fixed:
            self._fixed[split] = fixed_task_sets(self.params, self.splits[split], split, len(self.distributions))
        return self._fixed[split]

    def evaluate(self, split: str, distribution: int, probe: bool = False, learner: MAML | None = None) -> dict:
        """Accuracy (and, with ``probe``, the learner's probes) of the learner of ``distribution`` (or
        ``learner``: a frozen-mask control of it) on its fixed ``split`` tasks."""
        return evaluate(
            learner or self.learner_for(distribution),
            self.fixed_tasks(split)[distribution],
            eval_batch_size(self.params, self.device),
            probe,
        )

    def log_row(self) -> None:
        """Append a metrics row: the interval's training sums (read from the device) and validation."""
        names = [d.name for d in self.distributions]
        sums = [m.read_sums() for m in self.members]
        steps = self.state.interval_steps * len(self.members)
        row = {
            "iteration": self.state.iteration,
            "train_loss": sum(float(s["loss"]) for s in sums) / steps,
            "train_accuracy": sum(float(s["accuracy"]) for s in sums) / steps,
        }
        for i, name in enumerate(names):
            row[f"val_accuracy_{name}"] = self.evaluate("validation", i)["accuracy"]
        row["val_accuracy"] = sum(row[f"val_accuracy_{n}"] for n in names) / len(names)
        for member, member_sums in zip(self.members, sums):
            if isinstance(member.learner, Recorded):
                row.update(member.learner.train_record())
            if isinstance(member.learner, Logged):
                row.update(member.learner.interval_row(member_sums, names))
        row["train_seconds"] = self.state.train_seconds
        self.state.rows.append(row)
        self.state.interval_steps = 0
        self.watch.new_interval()

    def train(self, progress: bool = True, until: int | None = None) -> None:
        """Meta-train to ``iterations`` (or to iteration ``until``), or until Diverged. ``train_seconds``
        counts meta-iterations only, not validation or checkpoints. The device is synchronised only there and every
        DIVERGENCE_CHECK_EVERY iterations, to read the non-finite flags."""
        if self.state.iteration == 0:
            self.calibrate()
        bar = progress_bar(self.label, self.params.iterations, self.state.iteration, progress)
        self.start_clock()
        try:
            while not self.trained and (until is None or self.state.iteration < until):
                self.step()
                bar.update(1)
                self.cpu_share.rebalance()  # other kit processes may have started or ended training
                self.after_step(bar)
        except Diverged:
            self.stop_clock()  # up to the iteration that diverged
            raise
        finally:
            bar.close()

    def start_clock(self) -> None:
        synchronize(self.device)
        self._clock = time.perf_counter()

    def stop_clock(self) -> None:
        """Add the time since ``start_clock`` to ``train_seconds``, once the device has done its work."""
        synchronize(self.device)
        self.state.train_seconds += time.perf_counter() - self._clock

    def after_step(self, bar) -> None:
        """After a counted meta-iteration: the divergence check, then the metrics row and checkpoint when
        due (timed out of ``train_seconds``); Stopped once the checkpoint is saved if a stop was asked for."""
        it = self.state.iteration
        log, checkpoint = self.schedule()
        if log or checkpoint or it % DIVERGENCE_CHECK_EVERY == 0:
            self.watch.check(it, self.state.interval_steps, self.members)  # before logging or saving
        if log or checkpoint:
            self.stop_clock()
            if log:
                self.log_row()
                bar.set_postfix(val_acc=f"{self.state.rows[-1]['val_accuracy']:.3f}")
            if checkpoint:
                self.save_checkpoint()
            if STOP.is_set():
                raise Stopped(it)
            self.start_clock()

    # --- meta-test ---------------------------------------------------------------------------
    def test(self) -> dict:
        """Meta-test on every distribution's fixed test tasks; each task's accuracy and fingerprint is kept
        in the run folder (``runs.TASK_ACCURACIES``), so methods compare task by task. A method with
        test-time controls (``Method.test_controls``) is tested again with each (``controls`` in the
        results): a frozen mask is chosen from validation tasks only; shuffled or random masks are drawn
        from the meta-test's own choices, seeded by the run's seed."""
        outcome, probes = self._meta_test()
        controls = REGISTRY[self.method].test_controls
        if controls:
            learner = self.members[0].learner
            validation = [
                p for i in range(len(self.distributions)) for p in self.evaluate("validation", i, True)["probes"]
            ]
            test = [p for batches in probes.values() for p in batches]  # the meta-test's order
            outcome["controls"] = {}
            for row, build in controls:
                control, used = build(learner, validation, test, self.seed)
                outcome["controls"][row] = {"method": row, "used": used, **self._meta_test(row, control)[0]}
        return outcome

    def _meta_test(self, control: str | None = None, learner: MAML | None = None) -> tuple[dict, dict]:
        """Accuracy on every distribution's test tasks, with the learner's summary of its probes and the
        mechanism score of its choice (``Scored.mechanism_score``); ``learner``: a test-time ``control``'s. Also
        returns the probes per test dataset."""
        results, probes, per_task = {}, {}, []
        for i, dist in enumerate(self.distributions):
            outcome = self.evaluate("test", i, probe=True, learner=learner)
            results[dist.name] = {k: outcome[k] for k in ("accuracy", "ci95", "tasks")}
            fingerprints = self.fixed_tasks("test")[i].fingerprints
            per_task += [
                {"test_dataset": dist.name, "task": t, "fingerprint": f, "accuracy": a}
                for t, (f, a) in enumerate(zip(fingerprints, outcome["task_accuracies"]))
            ]
            if outcome["probes"]:
                probes[dist.name] = outcome["probes"]
        self.files.write_task_accuracies(pd.DataFrame(per_task), control)
        summarizer = learner or self.members[0].learner
        summary = {
            "test": results,
            "records": summarizer.summarize_probes(probes) if isinstance(summarizer, Probed) and probes else {},
            "mechanism": summarizer.mechanism_score(probes) if isinstance(summarizer, Scored) and probes else {},
        }
        return summary, probes

    def run(self, progress: bool = True) -> dict:
        """Train (resuming if a checkpoint exists), test, write results.json; return the results.
        A run that diverges is a result too: ``status: diverged``, with where and what, and no test."""
        results = self.begin(progress)
        with self.cpu_share:
            try:
                self.train(progress)
            except Diverged as exc:
                return self.end(results, exc)
            return self.end(results)

    def begin(self, progress: bool) -> dict:
        """Make the folder, write params.json, resume from the newest checkpoint; the results so far."""
        self.files.make()
        try:
            self.files.recorded_params()
        except runs.RunDamaged as exc:
            tqdm.write(f"{self.label}: {exc}; moved to {self.files.set_aside([runs.PARAMS])}")
        self.files.write_params()
        self.load_checkpoint()
        if progress:
            tqdm.write(f"{self.label}: training from iteration {self.state.iteration} in {self.folder}")
        results = {
            "complete": True,
            "method": self.method,
            "seed": self.seed,
            "train_datasets": [d.name for d in self.distributions],
            "device": device_name(self.device),
        }
        if (matching := REGISTRY[self.method].matched_to) is not None:
            results["matched"] = {"run_id": runs.run_id(self.params, matching[0], self.seed), "options": self.matched}
        return results

    def end(self, results: dict, diverged: Diverged | None = None) -> dict:
        """After training: the meta-test, or the divergence as the outcome; write and return results.json."""
        if diverged is not None:
            kept = (
                "its last checkpoint is kept" if self.state.rows or self.state.iteration else "no checkpoint was saved"
            )
            tqdm.write(f"{self.label} diverged: {diverged}; the run stops, {kept}")
            results.update(
                status="diverged",
                diverged={"iteration": diverged.iteration, "quantities": diverged.quantities, "reason": str(diverged)},
                iterations=diverged.iteration,
                train_seconds=self.state.train_seconds,
                test={},
                records={},
            )
        else:
            results.update(
                status="complete",
                iterations=self.state.iteration,
                train_seconds=self.state.train_seconds,
                **self.test(),
            )
        self.write_metrics()  # also after a re-evaluation, whose curve was set aside as damaged
        self.files.write_results(results)
        checked = self.files.results()  # as every later reader sees it: checked
        assert checked is not None  # just written
        return checked


def progress_bar(label: str, total: int, initial: int, progress: bool):
    return tqdm(total=total, initial=initial, disable=not progress, leave=False, desc=label, unit="it")


def open_run(params: Config, method: str, seed: int, distributions: list[Distribution]) -> Run:
    """The Run of ``method`` and ``seed`` in its profile's run folder, on the parameters' device."""
    folder, device = run_folder(params, method, seed), resolve_device(params.device)
    return Run(params, method, seed, distributions, folder, device, matched_options(params, method, seed))


def read_back_or_set_aside(files: RunFiles) -> dict | None:
    """Under the run's lock: its results if it is complete and intact; else None, with its damaged results
    set aside (named in a line) so it trains again from its last intact checkpoint."""
    if (done := files.intact_results()) is not None:
        return done
    if (damage := files.damage()) is not None:
        aside = files.set_aside(list(dict.fromkeys([*files.outputs(), damage.path.name])))
        tqdm.write(
            f"{files.method} seed {files.seed} is damaged: {damage}; its results are moved to {aside}, and the run "
            "is trained again from its last intact checkpoint (re-evaluated if that is its last iteration)"
        )
    return None


def run_method(
    params: Config,
    method: str,
    seed: int,
    distributions: list[Distribution] | None = None,
    progress: bool = True,
    wait: bool = True,
) -> dict | None:
    """Run (or resume, or read back) one method and seed; distributions are loaded if not given.
    The run is trained under its lock: if another process holds it, wait for it (and read its result),
    or with ``wait=False`` return None at once. A control matched to another method's run trains that run
    first (waiting for it if another process holds it)."""
    files = RunFiles(params, method, seed)
    if (done := files.intact_results()) is not None:
        return done
    if (matching := REGISTRY[method].matched_to) is not None:
        run_method(params, matching[0], seed, distributions, progress, wait=True)
    waiting = f"{method} seed {seed}: waiting for the other process training this run ({files.path})"
    with holding(files.path, params.output_root, wait, waiting) as held:
        if not held:
            return None
        if (done := read_back_or_set_aside(files)) is not None:  # trained by whoever held the lock
            return done
        distributions = distributions if distributions is not None else load_distributions(params)
        check_against_data(params, distributions)
        return open_run(params, method, seed, distributions).run(progress)


if __name__ == "__main__":
    from .cli import train

    raise SystemExit(train())
