"""Local image collections as distributions: any class-per-folder tree, and Omniglot's layout.

* ``folder``: ``path/<class>/<image>``; every sub-folder holding images is a class.
* ``omniglot``: ``<alphabet>/<character>/<image>.png``, a class being alphabet/character; ``path``
  may be an extracted folder, one of Omniglot's zip files, or a folder of such zips.
"""

from __future__ import annotations

import io as _io
import zipfile
from pathlib import Path

from PIL import Image

from ..errors import DataFileError
from .images import ClassImages, from_items

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff"}


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def load_folder(path: str | Path, size: int, skip_unreadable: bool = False) -> ClassImages:
    """Images of ``path/<class>/*`` (one level of class folders), resized to ``size``."""
    root = Path(path)
    files = sorted(p for p in root.glob("*/*") if p.is_file() and _is_image(p.name))
    if not files:
        raise DataFileError(f"'{root}' has no images in class sub-folders; expected {root}/<class>/<image>.jpg|png")
    items = [((lambda p=p: Image.open(p)), p.parent.name, str(p)) for p in files]
    return from_items(items, size, total=len(items), desc=root.name, skip_unreadable=skip_unreadable)


def _zip_blobs(archive: Path) -> dict[str, bytes]:
    """{'alphabet/character/file.png': encoded bytes} for every image of an Omniglot zip."""
    with zipfile.ZipFile(archive) as zf:
        return {
            "/".join(Path(n).parts[-3:]): zf.read(n)
            for n in sorted(zf.namelist())
            if _is_image(n) and len(Path(n).parts) >= 3
        }


def load_omniglot(path: str | Path, size: int, skip_unreadable: bool = False) -> ClassImages:
    """Omniglot characters from an extracted folder, a zip, or a folder of zips; class = alphabet/character."""
    root = Path(path)
    archives = [root] if root.is_file() and zipfile.is_zipfile(root) else sorted(root.glob("*.zip"))
    if archives:
        # Omniglot's subsets overlap (images_background_small1 and small2 both hold Greek and Latin):
        # an image present in several zips is counted once.
        blobs: dict[str, bytes] = {}
        for archive in archives:
            blobs = {**_zip_blobs(archive), **blobs}
        items = [
            ((lambda b=b: Image.open(_io.BytesIO(b))), name.rsplit("/", 1)[0], f"{root}: {name}")
            for name, b in blobs.items()
        ]
    else:
        files = sorted(p for p in root.glob("**/*") if p.is_file() and _is_image(p.name))
        items = [((lambda p=p: Image.open(p)), f"{p.parent.parent.name}/{p.parent.name}", str(p)) for p in files]
    if not items:
        raise DataFileError(
            f"'{root}' holds no Omniglot images; expected <alphabet>/<character>/<image>.png, "
            "a zip of that layout, or a folder of such zips"
        )
    return from_items(items, size, total=len(items), desc=root.name, skip_unreadable=skip_unreadable)
