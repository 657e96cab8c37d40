"""The numerics policy of a run: TF32, cuDNN autotuning and deterministic algorithms.

These are process-wide torch settings; every run sets all of them from its parameters, so runs in one
process (a notebook kernel) do not inherit each other's choices.

- ``tf32`` (default off): float32 convolutions and matrix products on tensor cores with a 10-bit
  mantissa (~3e-4 relative error). Off, the GPU computes in full float32, as the CPU does.
- ``cudnn.benchmark``: cuDNN times its convolution algorithms once per shape and keeps the fastest.
  On for CUDA unless ``deterministic``.
- ``deterministic`` (default off): deterministic algorithms only (``torch.use_deterministic_algorithms``),
  no autotuning, cuBLAS with a fixed workspace, so a GPU run repeats bit for bit on the same GPU,
  torch and driver. Without it, float32 sums may be ordered differently from run to run; BMP's
  ``> 0`` and MMSUP's top-k turn such 1-ulp differences into different masks, so runs then differ.
"""

from __future__ import annotations

import os

import torch

CUBLAS_WORKSPACE = ":4096:8"


def configure(device: torch.device, tf32: bool, deterministic: bool) -> None:
    """Apply the policy for a run on ``device``."""
    if deterministic and device.type == "cuda":
        configured = os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        if configured not in (":4096:8", ":16:8"):
            raise RuntimeError(
                f"deterministic runs need CUBLAS_WORKSPACE_CONFIG=:4096:8 or :16:8, found {configured!r}"
            )
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # setting it imports torch's compiler:
        torch.use_deterministic_algorithms(deterministic)  # over a second of every process start, when unchanged
