"""Meta-test: accuracy over a fixed task set with its 95% confidence interval, many tasks at a time."""

from __future__ import annotations

import math

import torch

from .data import FixedTasks, SplitImages
from .learners import Learner, Probed, accuracy
from .params import Config

CPU_EVAL_BUDGET = 2**26  # bytes of activations an evaluation batch may use on the CPU: batches that stay
# near its caches evaluate faster there than large ones (docs/performance.md)
GPU_EVAL_SHARE = 8  # ... and on a GPU: 1/GPU_EVAL_SHARE of its memory
ACTIVATION_COPIES = 3  # live copies of the largest activation in a no-grad forward (conv, norm, relu)


EVAL_SEED = 10_000  # fixed validation/test task sets: the same for every method and seed of a profile


def fixed_task_sets(params: Config, images: SplitImages, split: str, distributions: int) -> dict[int, FixedTasks]:
    """The fixed validation or test tasks of each of the first ``distributions`` of ``images`` (one
    split's), seeded by EVAL_SEED and the distribution alone: every method, seed and viewer meets the same ones."""
    n_tasks = params.validation_tasks if split == "validation" else params.test_tasks
    queries = params.test_queries or params.queries if split == "test" else params.queries
    return {
        i: FixedTasks(images, i, n_tasks, params.ways, params.shots, queries, EVAL_SEED + i)
        for i in range(distributions)
    }


def mean_ci95(values: torch.Tensor) -> tuple[float, float]:
    """Mean and half-width of the normal 95% confidence interval (1.96 standard errors)."""
    values = values.double()
    if len(values) < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), 1.96 * float(values.std(unbiased=True)) / math.sqrt(len(values))


def eval_batch_size(params: Config, device: torch.device) -> int:
    """Tasks adapted at once in evaluation: ``eval_batch_size`` if set, else as many as the largest
    activation of their query forward (the first conv block's output) allows within the device's budget.
    The budget depends on the device's total memory, not its free memory, so a run repeats."""
    if params.eval_batch_size:
        return params.eval_batch_size
    per_task = params.ways * params.queries * params.hidden_size * params.image_size**2 * 4
    budget = (
        torch.cuda.get_device_properties(device).total_memory // GPU_EVAL_SHARE
        if device.type == "cuda"
        else CPU_EVAL_BUDGET
    )
    return max(1, budget // (per_task * ACTIVATION_COPIES))


def evaluate(learner: Learner, tasks: FixedTasks, batch_size: int, probe: bool = False) -> dict:
    """Adapt to each task's support set and score its queries, ``batch_size`` tasks at a time; with ``probe``,
    also the learner's probe of each batch (on the CPU, for ``learner.summarize_probes``)."""
    accuracies, probes = [], []
    for batch in tasks.batches(batch_size):
        logits, adaptation = learner.predict(batch)
        accuracies.append(accuracy(logits, batch.query_y))
        seen = learner.probe(adaptation) if probe and isinstance(learner, Probed) else {}
        if seen:
            probes.append({k: v.cpu() for k, v in seen.items()})
    acc = torch.cat(accuracies)
    mean, ci = mean_ci95(acc)
    return {"accuracy": mean, "ci95": ci, "tasks": len(acc), "task_accuracies": acc.tolist(), "probes": probes}
