"""Figures shared by the notebooks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .data.images import ClassImages
from .models import LAYER_LABELS


def sample_grid(data: ClassImages, title: str, classes: int = 8, per_class: int = 6, seed: int = 0):
    """A grid of ``per_class`` images (columns) for ``classes`` random classes (rows)."""
    rng = np.random.default_rng(seed)
    counts = data.counts()
    starts = counts.cumsum() - counts
    chosen = rng.choice(len(data.class_names), size=min(classes, len(data.class_names)), replace=False)
    fig, axes = plt.subplots(len(chosen), per_class, figsize=(per_class * 1.1, len(chosen) * 1.1), squeeze=False)
    for row, c in zip(axes, chosen):
        picks = rng.choice(counts[c], size=min(per_class, counts[c]), replace=False)
        for ax in row:
            ax.axis("off")
        for ax, j in zip(row, picks):
            ax.imshow(data.images[starts[c] + j])
        row[0].set_title(data.class_names[c][:18], fontsize=7, loc="left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def learning_curves(curves: dict[str, pd.DataFrame], distributions: list[str]):
    """Validation accuracy per distribution against iteration, one line per run label."""
    fig, axes = plt.subplots(1, len(distributions), figsize=(5 * len(distributions), 3.4), squeeze=False)
    for ax, name in zip(axes[0], distributions):
        for label, curve in curves.items():
            ax.plot(curve["iteration"], curve[f"val_accuracy_{name}"], marker=".", label=label)
        ax.set(title=f"validation on {name}", xlabel="meta-iteration", ylabel="accuracy")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_bars(summary: pd.DataFrame, ways: int):
    """Mean test accuracy per method and test dataset with 95% CI error bars, and chance."""
    methods = list(dict.fromkeys(summary["method"]))
    datasets = list(dict.fromkeys(summary["test_dataset"]))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(datasets) * len(methods) / 2, 3.4))
    for k, method in enumerate(methods):
        rows = summary[summary["method"] == method].set_index("test_dataset").reindex(datasets)
        ax.bar(
            np.arange(len(datasets)) + k * width, rows["accuracy"], width, yerr=rows["ci95"], capsize=3, label=method
        )
    ax.axhline(1.0 / ways, color="gray", ls="--", lw=1, label="chance")
    ax.set_xticks(np.arange(len(datasets)) + width * (len(methods) - 1) / 2, datasets)
    ax.set(ylabel="test accuracy", ylim=(0, 1))
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.12))  # below: clear of the bars
    fig.tight_layout()
    return fig


def layer_adaptation_heatmap(records: dict, title: str = "BMP: how often each layer adapts"):
    """Datasets x layers heatmap of BMP's adaptation frequency (over test tasks and inner steps)."""
    frame = pd.DataFrame({d: r["layer_adapt_frequency"] for d, r in records.items()}, index=LAYER_LABELS).T
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.5 * len(frame)))
    sns.heatmap(frame, vmin=0, vmax=1, annot=True, fmt=".2f", cmap="viridis", ax=ax, cbar_kws={"label": "adapted"})
    ax.set(title=title, xlabel="layer", ylabel="test dataset")
    ax.tick_params(axis="y", labelrotation=0)  # dataset names read across, clear of the axis label
    fig.tight_layout()
    return fig


