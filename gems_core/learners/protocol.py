"""What the kit calls on a learner: ``Learner`` on every one, each other protocol only where a learner opts in.

``MAML`` implements ``Learner`` and nothing else; a new method subclasses it and overrides what it changes,
then implements the protocols below that apply to it (see docs/contributing.md). The kit asks
``isinstance(learner, Protocol)`` (``issubclass`` for a class) and never sniffs a learner's outputs:

- ``Calibrated``: measures its inputs once before meta-training (BMP's standardised embedding).
- ``Projected``: corrects its meta-parameters after every optimiser step (MMSUP's sparsity bounds).
- ``Logged``: adds running sums of its choices to the training log (BMP's adaptation rates).
- ``Recorded``: reports learned quantities in every metrics row (MMSUP's sparsities).
- ``Probed``: chooses something per task (``Adaptation.choices``) and says what summaries read of it.
- ``Scored``: a ``Probed`` learner whose ``mechanism_score`` says, from the meta-test's probes, whether its
  choice varies and with the distribution (``mechanism``); the run keeps it in ``results.json``.
- ``Pictured``: a ``Probed`` learner that draws one task's choice (the explorer) and its run's summary,
  with the finding in words (the page). ``records_figure`` and ``records_finding`` are static: they
  read a run's ``results.json``, not a learner.

A learner keeps no state between calls: what it chose for a task comes back from ``meta_loss`` and
``predict`` (``Adaptation.choices``) and is read through ``probe``. ``registered`` checks a class at
registration: a Learner, and Probed wherever it is Scored or Pictured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from ..data.tasks import TaskBatch
from .maml import Adaptation

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Probes = dict[str, list[dict[str, torch.Tensor]]]
"""A meta-test's probes: per test dataset, one ``probe`` per evaluated batch (on the CPU)."""


@runtime_checkable
class Learner(Protocol):
    def meta_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]: ...
    def predict(self, batch: TaskBatch) -> tuple[torch.Tensor, Adaptation]: ...
    def evaluate(self, batch: TaskBatch) -> torch.Tensor: ...


@runtime_checkable
class Calibrated(Protocol):
    def calibration_tasks(self) -> int: ...  # tasks wanted once before meta-training (0: calibrated already)
    def calibrate(self, batch: TaskBatch) -> None: ...


@runtime_checkable
class Projected(Protocol):
    def after_update(self) -> None: ...  # after every optimiser step


@runtime_checkable
class Logged(Protocol):
    def step_sums(self, batch: TaskBatch, choices: dict, distributions: int) -> dict[str, torch.Tensor]: ...
    def interval_row(self, sums: dict[str, torch.Tensor], names: list[str]) -> dict[str, float]: ...


@runtime_checkable
class Recorded(Protocol):
    def train_record(self) -> dict[str, float]: ...  # learned quantities worth a metrics.csv column


@runtime_checkable
class Probed(Protocol):
    def probe(self, adaptation: Adaptation) -> dict[str, torch.Tensor]: ...  # per task, for summaries
    def summarize_probes(self, probes: Probes) -> dict: ...  # results.json -> records


@runtime_checkable
class Scored(Protocol):
    def mechanism_score(self, probes: Probes) -> dict: ...  # results.json -> mechanism


@runtime_checkable
class Pictured(Protocol):
    def draw_choice(self, ax: Axes, choices: dict[str, torch.Tensor]) -> None: ...  # one task's probe
    @staticmethod
    def records_figure(records: dict[str, Any]) -> Figure: ...  # a run's results.json -> records
    @staticmethod
    def records_finding(records: dict[str, Any], scores: dict) -> str: ...  # ... and -> mechanism, in words


def registered(learner: type) -> type:
    """``learner``, after checking it keeps the protocols' contract (raises TypeError naming the gap)."""
    if not issubclass(learner, Learner):
        raise TypeError(f"{learner.__name__} is not a Learner: it needs meta_loss, predict and evaluate")
    for kind in (Scored, Pictured):
        if issubclass(learner, kind) and not issubclass(learner, Probed):
            raise TypeError(f"{learner.__name__} is {kind.__name__} but not Probed: it must say what it chose")
    return learner
