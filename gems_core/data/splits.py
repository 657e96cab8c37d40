"""Class splits: a distribution's classes go to meta-train, meta-validation or meta-test, never two."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .images import ClassImages

SPLITS = ("train", "validation", "test")


def seeded_split(class_names: list[str], fractions: Sequence[float], seed: int) -> dict[str, list[str]]:
    """Shuffle classes with ``seed`` and cut them by ``fractions`` [train, validation, test]."""
    order = np.random.default_rng(seed).permutation(len(class_names))
    n_train = int(round(fractions[0] * len(order)))
    n_val = int(round(fractions[1] * len(order)))
    cuts = {"train": order[:n_train], "validation": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {k: sorted(class_names[i] for i in v) for k, v in cuts.items()}


def apply_split(data: ClassImages, split: dict[str, list[str]]) -> tuple[dict[str, ClassImages], dict[str, list[str]]]:
    """One ClassImages per split, and per split the classes it names that ``data`` does not have
    (skipped here; reported by ``Distribution.summary`` and checked by ``check_against_data``)."""
    index = {c: i for i, c in enumerate(data.class_names)}
    parts, missing = {}, {}
    for name in SPLITS:
        present = [c for c in split[name] if c in index]
        missing[name] = [c for c in split[name] if c not in index]
        keep = np.isin(data.labels, [index[c] for c in present])
        relabel = np.full(len(data.class_names), -1)
        relabel[[index[c] for c in present]] = np.arange(len(present))
        parts[name] = ClassImages(data.images[keep], relabel[data.labels[keep]], present)
    return parts, missing
