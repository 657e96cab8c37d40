"""What a run's records show, said in words: the sentences notebooks 02 and 03 print under their figures.

Each function reads the summaries a run's ``results.json`` holds (``records``) and states the finding
plainly, with the numbers it rests on, so a reader does not have to judge colours on a heatmap.
"""

from __future__ import annotations

from .models import LAYER_LABELS

SAME_CHOICE = 0.1  # layers whose adaptation frequencies differ by less than this count as the same choice


def diverged(run: dict) -> str | None:
    """For a run that diverged (it has no test results to show): where and what; None otherwise."""
    if run.get("status") != "diverged":
        return None
    d = run["diverged"]
    reason = d.get("reason") or f"non-finite {', '.join(d['quantities'])} at iteration {d['iteration']}"
    return f"{run['method']} seed {run['seed']} diverged: {reason}; it has no test results."


def _layers(frequencies: list[float], adapted: bool) -> str:
    names = [layer for layer, f in zip(LAYER_LABELS, frequencies) if (f >= 0.5) == adapted]
    return ", ".join(names) if names else "none"


def bmp_layer_choices(records: dict) -> str:
    """Whether BMP adapted different layers for the test tasks of different distributions."""
    frequencies = {d: r["layer_adapt_frequency"] for d, r in records.items()}
    datasets = list(frequencies)
    gaps = [
        max(frequencies[d][i] for d in datasets) - min(frequencies[d][i] for d in datasets)
        for i in range(len(LAYER_LABELS))
    ]
    per_dataset = "; ".join(
        f"{d} adapted {_layers(f, True)} (kept {_layers(f, False)} shared)" for d, f in frequencies.items()
    )
    varies = [LAYER_LABELS[i] for i, g in enumerate(gaps) if g >= SAME_CHOICE]
    fixed = all(f in (0.0, 1.0) for fs in frequencies.values() for f in fs)
    if not varies:
        verdict = (
            "The distributions got the same layers: no layer's adaptation frequency differs between them by "
            f"{SAME_CHOICE:.0%} or more"
        )
        verdict += (
            ", and every task made the same choice in every step, so BMP acted as one fixed, learned "
            "layer-freezing pattern."
            if fixed
            else "."
        )
    else:
        detail = ", ".join(f"{LAYER_LABELS[i]} by {g:.0%}" for i, g in enumerate(gaps) if g >= SAME_CHOICE)
        verdict = f"The distributions got different layers: adaptation frequencies differ in {detail}."
    return f"{verdict} Per test dataset, in most inner steps: {per_dataset}."


def mmsup_overlap(records: dict) -> str:
    """What MMSUP's subnetwork overlap says about distribution-specific subnetworks."""
    overlap, changed = records["overlap"], records["changed_during_adaptation"]
    within, across = [], []
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
    if across and gap < 0.02:
        text += (
            "The subnetworks are essentially one shared subnetwork: the masks come from the magnitudes of the "
            "adapted weights, and a few small inner steps move few weights across the threshold, so this "
            "run does not show distribution-specific subnetworks."
        )
    elif across:
        text += (
            "Tasks of one dataset share more of their subnetwork than tasks of different datasets: the masks "
            "carry some distribution-specific structure."
        )
    return text
