"""The statistics the kit's claims rest on, each proven by simulation in ``tests/test_statistics.py``
(coverage of every interval at nominal 95 %, false detections at most 6 % when nothing differs).

- ``t_interval``: mean and 95 % t-interval of independent values (scipy's one-sample t-test).
- ``crossed_test``: the mean of a seeds x tasks table (every seed meets the same tasks) against 0, with a
  95 % interval that includes both the seeds' and the tasks' variation (two-way random effects).
- ``holm``: Holm's step-down adjustment of a family's p-values (statsmodels' ``multipletests``).
- ``binary_entropy``: bits of a Bernoulli share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LEVEL = 0.95  # every interval the kit prints
ALPHA = 1 - LEVEL


def t_interval(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """Mean and the 95 % t-interval of the mean of ``values`` (a zero-width interval when they are all equal;
    NaN bounds for fewer than two)."""
    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    if len(array) < 2:
        return mean, math.nan, math.nan
    if np.all(array == array[0]):
        return mean, mean, mean
    from scipy import stats  # slow to import: kept out of the start of every process that trains

    low, high = stats.ttest_1samp(array, 0.0).confidence_interval(LEVEL)
    return mean, float(low), float(high)


def t_pvalue(mean: float, se: float, df: float) -> float:
    """Two-sided p-value of a mean against 0 with standard error ``se`` on ``df`` degrees of freedom."""
    if se == 0:
        return 1.0 if mean == 0 else 0.0
    from scipy import stats

    return float(2 * stats.t.sf(abs(mean) / se, df))


def mean_test(values: Sequence[float] | np.ndarray) -> dict:
    """A mean of independent values against 0: ``difference``, 95 % ``low``/``high``, ``p``, ``se``, ``df``."""
    array = np.asarray(values, dtype=np.float64)
    n = len(array)
    mean, low, high = t_interval(array)
    se = float(array.std(ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
    p = t_pvalue(mean, se, n - 1) if n >= 2 else math.nan
    return {"difference": mean, "low": low, "high": high, "p": p, "se": se, "df": float(n - 1)}


def crossed_test(values: np.ndarray) -> dict:
    """The mean of ``values`` [seeds, tasks] against 0, seeds and tasks both random (every seed meets the
    same tasks): ``difference``, 95 % ``low``/``high``, ``p``, ``se``, ``df``.

    Two-way random effects without replication: the mean's variance is the seed means' (var / seeds, what an
    interval over seeds alone uses) plus the shared tasks' own, (MS_tasks - MS_error) / (seeds x tasks) when
    positive, with Satterthwaite's degrees of freedom; so the interval speaks for other seeds *and* other
    test tasks. (Subtracting MS_error from the whole sum, the textbook form, covered 96-99 % in simulation;
    this one 93-97 %.) At least two seeds and two tasks."""
    x = np.asarray(values, dtype=np.float64)
    seeds, tasks = x.shape
    mean = float(x.mean())
    by_seed, by_task = x.mean(1), x.mean(0)
    ms_seeds, ms_tasks = tasks * by_seed.var(ddof=1), seeds * by_task.var(ddof=1)
    residual = x - by_seed[:, None] - by_task[None, :] + mean
    ms_error = float((residual**2).sum()) / ((seeds - 1) * (tasks - 1))
    shared_tasks = max(0.0, ms_tasks - ms_error)
    combined = ms_seeds + shared_tasks
    df = float(seeds - 1)
    if shared_tasks > 0:
        parts = ((ms_seeds, seeds - 1), (ms_tasks, tasks - 1), (ms_error, (seeds - 1) * (tasks - 1)))
        df = max(1.0, combined**2 / sum(ms**2 / d for ms, d in parts))
    se = math.sqrt(combined / (seeds * tasks))
    if se == 0:
        return {"difference": mean, "low": mean, "high": mean, "p": t_pvalue(mean, 0.0, df), "se": 0.0, "df": df}
    from scipy import stats

    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    return {
        "difference": mean,
        "low": mean - half,
        "high": mean + half,
        "p": t_pvalue(mean, se, df),
        "se": se,
        "df": df,
    }


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values of a family (NaN entries stay NaN and are not counted)."""
    values = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(len(values), math.nan)
    finite = ~np.isnan(values)
    if finite.any():
        from statsmodels.stats.multitest import multipletests

        adjusted[finite] = multipletests(values[finite], alpha=ALPHA, method="holm")[1]
    return adjusted.tolist()


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of Bernoulli(p), elementwise (0 at p = 0 or 1)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)
