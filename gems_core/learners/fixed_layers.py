"""Fixed layers: MAML whose inner loop adapts only named layers, the same ones for every task.

The control for BMP's per-task layer choice: if BMP beats MAML only as much as some fixed freeze does,
its gain is the freeze, not the choice. ``adapt_layers: [head]`` is ANIL (Raghu et al., 2020: only the
head adapts); ``[conv3, conv4, head]`` freezes the first two blocks. Frozen layers keep their
meta-learned value inside a task and are still meta-learned in the outer loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..models import LAYER_LABELS, Params
from .maml import MAML

if TYPE_CHECKING:  # the parameters module imports the learners
    from ..params import Config


class FixedLayers(MAML):
    """MAML that adapts only the layers in ``adapt_layers`` (labels of ``models.LAYER_LABELS``).

    Arguments:
        *args, **kwargs: as ``MAML``.
        adapt_layers: the layers every task adapts in every inner step.

    Example:
        >>> anil = FixedLayers(ways=5, image_size=84, adapt_layers=["head"])
        >>> loss, accuracy, _ = anil.meta_loss(sampler.sample(5))
    """

    def __init__(self, *args, adapt_layers: list[str] = ("head",), **kwargs):
        super().__init__(*args, **kwargs)
        unknown = sorted(set(adapt_layers) - set(LAYER_LABELS))
        if unknown or not adapt_layers:
            raise ValueError(f"adapt_layers {list(adapt_layers)} must name some of {LAYER_LABELS}")
        self.adapted = {
            name for label, names in zip(LAYER_LABELS, self.layers) if label in adapt_layers for name in names
        }

    @staticmethod
    def options(params: Config) -> dict:
        return {"adapt_layers": params.adapt_layers}

    def inner_update(self, step: int, params: Params, grads: Params) -> tuple[Params, dict]:
        """Adapted layers take the gradient step; the others keep their value. Nothing is chosen per task."""
        return {k: params[k] - self.fast_lr * grads[k] if k in self.adapted else params[k] for k in params}, {}
