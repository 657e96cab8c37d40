"""Paired comparisons and the mechanism score: what they say on cases whose answer is known."""

import math

import numpy as np
import pytest
import torch

from gems_core import claims
from gems_core.mechanism import layer_mask_information, subnetwork_specificity
from gems_core.statistics import mutual_information


def test_a_method_against_itself_differs_by_exactly_zero():
    tasks = list(np.random.default_rng(0).uniform(0, 1, 50))
    for seeds in ({21: tasks}, {21: tasks, 42: tasks[::-1], 56: tasks}):
        same = claims.paired(seeds, seeds)
        assert (same["difference"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
        assert same["verdict"] == claims.NO_DIFFERENCE


def test_one_seed_is_paired_over_its_tasks_and_says_so():
    rng = np.random.default_rng(1)
    theirs = rng.uniform(0.3, 0.7, 200)
    better = claims.paired({21: theirs + 0.05 + rng.normal(0, 0.02, 200)}, {21: theirs})
    assert better["unit"] == "tasks of one seed" and better["n"] == 200 and better["verdict"] == claims.BETTER
    assert better["low"] < 0.05 < better["high"]
    worse = claims.paired({21: theirs}, {21: theirs + 0.05 + rng.normal(0, 0.02, 200)})
    assert worse["verdict"] == claims.WORSE


def test_several_seeds_are_paired_over_seeds_with_a_t_interval():
    theirs = {s: np.full(10, 0.5) for s in (21, 42, 56)}
    ours = {21: np.full(10, 0.6), 42: np.full(10, 0.4), 56: np.full(10, 0.53)}  # +0.1, -0.1, +0.03
    result = claims.paired(ours, theirs)
    d = np.array([0.1, -0.1, 0.03])
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert result["unit"] == "seeds" and result["n"] == 3
    assert result["difference"] == pytest.approx(d.mean())
    assert (result["low"], result["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert result["verdict"] == claims.NO_DIFFERENCE  # one seed better, one worse: no claim


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="no seed in common"):
        claims.paired({21: [1.0]}, {42: [1.0]})
    with pytest.raises(ValueError, match="test tasks"):
        claims.paired({21: [1.0, 0.0]}, {21: [1.0]})


def test_mutual_information_is_zero_for_a_constant_mask_and_one_bit_for_a_label():
    labels = ["glyphs"] * 30 + ["shapes"] * 30
    assert mutual_information(labels, [(1, 0, 1, 1, 1)] * 60) == 0.0
    as_label = [(1, 0, 1, 1, 1) if d == "glyphs" else (1, 1, 1, 1, 1) for d in labels]
    assert mutual_information(labels, as_label) == pytest.approx(1.0)
    four = [a for a in "abcd" for _ in range(5)]
    assert mutual_information(four, four) == pytest.approx(2.0)  # log2 of four distributions
    independent = [(i % 2,) for i in range(60)]  # alternates within each distribution
    assert mutual_information(labels, independent) == pytest.approx(0.0, abs=1e-12)


def _masks(pattern_of, tasks=30, steps=2):
    """Layer masks [tasks, steps, 5] per dataset, every task of a dataset with ``pattern_of(dataset)``."""
    return {d: torch.tensor([[pattern_of(d)] * steps] * tasks, dtype=torch.float32) for d in ("glyphs", "shapes")}


def test_bmp_mask_information_is_zero_for_one_pattern_and_one_bit_when_it_names_the_distribution():
    constant = layer_mask_information(_masks(lambda d: [1, 0, 1, 1, 1]))
    assert constant["bits"] == 0.0 and constant["bits_by_step"] == [0.0, 0.0] and constant["chance_bits"] == 0.0
    named = layer_mask_information(_masks(lambda d: [1, 0, 1, 1, 1] if d == "glyphs" else [1, 1, 1, 1, 1]))
    assert named["bits"] == pytest.approx(1.0) and named["max_bits"] == 1.0
    assert named["chance_bits"] < 0.05  # shuffled labels carry (almost) nothing


def test_bmp_mask_information_of_a_mask_independent_of_the_distribution_is_near_its_chance_level():
    gen = torch.Generator().manual_seed(0)
    masks = {d: torch.randint(0, 2, (100, 2, 5), generator=gen).float() for d in ("glyphs", "shapes")}
    noise = layer_mask_information(masks)
    assert noise["bits"] > 0.3  # plug-in estimates are biased upwards with many patterns ...
    assert abs(noise["bits"] - noise["chance_bits"]) < 0.1  # ... which the chance level measures


def test_mmsup_specificity_is_zero_for_one_subnetwork_and_positive_for_distribution_specific_ones():
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 400, generator=gen) > 0.5
    shared = {"conv1": {d: base.expand(20, -1) for d in ("glyphs", "shapes")}}
    assert subnetwork_specificity(shared)["difference"] == 0.0
    flips = {d: torch.rand(1, 400, generator=gen) < 0.3 for d in ("glyphs", "shapes")}  # a pattern per dataset
    noisy = {d: (base ^ flips[d]) ^ (torch.rand(20, 400, generator=gen) < 0.05) for d in flips}
    specific = subnetwork_specificity({"conv1": noisy, "conv2": noisy})
    assert specific["low"] > 0.1 and specific["tasks"] == 40 and set(specific["by_layer"]) == {"conv1", "conv2"}
    assert subnetwork_specificity({"conv1": {"glyphs": base.expand(5, -1)}}) is None


def test_a_profiles_methods_are_compared_with_maml_on_the_same_tasks(tiny_params):
    from gems_core import runs
    from gems_core.training import run_method

    params = tiny_params(iterations=3, methods=["maml", "bmp", "mmsup"])
    for method in ("maml", "bmp"):
        run_method(params, method, 21, progress=False)
    table = claims.comparisons(params)  # mmsup has no run yet: no row
    assert sorted(map(tuple, table[["method", "against", "test_dataset"]].values)) == [
        ("bmp", "bmp_frozen_mask", "glyphs"),
        ("bmp", "bmp_frozen_mask", "shapes"),
        ("bmp", "maml", "glyphs"),
        ("bmp", "maml", "shapes"),
        ("bmp_frozen_mask", "maml", "glyphs"),
        ("bmp_frozen_mask", "maml", "shapes"),
    ]
    assert (table["unit"] == "tasks of one seed").all() and (table["n"] == params.test_tasks).all()
    ours = runs.RunFiles(params, "bmp", 21).task_accuracies()
    theirs = runs.RunFiles(params, "maml", 21).task_accuracies()
    glyphs = table[table.against == "maml"].set_index(["method", "test_dataset"]).loc[("bmp", "glyphs")]
    expected = (
        ours[ours.test_dataset == "glyphs"].accuracy.mean() - theirs[theirs.test_dataset == "glyphs"].accuracy.mean()
    )
    assert glyphs["difference"] == pytest.approx(expected, abs=1e-12)
    assert glyphs["verdict"] in (claims.BETTER, claims.WORSE, claims.NO_DIFFERENCE)


def test_mechanism_readings_say_what_the_scores_mean():
    from gems_core.mechanism import reading

    info = {"bits": 0.0, "bits_by_step": [0.0], "chance_bits": 0.0, "max_bits": 1.0}
    assert "a fixed freeze" in reading({"mask_information": info})
    assert "identify the distribution" in reading({"mask_information": {**info, "bits": 0.97}})
    spec = {"difference": 0.003, "low": 0.001, "high": 0.004}
    assert "slightly more" in reading({"specificity": spec})
    assert "share more" in reading({"specificity": {"difference": 0.2, "low": 0.1, "high": 0.3}})
    assert "one shared subnetwork" in reading({"specificity": {"difference": 0.0, "low": -0.01, "high": 0.01}})
    assert "one test dataset" in reading({"specificity": None})
