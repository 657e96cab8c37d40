"""Meta-test: accuracy over a fixed task set with its 95% confidence interval."""
from __future__ import annotations

import math

import torch

from .data import FixedTasks


def mean_ci95(values: torch.Tensor) -> tuple[float, float]:
    """Mean and half-width of the normal 95% confidence interval (1.96 standard errors)."""
    values = values.double()
    if len(values) < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), 1.96 * float(values.std(unbiased=True)) / math.sqrt(len(values))


def evaluate(learner: torch.nn.Module, tasks: FixedTasks, batch_size: int) -> dict:
    """Adapt to each task's support set and score its queries; also what the learner recorded per batch
    (raw, for ``learner.summarize_records`` to condense across datasets)."""
    accuracies, records = [], []
    for batch in tasks.batches(batch_size):
        accuracies.append(learner.evaluate(batch))
        if learner.record:
            records.append({k: v.detach().cpu() for k, v in learner.record.items()})
    acc = torch.cat(accuracies)
    mean, ci = mean_ci95(acc)
    return {"accuracy": mean, "ci95": ci, "tasks": len(acc), "records": records}
