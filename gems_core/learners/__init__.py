"""Meta-learners: MAML (and so Multi-MAML), BMP and MMSUP, all functional and batched over tasks."""
from .bmp import BMP
from .maml import MAML, accuracy, task_losses
from .mmsup import MMSUP

LEARNERS = {"maml": MAML, "multi_maml": MAML, "bmp": BMP, "mmsup": MMSUP}

__all__ = ["BMP", "LEARNERS", "MAML", "MMSUP", "accuracy", "task_losses"]
