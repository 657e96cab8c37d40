"""The supplement's Table 1 grid: adaptation steps, fast learning rate and fixed MMSUP sparsity.

Each grid point is an ordinary run (same folders, resumable, read back when complete) whose
parameters differ from the profile's in one setting and in ``ablation_iterations``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from . import io, results
from .data import Distribution
from .training import run_method


def grid(params: dict) -> list[tuple[str, float, str, dict]]:
    """(setting, value, method, run parameters) for every point of the profile's ablation grid."""
    base = {**params, "iterations": params["ablation_iterations"]}
    points = []
    for method in params["ablation_methods"]:
        points += [("adaptation_steps", v, method, {**base, "adaptation_steps": v})
                   for v in params["ablation_adaptation_steps"]]
        points += [("fast_lr", v, method, {**base, "fast_lr": float(v)}) for v in params["ablation_fast_lr"]]
    points += [("sparsity", v, "mmsup", {**base, "mmsup_sparsity_init": float(v), "mmsup_learn_sparsity": False})
               for v in params["ablation_sparsity"]]
    return points


def run_grid(params: dict, distributions: list[Distribution]) -> pd.DataFrame:
    """Run every grid point and seed; write and return ``outputs/<profile>/ablations.csv``."""
    rows = []
    jobs = [(point, seed) for point in grid(params) for seed in params["seeds"]]
    for (setting, value, method, run_params), seed in tqdm(jobs, desc="ablation runs", unit="run"):
        result = run_method(run_params, method, seed, distributions)
        rows += [{"setting": setting, "value": value, **row}
                 for row in results.result_rows(result)]
    table = pd.DataFrame(rows)
    io.write_text(Path(params["output_root"]) / params["profile"] / "ablations.csv", table.to_csv(index=False))
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, method, value, test dataset): mean accuracy over the seeds that completed, its spread
    over them, the mean 95% CI over test tasks, the number of seeds and of diverged seeds;
    ``plots.ablation_curves`` reads these columns."""
    if "status" not in table:
        table = table.assign(status="complete")
    return table.groupby(["setting", "method", "value", "test_dataset"]).agg(
        accuracy=("accuracy", "mean"), std_over_seeds=("accuracy", "std"), ci95=("ci95", "mean"),
        seeds=("seed", "nunique"), diverged=("status", lambda s: int((s == "diverged").sum()))).reset_index()
