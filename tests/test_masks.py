"""BinaryMask and ComputeMask: exact counts, deterministic ties, straight-through and surrogate gradients."""

import math

import pytest
import torch

from gems_core.masks import BinaryMask, ComputeMask, kept_counts, sparsity_surrogate


def kept_count(n: int, sparsity: float) -> int:
    """``masks.kept_counts`` for one layer of ``n`` weights, as a Python int."""
    return int(kept_counts(torch.tensor(n), torch.tensor(float(sparsity))))


def soft_mask(scores: torch.Tensor, sparsity: float, temperature: torch.Tensor, iters: int = 100) -> torch.Tensor:
    """The soft mask the surrogate differentiates (masks.py's docstring): threshold found by bisection so
    that the soft count is (1 - sparsity) * n; the surrogate is checked against its finite differences."""
    target = (1.0 - sparsity) * scores.shape[1]
    lo = scores.min(1).values - 20 * temperature
    hi = scores.max(1).values + 20 * temperature
    for _ in range(iters):
        mid = (lo + hi) / 2
        count = torch.sigmoid((scores - mid.unsqueeze(1)) / temperature.unsqueeze(1)).sum(1)
        lo, hi = torch.where(count > target, mid, lo), torch.where(count > target, hi, mid)
    return torch.sigmoid((scores - ((lo + hi) / 2).unsqueeze(1)) / temperature.unsqueeze(1))


def _mask(scores, sparsity, temperature):
    """ComputeMask with the kept count computed as MMSUP does (kept_counts, on the device)."""
    sparsity = torch.as_tensor(sparsity, dtype=scores.dtype)
    kept = kept_counts(torch.tensor(scores.shape[1]), sparsity.detach())
    return ComputeMask.apply(scores, sparsity, kept, temperature)


def test_binary_mask_forward_and_straight_through():
    x = torch.tensor([[-1.0, 0.0, 0.5], [2.0, -0.1, 1e-8]], requires_grad=True)
    mask = BinaryMask.apply(x)
    assert mask.tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]
    grad = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask.backward(grad)
    assert torch.equal(x.grad, grad)


@pytest.mark.parametrize("shape", [(3, 10), (2, 1728), (4, 37)])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.25, 0.5, 0.9, 0.99])
def test_compute_mask_keeps_exact_count_of_largest(shape, sparsity):
    scores = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    mask = _mask(scores, torch.tensor(sparsity), torch.full((shape[0],), 0.1))
    k = kept_count(shape[1], sparsity)
    assert k == max(1, math.floor((1 - sparsity) * shape[1] + 0.5))  # halves round up
    assert (mask.sum(1) == k).all()
    smallest_kept = torch.where(mask.bool(), scores, torch.inf).min(1).values
    largest_dropped = torch.where(mask.bool(), -torch.inf, scores).max(1).values
    assert (smallest_kept >= largest_dropped).all()


def test_sparsity_is_clamped_and_at_least_one_weight_kept():
    assert kept_count(10, -0.5) == 10 and kept_count(10, 1.5) == 1 and kept_count(1000, 0.999) == 10


def test_ties_are_broken_deterministically_towards_lower_index():
    scores = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.5, 2.0]])
    mask = _mask(scores, torch.tensor(0.5), torch.tensor([0.1]))
    assert mask.tolist() == [[0.0, 1.0, 1.0, 1.0, 0.0, 0.0]]
    again = _mask(scores.clone(), torch.tensor(0.5), torch.tensor([0.1]))
    assert torch.equal(mask, again)


def test_scores_get_the_gradient_straight_through():
    """ComputeMask's own backward (for a caller that differentiates the scores; MMSUP does not, below)."""
    scores = torch.rand(2, 8, requires_grad=True)
    grad = torch.randn(2, 8)
    _mask(scores, torch.tensor(0.5), torch.full((2,), 0.1)).backward(grad)
    assert torch.equal(scores.grad, grad)


def test_mmsup_masked_weights_get_no_gradient_its_scores_are_detached():
    """MMSUP scores detached |weight| (as the supplement's listing): a weight learns only through weight * mask,
    so a masked weight gets exactly zero gradient and a kept one the plain product's."""
    from gems_core.learners import MMSUP

    mmsup = MMSUP(ways=3, image_size=16, hidden=4, sparsity_init=0.5)
    weight = torch.randn(1, 4, 3, 3, 3, requires_grad=True)
    mmsup._kept = kept_counts(mmsup.layer_sizes, mmsup.sparsity.detach())
    masked = mmsup.supermask("conv1.weight", weight)
    upstream = torch.randn_like(masked)
    masked.backward(upstream)
    mask = (masked != 0).to(weight.dtype)
    assert 0 < mask.mean() < 1
    assert torch.equal(weight.grad, upstream * mask)


@pytest.mark.parametrize("seed", range(5))
def test_sparsity_gradient_sign_matches_finite_differences_of_soft_mask(seed):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.rand(3, 400, generator=gen, dtype=torch.float64)
    grad = torch.randn(3, 400, generator=gen, dtype=torch.float64)
    temperature = torch.full((3,), 0.05, dtype=torch.float64)
    s = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    _mask(scores, s, temperature).backward(grad)
    h = 1e-4
    fd = (
        (grad * soft_mask(scores, 0.4 + h, temperature)).sum() - (grad * soft_mask(scores, 0.4 - h, temperature)).sum()
    ) / (2 * h)
    assert torch.sign(s.grad) == torch.sign(fd) and fd.abs() > 1e-3
    assert s.grad.item() == pytest.approx(fd.item(), rel=0.25)  # same quantity up to the threshold's position


def test_surrogate_moves_the_soft_count_like_the_hard_count():
    scores = torch.rand(2, 100, dtype=torch.float64)
    ones = torch.ones(2, 100, dtype=torch.float64)
    threshold = scores.median(1).values
    assert sparsity_surrogate(
        ones, scores, threshold, torch.full((2,), 0.1, dtype=torch.float64)
    ).item() == pytest.approx(-200)
