"""A profile's evidence, read from its runs once: what the page and notebook 06 are drawn from.

Each reading checks every run's files (identity, plausibility), so the page and the report notebook
gather once, top to bottom, and pass the one ``Gathered`` to every part that shows it.

Example:
    >>> gathered = gather(params, Path("outputs/demo"))
    >>> gathered.compared[["method", "against", "verdict"]]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import claims, results
from .params import Config
from .plan import Planned, plan, states


@dataclass(frozen=True)
class Gathered:
    """A profile's results table (``results.gather``), paired comparisons (``claims.comparisons``),
    mechanism scores (``claims.mechanism_scores``) and planned runs with their states (``plan.states``)."""

    params: Config
    table: pd.DataFrame
    compared: pd.DataFrame
    scores: pd.DataFrame
    planned: list[Planned]
    states: list[dict]

    @property
    def complete(self) -> pd.DataFrame:
        return self.table[self.table["status"] == "complete"]

    def evidence(self) -> tuple[list[str], list[str]]:
        """``claims.evidence`` of what was gathered: the answers, then the detail."""
        return claims.evidence(self.params, self.table, self.compared, self.scores)


def gather(params: Config, folder: Path) -> Gathered:
    """Read the profile's runs once (``folder``: ``outputs/<profile>``, where the results table is written)."""
    planned = plan(params)
    return Gathered(
        params,
        results.gather(Path(folder), params),
        claims.comparisons(params),
        claims.mechanism_scores(params),
        planned,
        states(planned),
    )
