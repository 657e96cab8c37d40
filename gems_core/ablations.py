"""The supplement's Table 1 grid: adaptation steps, fast learning rate and fixed MMSUP sparsity.

Each grid point is an ordinary planned run (``plan.ablation_grid``: same folders, resumable, read back when
complete) whose parameters differ from the profile's in one setting and in ``ablation_iterations``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from . import io, results
from .data import Distribution
from .params import Config
from .plan import ablation_grid as plan_grid
from .plan import plan


def grid(params: Config) -> pd.DataFrame:
    """Per setting and method, the values the profile's grid tries (no rows when it asks for none)."""
    points = pd.DataFrame([(s, v, m) for s, v, m, _ in plan_grid(params)], columns=["setting", "value", "method"])
    return points.groupby(["setting", "method"])["value"].apply(list).to_frame("grid")


def run_grid(params: Config, distributions: list[Distribution]) -> pd.DataFrame:
    """Run every planned grid point and seed; write and return ``outputs/<profile>/ablations.csv``."""
    rows = []
    for run in tqdm(plan(params, ("ablation",)), desc="ablation runs", unit="run"):
        setting, value = run.point
        rows += [{"setting": setting, "value": value, **row} for row in results.result_rows(run.execute(distributions))]
    table = pd.DataFrame(rows, columns=["setting", "value", *results.COLUMNS, "run_id"])
    io.write_text(Path(params.output_root) / params.profile / "ablations.csv", table.to_csv(index=False))
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, method, value, test dataset): mean accuracy over the seeds that completed, its spread
    over them, the mean 95% CI over test tasks, the number of seeds and of diverged seeds;
    ``plots.ablation_curves`` reads these columns."""
    if "status" not in table:
        table = table.assign(status="complete")
    return (
        table.groupby(["setting", "method", "value", "test_dataset"])
        .agg(
            accuracy=("accuracy", "mean"),
            accuracy_std=("accuracy", "std"),
            ci95=("ci95", "mean"),
            seeds=("seed", "nunique"),
            diverged=("status", lambda s: int((s == "diverged").sum())),
        )
        .reset_index()
    )
