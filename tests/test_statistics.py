"""The statistics behind every verdict and reading, proven by simulation: coverage of each interval at
nominal 95 %, false detections at most 6 % when nothing differs, power with a planted effect, and each
mechanism reading on masks whose answer is known. Seeded; permutation tests use 199 shuffles here (a
permutation p-value is valid for any number; the kit uses 999)."""

import numpy as np
import pytest
import torch
from scipy import stats

from gems_core import claims, mechanism
from gems_core.statistics import holm

SIMULATIONS = 500


@pytest.fixture(autouse=True)
def fewer_shuffles(monkeypatch):
    monkeypatch.setattr(mechanism, "PERMUTATIONS", 199)


def _bmp(rng, fn, tasks=30, steps=5, layers=5) -> dict[str, torch.Tensor]:
    """Layer masks per dataset: fn(rng, dataset index, tasks, steps, layers) -> 0/1 array."""
    return {d: torch.tensor(fn(rng, i, tasks, steps, layers), dtype=torch.float32) for i, d in enumerate("ab")}


FREQUENCIES = np.random.default_rng(99).uniform(0.2, 0.8, (1, 5, 5))  # each bit's, the same for every dataset


def _random(rng, i, n, s, k):
    return rng.random((n, s, k)) < FREQUENCIES  # bits vary from task to task, not with the dataset


# --- BMP's three readings -------------------------------------------------------------------------------


def test_a_constant_mask_reads_a_fixed_freeze():
    scores = mechanism.layer_mask_scores(_bmp(None, lambda r, i, n, s, k: np.tile([1, 0, 1, 1, 1], (n, s, 1))))
    assert scores["reading"] == mechanism.CONSTANT and max(map(max, scores["entropy_bits"])) == 0
    assert "a fixed freeze" in mechanism.reading({"mask": scores})


def test_the_saturation_case_reads_depends_on_the_distribution_and_says_where():
    def first_bit_is_the_label(rng, i, n, s, k):
        bits = rng.random((n, s, k)) < 0.5
        bits[:, 0, 0] = i
        return bits

    scores = mechanism.layer_mask_scores(_bmp(np.random.default_rng(0), first_bit_is_the_label))
    assert scores["reading"] == mechanism.DEPENDS and scores["where"] == ["step 1 conv1"]
    assert scores["information_bits"][0][0] == pytest.approx(1.0) and scores["decoding"]["p"] < 0.05
    assert "depends on the distribution, in step 1 conv1" in mechanism.reading({"mask": scores})


def test_a_mask_varying_at_random_reads_varies_not_with_the_distribution():
    scores = mechanism.layer_mask_scores(_bmp(np.random.default_rng(3), _random))
    assert scores["reading"] == mechanism.UNRELATED
    assert "varies from task to task" in mechanism.reading({"mask": scores})


def test_bmp_false_detections_at_most_6_percent_when_the_mask_ignores_the_distribution():
    rng = np.random.default_rng(11)
    runs = [mechanism.layer_mask_scores(_bmp(rng, _random)) for _ in range(1000)]  # 4.1 % at 1,500
    assert np.mean([r["reading"] == mechanism.DEPENDS for r in runs]) <= 0.06
    assert np.mean([r["decoding"]["p"] < 0.05 for r in runs]) <= 0.06


def test_bmp_detects_one_layer_that_leans_with_the_distribution():
    def leaning(rng, i, n, s, k):
        bits = rng.random((n, s, k)) < 0.5
        bits[:, 2, 3] = rng.random(n) < (0.8 if i else 0.2)
        return bits

    rng = np.random.default_rng(2)
    runs = [mechanism.layer_mask_scores(_bmp(rng, leaning)) for _ in range(100)]
    assert np.mean([r["reading"] == mechanism.DEPENDS for r in runs]) >= 0.9  # power, 30 tasks per dataset
    assert np.mean(["step 3 conv4" in r["where"] for r in runs]) >= 0.9


# --- MMSUP ------------------------------------------------------------------------------------------------


def _kept(rng, shift: float, tasks=40, positions=300) -> dict[str, torch.Tensor]:
    """Kept sets around one base per dataset (the second's first ``shift`` of positions flipped), each task
    moving a share of its positions drawn from 2 to 40 %: tasks vary, as real ones do."""
    base = rng.random(positions) < 0.5
    out = {}
    for i, d in enumerate("ab"):
        own = base.copy()
        if i:
            own[: int(shift * positions)] ^= True
        moved = rng.random((tasks, positions)) < rng.uniform(0.02, 0.4, (tasks, 1))
        out[d] = torch.tensor(own ^ moved, dtype=torch.float32)
    return out


def test_one_shared_subnetwork_reads_constant():
    base = torch.rand(1, 300, generator=torch.Generator().manual_seed(0)) < 0.5
    scores = mechanism.subnetwork_scores({"conv1": {d: base.expand(10, -1).float() for d in "ab"}})
    assert scores["reading"] == mechanism.CONSTANT and scores["variation"] == 0 and scores["difference"] == 0


