"""Packed training: the members of P runs that share every shape, trained in lockstep as one batched step.

Runs of one method at one setting differ only in their seed: the same learner class, parameter shapes,
meta-batch and inner loop. A pack stacks their learners' meta-parameters on a leading run dimension
(``stack_learners``: the learner's ``pack_size``) and their Adam states likewise, and concatenates their
meta-batches, each drawn by its own run's sampler: run r's tasks are rows r*T .. (r+1)*T - 1. The
forward is already grouped over tasks (``models.conv4_forward``), so P runs are one call with P times
the groups: wider kernels, the same arithmetic. Each run's loss is its own tasks' mean, the pack
differentiates their sum, and no run's gradient reaches another's parameters; Adam is elementwise, so
one Adam over stacked tensors is P Adams. What each run logs goes to its own member's running sums, so
its divergence watch, metrics and checkpoints are those of a run trained alone
(``sync``: the pack's weights and optimiser state written back into each member).

tests/test_packing.py proves it in float64: P packed runs equal the same runs trained alone.
"""

from __future__ import annotations

import copy

import torch

from .data import TaskBatch
from .learners import MAML, Projected
from .members import Member


def stack_learners(learners: list[MAML]) -> MAML:
    """One learner of the same class and settings holding ``learners``' meta-parameters and buffers stacked
    on a leading run dimension (``pack_size``): its ``meta_loss`` on the runs' tasks, run by run, returns
    each run's loss."""
    packed = copy.deepcopy(learners[0])  # the class and its settings; every tensor is replaced below
    with torch.no_grad():
        for name, param in packed.named_parameters():
            param.data = torch.stack([learner.get_parameter(name).detach() for learner in learners])
        for name, _ in list(packed.named_buffers()):
            module, _, attr = name.rpartition(".")
            owner = packed.get_submodule(module) if module else packed
            setattr(owner, attr, torch.stack([learner.get_buffer(name) for learner in learners]))
    packed.pack_size = len(learners)
    return packed


def unstack_into(packed: MAML, learners: list[MAML]) -> None:
    """Write each run's slice of the packed meta-parameters and buffers back into its own learner."""
    with torch.no_grad():
        for name, param in packed.named_parameters():
            for r, learner in enumerate(learners):
                learner.get_parameter(name).copy_(param[r])
        for name, buffer in packed.named_buffers():
            for r, learner in enumerate(learners):
                learner.get_buffer(name).copy_(buffer[r])


def stack_optimizers(optimizers: list[torch.optim.Optimizer], packed: MAML) -> torch.optim.Optimizer:
    """One Adam over the packed learner's parameters, with the runs' hyperparameters and their states
    stacked (the runs are at one iteration, so their step counts agree)."""
    group = {k: v for k, v in optimizers[0].param_groups[0].items() if k != "params"}
    stacked = torch.optim.Adam(packed.parameters(), **group)
    for j, param in enumerate(packed.parameters()):
        states = [opt.state.get(opt.param_groups[0]["params"][j], {}) for opt in optimizers]
        if all(states):  # not before the first step, nor for a parameter that never had a gradient
            stacked.state[param] = {
                "step": states[0]["step"].clone(),
                **{k: torch.stack([s[k] for s in states]) for k in states[0] if k != "step"},
            }
    return stacked


def unstack_optimizer_into(stacked: torch.optim.Optimizer, optimizers: list[torch.optim.Optimizer]) -> None:
    """Write each run's slice of the packed Adam state back into its own Adam."""
    for j, param in enumerate(stacked.param_groups[0]["params"]):
        state = stacked.state.get(param)
        if not state:
            continue
        for r, opt in enumerate(optimizers):
            opt.state[opt.param_groups[0]["params"][j]] = {
                k: v.clone() if k == "step" else v[r].clone() for k, v in state.items()
            }


def concatenated(batches: list[TaskBatch]) -> TaskBatch:
    """The runs' meta-batches as one, run after run."""
    return TaskBatch(*(torch.cat([getattr(b, f) for b in batches]) for f in TaskBatch.__dataclass_fields__))


def sliced(batch: TaskBatch, start: int, stop: int) -> TaskBatch:
    return TaskBatch(*(getattr(batch, f)[start:stop] for f in TaskBatch.__dataclass_fields__))


class Pack:
    """Members of different runs with one learner class and every shape in common, meta-updated as one:
    each keeps its own sampler, running sums and (after ``sync``) weights and optimiser state."""

    def __init__(self, members: list[Member]):
        shapes = {_shape_key(m) for m in members}
        if len(shapes) != 1:
            raise ValueError(f"a pack's members must share every shape; these differ: {sorted(map(str, shapes))}")
        self.members = members
        self.learner = stack_learners([m.learner for m in members])
        self.optimizer = stack_optimizers([m.optimizer for m in members], self.learner)

    def __len__(self) -> int:
        return len(self.members)

    def update(self) -> None:
        """One meta-update of every member: their batches drawn by their own samplers, one batched step."""
        batches = [m.sampler.sample(m.meta_batch_size) for m in self.members]
        losses, acc, choices = self.learner.meta_loss(concatenated(batches))
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        params = [p for p in self.learner.parameters() if p.grad is not None]
        grads = [p.grad for p in params if p.grad is not None]
        grad_norms = [torch.nn.utils.get_total_norm([g[r] for g in grads]) for r in range(len(self))]
        self.optimizer.step()
        if isinstance(self.learner, Projected):
            self.learner.after_update()
        start = 0
        for r, (member, batch) in enumerate(zip(self.members, batches)):
            stop = start + len(batch)
            weight_norm = torch.nn.utils.get_total_norm([p.detach()[r] for p in params])
            norms = torch.stack([losses[r].detach(), grad_norms[r], weight_norm])
            member.record(losses[r], acc[start:stop], norms, batch, {k: v[start:stop] for k, v in choices.items()})
            start = stop

    def sync(self) -> None:
        """Write the pack's weights and optimiser state back into each member (before it is logged,
        checkpointed, evaluated or leaves the pack)."""
        unstack_into(self.learner, [m.learner for m in self.members])
        unstack_optimizer_into(self.optimizer, [m.optimizer for m in self.members])


def _shape_key(member: Member) -> tuple:
    """What must agree for members to pack: the learner class, every tensor's shape and dtype, the
    meta-batch and the inner loop's settings."""
    learner = member.learner
    tensors = tuple((n, tuple(t.shape), t.dtype) for n, t in (*learner.named_parameters(), *learner.named_buffers()))
    return (type(learner), tensors, member.meta_batch_size, learner.steps, learner.fast_lr, learner.first_order)
