"""Meta-learners (MAML, BMP, MMSUP and the control FixedLayers), functional and batched over tasks; the
protocol the kit calls them through (``Learner``); and the registry of the kit's methods built from them
(``METHODS``; ``ROWS``: every name a results row carries, the frozen-mask controls included)."""

from .bmp import BMP
from .fixed_layers import FixedLayers
from .maml import MAML, Adaptation, accuracy, task_losses
from .methods import FROZEN_MASK_OF, METHODS, ROWS, Method
from .mmsup import MMSUP
from .protocol import Learner

__all__ = [
    "Adaptation",
    "BMP",
    "FROZEN_MASK_OF",
    "FixedLayers",
    "Learner",
    "MAML",
    "METHODS",
    "MMSUP",
    "Method",
    "ROWS",
    "accuracy",
    "task_losses",
]
