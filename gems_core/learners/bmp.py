"""BMP, the Binary Mask Perceptron (supplement, Listings 1-2): which layers a task adapts.

In every inner step a task embedding (2N numbers per task, detached, from the layers' current weights
and support gradients) is scaled by a learned ``inp_embedding`` and fed to an MLP
(2N -> 2N -> 2N -> N, ReLU between); ``BinaryMask`` of its output says, per layer, whether the layer
adapts (1) or keeps its meta-learned value for this task (0). The MLP learns through the mask's effect
on the query loss (straight-through). No dataset id is needed, at meta-train or meta-test.

How the embedding is formed is ``embedding`` (the ``bmp_embedding`` parameter), one of ``EMBEDDINGS``:

- ``paper``: the supplement's literal form, per layer the mean of its weights and the mean of its
  gradient. At the paper's settings these are 1e-4..1e-2 and move by ~1e-3 between tasks, so the
  MLP's output is its biases' sign: one fixed mask for every task.
- ``log_rms``: per layer, the log of the root-mean-square of its weights and of its gradient. The
  gradient's size carries the task (how far the task is from what the initialisation fits) on a log
  scale, but every entry sits at a layer-specific offset (-2 .. -9) that dwarfs the variation.
- ``standardized`` (default): ``log_rms`` shifted and scaled per entry by statistics measured once,
  on a calibration meta-batch before meta-training starts (``calibrate``), then fixed and saved with
  the model: at initialisation the entries have mean 0 and unit spread over tasks and inner steps, the
  scale an MLP's default initialisation expects, and they stay a fixed affine map of ``log_rms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .. import findings, mechanism
from ..data.tasks import TaskBatch
from ..masks import BinaryMask
from ..models import LAYER_LABELS, Params
from ..schema import one_of, setting
from .maml import MAML, Adaptation, task_losses

if TYPE_CHECKING:  # the parameters module imports the learners
    from matplotlib.axes import Axes

    from ..params import Config
    from .protocol import Probes

EMBEDDINGS = ("paper", "log_rms", "standardized")


def _embedding_forms(forms) -> str | None:
    return None if all(f in EMBEDDINGS for f in forms) else f"must list forms of {list(EMBEDDINGS)}"


@dataclass(frozen=True, kw_only=True)
class BMPSettings:
    """BMP's parameters (``Config`` inherits them; ``params.SCHEMA`` collects them)."""

    bmp_inp_embedding_init: float = setting(float, 1.0, "initial value of every entry of BMP's learned inp_embedding")
    bmp_embedding: str = setting(
        str,
        "standardized",
        "how BMP's task embedding is formed: paper (the supplement's per-layer means), log_rms, or standardized "
        "(log_rms standardised by statistics fixed before training)",
        one_of(*EMBEDDINGS),
    )
    bmp_compare_embeddings: tuple[str, ...] = setting(
        list,
        ["paper"],
        "other bmp_embedding forms notebook 02 also trains BMP with, to compare with bmp_embedding (may be empty)",
        _embedding_forms,
        shapes=False,
    )


CALIBRATION_TASKS = 32  # tasks whose embeddings (over every inner step) fix the standardisation
MIN_SCALE = 0.1  # floor of a standardised entry's spread, in log units (a 10 % change of an RMS): entries
# the same for every task (the shared initial weights) are centred, not magnified


class LayerMaskChoices:
    """What a learner choosing a layer mask per task and inner step (``layer_masks`` [T, steps, N]) is read
    as: BMP and its test-time controls (``Probed``, ``Scored``, ``Pictured``)."""

    def probe(self, adaptation: Adaptation) -> dict[str, torch.Tensor]:
        """The layer mask of every inner step, per task: [T, steps, N]."""
        return {"layer_masks": adaptation.choices["layer_masks"]}

    def summarize_probes(self, probes: Probes) -> dict:
        """Per test dataset: how often each layer adapted, over tasks and inner steps, and per step."""
        summary = {}
        for dataset, batches in probes.items():
            masks = torch.cat([p["layer_masks"] for p in batches]).float()  # [tasks, steps, N]
            summary[dataset] = {
                "layer_adapt_frequency": masks.mean((0, 1)).tolist(),
                "layer_adapt_frequency_by_step": masks.mean(0).tolist(),
            }
        return summary

    def mechanism_score(self, probes: Probes) -> dict:
        """Whether the layer mask varies, and with the distribution (``mechanism.layer_mask_scores``)."""
        return {"mask": mechanism.layer_mask_scores(mechanism.stacked(probes, "layer_masks"))}

    def draw_choice(self, ax: Axes, choices: dict[str, torch.Tensor]) -> None:
        """One task's layers adapted (green) in each inner step."""
        masks = choices["layer_masks"][0].numpy()
        ax.imshow(masks, cmap="Greens", vmin=0, vmax=1, aspect="auto")
        ax.set(
            yticks=range(len(masks)),
            yticklabels=[f"step {i + 1}" for i in range(len(masks))],
            xticks=range(len(LAYER_LABELS)),
            xticklabels=LAYER_LABELS,
            title="layers adapted (green) in each inner step",
        )

    @staticmethod
    def records_figure(records: dict):
        """Test datasets x layers: how often each layer adapted."""
        from .. import plots  # matplotlib only where a figure is drawn, not in every training process

        return plots.layer_adaptation_heatmap(records)

    @staticmethod
    def records_finding(records: dict, scores: dict) -> str:
        """Whether the layers adapted differ between distributions, and which each adapted."""
        return findings.bmp_layer_choices(records, scores)


