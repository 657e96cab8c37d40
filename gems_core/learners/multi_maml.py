"""Multi-MAML, the paper's baseline with a dataset oracle: one independent MAML per distribution.

Each member is an ordinary ``MAML`` trained on its own distribution's tasks alone, with the full
iteration budget and its own optimiser and task sampler; at meta-test a task goes to the member of its
own distribution (the dataset id is an oracle GEMS does not need). Its training time is the sum of its
members'. A run of any method is a list of members (``gems_core.training.Run``); ``member_groups`` says
which distributions each member trains on, which is all that makes Multi-MAML differ from MAML.

Example:
    >>> member_groups("multi_maml", 2)   # one MAML on distribution 0, another on distribution 1
    [[0], [1]]
    >>> member_groups("maml", 2)         # one MAML on the mixture
    [[0, 1]]
"""
from __future__ import annotations

from .maml import MAML

MultiMAML = MAML  # the learner class of each member


def member_groups(method: str, n_distributions: int) -> list[list[int]]:
    """The distributions each member of a run of ``method`` trains on (and is tested on)."""
    if method == "multi_maml":
        return [[i] for i in range(n_distributions)]
    return [list(range(n_distributions))]
