"""How much BMP's mask can see the task, per embedding form, at initialisation (no training).

    python tools/bmp_embedding_study.py parameters/demo.yaml
    python tools/bmp_embedding_study.py my_real_pair.yaml --tasks 32

For each ``bmp_embedding`` form, on ``--tasks`` fixed training tasks of each of the first two
distributions: the MLP's first-step outputs (``BMP.first_step_logits``), and

- ``spread``: mean |output(task a) - output(task b)| over pairs of tasks of different distributions,
  divided by the mean |output|: near 0 means every task gets the same mask;
- ``masks differ``: the share of such pairs whose first-step masks differ in at least one layer;
- ``adapting``: per layer, the share of tasks whose first step adapts it, per distribution.
"""

from __future__ import annotations

import argparse

import torch

from gems_core.data import SplitImages, TaskSampler, check_against_data, load_distributions
from gems_core.learners import BMP
from gems_core.learners.bmp import CALIBRATION_TASKS, EMBEDDINGS
from gems_core.models import LAYER_LABELS
from gems_core.params import Config, load_params


def spread(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean |a_i - b_j| over all pairs, relative to the mean |output|."""
    return float((a[:, None] - b[None]).abs().mean() / torch.cat([a, b]).abs().mean())


def study(params: Config, tasks: int, seed: int) -> list[dict]:
    dists = load_distributions(params)[:2]
    check_against_data(params, dists)
    split = SplitImages([d.splits["train"] for d in dists], torch.device("cpu"), params.shots + params.queries)
    batches = [
        TaskSampler(split, [i], params.ways, params.shots, params.queries, seed=seed + i).sample(tasks)
        for i in range(2)
    ]
    calibration = TaskSampler(split, [0, 1], params.ways, params.shots, params.queries, seed=seed + 7)
    rows = []
    for form in EMBEDDINGS:
        torch.manual_seed(seed)
        bmp = BMP.from_params(params.replace(bmp_embedding=form), seed=seed)
        bmp.calibrate(calibration.sample(CALIBRATION_TASKS))
        a, b = (bmp.first_step_logits(batch) for batch in batches)
        differ = ((a[:, None] > 0) != (b[None] > 0)).any(-1).float().mean()
        row = {"embedding": form, "spread": spread(a, b), "masks differ": float(differ)}
        for name, logits in zip((d.name for d in dists), (a, b)):
            row[f"adapting ({name})"] = " ".join(
                f"{layer} {float(v):.2f}" for layer, v in zip(LAYER_LABELS, (logits > 0).float().mean(0))
            )
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parameters")
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()
    for row in study(load_params(args.parameters, device="cpu"), args.tasks, args.seed):
        print(" | ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
