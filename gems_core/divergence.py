"""When a run has diverged: a non-finite loss, meta-gradient or weight (flags every meta-update adds to its
member's running sums on the device), or a finite training loss that has exploded."""

from __future__ import annotations

import math

from .members import NONFINITE, Member


class Diverged(Exception):
    """A non-finite loss, meta-gradient or weight, or an exploding loss: the run stops and records it as
    its outcome."""

    def __init__(self, iteration: int, quantities: list[str], reason: str | None = None):
        super().__init__(reason or f"non-finite {', '.join(quantities)} at iteration {iteration}")
        self.iteration, self.quantities = iteration, quantities


class DivergenceWatch:
    """Reads the members' running sums (one device sync) and raises ``Diverged``; ``loss_explosion_factor``
    times ln(ways), the cross-entropy of a chance-level guess, bounds the mean training loss (0: no bound)."""

    def __init__(self, loss_explosion_factor: float, ways: int):
        self.factor, self.ways = loss_explosion_factor, ways
        self._checked = (0.0, 0)  # training-loss sum and steps of this metrics interval at the last check

    def new_interval(self) -> None:
        """The running sums were read and reset (a metrics row was written)."""
        self._checked = (0.0, 0)

    def check(self, iteration: int, interval_steps: int, members: list[Member]) -> None:
        self.check_finite(iteration, members)
        self.check_loss(iteration, interval_steps, members)

    @staticmethod
    def check_finite(iteration: int, members: list[Member]) -> None:
        """Raise Diverged if a meta-update of this interval produced a non-finite loss, meta-gradient or
        weight, naming the iteration and what was non-finite there. Non-finite weights stay non-finite,
        so every iteration from the first bad one on is bad: it follows from their count."""
        bad = [(int(m.sums["nonfinite_steps"]), m.sums["nonfinite_first"].cpu()) for m in members]
        bad = [(steps, flags) for steps, flags in bad if steps]
        if not bad:
            return
        steps, flags = max(bad, key=lambda b: b[0])  # the member that broke first
        raise Diverged(iteration - steps + 1, [q for q, flag in zip(NONFINITE, flags) if flag])

    def check_loss(self, iteration: int, interval_steps: int, members: list[Member]) -> None:
        """Raise Diverged if the mean training loss since the last check exceeds the bound: a finite loss
        that has exploded is divergence too."""
        total = sum(float(m.sums["loss"]) for m in members if "loss" in m.sums)
        steps = interval_steps * len(members)
        (checked_total, checked_steps), self._checked = self._checked, (total, steps)
        if not self.factor or steps <= checked_steps:
            return
        mean, limit = (total - checked_total) / (steps - checked_steps), self.factor * math.log(self.ways)
        if mean > limit:
            first = iteration - (steps - checked_steps) // len(members) + 1
            raise Diverged(
                iteration,
                ["loss"],
                f"mean training loss {mean:.4g} over iterations {first}-{iteration} exceeds "
                f"loss_explosion_factor {self.factor:g} x ln({self.ways}) = {limit:.4g} "
                f"(the loss of a chance-level guess) at iteration {iteration}",
            )
