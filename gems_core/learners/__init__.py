"""Meta-learners (MAML, BMP, MMSUP and the control FixedLayers), functional and batched over tasks, and
the registry of the kit's methods built from them (``METHODS``)."""

from .bmp import BMP
from .fixed_layers import FixedLayers
from .maml import MAML, accuracy, task_losses
from .methods import METHODS, Method
from .mmsup import MMSUP

__all__ = ["BMP", "FixedLayers", "MAML", "METHODS", "MMSUP", "Method", "accuracy", "task_losses"]
