"""The mechanism score of a run: how much its per-task mask tells about the task's distribution.

BMP, ``layer_mask_information``: the mutual information in bits between a test task's distribution and
its layer-mask pattern, per inner step and over all steps jointly: 0 when every task gets the same mask,
log2(distributions) when the mask identifies the distribution. A plug-in estimate from finite tasks is
biased upwards, so the score comes with its chance level: its mean with the distribution labels shuffled.

MMSUP, ``subnetwork_specificity``: per test task, the mean Jaccard overlap of its kept weights with the
other tasks of its own distribution minus that with the tasks of other distributions, averaged over the
conv layers; reported as the mean over tasks with a 95 % t-interval (tasks as units: it speaks for one
trained model). Above 0 when tasks of one distribution share more of their subnetwork than tasks of
different ones; 0 for one shared subnetwork. Mutual information is no use there: every task's kept set
over thousands of weights is unique, so it would always read log2(distributions).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .learners.mmsup import OVERLAP_TASKS, jaccard_matrix
from .models import CONV_LABELS
from .statistics import mutual_information, t_interval

PERMUTATIONS = 200  # label shuffles behind the chance level of the mask information


def score(probes: dict[str, list[dict]]) -> dict:
    """The mechanism score of a meta-test from its learner's probes per test dataset (a list of per-batch
    probes each, ``learner.probe``): ``mask_information`` where they hold layer masks (BMP),
    ``specificity`` where they hold kept weights (MMSUP), nothing for learners without a mask."""
    if not probes:
        return {}
    first = next(iter(probes.values()))[0]

    def stacked(key: str, limit: int | None = None) -> dict[str, torch.Tensor]:
        return {d: torch.cat([p[key] for p in batches])[:limit] for d, batches in probes.items()}

    if "layer_masks" in first:
        return {"mask_information": layer_mask_information(stacked("layer_masks"))}
    if "masks_conv1" in first:
        kept = {layer: stacked(f"masks_{layer}", OVERLAP_TASKS) for layer in CONV_LABELS}
        return {"specificity": subnetwork_specificity(kept)}
    return {}


def layer_mask_information(masks: dict[str, torch.Tensor]) -> dict:
    """Mutual information between distribution and layer-mask pattern.

    Arguments:
        masks: per test dataset, each task's binary layer masks [tasks, inner steps, layers].

    Returns:
        ``bits`` (all steps' masks as one pattern), ``bits_by_step``, ``chance_bits`` (``bits`` with the
        labels shuffled, mean of PERMUTATIONS shuffles) and ``max_bits`` (log2 of the datasets).
    """
    labels = [d for d, m in masks.items() for _ in range(len(m))]
    stacked = torch.cat(list(masks.values())).round().to(torch.int8)  # [tasks, steps, layers]

    def patterns(m: torch.Tensor) -> list[tuple]:
        return [tuple(row) for row in m.flatten(1).tolist()]

    joint = patterns(stacked)
    shuffles = np.random.default_rng(0)
    chance = [mutual_information(list(shuffles.permutation(labels)), joint) for _ in range(PERMUTATIONS)]
    return {
        "bits": mutual_information(labels, joint),
        "bits_by_step": [mutual_information(labels, patterns(stacked[:, s])) for s in range(stacked.shape[1])],
        "chance_bits": float(np.mean(chance)),
        "max_bits": math.log2(len(masks)),
    }


def subnetwork_specificity(kept: dict[str, dict[str, torch.Tensor]]) -> dict | None:
    """Within- minus across-distribution overlap of task subnetworks.

    Arguments:
        kept: per conv layer, per test dataset, each task's kept weights on fixed positions [tasks, positions].

    Returns:
        ``difference`` (mean over tasks), its 95 % interval ``low`` and ``high``, ``tasks`` and
        ``by_layer`` (each layer's mean difference); None with fewer than two test datasets.
    """
    if len(next(iter(kept.values()))) < 2:
        return None
    per_layer = {layer: _own_minus_other(by_dataset) for layer, by_dataset in kept.items()}
    per_task = torch.stack(list(per_layer.values())).mean(0)
    mean, low, high = t_interval(per_task.tolist())
    return {
        "difference": mean,
        "low": low,
        "high": high,
        "tasks": len(per_task),
        "by_layer": {layer: float(v.mean()) for layer, v in per_layer.items()},
    }


def _own_minus_other(by_dataset: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per task: mean Jaccard overlap with the other tasks of its dataset minus that with other datasets' tasks."""
    x = torch.cat(list(by_dataset.values())).double()
    label = torch.cat([torch.full((len(m),), i) for i, m in enumerate(by_dataset.values())])
    overlap = jaccard_matrix(x, x)
    same = label[:, None] == label[None, :]
    own = same & ~torch.eye(len(x), dtype=torch.bool)
    return (overlap * own).sum(1) / own.sum(1).clamp_min(1) - (overlap * ~same).sum(1) / (~same).sum(1)


NOTHING_BEYOND_CHANCE = 0.05  # bits above the chance level below which a mask "tells nothing"
SMALL_OVERLAP_GAP = 0.02  # a within - across overlap difference below this is "slight", however sure


def reading(scores: dict) -> str:
    """What a run's mechanism score (``score``'s result) says, in words."""
    if info := scores.get("mask_information"):
        bits, chance, most = info["bits"], info["chance_bits"], info["max_bits"]
        numbers = f"{bits:.2f} of {most:.2f} bits (chance {chance:.2f})"
        if most == 0:
            return f"one test dataset: no distribution to tell apart ({numbers})"
        if bits - chance < NOTHING_BEYOND_CHANCE:
            return f"the layer masks tell nothing about the distribution beyond chance, {numbers}: a fixed freeze"
        if bits >= 0.9 * most:
            return f"the layer masks identify the distribution, {numbers}"
        return f"the layer masks carry part of the distribution, {numbers}"
    if "specificity" in scores:
        spec = scores["specificity"]
        if spec is None:
            return "one test dataset: no across-distribution overlap to compare"
        numbers = f"within - across overlap {spec['difference']:+.3f} ({spec['low']:+.3f} to {spec['high']:+.3f})"
        if spec["low"] > 0:
            amount = "slightly more" if spec["difference"] < SMALL_OVERLAP_GAP else "more"
            return f"tasks of one distribution share {amount} of their subnetwork than those of others, {numbers}"
        if spec["high"] < 0:
            return f"tasks of different distributions share more of their subnetwork than tasks of one, {numbers}"
        return f"no distribution-specific subnetworks detected, {numbers}: one shared subnetwork"
    return "no mask to score"


def value_row(scores: dict) -> dict:
    """A run's mechanism score as a table row: which score, its value, interval or chance level, maximum."""
    if info := scores.get("mask_information"):
        return {"score": "mask information (bits)", "value": info["bits"], "low": None, "high": None,
                "chance": info["chance_bits"], "maximum": info["max_bits"]}  # fmt: skip
    spec = scores.get("specificity") or {}
    return {"score": "within - across overlap", "value": spec.get("difference"), "low": spec.get("low"),
            "high": spec.get("high"), "chance": 0.0, "maximum": 1.0}  # fmt: skip
