"""MMSUP, the Multi-modal Supermask (supplement, Listings 3-4): which weights a task uses.

Every conv layer is a supermask conv: its mask keeps the top ``1 - sparsity`` fraction of |weight|
(``ComputeMask``), recomputed at every forward from the weights it is given. Inside the inner loop
those are the task-adapted weights, so each task (and so each distribution) gets its own subnetwork
from one shared initialisation. The head stays dense. Sparsity is one meta-parameter per conv layer,
initialised at ``sparsity_init`` and learned through the documented surrogate gradient, or fixed.
The learned sparsity is projected back into [0, MAX_SPARSITY] after every meta-update
(``after_update``), so the parameter is always the sparsity in use: it never drifts past a clamp,
and it moves back from a bound as soon as its gradient points inwards.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn as nn

from ..masks import MAX_SPARSITY, ComputeMask, kept_counts
from ..models import BLOCKS, CONV_LABELS, Params, conv4_forward, layer_index
from .maml import MAML

RECORDED_POSITIONS = 4096  # weight positions per layer whose masks are kept for the overlap estimate
OVERLAP_TASKS = 50         # tasks per dataset used for the overlap estimate


class MMSUP(MAML):
    """MAML whose conv layers use per-task top-(1 - sparsity) supermasks of their current weights."""

    def __init__(self, *args, sparsity_init: float = 0.5, learn_sparsity: bool = True, temperature: float = 0.1,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.sparsity = nn.Parameter(torch.full((BLOCKS,), float(sparsity_init)), requires_grad=learn_sparsity)
        self.temperature = temperature
        sizes = [self.backbone[f"conv{i}__weight"].numel() for i in range(1, BLOCKS + 1)]
        self.register_buffer("layer_sizes", torch.tensor(sizes), persistent=False)
        self._kept: torch.Tensor | None = None
        gen = torch.Generator().manual_seed(0)
        for i in range(1, BLOCKS + 1):
            n = self.backbone[f"conv{i}__weight"].numel()
            picked = torch.randperm(n, generator=gen)[:RECORDED_POSITIONS].sort().values
            self.register_buffer(f"positions_conv{i}", picked, persistent=False)
        self._capture = False

    @staticmethod
    def options(params: dict) -> dict:
        return {"sparsity_init": params["mmsup_sparsity_init"], "learn_sparsity": params["mmsup_learn_sparsity"],
                "temperature": params["mmsup_temperature"]}

    def after_update(self) -> None:
        """Project the learned sparsity back into [0, MAX_SPARSITY] after an optimiser step."""
        with torch.no_grad():
            self.sparsity.clamp_(0.0, MAX_SPARSITY)

    def supermask(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """weight [T, O, I, k, k] times its per-task top-(1 - sparsity) mask of |weight|."""
        layer = name.split(".")[0]
        i = layer_index(layer)
        scores = weight.detach().abs().flatten(1)
        temperature = self.temperature * scores.mean(1)
        mask = ComputeMask.apply(scores, self.sparsity[i], self._kept[i], temperature)
        if self._capture:
            self.record[f"masks_{layer}"] = mask.detach()[:, getattr(self, f"positions_{layer}")].bool()
        return weight * mask.view_as(weight)

    def forward_model(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        self._kept = kept_counts(self.layer_sizes, self.sparsity.detach())  # once per forward, on the device
        return conv4_forward(params, x, self.supermask)

    def predict(self, batch):
        """As MAML's, recording each task's subnetwork (on fixed weight positions); every forward
        overwrites the record, so what remains is the final, adapted one used on the queries."""
        self.record, self._capture = {}, True
        try:
            return super().predict(batch)
        finally:
            self._capture = False

    def train_record(self) -> dict:
        return {f"sparsity_{CONV_LABELS[i]}": float(s) for i, s in enumerate(self.sparsity.detach())}

    def summarize_records(self, records: dict[str, list[dict]]) -> dict:
        """Mean Jaccard overlap of task subnetworks, per layer, within and between test datasets."""
        masks = {d: {k: torch.cat([r[k] for r in batches])[:OVERLAP_TASKS].float()
                     for k in batches[0]} for d, batches in records.items()}
        overlap = {}
        for layer in next(iter(masks.values())):
            overlap[layer.removeprefix("masks_")] = {
                f"{a}|{b}": jaccard(masks[a][layer], masks[b][layer], same=a == b)
                for a, b in itertools.combinations_with_replacement(masks, 2)}
        return {"overlap": overlap, "sparsity": self.train_record()}


def jaccard(a: torch.Tensor, b: torch.Tensor, same: bool) -> float:
    """Mean |a_i & b_j| / |a_i | b_j| over task pairs (i < j when a and b are the same set)."""
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1) - inter
    scores = inter / union.clamp_min(1)
    if same:
        scores = scores[torch.triu(torch.ones_like(scores, dtype=torch.bool), diagonal=1)]
    return float(scores.mean())
