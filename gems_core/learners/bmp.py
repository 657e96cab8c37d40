"""BMP, the Binary Mask Perceptron (supplement, Listings 1-2): which layers a task adapts.

In every inner step a task embedding (per layer: the mean of its current weights and of its support
gradient, 2N numbers, detached) is scaled by a learned ``inp_embedding`` and fed to an MLP
(2N -> 2N -> 2N -> N, ReLU between); ``BinaryMask`` of its output says, per layer, whether the layer
adapts (1) or keeps its meta-learned value for this task (0). The MLP learns through the mask's effect
on the query loss (straight-through). No dataset id is needed, at meta-train or meta-test.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..masks import BinaryMask
from ..models import Params
from .maml import MAML


class BMP(MAML):
    """MAML whose inner update adapts only the layers an MLP on the task embedding selects."""

    def __init__(self, *args, inp_embedding_init: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        n = len(self.layers)
        self.inp_embedding = nn.Parameter(torch.full((2 * n,), float(inp_embedding_init)))
        self.regularizer = nn.Sequential(nn.Linear(2 * n, 2 * n), nn.ReLU(), nn.Linear(2 * n, 2 * n), nn.ReLU(),
                                         nn.Linear(2 * n, n))
        self._masks: list[torch.Tensor] = []

    @staticmethod
    def options(params: dict) -> dict:
        return {"inp_embedding_init": params["bmp_inp_embedding_init"]}

    def task_embedding(self, params: Params, grads: Params) -> torch.Tensor:
        """[T, 2N]: per layer, mean of the current weights and mean of the gradient (detached)."""
        def layer_mean(tensors, names):
            flat = torch.cat([tensors[k].detach().flatten(1) for k in names], dim=1)
            return flat.mean(1)
        columns = [layer_mean(source, names) for names in self.layers for source in (params, grads)]
        return torch.stack(columns, dim=1)

    def layer_mask(self, params: Params, grads: Params) -> torch.Tensor:
        """[T, N] binary mask: 1 = the layer adapts in this step."""
        logits = self.regularizer(self.task_embedding(params, grads) * self.inp_embedding)
        return BinaryMask.apply(logits)

    def inner_update(self, step: int, params: Params, grads: Params) -> Params:
        mask = self.layer_mask(params, grads)
        if step == 0:
            self._masks = []
        self._masks.append(mask.detach())
        self.record = {"layer_masks": torch.stack(self._masks, dim=1)}  # [T, steps so far, N]
        new = {}
        for layer, names in enumerate(self.layers):
            m = mask[:, layer]
            for k in names:
                new[k] = params[k] - self.fast_lr * m.view(-1, *[1] * (params[k].dim() - 1)) * grads[k]
        return new

    def summarize_records(self, records: dict[str, list[dict]]) -> dict:
        """Per test dataset: how often each layer adapted, over tasks and inner steps, and per step."""
        summary = {}
        for dataset, batches in records.items():
            masks = torch.cat([r["layer_masks"] for r in batches]).float()  # [tasks, steps, N]
            summary[dataset] = {"layer_adapt_frequency": masks.mean((0, 1)).tolist(),
                                "layer_adapt_frequency_by_step": masks.mean(0).tolist()}
        return summary
