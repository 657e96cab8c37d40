"""The kit's methods, registered once: every list of methods (parameters, tables, checks) comes from here.

A method is a learner class and how a run of it divides the distributions among learners ("members"):
MAML, BMP and MMSUP train one learner on the mixture of every distribution. Multi-MAML, the paper's
baseline with a dataset oracle, is plain MAML with one member per distribution, each trained on its own
distribution's tasks alone with the full iteration budget, its own optimiser and sampler, and tested on
its own distribution's tasks (the dataset id is an oracle GEMS does not need); its training time is the
sum of its members'.

A method with a per-task mask also names its controls and the comparisons the page makes, each under the
question it answers (``QUESTIONS``): test-time controls are the same trained weights tested with the
mechanism taken away (``test_controls``: rows evaluated in the method's run folder), trained controls are
methods of their own (``control=True``, run where a profile's ``methods`` names them). A trained control
may be matched to another method's run of the same seed (``matched_to``): that run is trained first, and
its results give the control's learner options (``fixed_layers_matched`` adapts, per inner step, the
layers BMP chose most).

Adding a method is a learner module and one line here (see docs/contributing.md).

Example:
    >>> METHODS["multi_maml"].member_groups(2)   # one MAML on distribution 0, another on distribution 1
    [[0], [1]]
    >>> METHODS["maml"].member_groups(2)         # one MAML on the mixture
    [[0, 1]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .bmp import BMP
from .fixed_layers import FixedLayers
from .maml import MAML
from .mmsup import MMSUP
from .protocol import registered

BEATS_MAML = "Does it beat MAML?"
CHOICE_HELPS = "Does choosing per task help?"
FREEZE_EXPLAINS = "Does a fixed freeze or mask explain it?"
QUESTIONS = (CHOICE_HELPS, FREEZE_EXPLAINS, BEATS_MAML)
"""The questions the page answers, in its order: each comparison of ``Method.compared_with`` names one."""

TestControl = Callable[..., tuple[MAML, dict]]
"""learner.<control>(validation probes, test probes, seed) -> (a learner sharing the weights, what it used)."""

Matching = tuple[str, Callable[[dict], dict]]
"""(the method a trained control is matched to, its run's results -> the control's learner options)."""


def bmp_favourite_pattern(result: dict) -> dict:
    """``fixed_layers_matched``'s options from BMP's run: the layer mask per inner step most of its
    validation tasks chose (its ``bmp_frozen_mask`` control's; never chosen on test tasks)."""
    return {"adapt_pattern": result["controls"]["bmp_frozen_mask"]["used"]["layer_masks"]}


@dataclass(frozen=True)
class Method:
    """A method: its learner class, whether a run trains one learner per distribution, whether it is one
    of the paper's (run by default and shown in Table 2; any other method runs only where a profile's
    ``methods`` names it), whether it is a control, fixed learner options (a trained control's
    switch), the method whose run of the same seed it is matched to, the test-time controls evaluated on
    its weights (row name -> learner method building the control) and the rows it is compared with, each
    under its question (MAML, under ``BEATS_MAML``, is added for every row by ``claims``)."""

    learner: type[MAML]
    per_distribution: bool = False
    paper: bool = False  # one of the supplement's Table 2 methods: run by default, a column of Table 2
    control: bool = False
    options: tuple[tuple[str, object], ...] = ()
    matched_to: Matching | None = None
    test_controls: tuple[tuple[str, TestControl], ...] = ()
    compared_with: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        registered(self.learner)

    def member_groups(self, n_distributions: int) -> list[list[int]]:
        """The distributions each member of a run trains on (and is tested on)."""
        if self.per_distribution:
            return [[i] for i in range(n_distributions)]
        return [list(range(n_distributions))]

    def build(self, params, seed: int, matched: dict | None = None) -> MAML:
        """The learner a run of this method with ``params`` and ``seed`` trains (``matched``: the options
        read from the run it is matched to)."""
        return self.learner.from_params(params, seed=seed, **dict(self.options), **(matched or {}))


METHODS: dict[str, Method] = {  # the supplement's Table 2 methods in its order, then the controls
    "maml": Method(MAML, paper=True),
    "multi_maml": Method(MAML, per_distribution=True, paper=True),
    "bmp": Method(
        BMP,
        paper=True,
        test_controls=(
            ("bmp_frozen_mask", BMP.frozen),  # the pattern most validation tasks chose, for every task
            ("bmp_shuffled_masks", BMP.shuffled),  # the test tasks' own masks, dealt to other tasks
            ("bmp_random_masks", BMP.at_random),  # drawn at the test tasks' per-layer, per-step frequencies
        ),
        compared_with=(
            ("bmp_shuffled_masks", CHOICE_HELPS),
            ("bmp_random_masks", CHOICE_HELPS),
            ("bmp_frozen_mask", FREEZE_EXPLAINS),
            ("fixed_layers", FREEZE_EXPLAINS),
            ("fixed_layers_matched", FREEZE_EXPLAINS),
        ),
    ),
    "mmsup": Method(
        MMSUP,
        paper=True,
        test_controls=(
            ("mmsup_frozen_mask", MMSUP.frozen),  # the initial weights' mask, for every task
            ("mmsup_random_mask", MMSUP.random_mask),  # a random mask at each layer's learned sparsity
        ),
        compared_with=(
            ("mmsup_random_mask", CHOICE_HELPS),
            ("mmsup_frozen_mask", FREEZE_EXPLAINS),
            ("mmsup_static", FREEZE_EXPLAINS),
        ),
    ),
    # controls: what a method's gain would be without its mechanism
    "fixed_layers": Method(FixedLayers, control=True),  # BMP's: the same layers adapted for every task
    "fixed_layers_matched": Method(  # BMP's: per inner step, the layers BMP chose most, for every task
        FixedLayers, control=True, matched_to=("bmp", bmp_favourite_pattern)
    ),
    "mmsup_static": Method(MMSUP, control=True, options=(("static_mask", True),)),  # MMSUP's: one mask, trained
}

BASELINE = "maml"
"""The method every other is set against (``claims``: does it beat MAML?)."""
PAPER_BASELINES = tuple(name for name, m in METHODS.items() if m.paper and not m.compared_with)
"""The paper's methods without a mechanism to test (MAML, Multi-MAML): notebook 01's, and beside each
method's own in its notebook."""
LAYER_CHOOSER = "bmp"
"""The method whose per-task layer choice notebook 02 analyses: its embedding forms (the plan's
``bmp_embedding`` runs), its layers over training and its figure on the page."""
SUBNETWORK_MASKER = "mmsup"
"""The method whose per-task subnetworks notebook 03 analyses: its sparsity over training and over the
ablation grid, the convergence trace (supplement C.1) and its figure on the page."""
ABLATED = (LAYER_CHOOSER, SUBNETWORK_MASKER)
"""The methods swept over the supplement's Table 1 grids by default (parameter ``ablation_methods``)."""


def shown_with(method: str) -> list[str]:
    """The rows a method's notebook sets beside it, in table order: the paper's baselines, the method, and
    every row it is compared with (its test-time and trained controls)."""
    return [*PAPER_BASELINES, method, *(row for row, _ in METHODS[method].compared_with)]


TESTED_ON: dict[str, str] = {row: name for name, m in METHODS.items() for row, _ in m.test_controls}
"""Each test-time control's row name -> the method whose runs it evaluates."""

ROWS: tuple[str, ...] = (*METHODS, *TESTED_ON)
"""Every name a results row can carry, in the order tables show them."""
