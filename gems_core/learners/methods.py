"""The kit's methods, registered once: every list of methods (parameters, tables, checks) comes from here.

A method is a learner class and how a run of it divides the distributions among learners ("members"):
MAML, BMP and MMSUP train one learner on the mixture of every distribution. Multi-MAML, the paper's
baseline with a dataset oracle, is plain MAML with one member per distribution, each trained on its own
distribution's tasks alone with the full iteration budget, its own optimiser and sampler, and tested on
its own distribution's tasks (the dataset id is an oracle GEMS does not need); its training time is the
sum of its members'.

Adding a method is a learner module and one line here (see docs/contributing.md).

Example:
    >>> METHODS["multi_maml"].member_groups(2)   # one MAML on distribution 0, another on distribution 1
    [[0], [1]]
    >>> METHODS["maml"].member_groups(2)         # one MAML on the mixture
    [[0, 1]]
"""

from __future__ import annotations

from dataclasses import dataclass

from .bmp import BMP
from .fixed_layers import FixedLayers
from .maml import MAML
from .mmsup import MMSUP


@dataclass(frozen=True)
class Method:
    """A method: its learner class, whether a run trains one learner per distribution, whether it is a
    control (run where a profile asks for it, not by default), and the name its frozen-mask control's
    rows take: every run of a method with a per-task mask is also tested with the mask frozen
    (``learner.frozen``), the same trained weights without the per-task choice."""

    learner: type[MAML]
    per_distribution: bool = False
    control: bool = False
    frozen_mask: str | None = None  # the row name of its frozen-mask control (an evaluation of its runs)

    def member_groups(self, n_distributions: int) -> list[list[int]]:
        """The distributions each member of a run trains on (and is tested on)."""
        if self.per_distribution:
            return [[i] for i in range(n_distributions)]
        return [list(range(n_distributions))]


METHODS: dict[str, Method] = {  # the supplement's Table 2 methods in its order, then the controls
    "maml": Method(MAML),
    "multi_maml": Method(MAML, per_distribution=True),
    "bmp": Method(BMP, frozen_mask="bmp_frozen_mask"),
    "mmsup": Method(MMSUP, frozen_mask="mmsup_frozen_mask"),
    # controls: what a method's gain would be without its mechanism
    "fixed_layers": Method(FixedLayers, control=True),  # BMP's control: the same layers adapted for every task
}

FROZEN_MASK_OF: dict[str, str] = {m.frozen_mask: name for name, m in METHODS.items() if m.frozen_mask}
"""Each frozen-mask control's row name -> the method whose runs it evaluates."""

ROWS: tuple[str, ...] = (*METHODS, *FROZEN_MASK_OF)
"""Every name a results row can carry, in the order tables show them."""
