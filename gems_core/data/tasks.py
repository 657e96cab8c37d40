"""N-way K-shot tasks drawn from a mix of distributions, as batched tensors on the chosen device.

Each split's images live as one uint8 tensor on the device; a task is a set of indices into it, so
sampling is indexing, never decoding. A task's images are ordered class by class: support labels are
``arange(ways).repeat_interleave(shots)``, query labels likewise with ``queries``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .images import ClassImages


@dataclass
class TaskBatch:
    """A meta-batch of T tasks: x [T, ways*k, 3, H, W] float in [0, 1], y [T, ways*k] long."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    distribution: torch.Tensor  # [T] index of each task's distribution

    def __len__(self) -> int:
        return self.support_x.shape[0]


class ImagePool:
    """One split of one distribution on a device, with the classes that have enough images for a task."""

    def __init__(self, data: ClassImages, device: torch.device, min_per_class: int):
        self.images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous().to(device)
        counts = data.counts()
        starts = counts.cumsum() - counts  # ClassImages are sorted by label
        self.classes = [(int(s), int(c)) for s, c in zip(starts, counts) if c >= min_per_class]
        self.class_names = [n for n, c in zip(data.class_names, counts) if c >= min_per_class]

    def task_indices(self, ways: int, per_class: int, gen: torch.Generator) -> torch.Tensor:
        """[ways * per_class] image indices: ``ways`` random classes, ``per_class`` random images each."""
        chosen = torch.randperm(len(self.classes), generator=gen)[:ways]
        rows = []
        for c in chosen.tolist():
            start, count = self.classes[c]
            rows.append(start + torch.randperm(count, generator=gen)[:per_class])
        return torch.cat(rows)


class TaskSampler:
    """Seeded sampler of meta-batches; each task comes from one pool, picked with ``weights``."""

    def __init__(self, pools: list[ImagePool], ways: int, shots: int, queries: int, seed: int,
                 weights: list[float] | None = None):
        self.pools, self.ways, self.shots, self.queries = pools, ways, shots, queries
        self.weights = torch.tensor(weights if weights is not None else [1.0] * len(pools), dtype=torch.float)
        self.gen = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["generator"])

    def indices(self, n_tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """([n_tasks] pool ids, [n_tasks, ways * (shots + queries)] image indices)."""
        pool_ids = torch.multinomial(self.weights, n_tasks, replacement=True, generator=self.gen)
        per_class = self.shots + self.queries
        idx = torch.stack([self.pools[p].task_indices(self.ways, per_class, self.gen) for p in pool_ids.tolist()])
        return pool_ids, idx

    def gather(self, pool_ids: torch.Tensor, idx: torch.Tensor) -> TaskBatch:
        """Materialise tasks from pool ids and indices (see ``indices``)."""
        per_class = self.shots + self.queries
        images = torch.stack([self.pools[p].images[i.to(self.pools[p].images.device)]
                              for p, i in zip(pool_ids.tolist(), idx)])
        images = images.float().div_(255.0)
        t, _, c, h, w = images.shape
        images = images.view(t, self.ways, per_class, c, h, w)
        device = images.device
        support = images[:, :, :self.shots].reshape(t, -1, c, h, w)
        query = images[:, :, self.shots:].reshape(t, -1, c, h, w)
        labels = torch.arange(self.ways, device=device)
        support_y = labels.repeat_interleave(self.shots).expand(t, -1)
        query_y = labels.repeat_interleave(self.queries).expand(t, -1)
        return TaskBatch(support, support_y, query, query_y, pool_ids.to(device))

    def sample(self, n_tasks: int) -> TaskBatch:
        return self.gather(*self.indices(n_tasks))


class FixedTasks:
    """A fixed, seeded set of tasks from one pool (meta-validation or meta-test), served in batches."""

    def __init__(self, pool: ImagePool, n_tasks: int, ways: int, shots: int, queries: int, seed: int,
                 pool_id: int = 0):
        self.sampler = TaskSampler([pool], ways, shots, queries, seed)
        _, self.idx = self.sampler.indices(n_tasks)
        self.pool_id = pool_id

    def __len__(self) -> int:
        return self.idx.shape[0]

    def task(self, i: int) -> TaskBatch:
        """Task ``i`` alone, as a batch of one."""
        return self._slice(i, i + 1)

    def batches(self, batch_size: int):
        """Yield TaskBatch objects of at most ``batch_size`` tasks, in a fixed order."""
        for start in range(0, len(self), batch_size):
            yield self._slice(start, start + batch_size)

    def _slice(self, start: int, stop: int) -> TaskBatch:
        idx = self.idx[start:stop]
        batch = self.sampler.gather(torch.zeros(len(idx), dtype=torch.long), idx)
        batch.distribution = torch.full_like(batch.distribution, self.pool_id)
        return batch
