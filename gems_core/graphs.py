"""A whole meta-iteration captured once as a CUDA graph and replayed.

A meta-iteration at the paper's settings is thousands of small kernels (the second-order inner loop of
a Conv4); launching them one by one from Python costs more than running them. ``GraphedStep`` runs a
step function eagerly for a few warm-up iterations (on a side stream, as CUDA graph capture requires),
then captures one call and replays it for every later iteration. What the step touches must live in
the same tensors on every call: the sampler draws into graph-owned buffers from a generator registered
with the graph, the optimiser is capturable Adam, and running sums are updated in place. Every call,
warm-up, capture or replay, is exactly one training iteration, so the caller cannot tell them apart.
If capture fails, the step says so once and stays eager.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

WARMUP_ITERATIONS = 3  # eager iterations before capture (lazy initialisation, cuDNN autotuning)


class GraphedStep:
    """Call to run one iteration of ``step``: eagerly for the first ``warmup`` calls, then from a graph."""

    def __init__(
        self,
        step: Callable[[], object],
        generators: list[torch.Generator],
        name: str,
        warmup: int = WARMUP_ITERATIONS,
        pool=None,
    ):
        self.step, self.generators, self.name = step, generators, name
        self.warmup, self.pool = warmup, pool
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed: str | None = None
        self._stream = torch.cuda.Stream()

    def __call__(self) -> None:
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
        elif self.failed is not None or self.calls <= self.warmup:
            self._eager()
        else:
            self._capture()

    def _eager(self) -> None:
        """One eager iteration on the side stream (capture needs the warm-up off the default stream)."""
        self._stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._stream):
            self.step()
        torch.cuda.current_stream().wait_stream(self._stream)

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        for gen in self.generators:
            graph.register_generator_state(gen)
        torch.cuda.synchronize()
        try:
            with torch.cuda.graph(graph, pool=self.pool):
                self.step()
        except Exception as exc:  # a method or setting that cannot be captured: stay eager, say so once
            self.failed = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"CUDA graph capture of {self.name} failed ({self.failed}); running eagerly", stacklevel=2)
            torch.cuda.synchronize()
            self._eager()
            return
        self.graph = graph
        graph.replay()  # capture records without running: this replay is the iteration


class MemberSteps:
    """The device seam of a run: one call is one meta-iteration of every member, queued on the device,
    each member's update called eagerly or, with ``graphed`` (a GPU), captured once as a CUDA graph and
    replayed (members replay one after the other, from one memory pool)."""

    def __init__(self, members: list, device: torch.device, graphed: bool, name: str):
        if graphed:
            pool = torch.cuda.graph_pool_handle()
            self.steps = [
                GraphedStep(m.update, [m.sampler.gen], f"{name} (member {i})", pool=pool) for i, m in enumerate(members)
            ]
        else:
            self.steps = [m.update for m in members]

    def __call__(self) -> None:
        for step in self.steps:
            step()


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU, where nothing is queued)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
