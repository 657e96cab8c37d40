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
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .. import findings, mechanism
from ..masks import MAX_SPARSITY, OVERLAP_TASKS, ComputeMask, jaccard_matrix, kept_counts
from ..models import BLOCKS, CONV_LABELS, Params, conv4_forward, layer_index
from ..schema import between, setting
from .maml import MAML, Adaptation

if TYPE_CHECKING:  # the parameters module imports the learners
    from matplotlib.axes import Axes

    from ..params import Config
    from .protocol import Probes


@dataclass(frozen=True, kw_only=True)
class MMSUPSettings:
    """MMSUP's parameters (``Config`` inherits them; ``params.SCHEMA`` collects them)."""

    mmsup_sparsity_init: float = setting(
        float, 0.5, "initial fraction of each conv layer's weights that is masked", between(0.0, 0.99)
    )
    mmsup_learn_sparsity: bool = setting(
        bool, True, "learn the per-layer sparsity (False: fixed, for the sparsity ablation)"
    )
    mmsup_temperature: float = setting(
        float,
        0.1,
        "temperature of the soft-mask surrogate, in units of the layer's mean |weight|",
        between(1e-6, 100.0),
    )


RECORDED_POSITIONS = 4096  # weight positions per layer whose masks are kept for the overlap estimate


