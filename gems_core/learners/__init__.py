"""Meta-learners: MAML (and so Multi-MAML), BMP and MMSUP, all functional and batched over tasks."""
from .maml import MAML, accuracy, task_losses

LEARNERS = {"maml": MAML, "multi_maml": MAML}

__all__ = ["LEARNERS", "MAML", "accuracy", "task_losses"]
