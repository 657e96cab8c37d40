"""A labelled image collection held as uint8 arrays, its decoding, and its on-disk cache."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .. import io
from ..errors import DataFileError


@dataclass
class ClassImages:
    """Images of one distribution: ``images`` [N, H, W, 3] uint8, ``labels`` [N] indexing ``class_names``."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    skipped: int = 0  # unreadable images left out (skip_unreadable_images)

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images):
            raise ValueError("images and labels differ in length")

    def counts(self) -> np.ndarray:
        """Images per class, indexed like ``class_names``."""
        return np.bincount(self.labels, minlength=len(self.class_names))

    def save(self, path: Path, built_from: str) -> None:
        """Cache the images, recording what they were built from (compared when read back)."""
        io.save_npz(
            path,
            images=self.images,
            labels=self.labels,
            class_names=np.array(self.class_names),
            built_from=np.array(built_from),
            skipped=np.array(self.skipped),
        )

    @classmethod
    def load(cls, path: Path, built_from: str) -> ClassImages:
        """Read a cache; ValueError if it was built from something else than ``built_from``."""
        with np.load(path) as f:
            recorded = str(f["built_from"]) if "built_from" in f.files else "(not recorded)"
            if recorded != built_from:
                raise ValueError(f"it was built from {recorded}, not {built_from}")
            return cls(f["images"], f["labels"].astype(np.int64), [str(c) for c in f["class_names"]], int(f["skipped"]))


BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
EIGHT_BIT = ("1", "L", "P", "RGB", "CMYK", "YCbCr")
WITH_ALPHA = ("LA", "RGBA")
WIDE = ("I;16", "I;16B", "I;16L", "I", "F")  # 16-bit, 32-bit integer and 32-bit float grayscale
MODES = EIGHT_BIT + WITH_ALPHA + WIDE  # every mode the kit decodes; each is tested with a real file


def to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float grayscale image as 8-bit grayscale, scaled by its range: 16-bit values
    (and 32-bit ones within 0..65535, as some 16-bit files open) by 65535, floats within 0..1 by 1,
    anything else by the image's own minimum and maximum. Never clipped; NaN or infinite pixels are an error."""
    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataFileError(f"{int((~np.isfinite(values)).sum())} of its pixels are NaN or infinite")
    lo, hi = float(values.min()), float(values.max())
    if image.mode.startswith("I;16") or (image.mode == "I" and lo >= 0 and hi <= 65535):
        lo, hi = 0.0, 65535.0
    elif image.mode == "F" and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return Image.fromarray(np.round(scaled * 255).astype(np.uint8), "L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode of ``MODES`` as 8-bit RGB: wide grayscale scaled (``to_8bit``), transparency composited
    on ``BACKGROUND``; DataFileError for another mode."""
    if image.mode not in MODES:
        raise DataFileError(f"image mode {image.mode} is not supported; supported modes: {', '.join(MODES)}")
    if image.mode in WIDE:
        return to_8bit(image).convert("RGB")
    if image.mode in WITH_ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND + (255,)), rgba).convert("RGB")
    return image.convert("RGB")


def decode(image: Image.Image, size: int) -> np.ndarray:
    """An image as RGB uint8 [size, size, 3] (``to_rgb``, then a bilinear resize)."""
    image = to_rgb(image)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def from_items(
    items: Iterable[tuple[Callable[[], Image.Image], str, str]],
    size: int,
    total: int | None = None,
    desc: str = "decoding",
    skip_unreadable: bool = False,
) -> ClassImages:
    """Decode (open_image, class_name, key) triples into a ClassImages, ordered by class name, then key
    (a path): the order, and so the fixed test tasks, does not depend on how a file system lists files.

    An image that cannot be opened or decoded is an error naming every such file (its key) and why,
    all in one message, before anything is cached; with ``skip_unreadable`` they are left out and
    counted in ``skipped``."""
    items = sorted(items, key=lambda item: (item[1], item[2]))
    arrays, names, failures = [], [], []
    for open_image, name, key in tqdm(items, total=total, desc=desc, leave=False):
        try:
            arrays.append(decode(open_image(), size))
            names.append(name)
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds; each is named below
            failures.append(f"{key}: {type(exc).__name__}: {exc}")
    if failures and not skip_unreadable:
        raise DataFileError(
            f"{len(failures)} of {len(items)} images of {desc} cannot be read; fix or remove them, "
            "or set skip_unreadable_images: true to leave them out:\n  " + "\n  ".join(failures)
        )
    if not arrays:
        raise DataFileError(f"no readable images in {desc}")
    class_names = sorted(set(names))
    index = {c: i for i, c in enumerate(class_names)}
    return ClassImages(
        np.stack(arrays), np.array([index[n] for n in names], dtype=np.int64), class_names, skipped=len(failures)
    )


def cached(path: Path, build: Callable[[], ClassImages], built_from: str) -> tuple[ClassImages, bool]:
    """Load the cache at ``path`` if it is intact and was built from ``built_from``; else (naming why
    in a warning) build, save atomically and return. Also says whether the cache was used."""
    if path.exists():
        try:
            return ClassImages.load(path, built_from), True
        except Exception as exc:  # noqa: BLE001 - a damaged or stale cache is derived data: rebuild it
            warnings.warn(
                f"image cache {path} is not usable ({type(exc).__name__}: {exc}); rebuilding it", stacklevel=2
            )
    data = build()
    data.save(path, built_from)
    return data, False
