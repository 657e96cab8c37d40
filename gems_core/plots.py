"""Figures shared by the notebooks."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .data.images import ClassImages


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
        ax.bar(np.arange(len(datasets)) + k * width, rows["accuracy"], width, yerr=rows["ci95"], capsize=3, label=method)
    ax.axhline(1.0 / ways, color="gray", ls="--", lw=1, label="chance")
    ax.set_xticks(np.arange(len(datasets)) + width * (len(methods) - 1) / 2, datasets)
    ax.set(ylabel="test accuracy", ylim=(0, 1))
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig
