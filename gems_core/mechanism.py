"""The mechanism score of a run: does its per-task mask vary at all, and does it vary with the distribution?

Each score ends in one of three readings, decided by the numbers it reports and said with them:

- ``CONSTANT``: every test task gets the same mask, a fixed freeze (BMP) or one shared subnetwork (MMSUP);
- ``UNRELATED``: the mask varies from task to task, but not detectably with the distribution;
- ``DEPENDS``: the mask depends on the distribution (a permutation test at 5 %), and where.

BMP, ``layer_mask_scores``: per inner step and layer, the mask bit's entropy (does it vary?) and its mutual
information with the distribution. One permutation test decides: the largest cell's information against
the largest under shuffled distribution labels (max-T, so the 25 cells are one test, and each cell's
adjusted p-value says where). A joint pattern over every step and layer is no use: with masks that vary,
almost every task has its own pattern, so the plug-in information and its shuffled chance level both
reach log2(distributions). A cross-validated decoder (leave-one-out nearest class mean on the mask bits)
reports how well the mask predicts the distribution, against its own permutation null.

MMSUP, ``subnetwork_scores``: per test task, the mean Jaccard overlap of its kept weights with the other
tasks of its own distribution minus that with the tasks of other distributions, averaged over tasks and
conv layers. The per-task values share tasks, so they are not independent (and with no distribution
effect the statistic is degenerate: a jackknife over tasks then covers 99 %, a t-interval on per-task
values 65 %). The interval is therefore a t-interval over disjoint blocks of ``BLOCK_TASKS`` tasks per
distribution, each block's gap from the pairs inside it (independent estimates: 93-96 % coverage in
simulation with and without an effect); the decision is a label-permutation test of the gap over all
pairs; beside it, the mask's own variation, the mean pairwise Jaccard distance between tasks' kept
sets. A detected difference below ``SMALL_OVERLAP_GAP`` is said to be practically negligible.

Both are proven by simulation in ``tests/test_statistics.py``.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from .masks import jaccard_matrix
from .models import LAYER_LABELS
from .statistics import ALPHA, binary_entropy, t_interval

PERMUTATIONS = 999  # label shuffles behind every permutation p-value: p = (1 + as extreme) / (1 + 999)
BLOCK_TASKS = 2  # tasks of each distribution per block behind the overlap gap's interval (the fewest that
# give a within pair): more blocks, a better t-interval over them (larger blocks covered 92-93 %)
SMALL_OVERLAP_GAP = 0.02  # a within - across overlap difference below this is practically negligible
CONSTANT, UNRELATED, DEPENDS = "constant", "varies, not with the distribution", "depends on the distribution"
READINGS = (CONSTANT, UNRELATED, DEPENDS)


def stacked(probes: dict[str, list[dict]], key: str, limit: int | None = None) -> dict[str, torch.Tensor]:
    """Per test dataset, one probe's tensor over all its tasks (the first ``limit``): what a learner's
    ``mechanism_score`` hands to ``layer_mask_scores`` or ``subnetwork_scores``."""
    return {d: torch.cat([p[key] for p in batches])[:limit] for d, batches in probes.items()}


def _permuted(labels: np.ndarray, data: np.ndarray) -> np.ndarray:
    """[PERMUTATIONS, tasks] shuffles of the labels, seeded by the data they test: a score repeats, and
    different data meet different shuffles (one fixed set for all would make the test inexact)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(np.ascontiguousarray(data).tobytes()).digest()[:8]))
    return np.stack([rng.permutation(labels) for _ in range(PERMUTATIONS)])


def _p_greater(observed: float | np.ndarray, null: np.ndarray) -> np.ndarray:
    """Permutation p-value of ``observed`` against the null draws (last axis of ``null``'s broadcast)."""
    return (1 + (null[:, None] >= np.atleast_1d(observed)[None, :] - 1e-12).sum(0)) / (1 + len(null))


