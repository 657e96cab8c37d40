"""A labelled image collection held as uint8 arrays, its decoding, and its on-disk cache."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .. import io


@dataclass
class ClassImages:
    """Images of one distribution: ``images`` [N, H, W, 3] uint8, ``labels`` [N] indexing ``class_names``."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images):
            raise ValueError("images and labels differ in length")

    def counts(self) -> np.ndarray:
        """Images per class, indexed like ``class_names``."""
        return np.bincount(self.labels, minlength=len(self.class_names))

    def save(self, path: Path) -> None:
        io.save_npz(path, images=self.images, labels=self.labels, class_names=np.array(self.class_names))

    @classmethod
    def load(cls, path: Path) -> "ClassImages":
        with np.load(path) as f:
            return cls(f["images"], f["labels"].astype(np.int64), [str(c) for c in f["class_names"]])


def decode(image: Image.Image, size: int) -> np.ndarray:
    """An image as RGB uint8 [size, size, 3] (bilinear resize; grayscale is replicated)."""
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def from_items(items: Iterable[tuple[Callable[[], Image.Image], str, str]], size: int, total: int | None = None,
               desc: str = "decoding") -> ClassImages:
    """Decode (open_image, class_name, key) triples into a ClassImages, ordered by class name, then key
    (a path): the order, and so the fixed test tasks, does not depend on how a file system lists files."""
    items = sorted(items, key=lambda item: (item[1], item[2]))
    arrays, names = [], []
    for open_image, name, _ in tqdm(items, total=total, desc=desc, leave=False):
        arrays.append(decode(open_image(), size))
        names.append(name)
    if not arrays:
        raise ValueError("no images found")
    class_names = sorted(set(names))
    index = {c: i for i, c in enumerate(class_names)}
    return ClassImages(np.stack(arrays), np.array([index[n] for n in names], dtype=np.int64), class_names)


def cached(path: Path, build: Callable[[], ClassImages]) -> tuple[ClassImages, bool]:
    """Load ``path`` if it exists, else build, save atomically and return; also says if it was a hit."""
    if path.exists():
        return ClassImages.load(path), True
    data = build()
    data.save(path)
    return data, False