def adaptation_over_training(curve: pd.DataFrame, distributions: list[str], title: str = "BMP during training"):
    """Per training distribution: how often its training tasks adapted each layer, against meta-iteration
    (the ``adapt_<layer>_<distribution>`` columns of metrics.csv)."""
    fig, axes = plt.subplots(1, len(distributions), figsize=(4.5 * len(distributions), 3), squeeze=False)
    for ax, name in zip(axes[0], distributions):
        for layer in LAYER_LABELS:
            column = f"adapt_{layer}_{name}"
            if column in curve:
                ax.plot(curve["iteration"], curve[column], marker=".", label=layer)
        ax.set(
            title=f"{title}: {name} tasks",
            xlabel="meta-iteration",
            ylabel="share of inner steps adapted",
            ylim=(-0.05, 1.05),
        )
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def sparsity_trajectories(curves: dict[str, pd.DataFrame]):
    """MMSUP's learned sparsity per conv layer against meta-iteration, one panel per run."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.2), squeeze=False)
    for ax, (label, curve) in zip(axes[0], curves.items()):
        for column in [c for c in curve.columns if c.startswith("sparsity_")]:
            ax.plot(curve["iteration"], curve[column], marker=".", label=column.removeprefix("sparsity_"))
        ax.set(title=f"learned sparsity, {label}", xlabel="meta-iteration", ylabel="sparsity")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def overlap_heatmaps(overlap: dict[str, dict[str, float]]):
    """Per conv layer: mean Jaccard overlap of task subnetworks within and between test datasets."""
    fig, axes = plt.subplots(1, len(overlap), figsize=(3.2 * len(overlap), 3), squeeze=False)
    for ax, (layer, pairs) in zip(axes[0], overlap.items()):
        names = list(dict.fromkeys(n for pair in pairs for n in pair.split("|")))
        matrix = pd.DataFrame(np.nan, index=names, columns=names)
        for pair, value in pairs.items():
            a, b = pair.split("|")
            matrix.loc[a, b] = matrix.loc[b, a] = value
        sns.heatmap(matrix, annot=True, fmt=".3f", cmap="magma", vmin=0, vmax=1, cbar=False, ax=ax)
        ax.set_title(f"{layer} subnetwork overlap (0 to 1)")
    fig.tight_layout()
    return fig


def ablation_curves(summary: pd.DataFrame, setting: str):
    """Accuracy against one ablation setting, a line per (method, test dataset), error bars over seeds."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for (method, dataset), group in summary.groupby(["method", "test_dataset"]):
        rows = group.sort_values("value")
        spread = rows["accuracy_std"].where(rows["seeds"] - rows["diverged"] > 1, rows["ci95"])
        line = ax.errorbar(
            rows["value"], rows["accuracy"], yerr=spread, marker="o", capsize=3, label=f"{method} / {dataset}"
        )
        lost = rows[rows["diverged"] > 0]
        for _, row in lost.iterrows():  # where seeds diverged: a cross at the bottom, and how many
            ax.scatter(row["value"], 0.02, marker="x", color=line[0].get_color(), zorder=3)
            ax.annotate(
                f"{row['diverged']} of {row['seeds']} diverged",
                (row["value"], 0.02),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    if setting == "fast_lr":
        ax.set_xscale("log")
    ax.set(title=f"ablation: {setting}", xlabel=setting, ylabel="test accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def convergence_panels(trace: pd.DataFrame, layers: list[str]):
    """The convergence trace: meta-loss, weights entering each layer's mask, and loss change vs swaps."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
    axes[0].plot(trace["iteration"], trace["loss_before"], lw=0.8)
    axes[0].set(title="meta-loss before each update", xlabel="iteration", ylabel="loss")
    for layer in layers:
        axes[1].plot(trace["iteration"], trace[f"swaps_{layer}"], lw=0.8, label=layer)
    axes[1].set(title="weights entering each layer's mask", xlabel="iteration", ylabel="swaps", yscale="symlog")
    axes[1].set_ylim(bottom=0)
    axes[1].legend(fontsize=8)
    axes[2].scatter(trace["swaps"], trace["delta"], s=6, alpha=0.5)
    axes[2].axhline(0, color="gray", lw=1)
    axes[2].set(
        title="loss change vs swaps", xlabel="swaps (all layers)", ylabel="L(n+1) - L(n), same tasks", xscale="symlog"
    )
    axes[2].set_xlim(left=0)
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"better": "#176b2c", "worse": "#a31515", "inconclusive": "#555555"}  # equivalent: blue


def forest(compared: pd.DataFrame, margin: float):
    """Every paired difference (``claims.comparisons``) with its 95 % interval, one line per row grouped by
    question, the equivalence band +-``margin`` shaded and zero marked: the picture read first."""
    rows = compared[compared["verdict"] != "not comparable"].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.28 * max(len(rows), 1)))
    ax.axvspan(-margin, margin, color="#cfe3f7", label=f"equivalence band +-{margin:g}")
    ax.axvline(0, color="#333333", lw=0.8)
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows.itertuples()):
        colour = VERDICT_COLOURS.get(r.verdict, "#1f5fa8")
        ax.plot([r.low, r.high], [yi, yi], color=colour, lw=2)
        ax.plot(r.difference, yi, "o", color=colour, ms=4)
    ax.set_yticks(y, [f"{r.method} vs {r.against} ({r.test_dataset})" for r in rows.itertuples()], fontsize=7)
    for edge in np.flatnonzero(rows["question"].ne(rows["question"].shift()).to_numpy())[1:]:
        ax.axhline(y[edge] + 0.5, color="#bbbbbb", lw=0.6, ls="--")
    ax.set(xlabel="accuracy difference (ours - theirs), 95 % interval", ylim=(-0.7, len(rows) - 0.3))
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
