"""Results of a profile: its main runs (each method and seed at the profile's own parameters; ablation
runs are gathered separately) read back from their folders into ``outputs/<profile>/results.csv``."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import io
from .training import run_id

COLUMNS = ["method", "train_datasets", "test_dataset", "seed", "accuracy", "ci95", "train_seconds", "iterations"]


def read_runs(profile_dir: Path, params: dict) -> list[dict]:
    """results.json of every complete main run of the profile, with its run id."""
    runs = []
    for method in params["methods"]:
        for seed in params["seeds"]:
            path = Path(profile_dir) / "runs" / run_id(params, method, seed) / "results.json"
            if path.exists():
                runs.append({**json.loads(path.read_text()), "run_id": path.parent.name})
    return runs


def gather(profile_dir: Path, params: dict) -> pd.DataFrame:
    """One row per (complete main run, test dataset), written to ``profile_dir/results.csv`` and returned."""
    rows = [{"method": r["method"], "train_datasets": "+".join(r["train_datasets"]), "test_dataset": name,
             "seed": r["seed"], "accuracy": t["accuracy"], "ci95": t["ci95"],
             "train_seconds": r["train_seconds"], "iterations": r["iterations"], "run_id": r["run_id"]}
            for r in read_runs(profile_dir, params) for name, t in r["test"].items()]
    table = pd.DataFrame(rows, columns=COLUMNS + ["run_id"])
    io.write_text(Path(profile_dir) / "results.csv", table.to_csv(index=False))
    return table


def metrics(profile_dir: Path, run_id: str) -> pd.DataFrame:
    """The learning curve (metrics.csv) of one run."""
    return pd.read_csv(Path(profile_dir) / "runs" / run_id / "metrics.csv")


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and test dataset: mean accuracy over seeds, its spread, the mean CI and the time."""
    grouped = table.groupby(["method", "train_datasets", "test_dataset"], sort=False)
    return grouped.agg(accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"), ci95=("ci95", "mean"),
                       train_seconds=("train_seconds", "mean"), seeds=("seed", "nunique")).reset_index()


def above_chance(table: pd.DataFrame, ways: int) -> pd.DataFrame:
    """Each row's margin over chance (1/ways) and whether it exceeds the row's 95% CI."""
    out = table[["method", "test_dataset", "seed", "accuracy", "ci95"]].copy()
    out["chance"] = 1.0 / ways
    out["above_chance_by_more_than_ci"] = out["accuracy"] - out["chance"] > out["ci95"]
    return out
