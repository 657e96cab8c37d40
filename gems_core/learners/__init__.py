"""Meta-learners (MAML, BMP, MMSUP and the control FixedLayers), functional and batched over tasks, and
the registry of the kit's methods built from them (``METHODS``; ``ROWS``: every name a results row
carries, the frozen-mask controls included)."""

from .bmp import BMP
from .fixed_layers import FixedLayers
from .maml import MAML, accuracy, task_losses
from .methods import FROZEN_MASK_OF, METHODS, ROWS, Method
from .mmsup import MMSUP

__all__ = [
    "BMP",
    "FROZEN_MASK_OF",
    "FixedLayers",
    "MAML",
    "METHODS",
    "MMSUP",
    "Method",
    "ROWS",
    "accuracy",
    "task_losses",
]
