"""Meta-learners (MAML, BMP, MMSUP and the control FixedLayers), functional and batched over tasks; the
protocols the kit calls them through (``Learner``, and those a learner opts into); and the registry of
the kit's methods built from them (``METHODS``; ``ROWS``: every name a results row carries, the
test-time controls included)."""

from .bmp import BMP
from .fixed_layers import FixedLayers
from .maml import MAML, Adaptation, accuracy, task_losses
from .methods import (
    ABLATED,
    BASELINE,
    BEATS_MAML,
    CHOICE_HELPS,
    FREEZE_EXPLAINS,
    LAYER_CHOOSER,
    METHODS,
    PAPER_BASELINES,
    QUESTIONS,
    ROWS,
    SUBNETWORK_MASKER,
    TESTED_ON,
    Method,
    shown_with,
)
from .mmsup import MMSUP
from .protocol import Calibrated, Learner, Logged, Pictured, Probed, Probes, Projected, Recorded, Scored, registered

__all__ = [
    "ABLATED",
    "BASELINE",
    "LAYER_CHOOSER",
    "SUBNETWORK_MASKER",
    "Adaptation",
    "BMP",
    "BEATS_MAML",
    "Calibrated",
    "CHOICE_HELPS",
    "FREEZE_EXPLAINS",
    "FixedLayers",
    "Learner",
    "Logged",
    "Pictured",
    "Probed",
    "Probes",
    "Projected",
    "Recorded",
    "registered",
    "MAML",
    "METHODS",
    "PAPER_BASELINES",
    "MMSUP",
    "QUESTIONS",
    "Method",
    "ROWS",
    "Scored",
    "TESTED_ON",
    "accuracy",
    "shown_with",
    "task_losses",
]
