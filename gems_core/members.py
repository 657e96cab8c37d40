"""A member of a run: one learner with its optimiser and task sampler (Multi-MAML has one per
distribution). It does the meta-update, keeps the running sums of its training log on the device, and
knows what of itself a checkpoint holds."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .data import SplitImages, TaskBatch, TaskSampler
from .learners import MAML, Logged, Projected
from .learners import METHODS as REGISTRY
from .params import Config

NONFINITE = ("loss", "meta-gradient", "weights")  # what ``update`` checks after every meta-update


@dataclass
class Member:
    """One learner with its optimiser and task sampler, and the running sums of its training log since the
    last metrics row, kept on the device."""

    learner: MAML
    optimizer: torch.optim.Optimizer
    sampler: TaskSampler
    distributions: list[int]  # indices of the distributions it trains on (and is tested on)
    meta_batch_size: int
    n_distributions: int  # of the whole run: the size of per-distribution sums
    sums: dict[str, torch.Tensor] = field(default_factory=dict)

    def update(self) -> tuple[torch.Tensor, torch.Tensor, TaskBatch]:
        """One meta-update on a fresh meta-batch, added to the running sums without a host sync;
        returns (meta-loss, per-task query accuracy, the batch)."""
        batch = self.sampler.sample(self.meta_batch_size)
        loss, acc, choices = self.learner.meta_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.learner.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        self.optimizer.step()
        if isinstance(self.learner, Projected):
            self.learner.after_update()
        weight_norm = torch.nn.utils.get_total_norm([p.detach() for p in params])
        self.record(loss, acc, torch.stack([loss.detach(), grad_norm, weight_norm]), batch, choices)
        return loss, acc, batch

    def record(
        self, loss: torch.Tensor, acc: torch.Tensor, norms: torch.Tensor, batch: TaskBatch, choices: dict
    ) -> None:
        """Add one meta-update to the running sums: its loss, accuracy, non-finite flags (``norms``: the
        loss, meta-gradient and weight norms, in NONFINITE's order) and what the learner logs of its choices."""
        logged = {}
        if isinstance(self.learner, Logged):  # its choices' running sums (BMP's adaptation rates)
            logged = self.learner.step_sums(batch, choices, self.n_distributions)
        nonfinite = ~torch.isfinite(norms)
        earlier = self.sums.get("nonfinite_steps", torch.zeros((), device=loss.device))
        self.accumulate(
            {
                "loss": loss.detach(),
                "accuracy": acc.mean(),
                "nonfinite_first": nonfinite.float() * (earlier == 0),  # what broke first, latched
                "nonfinite_steps": nonfinite.any().float(),
                **logged,
            }
        )

    def accumulate(self, values: dict[str, torch.Tensor]) -> None:
        """Add in place (the tensors stay the same, so a captured graph keeps adding to them)."""
        for k, v in values.items():
            if k in self.sums:
                self.sums[k].add_(v)
            else:
                self.sums[k] = v.detach().clone()

    def read_sums(self) -> dict[str, torch.Tensor]:
        """The running sums, copied to the host, and reset to zero on the device."""
        out = {k: v.detach().to("cpu", copy=True) for k, v in self.sums.items()}  # a copy even on the CPU
        for v in self.sums.values():
            v.zero_()
        return out

    def state_dict(self) -> dict:
        """What a checkpoint holds of this member: weights, optimiser, sampler state and running sums."""
        return {
            "learner": self.learner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "sums": {k: v.cpu() for k, v in self.sums.items()},
        }

    def load_state_dict(self, saved: dict, device: torch.device) -> None:
        self.learner.load_state_dict(saved["learner"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.sampler.load_state_dict(saved["sampler"])
        self.sums = {k: v.to(device) for k, v in saved["sums"].items()}


def build_members(
    params: Config,
    method: str,
    seed: int,
    train: SplitImages,
    n_distributions: int,
    device: torch.device,
    matched: dict | None = None,
) -> list[Member]:
    """The members of a run of ``method`` with ``seed`` (one, or one per distribution for Multi-MAML), each
    with its learner seeded by ``seed`` (a matched control's with the options its match gave), its own task
    stream from ``train`` and its Adam."""
    members = []
    spec = REGISTRY[method]
    for m, group in enumerate(spec.member_groups(n_distributions)):
        torch.manual_seed(seed)
        learner = spec.build(params, seed, matched).to(device)
        weights = [train.classes(i) for i in group] if params.task_sampling == "proportional" else None
        sampler = TaskSampler(
            train,
            group,
            params.ways,
            params.shots,
            params.queries,
            seed=seed * 1000 + m,
            weights=weights,
            device=device,
        )
        # capturable Adam on every CUDA run, graphed or not, so eager and replayed steps compute the same
        optimizer = torch.optim.Adam(learner.parameters(), lr=params.meta_lr, capturable=device.type == "cuda")
        members.append(Member(learner, optimizer, sampler, group, params.meta_batch_size, n_distributions))
    return members
