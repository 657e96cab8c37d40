"""Meta-test statistics and the plain-language findings, on inputs whose answers are known."""

import math

import pytest
import torch

from gems_core import findings, mechanism
from gems_core.evaluation import eval_batch_size, mean_ci95


def test_mean_ci95_on_known_inputs():
    mean, ci = mean_ci95(torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert mean == 0.5 and ci == pytest.approx(1.96 * math.sqrt(1 / 3) / 2)  # sample std sqrt(1/3), n = 4
    mean, ci = mean_ci95(torch.full((600,), 0.4))
    assert mean == pytest.approx(0.4) and ci == 0.0
    mean, ci = mean_ci95(torch.tensor([0.7]))
    assert mean == pytest.approx(0.7) and math.isnan(ci)


def test_eval_batch_size_is_the_parameter_or_what_fits_the_cpu_budget(tiny_params):
    assert eval_batch_size(tiny_params(eval_batch_size=7), torch.device("cpu")) == 7
    params = tiny_params(image_size=28, hidden_size=32, ways=5, queries=5)  # the demo's size
    per_task = 5 * 5 * 32 * 28 * 28 * 4 * 3  # the first block's output, three live copies
    assert eval_batch_size(params, torch.device("cpu")) == 2**26 // per_task == 8
    paper = tiny_params(image_size=84, hidden_size=64, ways=5, queries=15)  # more than the budget: one at a time
    assert eval_batch_size(paper, torch.device("cpu")) == 1


def _bmp_records(a, b):
    return {"glyphs": {"layer_adapt_frequency": a}, "shapes": {"layer_adapt_frequency": b}}


def test_bmp_finding_says_the_mechanism_reading_then_what_each_distribution_adapted():
    masks = {d: torch.tensor([[[1.0, 1, 1, 1, 0]] * 2] * 20) for d in ("glyphs", "shapes")}
    scores = {"mask": mechanism.layer_mask_scores(masks)}
    same = findings.bmp_layer_choices(_bmp_records([1, 1, 1, 1, 0], [1, 1, 1, 1, 0]), scores)
    assert same.startswith("Every task gets the same layer mask: a fixed freeze")
    assert "glyphs adapted conv1, conv2, conv3, conv4 (kept head shared)" in same
    masks["shapes"][:, :, 1] = 0  # shapes never adapts conv2
    different = findings.bmp_layer_choices(
        _bmp_records([1, 1, 1, 1, 0], [1, 0, 1, 1, 0]), {"mask": mechanism.layer_mask_scores(masks)}
    )
    assert different.startswith("The layer mask depends on the distribution, in step 1 conv2, step 2 conv2:")


def test_mmsup_finding_reads_overlap_within_and_across_then_the_mechanism_reading():
    records = {
        "overlap": {"conv1": {"a|a": 0.99, "a|b": 0.985, "b|b": 0.992}},
        "changed_during_adaptation": {"conv1": {"a": 0.001, "b": 0.002}},
    }
    base = torch.rand(1, 300, generator=torch.Generator().manual_seed(0)) < 0.5
    shared = {"conv1": {d: base.expand(10, -1).float() for d in ("a", "b")}}
    text = findings.mmsup_overlap(records, {"subnetwork": mechanism.subnetwork_scores(shared)})
    assert "0.990-0.992" in text and "0.985-0.985" in text and "0.10%-0.20%" in text
    assert text.endswith("Every task keeps the same subnetwork: one shared subnetwork (20 test tasks).")


def test_ablation_summary_on_a_hand_made_grid():
    import pandas as pd

    from gems_core.ablations import summary

    table = pd.DataFrame(
        [
            {
                "setting": "fast_lr",
                "value": 0.1,
                "method": "bmp",
                "seed": 21,
                "test_dataset": "a",
                "accuracy": 0.4,
                "ci95": 0.02,
            },
            {
                "setting": "fast_lr",
                "value": 0.1,
                "method": "bmp",
                "seed": 42,
                "test_dataset": "a",
                "accuracy": 0.6,
                "ci95": 0.04,
            },
            {
                "setting": "fast_lr",
                "value": 0.5,
                "method": "bmp",
                "seed": 21,
                "test_dataset": "a",
                "accuracy": 0.3,
                "ci95": 0.01,
            },
        ]
    )
    rows = summary(table).set_index("value")
    assert rows.loc[0.1, "accuracy"] == pytest.approx(0.5) and rows.loc[0.1, "ci95"] == pytest.approx(0.03)
    assert rows.loc[0.1, "accuracy_std"] == pytest.approx(2**0.5 * 0.1) and rows.loc[0.1, "seeds"] == 2
    assert rows.loc[0.5, "seeds"] == 1 and math.isnan(rows.loc[0.5, "accuracy_std"])


def test_a_diverged_run_is_said_in_words_and_others_are_not():
    run = {
        "method": "bmp",
        "seed": 42,
        "status": "diverged",
        "diverged": {"iteration": 1234, "quantities": ["loss", "meta-gradient"]},
    }
    assert findings.diverged(run) == (
        "bmp seed 42 diverged: non-finite loss, meta-gradient at iteration 1234; it has no test results."
    )
    assert findings.diverged({"method": "bmp", "seed": 42, "status": "complete"}) is None
