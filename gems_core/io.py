"""Atomic file writes: a reader (or a resumed run) never sees a half-written file.

Each writer writes a temporary file in the target's folder, flushes it to disk, then renames it over
the target, which is atomic on POSIX file systems. Files get the permissions the user's umask gives
any new file (a temporary file is created private). A write that runs out of space leaves the
previous file as it was and raises ``DiskFull`` naming the folder and the space it needed.

Nothing is written through a symbolic link: a target, or the folder it is written in, that is a link is
refused (``LinkRefused``) before anything is written, so a link planted in a shared folder can never
send the kit's writes elsewhere (``no_links`` checks every folder below a root the same way).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import DiskFull, KitError


class LinkRefused(KitError):
    """A path the kit would write through is a symbolic link; the message names it (``link``)."""

    def __init__(self, link: Path):
        self.link = Path(link)
        super().__init__(
            f"'{link}' is a symbolic link (to '{os.readlink(link)}'); the kit never writes through links: "
            "remove the link, or point the parameter at the real folder"
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, size: int, keep: str | Path | None = None):
    """Yield a temporary path beside ``path`` for about ``size`` bytes; on success rename it to
    ``path`` (first renaming the file there to ``keep``, if given), else delete it (and name a full disk
    as such)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for checked in (path.parent, path):
        refuse_link(checked)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if keep is not None and path.exists():
            os.replace(path, keep)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        free = shutil.disk_usage(path.parent).free
        raise DiskFull(
            f"no space left in '{path.parent}' to write {path.name}: it needs about "
            f"{size / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free; the previous {path.name}, "
            "if any, is intact. Free some space there and run again (runs resume)."
        ) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def refuse_link(path: str | Path) -> None:
    """LinkRefused if ``path`` is a symbolic link (dangling or not)."""
    if Path(path).is_symlink():
        raise LinkRefused(Path(path))


def no_links(root: str | Path, path: str | Path) -> Path:
    """``path``, after checking that no existing part of it below ``root`` is a symbolic link (``root``
    itself may be one: a user's choice of where outputs live); LinkRefused names the first that is."""
    root, path = Path(root), Path(path)
    for part in path.relative_to(root).parts:
        root = root / part
        refuse_link(root)
    return path


def make_folder(root: str | Path, path: str | Path) -> Path:
    """Create ``path`` (and its parents) below ``root``, refusing any part of it that is a link or a file."""
    no_links(root, path)
    for folder in (Path(path), *Path(path).parents):
        if folder.exists() and not folder.is_dir():
            raise KitError(f"'{folder}' is a file where the kit keeps a folder; move it away and run again")
    Path(path).mkdir(parents=True, exist_ok=True)
    return no_links(root, path)


def write_bytes(path: str | Path, data: bytes, keep: str | Path | None = None) -> None:
    with atomic_path(path, len(data), keep) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_path(path, sum(a.nbytes for a in arrays.values())) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **arrays as its allow_pickle
