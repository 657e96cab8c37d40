"""Empirical check of the supplement's section C.1: when MMSUP's masks swap weights between
iterations n and n+1, does the loss decrease (L_{n+1} < L_n)?

Per meta-iteration of an MMSUP run it records the meta-loss on the iteration's tasks before the
update and, on the same tasks, after it (so the change is the update's effect, not a change of
tasks), and per conv layer how many weights entered the mask of the meta-learned initialisation.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import io, numerics
from .data import Distribution, SplitImages
from .device import device_name, resolve_device
from .learners import SUBNETWORK_MASKER
from .learners.maml import task_losses
from .members import build_members
from .models import CONV_LABELS
from .params import Config

LAYERS = CONV_LABELS
PROGRESS_EVERY = 25  # iterations between the trace's progress records


METHOD = SUBNETWORK_MASKER  # the method whose convergence the supplement's section C.1 analyses


def initial_masks(learner) -> dict[str, torch.Tensor]:
    """The supermask [n] of each conv layer of the meta-learned initialisation (no task adaptation)."""
    kept = learner.subnetworks({k: v.unsqueeze(0) for k, v in learner.initial().items()})
    return {layer: mask[0] for layer, mask in kept.items()}


def query_loss(learner, batch) -> float:
    """Mean query loss after adaptation, without a meta-gradient graph."""
    return task_losses(learner.predict(batch)[0], batch.query_y).mean().item()


def trace(params: Config, seed: int, distributions: list[Distribution], path: Path) -> pd.DataFrame:
    """Train MMSUP for ``convergence_iterations`` recording losses and swaps; cached in ``path`` (CSV).
    A JSON file beside it holds the iteration reached, the time so far and the device, written every
    ``PROGRESS_EVERY`` iterations (for the pipeline's status line) and at the end (for the results page)."""
    path = Path(path)
    if path.exists():
        return pd.read_csv(path)
    tqdm.write(f"{METHOD} seed {seed}: training the convergence trace from iteration 0 into {path}")
    device, started = resolve_device(params.device), time.perf_counter()
    numerics.configure(device, params.tf32, params.deterministic)
    train = SplitImages([d.splits["train"] for d in distributions], device, params.shots + params.queries)
    (member,) = build_members(params, METHOD, seed, train, len(distributions), device)
    learner, rows, total = member.learner, [], params.convergence_iterations

    def record(iteration: int) -> None:
        io.write_text(
            path.with_suffix(".json"),
            json.dumps(
                {
                    "iteration": iteration,
                    "of": total,
                    "train_seconds": time.perf_counter() - started,
                    "device": device_name(device),
                }
            ),
        )

    before = initial_masks(learner)
    for n in tqdm(range(total), desc="convergence trace", unit="it"):
        loss, _, batch = member.update()
        after = initial_masks(learner)
        row = {"iteration": n + 1, "loss_before": loss.item(), "loss_after": query_loss(learner, batch)}
        for layer in LAYERS:
            row[f"swaps_{layer}"] = int((after[layer] & ~before[layer]).sum())  # weights that entered the mask
        rows.append(row)
        before = after
        if (n + 1) % PROGRESS_EVERY == 0:
            record(n + 1)
    table = pd.DataFrame(rows)
    table["delta"] = table["loss_after"] - table["loss_before"]
    table["swaps"] = table[[f"swaps_{layer}" for layer in LAYERS]].sum(1)
    record(total)
    io.write_text(path, table.to_csv(index=False))
    return table


def claim_holds(table: pd.DataFrame) -> pd.DataFrame:
    """How often L_{n+1} < L_n holds: overall, with and without swaps, and per layer with swaps."""

    def share(rows: pd.DataFrame, label: str) -> dict:
        return {
            "iterations": label,
            "count": len(rows),
            "loss_decreased": float((rows["delta"] < 0).mean()) if len(rows) else float("nan"),
            "mean_delta": float(rows["delta"].mean()) if len(rows) else float("nan"),
        }

    median = table["swaps"].median()
    out = [
        share(table, "all"),
        share(table[table["swaps"] > 0], "with swaps (any layer)"),
        share(table[table["swaps"] == 0], "without swaps"),
        share(table[table["swaps"] > median], "more swaps than the median"),
        share(table[table["swaps"] <= median], "at most the median swaps"),
    ]
    out += [share(table[table[f"swaps_{layer}"] > 0], f"with swaps in {layer}") for layer in LAYERS]
    return pd.DataFrame(out)


def correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation between the number of swaps (per layer and in total) and the loss change;
    NaN, without a warning, where either never varies (a layer with no swaps, say)."""

    def spearman(column: str) -> float:
        if table[column].nunique() < 2 or table["delta"].nunique() < 2:
            return float("nan")
        return table[column].corr(table["delta"], method="spearman")

    columns = [f"swaps_{layer}" for layer in LAYERS] + ["swaps"]
    return pd.DataFrame({"swaps": columns, "spearman_with_delta": [spearman(c) for c in columns]})


def verdict(holds: pd.DataFrame, correlations: pd.DataFrame) -> str:
    """The check's outcome in one paragraph of plain text."""
    h = holds.set_index("iterations")

    def pct(label):
        return f"{h.loc[label, 'loss_decreased']:.0%} of {int(h.loc[label, 'count'])}"

    text = f"The loss on the same tasks fell after {pct('all')} updates. "
    if h.loc["without swaps", "count"] == 0:
        text += "Every update swapped weights in some layer, so there is no swap-free baseline; "
    else:
        text += f"It fell after {pct('with swaps (any layer)')} updates with swaps and {pct('without swaps')} without; "
    rho = correlations.set_index("swaps").loc["swaps", "spearman_with_delta"]
    text += (
        f"after {pct('more swaps than the median')} updates with more swaps than the median and "
        f"{pct('at most the median swaps')} with fewer. Spearman correlation between the number of swaps and "
        f"the loss change: {rho:.2f} (negative means more swaps went with larger decreases, as the argument "
        "predicts). The argument is first order and per neuron; a meta-update also moves every unmasked "
        "weight, so swaps are never its only effect, and this check shows association, not cause."
    )
    return text
