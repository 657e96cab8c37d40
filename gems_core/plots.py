"""Figures shared by the notebooks."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

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
