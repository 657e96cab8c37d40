"""Results of a profile: its main runs (each method and seed at the profile's own parameters; ablation
runs are gathered separately) read back from their shared run folders into ``outputs/<profile>/results.csv``,
whose ``run_id`` column names the folder (``outputs/runs/<run_id>``) of every row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import io
from .params import Config
from .runs import RunFiles

COLUMNS = [
    "method",
    "train_datasets",
    "test_dataset",
    "seed",
    "status",
    "accuracy",
    "ci95",
    "train_seconds",
    "iterations",
]


def intact_results(params: Config, method: str, seed: int) -> dict | None:
    """A run's results.json if it and every file it rests on are intact and the run's own; None while it
    has none, or when it is damaged (``plan.damaged`` names those)."""
    return RunFiles(params, method, seed).intact_results()


def damaged(params: Config) -> list[str]:
    """One line per main run of the profile whose files are damaged: the run, the file and why. They are
    left out of every table and comparison; running the profile again retrains or re-evaluates them."""
    return [
        f"{method} seed {seed}: {damage}"
        for method in params.methods
        for seed in params.seeds
        if (damage := RunFiles(params, method, seed).damage()) is not None
    ]


def read_runs(params: Config) -> list[dict]:
    """results.json of every main run of the profile that has intact results (complete or diverged)."""
    found = []
    for method in params.methods:
        for seed in params.seeds:
            if (result := intact_results(params, method, seed)) is not None:
                found.append(result)
    return found


def result_rows(result: dict, method: str | None = None) -> list[dict]:
    """One results-table row per test dataset of a run's results.json (``method`` relabels the run);
    a diverged run has one per training dataset, with ``status`` diverged and no accuracy."""
    status = result.get("status", "complete")
    tests = result["test"] if status == "complete" else {name: {} for name in result["train_datasets"]}
    return _rows(result, method or result["method"], tests)


def control_rows(result: dict) -> list[dict]:
    """The rows of each test-time control tested on a run's weights (``controls`` in its results.json, each
    named after its control), or none."""
    return [row for name, c in result.get("controls", {}).items() for row in _rows(result, name, c["test"])]


def _rows(result: dict, method: str, tests: dict) -> list[dict]:
    return [
        {
            "method": method,
            "train_datasets": "+".join(result["train_datasets"]),
            "test_dataset": name,
            "seed": result["seed"],
            "status": result.get("status", "complete"),
            "accuracy": t.get("accuracy"),
            "ci95": t.get("ci95"),
            "train_seconds": result["train_seconds"],
            "iterations": result["iterations"],
            "run_id": result.get("run_id"),
        }
        for name, t in tests.items()
    ]


def gather(profile_dir: Path, params: Config) -> pd.DataFrame:
    """One row per (main run, test dataset), and per test-time control tested on a run's weights,
    written to ``profile_dir/results.csv`` and returned."""
    rows = [row for r in read_runs(params) for row in result_rows(r) + control_rows(r)]
    table = pd.DataFrame(rows, columns=COLUMNS + ["run_id"])
    io.write_text(Path(profile_dir) / "results.csv", table.to_csv(index=False))
    return table


def metrics(params: Config, method: str, seed: int) -> pd.DataFrame:
    """The learning curve (metrics.csv) of one run; ``runs.RunDamaged`` if it is not the run's own."""
    return RunFiles(params, method, seed).metrics()


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and test dataset: mean accuracy over the seeds that completed, its spread, the mean CI,
    the time, and how many seeds diverged (they have no accuracy)."""
    grouped = table.groupby(["method", "train_datasets", "test_dataset"], sort=False)
    return grouped.agg(
        accuracy=("accuracy", "mean"),
        accuracy_std=("accuracy", "std"),
        ci95=("ci95", "mean"),
        train_seconds=("train_seconds", "mean"),
        seeds=("seed", "nunique"),
        diverged=("status", lambda s: int((s == "diverged").sum())),
    ).reset_index()


def shown(frame: pd.DataFrame):
    """A table as notebooks and pages show it: three decimals, "-" where a value does not exist (the
    spread over seeds of a single seed, the accuracy of a diverged run) instead of NaN, and every name
    HTML-escaped (they come from users' files)."""
    return (
        frame.style.format(precision=3, na_rep="-", escape="html")
        .format_index(escape="html", axis=1)
        .hide(axis="index")
    )


def above_chance(table: pd.DataFrame, ways: int) -> pd.DataFrame:
    """Each row's margin over chance (1/ways) and whether it exceeds the row's 95% CI."""
    out = table[["method", "test_dataset", "seed", "accuracy", "ci95"]].copy()
    out["chance"] = 1.0 / ways
    out["above_chance_by_more_than_ci"] = out["accuracy"] - out["chance"] > out["ci95"]
    return out


def duration(seconds: float) -> str:
    """A training time as people say it: 40 s, 12.5 min, 3.2 h."""
    return (
        f"{seconds:.0f} s"
        if seconds < 60
        else f"{seconds / 60:.1f} min"
        if seconds < 3600
        else f"{seconds / 3600:.1f} h"
    )
