"""Meta-learners (MAML, BMP, MMSUP), functional and batched over tasks, and the registry of the kit's
methods built from them (``METHODS``)."""

from .bmp import BMP
from .maml import MAML, accuracy, task_losses
from .methods import METHODS, Method
from .mmsup import MMSUP

__all__ = ["BMP", "MAML", "METHODS", "MMSUP", "Method", "accuracy", "task_losses"]
