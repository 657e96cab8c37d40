"""Fixed layers: MAML whose inner loop adapts only named layers, the same ones for every task.

The control for BMP's per-task layer choice: if BMP beats MAML only as much as some fixed freeze does,
its gain is the freeze, not the choice. ``adapt_layers: [head]`` is ANIL (Raghu et al., 2020: only the
head adapts); ``[conv3, conv4, head]`` freezes the first two blocks. Frozen layers keep their
meta-learned value inside a task and are still meta-learned in the outer loop.

``adapt_pattern`` sets the layers per inner step instead: ``fixed_layers_matched`` trains with the
pattern BMP's run of the same seed chose most on its validation tasks (``bmp_frozen_mask``), the fixed
freeze matched to BMP, so BMP against it asks whether choosing per task beats BMP's own favourite choice
trained as a freeze.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..models import LAYER_LABELS, Params
from ..schema import setting
from .maml import MAML

if TYPE_CHECKING:  # the parameters module imports the learners
    from ..params import Config


def _layer_labels(v) -> str | None:
    ok = v and all(label in LAYER_LABELS for label in v) and len(set(v)) == len(v)
    return None if ok else f"must name distinct layers of {LAYER_LABELS}, at least one"


@dataclass(frozen=True, kw_only=True)
class FixedLayersSettings:
    """The fixed_layers control's parameter (``Config`` inherits it; ``params.SCHEMA`` collects it)."""

    adapt_layers: tuple[str, ...] = setting(
        list,
        ["head"],
        "layers the fixed_layers control adapts in every task's inner loop ([head] is ANIL), of "
        + ", ".join(LAYER_LABELS),
        _layer_labels,
    )


class FixedLayers(MAML):
    """MAML that adapts only the layers in ``adapt_layers`` (labels of ``models.LAYER_LABELS``).

    Arguments:
        *args, **kwargs: as ``MAML``.
        adapt_layers: the layers every task adapts in every inner step.
        adapt_pattern: instead, per inner step, 1 or 0 per layer (``[steps][layers]``): whether every task
            adapts that layer in that step.

    Example:
        >>> anil = FixedLayers(ways=5, image_size=84, adapt_layers=["head"])
        >>> loss, accuracy, _ = anil.meta_loss(sampler.sample(5))
    """

    def __init__(
        self, *args, adapt_layers: Sequence[str] = ("head",), adapt_pattern: list[list[float]] | None = None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        unknown = sorted(set(adapt_layers) - set(LAYER_LABELS))
        if unknown or not adapt_layers:
            raise ValueError(f"adapt_layers {list(adapt_layers)} must name some of {LAYER_LABELS}")
        if adapt_pattern is None:
            adapt_pattern = [[label in adapt_layers for label in LAYER_LABELS]] * self.steps
        shape_ok = len(adapt_pattern) == self.steps and all(len(row) == len(LAYER_LABELS) for row in adapt_pattern)
        if not shape_ok or any(v not in (0, 1) for row in adapt_pattern for v in row):
            raise ValueError(f"adapt_pattern must be {self.steps} rows (inner steps) of {len(LAYER_LABELS)} 0/1 values")
        self.adapted = [
            {name for adapt, names in zip(row, self.layers) if adapt for name in names} for row in adapt_pattern
        ]

    @staticmethod
    def options(params: Config) -> dict:
        return {"adapt_layers": params.adapt_layers}

    def inner_update(self, step: int, params: Params, grads: Params) -> tuple[Params, dict]:
        """Adapted layers take the gradient step; the others keep their value. Nothing is chosen per task."""
        adapted = self.adapted[step]
        return {k: params[k] - self.fast_lr * grads[k] if k in adapted else params[k] for k in params}, {}