def masked_update(layers: list[list[str]], fast_lr: float, params: Params, grads: Params, mask: torch.Tensor) -> Params:
    """One inner step in which each layer takes its gradient step where the task's mask [T, N] is 1."""
    new = {}
    for layer, names in enumerate(layers):
        m = mask[:, layer]
        for k in names:
            new[k] = params[k] - fast_lr * m.view(-1, *[1] * (params[k].dim() - 1)) * grads[k]
    return new


class BMP(LayerMaskChoices, MAML):
    """MAML whose inner update adapts only the layers an MLP on the task embedding selects.

    Args:
        *args, **kwargs: as ``MAML`` (ways, image_size, hidden, fast_lr, steps, first_order, seed, init).
        inp_embedding_init: initial value of every entry of the learned ``inp_embedding`` (2N entries).
        embedding: how the task embedding is formed, one of ``EMBEDDINGS`` (see the module docstring).

    Example:
        >>> bmp = BMP(ways=5, image_size=84, embedding="standardized")
        >>> bmp.calibrate(sampler.sample(20))        # once, before meta-training
        >>> loss, accuracy, choices = bmp.meta_loss(sampler.sample(5))
        >>> choices["layer_masks"].shape             # [tasks, inner steps, 5 layers]
    """

    embedding_shift: torch.Tensor  # buffers (saved with the model), typed for readers and type checkers
    embedding_scale: torch.Tensor
    calibrated: torch.Tensor

    def __init__(self, *args, inp_embedding_init: float = 1.0, embedding: str = "standardized", **kwargs):
        super().__init__(*args, **kwargs)
        if embedding not in EMBEDDINGS:
            raise ValueError(f"BMP embedding {embedding!r} is not one of {list(EMBEDDINGS)}")
        n = len(self.layers)
        self.embedding = embedding
        self.inp_embedding = nn.Parameter(torch.full((2 * n,), float(inp_embedding_init)))
        self.mask_mlp = nn.Sequential(
            nn.Linear(2 * n, 2 * n), nn.ReLU(), nn.Linear(2 * n, 2 * n), nn.ReLU(), nn.Linear(2 * n, n)
        )
        self.register_buffer("embedding_shift", torch.zeros(2 * n))
        self.register_buffer("embedding_scale", torch.ones(2 * n))
        self.register_buffer("calibrated", torch.tensor(embedding != "standardized"))
        self._calibrated = bool(self.calibrated)  # the buffer's value on the host: read without a device sync
        self.register_load_state_dict_post_hook(
            lambda module, _: setattr(module, "_calibrated", bool(module.calibrated))
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints written before the mask MLP had its name call it ``regularizer``: read them as theirs."""
        for key in [k for k in state_dict if k.startswith(f"{prefix}regularizer.")]:
            state_dict[f"{prefix}mask_mlp.{key[len(prefix) + len('regularizer.') :]}"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def options(params: Config) -> dict:
        return {"inp_embedding_init": params.bmp_inp_embedding_init, "embedding": params.bmp_embedding}

    def raw_embedding(self, params: Params, grads: Params) -> torch.Tensor:
        """[T, 2N]: per layer, a statistic of the current weights and one of the gradient (detached)."""

        def statistic(tensors, names):
            flat = torch.cat([tensors[k].detach().flatten(1) for k in names], dim=1)
            if self.embedding == "paper":
                return flat.mean(1)
            return flat.square().mean(1).clamp_min(1e-30).log().mul(0.5)  # log RMS

        columns = [statistic(source, names) for names in self.layers for source in (params, grads)]
        return torch.stack(columns, dim=1)

    def calibration_tasks(self) -> int:
        return 0 if bool(self.calibrated) else CALIBRATION_TASKS

    def calibrate(self, batch: TaskBatch) -> None:
        """Fix the ``standardized`` embedding's shift and scale: per entry, the mean and the spread over
        the batch's tasks of ``log_rms`` in the first inner step, at the initial weights. A no-op for
        other forms."""
        if self.embedding != "standardized":
            return
        raw = self.first_step_embedding(batch)
        self.embedding_shift.copy_(raw.mean(0))
        self.embedding_scale.copy_(raw.std(0).clamp_min(MIN_SCALE))
        self.calibrated.fill_(True)
        self._calibrated = True

    def first_step_embedding(self, batch: TaskBatch) -> torch.Tensor:
        """[T, 2N] the raw embedding of each task in the first inner step (current initialisation)."""
        params = {
            k: v.detach().unsqueeze(0).expand(len(batch), *v.shape).requires_grad_() for k, v in self.initial().items()
        }
        with torch.enable_grad():
            loss = task_losses(self.forward_model(params, batch.support_x), batch.support_y).sum()
            grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        return self.raw_embedding(params, grads)

    def first_step_logits(self, batch: TaskBatch) -> torch.Tensor:
        """[T, N] the MLP's outputs in the first inner step (before ``BinaryMask``): how strongly each
        task's embedding pushes each layer towards adapting (> 0) or staying shared (< 0)."""
        with torch.no_grad():
            return self.mask_mlp(self.standardize(self.first_step_embedding(batch)) * self.inp_embedding)

    def standardize(self, raw: torch.Tensor) -> torch.Tensor:
        """The embedding the MLP sees (before ``inp_embedding``): raw, or shifted and scaled. A
        ``standardized`` BMP that was never calibrated refuses: it would run silently on raw log-RMS."""
        if not self._calibrated:
            raise RuntimeError(
                "BMP's standardized embedding was never calibrated: call calibrate(batch) with "
                "training tasks before training or evaluating it (a training run does this before "
                "its first iteration and saves the statistics with the model)"
            )
        tasks = len(raw)
        return (raw - self.by_task(self.embedding_shift, tasks)) / self.by_task(self.embedding_scale, tasks)

    def layer_mask(self, params: Params, grads: Params) -> torch.Tensor:
        """[T, N] binary mask: 1 = the layer adapts in this step."""
        embedding = self.standardize(self.raw_embedding(params, grads))
        return BinaryMask.apply(self.mlp(embedding * self.by_task(self.inp_embedding, len(embedding))))

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        """The mask MLP on per-task inputs [T, 2N]; in a pack each task through its own run's weights."""
        if self.pack_size is None:
            return self.mask_mlp(x)
        for layer in self.mask_mlp:
            if isinstance(layer, nn.Linear):
                weight, bias = self.per_task(layer.weight, len(x)), self.per_task(layer.bias, len(x))
                x = torch.einsum("ti,toi->to", x, weight) + bias
            else:
                x = layer(x)
        return x

    def frozen(self, validation: list[dict], test: list[dict], seed: int) -> tuple[GivenLayerMasks, dict]:
        """The frozen-mask control: these weights, every task adapting with one layer mask per inner step,
        the pattern most ``validation`` tasks chose (never test tasks); and that pattern with the share of
        those tasks that chose it."""
        patterns, counts = torch.unique(
            torch.cat([p["layer_masks"] for p in validation]).flatten(1), dim=0, return_counts=True
        )
        top = int(counts.argmax())
        pattern = patterns[top].view(self.steps, len(self.layers))
        return GivenLayerMasks(self, pattern=pattern), {
            "layer_masks": pattern.tolist(),
            "share_of_validation_tasks": float(counts[top] / counts.sum()),
        }

    def shuffled(self, validation: list[dict], test: list[dict], seed: int) -> tuple[GivenLayerMasks, dict]:
        """The shuffled-masks control: each test task adapts with the masks another test task chose (one
        seeded permutation over every test dataset's tasks): the same masks at the same frequencies, the
        link between a task and its mask broken. ``test``: the probes of the meta-test, in its order."""
        masks = torch.cat([p["layer_masks"] for p in test])
        order = torch.randperm(len(masks), generator=torch.Generator().manual_seed(seed))
        return GivenLayerMasks(self, task_masks=masks[order]), {"permutation_seed": seed}

    def at_random(self, validation: list[dict], test: list[dict], seed: int) -> tuple[GivenLayerMasks, dict]:
        """The random-masks control: each test task adapts with masks drawn independently per layer and
        inner step at the frequencies BMP chose them on the test tasks: BMP's amount of adaptation, no
        choice."""
        masks = torch.cat([p["layer_masks"] for p in test])
        frequency = masks.double().mean(0)  # [steps, N]
        drawn = torch.rand(masks.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return GivenLayerMasks(self, task_masks=(drawn < frequency).to(masks)), {
            "layer_adapt_frequency_by_step": frequency.tolist()
        }

    def inner_update(self, step: int, params: Params, grads: Params) -> tuple[Params, dict[str, torch.Tensor]]:
        """Each layer takes the gradient step where the task's mask for this step is 1; returns the mask."""
        mask = self.layer_mask(params, grads)
        return masked_update(self.layers, self.fast_lr, params, grads, mask), {"layer_masks": mask.detach()}

    def step_sums(
        self, batch: TaskBatch, choices: dict[str, torch.Tensor], distributions: int
    ) -> dict[str, torch.Tensor]:
        """Per training distribution: tasks seen and, per layer, the share of inner steps it adapted."""
        masks = choices["layer_masks"]  # [T, steps, N]
        ids = torch.arange(distributions, device=batch.distribution.device)
        owner = (batch.distribution[:, None] == ids).to(masks.dtype)  # [T, D], no host sync
        return {"adapt": owner.T @ masks.mean(1), "tasks": owner.sum(0)}

    def interval_row(self, sums: dict[str, torch.Tensor], names: list[str]) -> dict[str, float]:
        """``adapt_<layer>_<distribution>``: how often that distribution's training tasks adapted the layer."""
        adapt = (sums["adapt"] / sums["tasks"].clamp_min(1).unsqueeze(1)).tolist()
        return {
            f"adapt_{layer}_{name}": adapt[d][i]
            for d, name in enumerate(names)
            for i, layer in enumerate(LAYER_LABELS)
            if sums["tasks"][d] > 0
        }


class GivenLayerMasks(LayerMaskChoices, MAML):
    """BMP's test-time controls: a copy of a trained BMP's initialisation in which each task adapts the
    layers of a mask it is given instead of the one BMP's MLP would choose: one ``pattern`` [steps, N] for
    every task (frozen), or one row of ``task_masks`` [tasks, steps, N] per task in ``predict``'s order, each
    used once (shuffled, random). Read as BMP is (``LayerMaskChoices``); it is never trained."""

    def __init__(self, trained: BMP, pattern: torch.Tensor | None = None, task_masks: torch.Tensor | None = None):
        if (pattern is None) == (task_masks is None):
            raise ValueError("GivenLayerMasks needs one of pattern (every task's) or task_masks (each task's)")
        super().__init__(**trained.architecture(), init=trained.initial_copy())
        like = trained.inp_embedding
        self.pattern = pattern.to(like) if pattern is not None else None
        self.task_masks = task_masks.to(like) if task_masks is not None else None
        self.next_task = 0
        self.batch_masks: torch.Tensor | None = None  # [T, steps, N]: the batch being adapted

    def predict(self, batch: TaskBatch) -> tuple[torch.Tensor, Adaptation]:
        """As MAML's, each task adapting with its given masks (the next ``len(batch)`` rows of ``task_masks``)."""
        if self.task_masks is not None:
            start, self.next_task = self.next_task, self.next_task + len(batch)
            if self.next_task > len(self.task_masks):
                raise RuntimeError(f"BMP control: {len(self.task_masks)} given masks, asked for task {self.next_task}")
            self.batch_masks = self.task_masks[start : self.next_task]
        return super().predict(batch)

    def inner_update(self, step: int, params: Params, grads: Params) -> tuple[Params, dict[str, torch.Tensor]]:
        """The given masks' gradient step; returns the mask used."""
        if self.pattern is not None:
            mask = self.pattern[step].expand(len(grads["head.weight"]), -1)
        elif self.batch_masks is not None:
            mask = self.batch_masks[:, step]
        else:
            raise RuntimeError("BMP control: per-task masks are dealt by predict (a control is tested, never trained)")
        return masked_update(self.layers, self.fast_lr, params, grads, mask), {"layer_masks": mask}