class MMSUP(MAML):
    """MAML whose conv layers use per-task top-(1 - sparsity) supermasks of their current weights.

    Args:
        *args, **kwargs: as ``MAML`` (ways, image_size, hidden, fast_lr, steps, first_order, seed, init).
        sparsity_init: initial masked fraction of every conv layer's weights, in [0, 0.99].
        learn_sparsity: meta-learn the per-layer sparsity (False: fixed, the sparsity ablation).
        temperature: of the soft-mask surrogate gradient, in units of the layer's mean |weight|.
        static_mask: every task uses the initial weights' mask, kept through adaptation (the trained control
            ``mmsup_static``; ``GivenSupermask`` is the test-time one).

    Example:
        >>> mmsup = MMSUP(ways=5, image_size=84, sparsity_init=0.5)
        >>> loss, accuracy, _ = mmsup.meta_loss(sampler.sample(5))
        >>> loss.backward(); optimizer.step(); mmsup.after_update()   # keeps sparsity in [0, 0.99]
        >>> mmsup.train_record()                                       # {'sparsity_conv1': ..., ...}
    """

    sparsity: nn.Parameter  # per conv layer; typed here for readers and type checkers, as the buffer below
    layer_sizes: torch.Tensor

    def __init__(
        self,
        *args,
        sparsity_init: float = 0.5,
        learn_sparsity: bool = True,
        temperature: float = 0.1,
        static_mask: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.sparsity = nn.Parameter(torch.full((BLOCKS,), float(sparsity_init)), requires_grad=learn_sparsity)
        self.temperature = temperature
        sizes = [self.backbone[f"{layer}__weight"].numel() for layer in CONV_LABELS]
        self.register_buffer("layer_sizes", torch.tensor(sizes), persistent=False)
        gen = torch.Generator().manual_seed(0)
        for layer, n in zip(CONV_LABELS, sizes):
            picked = torch.randperm(n, generator=gen)[:RECORDED_POSITIONS].sort().values
            self.register_buffer(f"positions_{layer}", picked, persistent=False)
        self.static_mask = static_mask

    @staticmethod
    def options(params: Config) -> dict:
        return {
            "sparsity_init": params.mmsup_sparsity_init,
            "learn_sparsity": params.mmsup_learn_sparsity,
            "temperature": params.mmsup_temperature,
        }

    def after_update(self) -> None:
        """Project the learned sparsity back into [0, MAX_SPARSITY] after an optimiser step."""
        with torch.no_grad():
            self.sparsity.clamp_(0.0, MAX_SPARSITY)

    def layer_mask(self, layer: str, weight: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """[T, n] the top-``kept`` mask of |weight| [T, ...] (of the initial weights in the frozen-mask control),
        with the surrogate gradient for the sparsity."""
        i = layer_index(layer)
        scores = self.mask_scores(layer, weight).detach().abs().flatten(1)
        sparsity, kept = self.by_task(self.sparsity[..., i], len(scores)), self.by_task(kept[..., i], len(scores))
        return ComputeMask.apply(scores, sparsity, kept, self.temperature * scores.mean(1))

    def mask_scores(self, layer: str, weight: torch.Tensor) -> torch.Tensor:
        """[T or 1, ...] what the layer's mask keeps the largest magnitudes of: the task's weights, or the
        initial weights (``static_mask``)."""
        if not self.static_mask:
            return weight
        initial = self.backbone[f"{layer}__weight"]
        return initial.unsqueeze(0) if self.pack_size is None else self.per_task(initial, len(weight))

    def kept(self) -> torch.Tensor:
        """How many weights each conv layer keeps at the current sparsity (a long tensor, on the device)."""
        return kept_counts(self.layer_sizes, self.sparsity.detach())

    def supermask(self, name: str, weight: torch.Tensor, kept: torch.Tensor | None = None) -> torch.Tensor:
        """weight [T, O, I, k, k] times its per-task top-(1 - sparsity) mask of |weight|."""
        mask = self.layer_mask(name.split(".")[0], weight, self.kept() if kept is None else kept)
        return weight * mask.view(-1, *weight.shape[1:])

    def frozen(self, validation: list[dict], test: list[dict], seed: int) -> tuple[GivenSupermask, dict]:
        """The frozen-mask control: these weights, every task's subnetwork the top-(1 - sparsity) mask of
        the meta-learned initial weights, kept through adaptation (no re-masking per task); chosen by no
        task."""
        initial = {c: self.backbone[f"{c}__weight"].detach() for c in CONV_LABELS}
        return GivenSupermask(self, initial), {
            "mask": "the meta-learned initial weights' supermask, the same for every task"
        }

    def random_mask(self, validation: list[dict], test: list[dict], seed: int) -> tuple[GivenSupermask, dict]:
        """The random-mask control: these weights, every task using one random mask per conv layer at that
        layer's learned sparsity (seeded): MMSUP's pruning, no chosen weights."""
        generator = torch.Generator().manual_seed(seed)
        scores = {
            c: torch.rand(self.backbone[f"{c}__weight"].shape, generator=generator).to(self.sparsity)
            for c in CONV_LABELS
        }
        return GivenSupermask(self, scores), {
            "mask": "a random mask per conv layer at its learned sparsity, the same for every task"
        }

    def forward_model(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return conv4_forward(params, x, partial(self.supermask, kept=self.kept()))  # counts once per forward

    def subnetworks(self, params: Params) -> dict[str, torch.Tensor]:
        """Per conv layer, the kept set [T, n] (bool) that the forward uses with weights ``params`` [T, ...]."""
        kept = self.kept()
        with torch.no_grad():
            return {c: self.layer_mask(c, params[f"{c}.weight"], kept).bool() for c in CONV_LABELS}

    def probe(self, adaptation: Adaptation) -> dict[str, torch.Tensor]:
        """Each task's subnetwork on fixed weight positions per conv layer: ``initial_<layer>`` at the
        unadapted weights and ``masks_<layer>`` at the adapted ones (those the queries saw)."""
        tasks = len(adaptation.params["head.weight"])
        initial = self.subnetworks({k: v.unsqueeze(0) for k, v in self.initial().items()})
        final = self.subnetworks(adaptation.params)
        out = {}
        for c in CONV_LABELS:
            positions = getattr(self, f"positions_{c}")
            out[f"initial_{c}"] = initial[c][:, positions].expand(tasks, -1)
            out[f"masks_{c}"] = final[c][:, positions].expand(tasks, -1)  # one mask for all in the frozen control
        return out

    def train_record(self) -> dict:
        return {f"sparsity_{CONV_LABELS[i]}": float(s) for i, s in enumerate(self.sparsity.detach())}

    def mechanism_score(self, probes: Probes) -> dict:
        """Whether the task subnetworks vary, and with the distribution (``mechanism.subnetwork_scores`` of
        the first OVERLAP_TASKS test tasks' kept weights per dataset and conv layer)."""
        kept = {layer: mechanism.stacked(probes, f"masks_{layer}", OVERLAP_TASKS) for layer in CONV_LABELS}
        return {"subnetwork": mechanism.subnetwork_scores(kept)}

    def summarize_probes(self, probes: Probes) -> dict:
        """Per layer: the mean Jaccard overlap of task subnetworks within and between test datasets, and
        per dataset the share of weights whose mask changed during adaptation."""

        def stacked(batches, key):
            return torch.cat([r[key] for r in batches])[:OVERLAP_TASKS].float()

        overlap, changed = {}, {}
        for layer in CONV_LABELS:
            final = {d: stacked(batches, f"masks_{layer}") for d, batches in probes.items()}
            overlap[layer] = {
                f"{a}|{b}": jaccard(final[a], final[b], same=a == b)
                for a, b in itertools.combinations_with_replacement(final, 2)
            }
            changed[layer] = {
                d: float((stacked(batches, f"initial_{layer}") != final[d]).float().mean())
                for d, batches in probes.items()
            }
        return {"overlap": overlap, "changed_during_adaptation": changed, "sparsity": self.train_record()}

    def draw_choice(self, ax: Axes, choices: dict[str, torch.Tensor]) -> None:
        """One task's subnetwork: the share of each conv layer's weights it keeps, and the share adaptation
        changed (on the sampled positions)."""
        final = [choices[f"masks_{c}"][0].float() for c in CONV_LABELS]
        initial = [choices[f"initial_{c}"][0].float() for c in CONV_LABELS]
        x = range(len(CONV_LABELS))
        ax.bar([i - 0.2 for i in x], [float(m.mean()) for m in final], width=0.4, label="kept")
        changed = [float((m != i).float().mean()) for m, i in zip(final, initial)]
        ax.bar([i + 0.2 for i in x], changed, width=0.4, label="changed by adaptation")
        ax.set(
            xticks=list(x),
            xticklabels=CONV_LABELS,
            ylim=(0, 1),
            title="share of each conv layer's weights in this task's subnetwork (sampled positions)",
        )
        ax.legend(fontsize=7)

    @staticmethod
    def records_figure(records: dict):
        """Per conv layer: how much the test datasets' task subnetworks overlap, within and between them."""
        from .. import plots  # matplotlib only where a figure is drawn, not in every training process

        return plots.overlap_heatmaps(records["overlap"])

    @staticmethod
    def records_finding(records: dict, scores: dict) -> str:
        """How much subnetworks overlap within and across distributions, and the mechanism's reading."""
        return findings.mmsup_overlap(records, scores)


class GivenSupermask(MMSUP):
    """MMSUP's test-time controls: a copy of a trained MMSUP (initialisation and learned sparsity) in which
    every task's subnetwork is the top-(1 - sparsity) of given ``scores`` per conv layer, the same for every
    task and kept through adaptation: the initial weights (frozen) or random numbers (random). Read as MMSUP
    is; it is never trained."""

    def __init__(self, trained: MMSUP, scores: dict[str, torch.Tensor]):
        super().__init__(
            **trained.architecture(), init=trained.initial_copy(), learn_sparsity=False, temperature=trained.temperature
        )
        self.to(trained.sparsity)  # its buffers where and as the trained learner's
        with torch.no_grad():
            self.sparsity.copy_(trained.sparsity)
        self.scores = {c: s.detach().to(trained.sparsity) for c, s in scores.items()}

    def mask_scores(self, layer: str, weight: torch.Tensor) -> torch.Tensor:
        return self.scores[layer].unsqueeze(0)


def jaccard(a: torch.Tensor, b: torch.Tensor, same: bool) -> float:
    """Mean |a_i & b_j| / |a_i | b_j| over task pairs (i < j when a and b are the same set)."""
    scores = jaccard_matrix(a, b)
    if same:
        scores = scores[torch.triu(torch.ones_like(scores, dtype=torch.bool), diagonal=1)]
    return float(scores.mean())
