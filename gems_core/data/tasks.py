"""N-way K-shot tasks drawn from a mix of distributions, sampled and gathered on the device.

All images of one split, every distribution's, are one uint8 tensor on the device (``SplitImages``)
with a table of the classes that have enough images for a task. Drawing a meta-batch is a handful of
tensor operations on a ``torch.Generator`` of the same device: random keys, ``topk`` of the smallest
to pick classes and images without replacement, one indexing to gather. There is no host loop, no copy
and no synchronisation, so the sampler runs inside a captured CUDA graph.

A task's images are ordered class by class: support labels are ``arange(ways).repeat_interleave(shots)``,
query labels likewise with ``queries``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from .images import ClassImages

_EXCLUDED = 2.0  # a key above every uniform draw: never among the smallest


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


class SplitImages:
    """One split of every distribution on a device: the images, and the classes usable for tasks
    (at least ``min_per_class`` images), each with its first image, image count and distribution."""

    def __init__(self, datas: list[ClassImages], device: torch.device, min_per_class: int):
        starts, counts, owners, self.class_names = [], [], [], []
        offset = 0
        for d, data in enumerate(datas):
            n = data.counts()
            keep = n >= min_per_class
            starts.append(offset + (n.cumsum() - n)[keep])  # ClassImages are sorted by label
            counts.append(n[keep])
            owners.append(np.full(int(keep.sum()), d))
            self.class_names.append([c for c, k in zip(data.class_names, keep) if k])
            offset += len(data.images)
        self.images = torch.cat([torch.from_numpy(d.images) for d in datas]).permute(0, 3, 1, 2).contiguous().to(device)
        self.class_start = torch.from_numpy(np.concatenate(starts)).long()
        self.class_count = torch.from_numpy(np.concatenate(counts)).long()
        self.class_owner = torch.from_numpy(np.concatenate(owners)).long()

    def classes(self, distribution: int) -> int:
        """How many usable classes ``distribution`` has in this split."""
        return len(self.class_names[distribution])


class TaskSampler:
    """Seeded sampler of meta-batches from ``distributions`` of a split; each task picks its distribution
    with ``weights`` (uniform by default). Random numbers come from a generator on ``device``."""

    def __init__(
        self,
        split: SplitImages,
        distributions: list[int],
        ways: int,
        shots: int,
        queries: int,
        seed: int,
        weights: Sequence[float] | None = None,
        device: torch.device | str = "cpu",
    ):
        self.split, self.ways, self.shots, self.queries = split, ways, shots, queries
        device = torch.device(device)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        shares = torch.tensor(weights if weights is not None else [1.0] * len(distributions), dtype=torch.float64)
        self.weights = shares / shares.sum()
        self._cumulative = self.weights.cumsum(0).float().to(device)
        self._distributions = torch.tensor(distributions, device=device)
        own = torch.isin(split.class_owner, torch.tensor(distributions))  # draws depend on these classes only
        self._start, self._count, self._owner = (
            t[own].to(device) for t in (split.class_start, split.class_count, split.class_owner)
        )
        self._positions = torch.arange(int(split.class_count[own].max()), device=device)
        labels = torch.arange(ways, device=device)
        self._support_y, self._query_y = labels.repeat_interleave(shots), labels.repeat_interleave(queries)

    def state_dict(self) -> dict:
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["generator"])

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen, device=self.gen.device)

    def indices(self, n_tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """([n_tasks] distribution ids, [n_tasks, ways * (shots + queries)] image indices), on the
        generator's device: ``ways`` distinct classes of one distribution, distinct images per class."""
        choice = torch.searchsorted(self._cumulative, self._rand(n_tasks), right=True)
        distribution = self._distributions[choice.clamp_max(len(self._distributions) - 1)]
        keys = self._rand(n_tasks, len(self._owner)).masked_fill(self._owner != distribution[:, None], _EXCLUDED)
        classes = keys.topk(self.ways, dim=1, largest=False).indices  # [T, ways]
        count = self._count[classes]
        keys = self._rand(n_tasks, self.ways, len(self._positions))
        keys = keys.masked_fill(self._positions >= count[..., None], _EXCLUDED)
        picks = keys.topk(self.shots + self.queries, dim=2, largest=False).indices  # [T, ways, shots + queries]
        return distribution, (self._start[classes][..., None] + picks).flatten(1)

    def gather(self, distribution: torch.Tensor, idx: torch.Tensor) -> TaskBatch:
        """Materialise tasks from distribution ids and image indices (see ``indices``) on the images' device."""
        images = self.split.images
        x = images[idx.to(images.device)].float().mul_(1.0 / 255.0)  # one IEEE multiply: the same on every device
        t, _, c, h, w = x.shape
        x = x.view(t, self.ways, self.shots + self.queries, c, h, w)
        support = x[:, :, : self.shots].reshape(t, -1, c, h, w)
        query = x[:, :, self.shots :].reshape(t, -1, c, h, w)
        return TaskBatch(
            support,
            self._support_y.to(images.device).expand(t, -1),
            query,
            self._query_y.to(images.device).expand(t, -1),
            distribution.to(images.device),
        )

    def sample(self, n_tasks: int) -> TaskBatch:
        return self.gather(*self.indices(n_tasks))


class FixedTasks:
    """A fixed, seeded set of tasks of one distribution (meta-validation or meta-test), served in batches.
    The tasks are drawn on the CPU, so every device and machine gets the same ones from the same data."""

    def __init__(
        self, split: SplitImages, distribution: int, n_tasks: int, ways: int, shots: int, queries: int, seed: int
    ):
        self.sampler = TaskSampler(split, [distribution], ways, shots, queries, seed)
        self.distribution, self.idx = self.sampler.indices(n_tasks)

    def __len__(self) -> int:
        return self.idx.shape[0]

    @cached_property
    def fingerprints(self) -> list[str]:
        """Per task, 16 hex digits of SHA-1 over its images' indices in the split and their pixels: two runs
        met the same task (the same classes and images) exactly when their fingerprints agree."""
        images = self.sampler.split.images
        return [
            hashlib.sha1(row.numpy().tobytes() + images[row.to(images.device)].cpu().numpy().tobytes()).hexdigest()[:16]
            for row in self.idx.cpu()
        ]

    def task(self, i: int) -> TaskBatch:
        """Task ``i`` alone, as a batch of one."""
        return self._slice(i, i + 1)

    def batches(self, batch_size: int):
        """Yield TaskBatch objects of at most ``batch_size`` tasks, in a fixed order."""
        for start in range(0, len(self), batch_size):
            yield self._slice(start, start + batch_size)

    def _slice(self, start: int, stop: int) -> TaskBatch:
        return self.sampler.gather(self.distribution[start:stop], self.idx[start:stop])
