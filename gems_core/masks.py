"""The paper's two masks as autograd functions (supplement, Listings 1 and 3), batched over tasks.

``BinaryMask``: 1 where the input is > 0, else 0; the backward is straight-through (STE).

``ComputeMask``: per task, keeps the top ``1 - sparsity`` fraction of a layer's scores (|weight|):
``kept = round((1 - sparsity) * n)`` (halves up), at least 1, ties broken towards the lower flat index (a stable
sort), so the count is exact and deterministic. The backward returns the incoming gradient as it is
for the scores (straight-through, as the supplement says); MMSUP passes detached scores (|weight|), as
the supplement's listing does, so there the scores get no gradient and a weight learns only through
the product ``weight * mask`` (nothing while it is masked). Top-k alone gives the sparsity no gradient;
the kit's surrogate is the derivative of a soft mask ``sigmoid((score - t) / T)`` whose threshold ``t``
keeps a soft count of ``(1 - sparsity) * n`` weights: implicit differentiation of that constraint gives
``d m_i / d sparsity = -n * sigma'_i / sum_j sigma'_j``, evaluated at the hard mask's threshold (the
midpoint between the last kept and the first dropped score). It sums to ``-n``, as the hard count does.
"""

from __future__ import annotations

import torch

MAX_SPARSITY = 0.99


class BinaryMask(torch.autograd.Function):
    """Forward: (input > 0) as 0/1; backward: the gradient passes through unchanged (STE)."""

    @staticmethod
    def forward(ctx, x):
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


def kept_counts(sizes: torch.Tensor, sparsity: torch.Tensor) -> torch.Tensor:
    """How many of ``sizes`` weights each layer keeps at ``sparsity`` (clamped to [0, 0.99]): at least 1,
    halves rounded up. Tensors in, a long tensor out, computed on the device without a host sync."""
    kept = ((1.0 - sparsity.double().clamp(0.0, MAX_SPARSITY)) * sizes + 0.5).floor().long()
    return torch.minimum(kept.clamp_min(1), sizes)


class ComputeMask(torch.autograd.Function):
    """Top-``kept`` mask of ``scores`` [T, n] per task (``kept = kept_counts(n, sparsity)``, a long tensor),
    with the soft-mask surrogate gradient for ``sparsity``: one sparsity and count for every task (0-dim),
    or one per task ([T], a pack of runs: ``packing``)."""

    @staticmethod
    def forward(ctx, scores, sparsity, kept, temperature):
        t, n = scores.shape
        counts = kept.view(-1, 1)  # [1, 1], or [T, 1] per task
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        keep_ranked = (torch.arange(n, device=scores.device) < counts).to(scores.dtype)
        mask = torch.zeros_like(scores).scatter_(1, order, keep_ranked.expand(t, n))
        ranked = scores.gather(1, order)
        last_kept = ranked.gather(1, (counts - 1).expand(t, 1)).squeeze(1)
        first_dropped = ranked.gather(1, counts.clamp_max(n - 1).expand(t, 1)).squeeze(1)
        threshold = torch.where(kept == n, last_kept, (last_kept + first_dropped) / 2)
        ctx.save_for_backward(scores, threshold, temperature)
        ctx.per_task = sparsity.dim() == 1
        return mask

    @staticmethod
    def backward(ctx, grad):
        scores, threshold, temperature = ctx.saved_tensors
        return grad, sparsity_surrogate(grad, scores, threshold, temperature, ctx.per_task), None, None


def sparsity_surrogate(
    grad: torch.Tensor,
    scores: torch.Tensor,
    threshold: torch.Tensor,
    temperature: torch.Tensor,
    per_task: bool = False,
) -> torch.Tensor:
    """sum_i grad_i * d soft_mask_i / d sparsity (see the module docstring): summed over tasks, or per task
    ([T]) where each task has its own sparsity (a pack of runs)."""
    z = (scores - threshold.unsqueeze(1)) / temperature.unsqueeze(1)
    slope = torch.sigmoid(z) * torch.sigmoid(-z)  # sigma'(z)
    dmask = -scores.shape[1] * slope / slope.sum(1, keepdim=True).clamp_min(1e-12)
    return (grad * dmask).sum(1) if per_task else (grad * dmask).sum()


OVERLAP_TASKS = 50  # tasks per test dataset whose kept sets are compared (MMSUP's overlaps and its score)


def jaccard_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a_i & b_j| / |a_i | b_j| for every pair of kept sets (rows of 0/1 [tasks, positions])."""
    inter = a @ b.T
    return inter / (a.sum(1, keepdim=True) + b.sum(1) - inter).clamp_min(1)
