"""Conv4 (the layout of learn2learn's ``CNN4``), written functionally and batched over tasks.

Parameters are a dict of tensors with a leading task dimension T, so T tasks with different
(adapted) weights run in one call: the tasks' channels are stacked and each conv runs as a grouped
convolution with ``groups=T``. Batch norm uses batch statistics (transductive, as learn2learn's
examples use it); each task's channels are normalised on their own. Tasks are batched this way rather
than with torch.func.vmap, whose batching rule for batch norm's double backward is wrong
(pytorch/functorch#534); tests/test_maml.py checks the meta-gradients against learn2learn to 1e-9.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

BLOCKS = 4
BN_EPS = 1e-5
Params = dict[str, torch.Tensor]


CONV_LABELS = [f"conv{i}" for i in range(1, BLOCKS + 1)]  # MMSUP's masked layers
LAYER_LABELS = CONV_LABELS + ["head"]  # BMP's layers, as plots and metrics name them


def layer_index(label: str) -> int:
    """Position of a layer label (``conv1`` .. ``head``) in LAYER_LABELS."""
    return LAYER_LABELS.index(label)


def layer_names(blocks: int = BLOCKS) -> list[list[str]]:
    """Parameter names grouped by layer: one group per conv block, then the head (BMP's N = 5 layers)."""
    convs = [[f"conv{i}.weight", f"conv{i}.bias", f"bn{i}.weight", f"bn{i}.bias"] for i in range(1, blocks + 1)]
    return convs + [["head.weight", "head.bias"]]


def embedding_size(image_size: int, hidden: int, blocks: int = BLOCKS) -> int:
    """Features entering the head: each block halves the side (floor), e.g. 84 -> 5, so 64 * 5 * 5."""
    side = image_size
    for _ in range(blocks):
        side //= 2
    if side < 1:
        raise ValueError(f"image_size {image_size} is too small for {blocks} pooling blocks (needs >= {2**blocks})")
    return hidden * side * side


def init_conv4(
    ways: int, image_size: int, hidden: int = 64, channels: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Params:
    """Initial weights as learn2learn's CNN4: Xavier-uniform convs and head, zero biases, BN scale U(0, 1)."""
    gen = torch.Generator().manual_seed(seed)

    def xavier(*shape):
        receptive = shape[2] * shape[3] if len(shape) == 4 else 1
        bound = (6.0 / ((shape[0] + shape[1]) * receptive)) ** 0.5
        return (torch.rand(*shape, generator=gen, dtype=dtype) * 2 - 1) * bound

    params: Params = {}
    for i in range(1, BLOCKS + 1):
        params[f"conv{i}.weight"] = xavier(hidden, channels if i == 1 else hidden, 3, 3)
        params[f"conv{i}.bias"] = torch.zeros(hidden, dtype=dtype)
        params[f"bn{i}.weight"] = torch.rand(hidden, generator=gen, dtype=dtype)
        params[f"bn{i}.bias"] = torch.zeros(hidden, dtype=dtype)
    params["head.weight"] = xavier(ways, embedding_size(image_size, hidden))
    params["head.bias"] = torch.zeros(ways, dtype=dtype)
    return params


def from_l2l_cnn4(model: torch.nn.Module) -> Params:
    """The weights of a learn2learn ``CNN4`` under this module's names (used to compare with learn2learn)."""
    named = dict(model.named_parameters())  # features.<i>.conv.weight, ..., classifier.weight
    params = {}
    for i in range(1, 5):
        for ours, theirs in ((f"conv{i}", f"features.{i - 1}.conv"), (f"bn{i}", f"features.{i - 1}.normalize")):
            params[f"{ours}.weight"], params[f"{ours}.bias"] = named[f"{theirs}.weight"], named[f"{theirs}.bias"]
    params["head.weight"], params["head.bias"] = named["classifier.weight"], named["classifier.bias"]
    return {k: v.detach().clone() for k, v in params.items()}


WeightTransform = Callable[[str, torch.Tensor], torch.Tensor]


def conv4_forward(params: Params, x: torch.Tensor, transform: WeightTransform | None = None) -> torch.Tensor:
    """Logits [T, B, ways] of T tasks' models (params with leading dim T) on images x [T, B, C, H, W].

    ``transform(name, weight)``, if given, maps each conv weight before use (MMSUP's supermask).
    """
    t, b = x.shape[:2]
    h = x.transpose(0, 1).reshape(b, -1, *x.shape[-2:])  # [B, T*C, H, W]: tasks side by side as channel groups
    for i in range(1, BLOCKS + 1):
        w = params[f"conv{i}.weight"]
        if transform is not None:
            w = transform(f"conv{i}.weight", w)
        h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), params[f"conv{i}.bias"].reshape(-1), padding=1, groups=t)
        h = F.batch_norm(
            h,
            None,
            None,
            params[f"bn{i}.weight"].reshape(-1),
            params[f"bn{i}.bias"].reshape(-1),
            training=True,
            eps=BN_EPS,
        )
        h = F.max_pool2d(F.relu(h), 2)
    features = h.reshape(b, t, -1).transpose(0, 1)  # [T, B, hidden*side*side], (channel, y, x) order
    return torch.einsum("tbd,tcd->tbc", features, params["head.weight"]) + params["head.bias"].unsqueeze(1)