def test_mmsup_null_false_detections_at_most_6_percent_and_the_interval_covers_zero():
    rng = np.random.default_rng(4)
    runs = [mechanism.subnetwork_scores({"conv1": _kept(rng, 0.0)}) for _ in range(SIMULATIONS)]
    assert np.mean([r["reading"] == mechanism.DEPENDS for r in runs]) <= 0.06
    coverage = np.mean([r["low"] <= 0 <= r["high"] for r in runs])
    assert 0.93 <= coverage <= 0.97


def test_mmsup_interval_covers_a_planted_gap_at_95_percent():
    truth = mechanism.subnetwork_scores({"conv1": _kept(np.random.default_rng(7), 0.1, tasks=600)})["difference"]
    rng = np.random.default_rng(8)
    runs = [mechanism.subnetwork_scores({"conv1": _kept(rng, 0.1)}) for _ in range(SIMULATIONS)]
    assert 0.93 <= np.mean([r["low"] <= truth <= r["high"] for r in runs]) <= 0.97


def test_mmsup_detects_distribution_specific_subnetworks_and_calls_a_tiny_gap_negligible():
    rng = np.random.default_rng(5)
    strong = [mechanism.subnetwork_scores({"conv1": _kept(rng, 0.1)}) for _ in range(50)]
    assert np.mean([r["reading"] == mechanism.DEPENDS for r in strong]) >= 0.9
    assert not any(r["negligible"] for r in strong)  # a gap of about 0.04
    tiny = mechanism.subnetwork_scores({"conv1": _kept(np.random.default_rng(6), 0.01, tasks=200)})
    if tiny["reading"] == mechanism.DEPENDS:
        assert tiny["negligible"] and "practically negligible" in mechanism.reading({"subnetwork": tiny})


# --- paired comparisons and the family's verdicts ----------------------------------------------------------


def _task_accuracies(rng, tasks=100, queries=75):
    """Per-task accuracies of a method: a task difficulty each, then binomial query accuracy."""
    return rng.binomial(queries, rng.uniform(0.3, 0.8, tasks)) / queries


def test_the_interval_over_one_seeds_tasks_covers_at_95_percent():
    rng = np.random.default_rng(7)
    hits = detected = 0
    for _ in range(1000):
        ease = rng.uniform(0.3, 0.8, 100)  # both methods on the same tasks, no difference between them
        ours, theirs = rng.binomial(75, ease) / 75, rng.binomial(75, ease) / 75
        result = claims.paired({21: ours}, {21: theirs})
        hits += result["low"] <= 0 <= result["high"]
        detected += result["p"] < 0.05
    assert 0.93 <= hits / 1000 <= 0.97 and detected / 1000 <= 0.06


@pytest.mark.parametrize(
    "seed_sd, task_sd",
    [(0.02, 0.0), (0.0, 0.05), (0.01, 0.02), (0.0, 0.0)],
    ids=["seeds vary", "tasks vary", "both", "neither"],  # neither: conservative, 97.4 % (docs/methods.md)
)
def test_the_interval_over_seeds_and_tasks_covers_at_95_percent(seed_sd, task_sd):
    """Three seeds meeting the same 100 tasks: a seed effect, a task effect shared by every seed, noise."""
    rng = np.random.default_rng(8)
    hits = 0
    for _ in range(SIMULATIONS):
        task = rng.normal(0, task_sd, 100)
        seeds = {s: rng.normal(0, seed_sd) + task + rng.normal(0, 0.1, 100) for s in (21, 42, 56)}
        result = claims.paired(seeds, {s: np.zeros(100) for s in seeds})
        hits += result["low"] <= 0 <= result["high"]
    assert result["unit"] == "seeds and 100 tasks" and result["n"] == 3
    assert 0.93 <= hits / SIMULATIONS <= (0.98 if seed_sd == task_sd == 0 else 0.97)


def test_holm_keeps_a_pages_family_of_32_null_comparisons_under_6_percent_false_verdicts():
    rng = np.random.default_rng(9)
    uncorrected = corrected = 0
    for _ in range(SIMULATIONS):
        p = stats.ttest_1samp(rng.normal(0, 1, (32, 30)), 0.0, axis=1).pvalue
        uncorrected += min(p) < 0.05
        corrected += min(holm(p)) < 0.05
    assert corrected / SIMULATIONS <= 0.06 and uncorrected / SIMULATIONS > 0.5


def test_an_equivalence_verdict_needs_the_whole_interval_inside_the_margin():
    rng = np.random.default_rng(10)
    same = [_task_accuracies(rng) for _ in range(2)]
    near = claims.paired({21: same[0]}, {21: same[0] + rng.normal(0, 0.005, 100)})
    assert claims.verdict(near["difference"], near["low"], near["high"], near["p"], 0.01) == claims.equivalent(0.01)
    far = claims.paired({21: same[0]}, {21: same[1]})
    assert claims.verdict(far["difference"], far["low"], far["high"], 1.0, 0.01) == claims.INCONCLUSIVE
