"""Where runs compute: the parameter ``device`` resolved to a torch device, and a device's name for results."""

from __future__ import annotations

import torch

from .params import ParameterError


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU if torch sees one, else the CPU; ``cuda`` without a GPU is a parameter error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParameterError("parameter 'device' is 'cuda' but torch sees no CUDA device; valid here: 'cpu' or 'auto'")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """``cpu``, or ``cuda (NVIDIA H100 80GB HBM3)``: where a run was trained, for its results."""
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
