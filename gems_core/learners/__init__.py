"""Meta-learners: MAML, Multi-MAML (one MAML per distribution), BMP and MMSUP, functional and batched over tasks."""
from .bmp import BMP
from .maml import MAML, accuracy, task_losses
from .mmsup import MMSUP
from .multi_maml import MultiMAML, member_groups

LEARNERS = {"maml": MAML, "multi_maml": MultiMAML, "bmp": BMP, "mmsup": MMSUP}  # the four methods of Table 2

__all__ = ["BMP", "LEARNERS", "MAML", "MMSUP", "MultiMAML", "accuracy", "member_groups", "task_losses"]
