"""What the training loop, the meta-test and the notebooks call on a learner: nothing else.

``MAML`` implements every method with the plain-MAML answer (no choices, nothing to probe or freeze),
so a new method subclasses it and overrides only what it changes; see docs/contributing.md. A learner
that must measure its inputs once before meta-training (BMP's standardised embedding) is also
``Calibrated``; the loop asks only those. A learner with a per-task choice of its own is also ``Scored``:
its ``mechanism_score`` says, from the meta-test's probes, whether that choice varies and with the
distribution (``mechanism``), and the run keeps it in ``results.json`` → ``mechanism``. A learner keeps
no state between calls: what it chose for a task comes back from ``meta_loss`` and ``predict``
(``Adaptation.choices``) and is read through ``probe``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ..data.tasks import TaskBatch
from .maml import Adaptation


@runtime_checkable
class Learner(Protocol):
    def meta_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]: ...
    def after_update(self) -> None: ...  # after every optimiser step
    def step_sums(self, batch: TaskBatch, choices: dict, distributions: int) -> dict[str, torch.Tensor]: ...
    def interval_row(self, sums: dict[str, torch.Tensor], names: list[str]) -> dict[str, float]: ...
    def train_record(self) -> dict[str, float]: ...
    def predict(self, batch: TaskBatch) -> tuple[torch.Tensor, Adaptation]: ...
    def probe(self, adaptation: Adaptation) -> dict[str, torch.Tensor]: ...
    def summarize_probes(self, probes: dict[str, list[dict]]) -> dict: ...


@runtime_checkable
class Scored(Protocol):
    def mechanism_score(self, probes: dict[str, list[dict]]) -> dict: ...  # ``mechanism``: its per-task choice


@runtime_checkable
class Calibrated(Protocol):
    def calibration_tasks(self) -> int: ...  # tasks wanted once before meta-training (0: calibrated already)
    def calibrate(self, batch: TaskBatch) -> None: ...
