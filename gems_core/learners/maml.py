"""MAML, functional and batched over tasks: the base every learner of the kit extends.

A learner owns its meta-parameters (the initialisation, plus whatever a method adds) and only adapts:
it keeps no state between calls; ``adapt`` returns what it chose for each task with the adapted weights
(``Adaptation``), and ``probe`` turns that into what summaries and notebooks read. It adapts a
meta-batch of tasks at once: the initial weights are broadcast to [T, ...], each inner step takes the
gradient of the summed per-task support losses (tasks do not interact, so this is each task's own
gradient) and updates all tasks together. Second order differentiates through the inner loop
(``create_graph=True``); first order treats the inner gradients as constants, as learn2learn does.
Subclasses change the inner update (BMP) or the weights the model sees (MMSUP).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Self

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.tasks import TaskBatch
from ..models import Params, conv4_forward, init_conv4, layer_names

if TYPE_CHECKING:  # the parameters module imports the learners
    from ..params import Config


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys may not contain dots


class Adaptation(NamedTuple):
    """Task-adapted weights [T, ...] and what the learner chose for each task on the way, stacked over inner
    steps where it chose per step (BMP: ``layer_masks`` [T, steps, N]); empty for MAML."""

    params: Params
    choices: dict[str, torch.Tensor]


class MAML(nn.Module):
    """Model-agnostic meta-learning (Finn et al., 2017) on a Conv4 backbone, batched over tasks.

    Args:
        ways: classes per task (the head's outputs).
        image_size: side of the square input images (sets the head's input size).
        hidden: filters per conv block.
        fast_lr: inner-loop (fast) learning rate.
        steps: inner-loop steps, in meta-training and meta-test.
        first_order: treat inner gradients as constants (first-order MAML) instead of second order.
        seed: seed of the initial weights (learn2learn CNN4's initialisation).
        init: initial weights by name (``models.init_conv4`` layout) instead of a seeded draw.

    Example:
        >>> maml = MAML(ways=5, image_size=84)
        >>> optimizer = torch.optim.Adam(maml.parameters(), lr=1e-4)
        >>> loss, accuracy, choices = maml.meta_loss(sampler.sample(5))   # a TaskBatch of 5 tasks
        >>> loss.backward(); optimizer.step()
        >>> maml.evaluate(test_batch)                                       # per-task query accuracy
        >>> logits, adaptation = maml.predict(test_batch)                   # adaptation.choices: {} for MAML
    """

    def __init__(
        self,
        ways: int,
        image_size: int,
        hidden: int = 64,
        fast_lr: float = 0.01,
        steps: int = 5,
        first_order: bool = False,
        seed: int = 0,
        init: Params | None = None,
    ):
        super().__init__()
        init = init if init is not None else init_conv4(ways, image_size, hidden, seed=seed)
        self.names = list(init)
        self.backbone = nn.ParameterDict({_key(k): nn.Parameter(v.clone()) for k, v in init.items()})
        self.ways, self.image_size, self.hidden = ways, image_size, hidden
        self.fast_lr, self.steps, self.first_order = fast_lr, steps, first_order
        self.layers = layer_names()
        self.pack_size: int | None = None  # runs trained in lockstep, each meta-parameter [runs, ...] (packing)

    def architecture(self) -> dict:
        """MAML's own constructor arguments but the weights: a test-time control builds itself from them."""
        return {
            "ways": self.ways,
            "image_size": self.image_size,
            "hidden": self.hidden,
            "fast_lr": self.fast_lr,
            "steps": self.steps,
            "first_order": self.first_order,
        }

    def initial_copy(self) -> Params:
        """A detached copy of the initialisation: a control's weights, the trained ones left untouched."""
        return {k: v.detach().clone() for k, v in self.initial().items()}

    @classmethod
    def from_params(cls, params: Config, seed: int, **fixed) -> Self:
        """The learner a run's resolved parameters describe (``fixed``: a registered method's own options)."""
        return cls(
            params.ways,
            params.image_size,
            params.hidden_size,
            params.fast_lr,
            params.adaptation_steps,
            params.first_order,
            seed=seed,
            **cls.options(params),
            **fixed,
        )

    @staticmethod
    def options(params: Config) -> dict:
        """The method's own keyword arguments, from its parameters (none for MAML)."""
        return {}

    def initial(self) -> Params:
        """The meta-learned initialisation, by name."""
        return {k: self.backbone[_key(k)] for k in self.names}

    def per_task(self, value: torch.Tensor, tasks: int) -> torch.Tensor:
        """A meta-parameter [...] as each of ``tasks`` tasks starts from it: [tasks, ...]; in a pack
        (``pack_size`` runs, value [runs, ...]), each run's for its own ``tasks / runs`` tasks."""
        if self.pack_size is None:
            return value.unsqueeze(0).expand(tasks, *value.shape)
        runs = self.pack_size
        return value.unsqueeze(1).expand(runs, tasks // runs, *value.shape[1:]).reshape(tasks, *value.shape[1:])

    def by_task(self, value: torch.Tensor, tasks: int) -> torch.Tensor:
        """A meta-parameter where it meets per-task values: as it is (it broadcasts), or, in a pack, per task."""
        return value if self.pack_size is None else self.per_task(value, tasks)

    def task_mean(self, losses: torch.Tensor) -> torch.Tensor:
        """The meta-loss of per-task losses [T]: their mean, or, in a pack, each run's mean [runs]."""
        return losses.mean() if self.pack_size is None else losses.view(self.pack_size, -1).mean(1)

    def forward_model(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return conv4_forward(params, x)

    def inner_update(self, step: int, params: Params, grads: Params) -> tuple[Params, dict[str, torch.Tensor]]:
        """One inner step for all tasks: the new weights, and what was chosen per task in this step (none
        for MAML; BMP's masked update returns its layer mask)."""
        return {k: params[k] - self.fast_lr * grads[k] for k in params}, {}

    def adapt(
        self, support_x: torch.Tensor, support_y: torch.Tensor, create_graph: bool, track: bool = True
    ) -> Adaptation:
        """Task-adapted weights [T, ...] after ``steps`` inner steps on the support sets, with the choices.

        ``track``: keep the graph from the adapted weights back to the meta-parameters (meta-training).
        Without it (evaluation) each step starts from detached weights, so memory holds one step."""
        t = support_x.shape[0]
        params = {k: self.per_task(v, t) for k, v in self.initial().items()}
        if not track:
            params = {k: v.detach().requires_grad_() for k, v in params.items()}
        chosen = []
        for step in range(self.steps):
            loss = task_losses(self.forward_model(params, support_x), support_y).sum()
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
            with torch.set_grad_enabled(track):
                params, choice = self.inner_update(step, params, dict(zip(params, grads)))
            chosen.append(choice)
            if not track:
                params = {k: v.requires_grad_() for k, v in params.items()}
        return Adaptation(params, {k: torch.stack([c[k] for c in chosen], dim=1) for k in chosen[0]} if chosen else {})

    def meta_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(mean query loss over tasks, differentiable w.r.t. the meta-parameters, per run in a pack; per-task
        query accuracy; what the learner chose per task, ``Adaptation.choices``)."""
        adapted, choices = self.adapt(batch.support_x, batch.support_y, create_graph=not self.first_order)
        logits = self.forward_model(adapted, batch.query_x)
        return self.task_mean(task_losses(logits, batch.query_y)), accuracy(logits.detach(), batch.query_y), choices

    def predict(self, batch: TaskBatch) -> tuple[torch.Tensor, Adaptation]:
        """Query logits [T, Q, ways] after adaptation, and the adaptation (detached weights and choices),
        with no graph back to the meta-parameters."""
        with torch.enable_grad():
            params, choices = self.adapt(batch.support_x, batch.support_y, create_graph=False, track=False)
        with torch.no_grad():
            params = {k: v.detach() for k, v in params.items()}
            return self.forward_model(params, batch.query_x), Adaptation(params, choices)

    def evaluate(self, batch: TaskBatch) -> torch.Tensor:
        """Per-task query accuracy after adaptation."""
        return accuracy(self.predict(batch)[0], batch.query_y)


def task_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each task: logits [T, B, C], labels [T, B] -> [T]."""
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(labels.shape).mean(1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-task accuracy [T]."""
    return (logits.argmax(-1) == labels).float().mean(1)