def _cell_information(labels: np.ndarray, bits: np.ndarray, classes: int) -> np.ndarray:
    """Mutual information in bits between labels [..., tasks] and each binary column of bits [tasks, cells]:
    [..., cells]."""
    n = bits.shape[0]
    onehot = (labels[..., None] == np.arange(classes)).astype(np.float64)  # [..., tasks, classes]
    ones = np.swapaxes(onehot, -1, -2) @ bits  # [..., classes, cells]
    per_class = onehot.sum(-2)[..., None]  # [..., classes, 1]
    joint = np.stack([per_class - ones, ones]) / n  # [value, ..., classes, cells]
    p_label = per_class / n
    p_value = joint.sum(-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = joint * np.log2(joint / (p_label * p_value))
    return np.nan_to_num(terms, nan=0.0, posinf=0.0).sum((0, -2))


def _decoding_accuracy(labels: np.ndarray, x: np.ndarray, classes: int) -> np.ndarray:
    """Leave-one-out accuracy of the nearest class mean (squared distance) predicting labels [..., tasks]
    from x [tasks, features]: [...]."""
    onehot = (labels[..., None] == np.arange(classes)).astype(np.float64)  # [..., n, k]
    counts = onehot.sum(-2)  # [..., k]
    sums = np.swapaxes(onehot, -1, -2) @ x  # [..., k, d]
    raw = x @ np.swapaxes(sums, -1, -2)  # [..., n, k]: x_n . S_k
    norms = (sums**2).sum(-1)[..., None, :]  # [..., 1, k]: |S_k|^2
    xx = (x**2).sum(-1)[:, None]  # [n, 1]
    own = onehot.astype(bool)  # a task's own class mean leaves the task out: S - x over n - 1
    size = np.where(own, counts[..., None, :] - 1, counts[..., None, :])
    dots = np.where(own, raw - xx, raw)
    norms = np.where(own, norms - 2 * raw + xx, norms)
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = xx - 2 * dots / size + norms / size**2
    distance = np.where(size > 0, distance, np.inf)
    return (distance.argmin(-1) == labels).mean(-1)


def layer_mask_scores(masks: dict[str, torch.Tensor]) -> dict:
    """Whether BMP's layer masks vary, and with the distribution.

    Arguments:
        masks: per test dataset, each task's binary layer masks [tasks, inner steps, layers].

    Returns:
        ``reading`` (one of READINGS), ``entropy_bits`` and ``information_bits`` [steps][layers],
        ``p`` (the max-T permutation p-value), ``p_cells`` (each cell's adjusted p-value), ``where``
        (the cells with the distribution in them), ``max_bits`` (log2 of the datasets), ``decoding``
        (leave-one-out accuracy, its permutation chance level and p-value) and ``tasks``.
    """
    names = list(masks)
    labels = np.concatenate([np.full(len(m), i) for i, m in enumerate(masks.values())])
    stacked = torch.cat(list(masks.values())).round().double().numpy()  # [tasks, steps, layers]
    steps, layers = stacked.shape[1:]
    bits = stacked.reshape(len(stacked), -1)
    entropy = binary_entropy(bits.mean(0))
    shuffled = _permuted(labels, bits)
    information = _cell_information(labels, bits, len(names))
    null_max = _cell_information(shuffled, bits, len(names)).max(-1)
    p_cells = _p_greater(information, null_max)
    accuracy = float(_decoding_accuracy(labels, bits, len(names)))
    null_accuracy = _decoding_accuracy(shuffled, bits, len(names))
    p = float(p_cells.min()) if len(names) > 1 else 1.0
    reading = CONSTANT if entropy.max() == 0 else DEPENDS if p < ALPHA else UNRELATED
    return {
        "reading": reading,
        "entropy_bits": entropy.reshape(steps, layers).tolist(),
        "information_bits": information.reshape(steps, layers).tolist(),
        "p": p,
        "p_cells": p_cells.reshape(steps, layers).tolist(),
        "where": [
            f"step {s + 1} {LAYER_LABELS[layer]}"
            for s in range(steps)
            for layer in range(layers)
            if p_cells[s * layers + layer] < ALPHA
        ],
        "max_bits": math.log2(len(names)),
        "decoding": {
            "accuracy": accuracy,
            "chance": float(null_accuracy.mean()),
            "p": float(_p_greater(accuracy, null_accuracy)[0]),
        },
        "tasks": len(labels),
    }


def _within_minus_across(overlap: np.ndarray, same: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Mean over tasks of (mean overlap with its own distribution's other tasks - mean with other
    distributions' tasks), for same [..., n, n] (True where two tasks share a distribution); ``keep``
    [m, n] leaves tasks out (one row per leave-out): [...] or [m]."""
    eye = np.eye(len(overlap), dtype=bool)
    own, other = same & ~eye, ~same
    if keep is not None:
        pair = keep[:, :, None] & keep[:, None, :]  # [m, n, n]
        own, other = own & pair, other & pair
    with np.errstate(divide="ignore", invalid="ignore"):
        per_task = (overlap * own).sum(-1) / own.sum(-1) - (overlap * other).sum(-1) / other.sum(-1)
    if keep is None:
        return np.nanmean(per_task, -1)
    return np.nansum(np.where(keep, per_task, 0), -1) / keep.sum(-1)


def _blocks(labels: np.ndarray) -> np.ndarray:
    """[blocks, tasks] disjoint blocks of tasks, each distribution's tasks dealt round-robin so that every
    block holds at least BLOCK_TASKS of each (none when a distribution has fewer)."""
    count = np.bincount(labels).min() // BLOCK_TASKS
    block = np.zeros(len(labels), int)
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        block[where] = np.arange(len(where)) % max(count, 1)
    return block[None, :] == np.arange(count)[:, None]


def _overlaps(by_dataset: dict[str, torch.Tensor]) -> np.ndarray:
    """Jaccard overlap of every pair of tasks' kept sets, tasks in the datasets' order: [tasks, tasks]."""
    x = torch.cat(list(by_dataset.values())).double()
    return jaccard_matrix(x, x).numpy()


def subnetwork_scores(kept: dict[str, dict[str, torch.Tensor]]) -> dict | None:
    """Whether MMSUP's task subnetworks vary, and with the distribution.

    Arguments:
        kept: per conv layer, per test dataset, each task's kept weights on fixed positions [tasks, positions].

    Returns:
        ``reading`` (one of READINGS), ``difference`` (within - across overlap, mean over tasks, layers
        and blocks), its 95 % t-interval over blocks ``low``/``high``, ``p`` (label permutation of the gap
        over all pairs), ``variation``
        (mean pairwise Jaccard distance between tasks' kept sets), ``negligible`` (a detected difference
        under SMALL_OVERLAP_GAP), ``by_layer`` and ``tasks``; None with fewer than two test datasets.
    """
    if len(next(iter(kept.values()))) < 2:
        return None
    by_layer_overlap = {layer: _overlaps(by_dataset) for layer, by_dataset in kept.items()}
    overlap = np.mean(list(by_layer_overlap.values()), 0)
    first = next(iter(kept.values()))
    labels = np.concatenate([np.full(len(m), i) for i, m in enumerate(first.values())])
    n = len(labels)

    def same(lab: np.ndarray) -> np.ndarray:
        return lab[..., :, None] == lab[..., None, :]

    blocks = _blocks(labels)
    per_block = _within_minus_across(overlap, same(labels), blocks)
    difference, low, high = t_interval(per_block) if len(per_block) else (math.nan,) * 3
    null = np.concatenate(
        [_within_minus_across(overlap, same(chunk)) for chunk in np.array_split(_permuted(labels, overlap), 10)]
    )  # in chunks: [permutations, tasks, tasks] at once would be large
    observed = _within_minus_across(overlap, same(labels))
    p = float(_p_greater(abs(observed), np.abs(null))[0])
    variation = float(1 - overlap[~np.eye(n, dtype=bool)].mean())
    reading = CONSTANT if variation == 0 else DEPENDS if p < ALPHA else UNRELATED
    return {
        "reading": reading,
        "difference": difference,
        "low": low,
        "high": high,
        "p": p,
        "variation": variation,
        "negligible": reading == DEPENDS and abs(difference) < SMALL_OVERLAP_GAP,
        "by_layer": {
            layer: float(_within_minus_across(matrix, same(labels))) for layer, matrix in by_layer_overlap.items()
        },
        "tasks": n,
    }


def reading(scores: dict) -> str:
    """What a run's mechanism score (a learner's ``mechanism_score``) says, in words, with the numbers it rests on."""
    if mask := scores.get("mask"):
        if mask["max_bits"] == 0:
            return "one test dataset: no distribution to tell apart"
        decoded = mask["decoding"]
        numbers = (
            f"{mask['tasks']} test tasks; the most informative layer and step carries "
            f"{max(map(max, mask['information_bits'])):.2f} of {mask['max_bits']:.2f} bits (permutation p = "
            f"{mask['p']:.3f}); a decoder predicts the distribution from the mask with accuracy "
            f"{decoded['accuracy']:.2f} (chance {decoded['chance']:.2f}, p = {decoded['p']:.3f})"
        )
        if mask["reading"] == CONSTANT:
            return f"every task gets the same layer mask: a fixed freeze ({mask['tasks']} test tasks)"
        varying = sum(h > 0 for row in mask["entropy_bits"] for h in row)
        if mask["reading"] == UNRELATED:
            return (
                f"the layer mask varies from task to task ({varying} of its bits do) but not detectably with "
                f"the distribution: {numbers}"
            )
        return f"the layer mask depends on the distribution, in {', '.join(mask['where'])}: {numbers}"
    if "subnetwork" in scores:
        sub = scores["subnetwork"]
        if sub is None:
            return "one test dataset: no across-distribution overlap to compare"
        numbers = (
            f"within - across overlap {sub['difference']:+.4f} (95 % interval over blocks of tasks "
            f"{sub['low']:+.4f} to "
            f"{sub['high']:+.4f}, permutation p = {sub['p']:.3f}, {sub['tasks']} test tasks); tasks' kept sets "
            f"differ by a mean Jaccard distance of {sub['variation']:.3f}"
        )
        if sub["reading"] == CONSTANT:
            return f"every task keeps the same subnetwork: one shared subnetwork ({sub['tasks']} test tasks)"
        if sub["reading"] == UNRELATED:
            return f"the subnetworks vary from task to task but not detectably with the distribution: {numbers}"
        if sub["negligible"]:
            return (
                f"the subnetworks depend on the distribution by a practically negligible margin (under "
                f"{SMALL_OVERLAP_GAP}): {numbers}"
            )
        direction = "share more" if sub["difference"] > 0 else "share less"
        return f"the subnetworks depend on the distribution: tasks of one distribution {direction} of theirs, {numbers}"
    return "no mask to score"


def value_row(scores: dict) -> dict:
    """A run's mechanism score as a table row: which score, its reading, value, interval, p-value, and the
    mask's own variation."""
    if mask := scores.get("mask"):
        return {
            "score": "layer-mask information (bits, most informative cell)",
            "reading": mask["reading"],
            "value": max(map(max, mask["information_bits"])),
            "low": None,
            "high": None,
            "p": mask["p"],
            "variation": max(map(max, mask["entropy_bits"])),
            "decoding": mask["decoding"]["accuracy"],
            "decoding_chance": mask["decoding"]["chance"],
        }
    sub = scores.get("subnetwork") or {}
    return {
        "score": "within - across overlap",
        "reading": sub.get("reading"),
        "value": sub.get("difference"),
        "low": sub.get("low"),
        "high": sub.get("high"),
        "p": sub.get("p"),
        "variation": sub.get("variation"),
        "decoding": None,
        "decoding_chance": None,
    }
