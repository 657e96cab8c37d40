"""Whether a method beats another, and whether its mask carries the task's distribution: the numbers a
claim about GEMS's mechanisms rests on.

``paired`` compares two methods on the same fixed test tasks: every method and seed meets the same
tasks (``runs.TASK_ACCURACIES``), so differences are taken task by task, which removes the tasks'
difficulty from the comparison. The interval is a 95 % t-interval over seeds when both methods have
two or more seeds in common (the seed is the unit a claim is about: another seed is another trained
model), else over the tasks of the one seed, which says how sure the comparison is for that trained
model and nothing about others; ``unit`` says which.

``comparisons`` sets every method of a profile beside MAML this way, per test dataset.

``mutual_information`` measures how much a mask tells about the task's distribution, in bits: 0 when
every task gets the same mask, log2(distributions) when the mask identifies the distribution.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from . import runs

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no detectable difference"


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and the 95 % t-interval of the mean of ``values`` (a zero-width interval when they are all equal)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def verdict(low: float, high: float) -> str:
    """better / worse / no detectable difference, from a difference's interval."""
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return NO_DIFFERENCE


def paired(ours: dict[int, Sequence[float]], theirs: dict[int, Sequence[float]]) -> dict:
    """Our method's mean accuracy difference from theirs on the same test tasks, with its 95 % interval.

    Arguments:
        ours, theirs: per seed, the accuracy of each fixed test task (in the tasks' order).

    Returns:
        ``difference``, ``low``, ``high``, ``verdict``, ``unit`` ("seeds" or "tasks of one seed") and
        ``n`` (how many seeds or tasks the interval is over).

    Example:
        >>> paired({21: [0.6, 0.4]}, {21: [0.4, 0.4]})["difference"]
        0.1
    """
    seeds = sorted(set(ours) & set(theirs))
    if not seeds:
        raise ValueError("the two methods have no seed in common")
    for seed in seeds:
        if len(ours[seed]) != len(theirs[seed]):
            raise ValueError(f"seed {seed}: {len(ours[seed])} against {len(theirs[seed])} test tasks")
    if len(seeds) >= 2:
        values, unit = [np.mean(np.subtract(ours[s], theirs[s])) for s in seeds], "seeds"
    else:
        values, unit = np.subtract(ours[seeds[0]], theirs[seeds[0]]), "tasks of one seed"
    mean, low, high = t_interval(values)
    return {"difference": mean, "low": low, "high": high, "verdict": verdict(low, high), "unit": unit, "n": len(values)}


def mutual_information(labels: Sequence[Hashable], patterns: Sequence[Hashable]) -> float:
    """I(label; pattern) in bits, from the empirical joint distribution of the pairs."""
    if len(labels) != len(patterns) or not labels:
        raise ValueError("labels and patterns must be non-empty and of the same length")
    n = len(labels)
    joint, by_label, by_pattern = Counter(zip(labels, patterns)), Counter(labels), Counter(patterns)
    return sum(c / n * math.log2(c * n / (by_label[a] * by_pattern[b])) for (a, b), c in joint.items())


BASELINE = "maml"


def comparisons(params: dict) -> pd.DataFrame:
    """Each method of the profile against MAML, per test dataset, paired on the same test tasks
    (``paired``): a row per (method, test dataset) with the difference, its interval and verdict. Runs
    without per-task accuracies (not complete, or from an earlier kit) are left out; a method with none
    has no row."""
    rows = []
    seeds = params["seeds"]
    theirs = {s: runs.task_accuracies(runs.run_folder(params, BASELINE, s)) for s in seeds}
    for method in params["methods"]:
        if method == BASELINE:
            continue
        ours = {s: runs.task_accuracies(runs.run_folder(params, method, s)) for s in seeds}
        common = [s for s in seeds if ours[s] is not None and theirs[s] is not None]
        if not common:
            continue
        for dataset in ours[common[0]]["test_dataset"].unique():
            result = paired(
                {s: _tasks(ours[s], dataset) for s in common}, {s: _tasks(theirs[s], dataset) for s in common}
            )
            rows.append({"method": method, "against": BASELINE, "test_dataset": dataset, **result})
    columns = ["method", "against", "test_dataset", "difference", "low", "high", "verdict", "unit", "n"]
    return pd.DataFrame(rows, columns=columns)


def _tasks(table: pd.DataFrame, dataset: str) -> list[float]:
    """One test dataset's task accuracies, in the tasks' order."""
    return table.loc[table["test_dataset"] == dataset].sort_values("task")["accuracy"].tolist()
