"""The two statistics the kit's claims rest on: a t-interval of a mean, and mutual information in bits."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and the 95 % t-interval of the mean of ``values`` (a zero-width interval when they are all equal;
    NaN bounds for fewer than two)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    from scipy import stats  # slow to import: kept out of the start of every process that trains

    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def mutual_information(labels: Sequence[Hashable], patterns: Sequence[Hashable]) -> float:
    """I(label; pattern) in bits, from the empirical joint distribution of the pairs."""
    if len(labels) != len(patterns) or not labels:
        raise ValueError("labels and patterns must be non-empty and of the same length")
    n = len(labels)
    joint, by_label, by_pattern = Counter(zip(labels, patterns)), Counter(labels), Counter(patterns)
    return sum(c / n * math.log2(c * n / (by_label[a] * by_pattern[b])) for (a, b), c in joint.items())
