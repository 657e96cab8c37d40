"""What a run's records show, said in words: the sentences notebooks 02 and 03 print under their figures.

Each function reads the summaries a run's ``results.json`` holds (``records``) and states the finding
plainly, with the numbers it rests on, so a reader does not have to judge colours on a heatmap.
"""

from __future__ import annotations

from . import mechanism
from .models import LAYER_LABELS


def diverged(run: dict) -> str | None:
    """For a run that diverged (it has no test results to show): where and what; None otherwise."""
    if run.get("status") != "diverged":
        return None
    d = run["diverged"]
    reason = d.get("reason") or f"non-finite {', '.join(d['quantities'])} at iteration {d['iteration']}"
    return f"{run['method']} seed {run['seed']} diverged: {reason}; it has no test results."


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _layers(frequencies: list[float], adapted: bool) -> str:
    names = [layer for layer, f in zip(LAYER_LABELS, frequencies) if (f >= 0.5) == adapted]
    return ", ".join(names) if names else "none"


def bmp_layer_choices(records: dict, scores: dict) -> str:
    """Whether BMP adapted different layers for the test tasks of different distributions: the mechanism
    score's reading (``mechanism.reading``, the one decision), then what each distribution adapted."""
    frequencies = {d: r["layer_adapt_frequency"] for d, r in records.items()}
    per_dataset = "; ".join(
        f"{d} adapted {_layers(f, True)} (kept {_layers(f, False)} shared)" for d, f in frequencies.items()
    )
    verdict = _sentence(mechanism.reading(scores))
    return f"{verdict} Per test dataset, in most inner steps: {per_dataset}."


def mmsup_overlap(records: dict, scores: dict) -> str:
    """MMSUP's subnetwork overlaps within and across datasets, then the mechanism score's reading
    (``mechanism.reading``: the one decision, from the same numbers wherever it is said)."""
    overlap, changed = records["overlap"], records["changed_during_adaptation"]
    within: list[float] = []
    across: list[float] = []
    for layer in overlap.values():
        for pair, value in layer.items():
            a, b = pair.split("|")
            (within if a == b else across).append(value)
    moved = [v for layer in changed.values() for v in layer.values()]
    text = f"Task subnetworks overlap {min(within):.3f}-{max(within):.3f} (Jaccard) between tasks of the same dataset"
    if across:
        gap = sum(within) / len(within) - sum(across) / len(across)
        text += (
            f" and {min(across):.3f}-{max(across):.3f} between tasks of different datasets, a mean gap of {gap:.3f}. "
        )
    else:
        text += " (one test dataset: no cross-dataset overlap). "
    text += f"Adaptation changed the mask of {min(moved):.2%}-{max(moved):.2%} of a layer's weights. "
    return text + _sentence(mechanism.reading(scores))
