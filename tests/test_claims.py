"""Paired comparisons: what they say on cases whose answer is known (the mechanism scores and every
interval's coverage are proven by simulation in test_statistics.py)."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gems_core import claims
from gems_core.gathered import gather
from gems_core.learners import BEATS_MAML, CHOICE_HELPS, FREEZE_EXPLAINS


def test_a_method_against_itself_differs_by_exactly_zero():
    tasks = list(np.random.default_rng(0).uniform(0, 1, 50))
    for seeds in ({21: tasks}, {21: tasks, 42: tasks[::-1], 56: tasks}):
        same = claims.paired(seeds, seeds)
        assert (same["difference"], same["low"], same["high"], same["p"]) == (0.0, 0.0, 0.0, 1.0)
        assert claims.verdict(0.0, 0.0, 0.0, 1.0, 0.01) == claims.equivalent(0.01) == "equivalent within +-0.01"


def test_one_seed_is_paired_over_its_tasks_and_says_so():
    rng = np.random.default_rng(1)
    theirs = rng.uniform(0.3, 0.7, 200)
    better = claims.paired({21: theirs + 0.05 + rng.normal(0, 0.02, 200)}, {21: theirs})
    assert better["unit"] == "tasks of one seed" and better["n"] == 200 and better["p"] < 1e-10
    assert better["low"] < 0.05 < better["high"]
    assert claims.verdict(better["difference"], better["low"], better["high"], better["p"], 0.01) == claims.BETTER
    worse = claims.paired({21: theirs}, {21: theirs + 0.05 + rng.normal(0, 0.02, 200)})
    assert claims.verdict(worse["difference"], worse["low"], worse["high"], worse["p"], 0.01) == claims.WORSE


def test_a_verdict_is_equivalent_only_inside_the_margin_and_inconclusive_when_it_straddles():
    assert claims.verdict(0.002, -0.004, 0.008, 0.5, 0.01) == claims.equivalent(0.01)
    assert claims.verdict(0.002, -0.004, 0.012, 0.5, 0.01) == claims.INCONCLUSIVE
    assert claims.verdict(0.002, 0.001, 0.003, 0.01, 0.01) == claims.BETTER  # detected, margin shown beside
    assert claims.verdict(0.002, 0.001, 0.003, 0.06, 0.01) == claims.equivalent(0.01)  # not after Holm


def test_several_seeds_with_no_task_variation_get_the_t_interval_over_seeds():
    theirs = {s: np.full(10, 0.5) for s in (21, 42, 56)}
    ours = {21: np.full(10, 0.6), 42: np.full(10, 0.4), 56: np.full(10, 0.53)}  # +0.1, -0.1, +0.03
    result = claims.paired(ours, theirs)
    d = np.array([0.1, -0.1, 0.03])
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert result["unit"] == "seeds and 10 tasks" and result["n"] == 3
    assert result["difference"] == pytest.approx(d.mean())
    assert (result["low"], result["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert claims.verdict(result["difference"], result["low"], result["high"], result["p"], 0.01) == claims.INCONCLUSIVE


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="no seed in common"):
        claims.paired({21: [1.0]}, {42: [1.0]})
    with pytest.raises(ValueError, match="test tasks"):
        claims.paired({21: [1.0, 0.0]}, {21: [1.0]})
    with pytest.raises(ValueError, match="1 of 2 test tasks match by fingerprint"):
        claims.paired({21: pd.Series([1.0, 0.0], ["a", "b"])}, {21: pd.Series([1.0, 0.0], ["a", "c"])})


def test_a_profiles_methods_are_compared_with_maml_on_the_same_tasks(tiny_params):
    from gems_core import runs
    from gems_core.training import run_method

    params = tiny_params(iterations=3, methods=["maml", "bmp", "mmsup"])
    for method in ("maml", "bmp"):
        run_method(params, method, 21, progress=False)
    table = claims.comparisons(params)  # mmsup has no run yet: no row; fixed_layers is not in the profile
    asked = {(q, m, a) for q, m, a in table[["question", "method", "against"]].values}
    assert asked == {
        (CHOICE_HELPS, "bmp", "bmp_shuffled_masks"),
        (CHOICE_HELPS, "bmp", "bmp_random_masks"),
        (FREEZE_EXPLAINS, "bmp", "bmp_frozen_mask"),
        (BEATS_MAML, "bmp", "maml"),
    }
    assert (table.groupby(["method", "against"])["test_dataset"].apply(sorted) == [["glyphs", "shapes"]] * 4).all()
    assert (table["unit"] == "tasks of one seed").all() and (table["n"] == params.test_tasks).all()
    ours = runs.RunFiles(params, "bmp", 21).task_accuracies()
    theirs = runs.RunFiles(params, "maml", 21).task_accuracies()
    glyphs = table[table.against == "maml"].set_index(["method", "test_dataset"]).loc[("bmp", "glyphs")]
    expected = (
        ours[ours.test_dataset == "glyphs"].accuracy.mean() - theirs[theirs.test_dataset == "glyphs"].accuracy.mean()
    )
    assert glyphs["difference"] == pytest.approx(expected, abs=1e-12)
    assert glyphs["verdict"] in (claims.BETTER, claims.WORSE, claims.INCONCLUSIVE, claims.equivalent(0.01))
    assert (table["p_holm"] >= table["p"]).all() and (table["p_holm"] <= 1).all()
    assert claims.sentence(next(table.itertuples())).endswith(f"over {params.test_tasks} tasks of one seed)")


def test_a_diverged_run_is_left_out_and_its_sensitivity_counts_it_as_chance(tiny_params, monkeypatch):
    from gems_core import results
    from gems_core.learners import MAML
    from gems_core.training import run_method

    params = tiny_params(iterations=3, methods=["maml", "mmsup"])
    run_method(params, "maml", 21, progress=False)
    real = MAML.meta_loss
    monkeypatch.setattr(
        MAML, "meta_loss", lambda self, batch: (real(self, batch)[0] * math.inf, *real(self, batch)[1:])
    )
    assert run_method(params, "mmsup", 21, progress=False)["status"] == "diverged"
    left_out = claims.comparisons(params)
    assert (left_out["verdict"] == claims.NOT_COMPARABLE).all() and (left_out["unit"] == "mmsup seed 21 diverged").all()
    at_chance = claims.comparisons(params, diverged_at_chance=True)
    at_chance = at_chance[at_chance["against"] == "maml"].set_index("test_dataset")
    maml = results.intact_results(params, "maml", 21)["test"]
    for dataset in ("glyphs", "shapes"):  # a chance run against MAML: the difference is chance - MAML's mean
        expected = 1 / params.ways - maml[dataset]["accuracy"]
        assert at_chance.loc[dataset, "difference"] == pytest.approx(expected, abs=1e-9)
    line = claims.sensitivity(params, left_out)
    assert line.startswith("Counting each diverged run as a failure instead (chance accuracy, 1/3, on every test task)")
    assert "2 of 6 verdicts change: mmsup vs maml: not comparable, then " in line  # not vs its test-time controls
    _, detail = gather(params, Path(params.output_root) / params.profile).evidence()
    said = "Diverged, so left out of every comparison and counted as failures: mmsup seed 21 (1 of 2 runs). Counting"
    assert any(paragraph.startswith(said) for paragraph in detail)
