"""A run's checkpoints: the last two kept, each with a checksum, so a damaged one is noticed and skipped.

A checkpoint file is ``MAGIC``, the SHA-256 of the payload, then the payload (``torch.save`` bytes).
Saving writes the new one to a temporary file, then renames the newest to ``checkpoint.prev.pt`` and the
temporary file to ``checkpoint.pt`` (both atomic): whenever a process dies, or the disk fills, at least
one intact checkpoint is on disk. Loading tries the newest, then the previous; a file that is
truncated, altered at any byte, unreadable, a link, or refused by the caller's check (another run's) is
returned with the reason, for the caller to name and set aside.

Loading reads data only (``torch.load(weights_only=True)``): tensors, numbers, strings and containers.
Run folders are shared, and the checksum has no key, so it detects damage, not tampering; a file whose
payload would need code to load (a crafted pickle) is refused as "not a checkpoint this kit wrote" and
nothing in it runs.
"""

from __future__ import annotations

import hashlib
import io as _io
import pickle
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from . import io
from .errors import KitError

MAGIC = b"GEMS-checkpoint-1\n"
NEWEST, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"


class CheckpointUnreadable(KitError):
    """Every checkpoint of a run is damaged; the message names them and what to do."""


def save(folder: Path, obj) -> None:
    """Write ``obj`` as the run's newest checkpoint, keeping the one before as the previous."""
    buffer = _io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    io.write_bytes(
        Path(folder) / NEWEST, MAGIC + hashlib.sha256(payload).digest() + payload, keep=Path(folder) / PREVIOUS
    )


def read(path: Path):
    """The object in one checkpoint file; ValueError if it is not intact."""
    data = Path(path).read_bytes()
    head = len(MAGIC)
    if not data.startswith(MAGIC):
        raise ValueError("it does not start like a GEMS checkpoint")
    digest, payload = data[head : head + 32], data[head + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError(f"its checksum does not match its {len(payload)} bytes (truncated or altered)")
    try:
        return torch.load(_io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found[1]})" if found else ""
        raise ValueError(
            f"it is not a checkpoint this kit wrote: it holds an object other than tensors, numbers and "
            f"strings{what}, so loading it would run code; nothing in it was run"
        ) from None


def load(folder: Path, check: Callable[[dict], str | None] | None = None) -> tuple[dict | None, list[tuple[Path, str]]]:
    """The newest checkpoint of a run that is intact and passes ``check`` (which returns why not, or
    None), or None; and each newer one refused, with why (for the caller to name and set aside)."""
    refused: list[tuple[Path, str]] = []
    for name in (NEWEST, PREVIOUS):
        path = Path(folder) / name
        if not (path.exists() or path.is_symlink()):
            continue
        try:
            if path.is_symlink():
                raise ValueError("it is a symbolic link; a run's checkpoints must be its own")
            checkpoint = read(path)
            if not isinstance(checkpoint, dict):
                raise ValueError("it does not hold a checkpoint's fields")
            why = check(checkpoint) if check else None
        except Exception as exc:  # noqa: BLE001 - any damage: name it and try the previous one
            why = str(exc)
        if why is None:
            return checkpoint, refused
        refused.append((path, why))
    return None, refused


def none_usable(folder: Path, refused: list[tuple[Path, str]]) -> CheckpointUnreadable:
    """The error for a run whose every checkpoint was refused (``load``), naming each and why."""
    return CheckpointUnreadable(
        f"no usable checkpoint in {folder}: " + "; ".join(f"{path.name}: {why}" for path, why in refused)
    )


@contextmanager
def restoring(checkpoint: dict, folder: Path, method: str, members: int) -> Iterator[list[dict]]:
    """The checkpoint's saved members, checked to be ``members``; whatever restoring them raises because the
    checkpoint has another shape (an older kit's, other parameters) becomes one CheckpointUnreadable."""
    try:
        saved = checkpoint["members"]
        if len(saved) != members:
            raise ValueError(f"it holds {len(saved)} learners, a {method} run has {members}")
        yield saved
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise CheckpointUnreadable(
            f"the checkpoint in {folder} does not fit a {method} run with these parameters "
            f"({type(exc).__name__}: {reason}). Delete the run folder to train the run again from the start."
        ) from None
