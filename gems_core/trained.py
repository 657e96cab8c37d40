"""A trained run read back from its folder: its learners with the weights of its newest intact checkpoint.

``load_learner(folder)`` builds no training run: no optimiser, task stream or image tensors, no change to
torch's global settings, and nothing in the folder moves (a viewer; a run that resumes sets damaged
files aside itself). The folder's ``params.json`` says what the run is, and is checked to be that run's
(``runs.RunFiles``) before any weights are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoints, runs
from .data import Distribution, FixedTasks, SplitImages
from .evaluation import fixed_task_sets
from .learners import MAML, METHODS
from .params import Config, validate

IDENTITY = ("method", "seed", "run_id", "params_hash")  # what params.json adds to the parameters


@dataclass
class Trained:
    """A trained run's learners (one per member: Multi-MAML has one per distribution), ready to adapt."""

    params: Config
    method: str
    seed: int
    folder: Path
    learners: list[tuple[list[int], MAML]]  # (the distributions a learner is tested on, the learner)
    _tasks: dict[int, FixedTasks] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return f"{self.method} seed {self.seed}"

    def learner_for(self, distribution: int) -> MAML:
        return next(learner for group, learner in self.learners if distribution in group)

    def test_tasks(self, distributions: list[Distribution]) -> dict[int, FixedTasks]:
        """The run's fixed test tasks (those its meta-test met), from ``distributions`` (its profile's, loaded)."""
        if not self._tasks:
            p = self.params
            images = SplitImages([d.splits["test"] for d in distributions], torch.device("cpu"), p.shots + p.queries)
            self._tasks.update(fixed_task_sets(p, images, "test", len(distributions)))
        return self._tasks


def recorded_run(folder: Path) -> tuple[Config, str, int]:
    """(parameters, method, seed) of the run in ``folder``, from its params.json, checked to be that run's."""
    path = Path(folder) / runs.PARAMS
    if not path.exists():
        raise FileNotFoundError(f"{folder} holds no {runs.PARAMS}: it is not a run folder, or the run never started")
    recorded = runs.read_json_object(path)
    try:
        params = validate({k: v for k, v in recorded.items() if k not in IDENTITY})
        method, seed = recorded["method"], int(recorded["seed"])
    except (KeyError, TypeError, ValueError) as exc:
        raise runs.RunDamaged(path, f"does not describe a run this kit wrote ({exc})") from None
    if method not in METHODS:
        raise runs.RunDamaged(path, f"names method {method!r}, not one of {list(METHODS)}")
    runs.RunFiles(params, method, seed, Path(folder)).recorded_params()  # RunDamaged unless this run's own
    return params, method, seed


def load_learner(folder: str | Path, device: str | torch.device = "cpu") -> Trained:
    """The learners of the run in ``folder`` with its newest intact checkpoint's weights, on ``device``.

    Raises FileNotFoundError if the run has no checkpoint yet, ``checkpoints.CheckpointUnreadable`` if every
    one is damaged or another run's, and ``runs.RunDamaged`` if its params.json is not its own.

    Example:
        >>> trained = load_learner("outputs/runs/bmp-seed21-f1d00e99")
        >>> logits, adaptation = trained.learner_for(0).predict(batch)
    """
    folder = Path(folder)
    return load_run(*recorded_run(folder), folder=folder, device=device)


def load_run(
    params: Config, method: str, seed: int, folder: Path | None = None, device: str | torch.device = "cpu"
) -> Trained:
    """``load_learner`` for a run known by its parameters, method and seed (its folder in the run store, or
    ``folder``): a run whose params.json is missing or damaged can still be viewed."""
    files = runs.RunFiles(params, method, seed, folder)
    folder = files.path
    ckpt, refused = checkpoints.load(folder, files.foreign_checkpoint)
    if ckpt is None:
        if refused:
            raise checkpoints.none_usable(folder, refused)
        raise FileNotFoundError(f"no checkpoint for {method} seed {seed} in {folder}; train it first")
    spec = METHODS[method]
    groups = spec.member_groups(len(params.distributions))
    matched = runs.matched_options(params, method, seed)
    learners = [(group, spec.build(params, seed, matched)) for group in groups]
    with checkpoints.restoring(ckpt, folder, method, len(learners)) as saved:
        for (_, learner), state in zip(learners, saved):
            learner.load_state_dict(state["learner"])
    for _, learner in learners:
        learner.to(device)
    return Trained(params, method, seed, folder, learners)
