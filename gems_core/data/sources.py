"""From a parameters entry ``{name, source, path}`` to a distribution split into train/validation/test.

Every source is decoded once and cached as uint8 arrays under ``<data_root>/cache/``; the cache file's
name carries what it depends on (source, image size, and the synthetic sizes, a fingerprint of the local
files, or the checksums of the archives a paper dataset was fetched from), so changing any of them builds
a new cache instead of reading a stale one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from . import folders, manifest, paper, synthetic
from .images import ClassImages, cached
from .splits import SPLITS, apply_split, seeded_split

if TYPE_CHECKING:  # the parameters module imports the learners
    from ..params import Config, DistributionSpec

LOCAL_LOADERS = {"folder": folders.load_folder, "omniglot": folders.load_omniglot}


@dataclass
class Distribution:
    """One named distribution, its class splits and where its cache lives."""

    name: str
    source: str
    splits: dict[str, ClassImages]
    cache_path: Path
    cache_hit: bool
    missing: dict[str, list[str]] = field(default_factory=dict)  # per split: named by its split file, absent
    skipped_images: int = 0  # unreadable images left out (skip_unreadable_images)

    @property
    def synthetic(self) -> bool:
        return self.source.startswith("synthetic_")

    def too_few(self, split: str, need: int) -> list[str]:
        """Classes of ``split`` with fewer than ``need`` images: no task can use them."""
        data = self.splits[split]
        return [c for c, n in zip(data.class_names, data.counts()) if n < need]

    def summary(self, need: int) -> dict:
        """Per split: classes and images present, classes dropped (absent, or fewer than ``need`` images),
        and the classes tasks are drawn from."""
        row: dict[str, object] = {"distribution": self.name, "source": self.source}
        for split in SPLITS:
            missing, too_few = len(self.missing.get(split, [])), len(self.too_few(split, need))
            row[f"{split}_classes"] = len(self.splits[split].class_names)
            row[f"{split}_images"] = len(self.splits[split].images)
            row[f"{split}_missing_classes"] = missing
            row[f"{split}_too_few_images"] = too_few
            row[f"{split}_usable_classes"] = len(self.splits[split].class_names) - too_few
        row["skipped_unreadable_images"] = self.skipped_images
        row["cache"] = "hit" if self.cache_hit else "built"
        return row


def _fingerprint(path: Path) -> str:
    """A short hash of a local source's absolute path, file names, sizes and modification times."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha1(str(path.resolve()).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if f != path else f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


CACHE_FORMAT = 3  # bumped when what a cache holds changes (2: images ordered by class name, then path;
#                  3: wide grayscale scaled by its range, transparency composited on white)


def _cache_key(dist: DistributionSpec, params: Config) -> str:
    skipping = params.skip_unreadable_images and not dist.source.startswith("synthetic_")
    return f"v{CACHE_FORMAT}-{_source_key(dist, params)}" + ("-readable-only" if skipping else "")


def _source_key(dist: DistributionSpec, params: Config) -> str:
    source, size = dist.source, params.image_size
    if source.startswith("synthetic_"):
        return f"{source}-{params.synthetic_classes}x{params.synthetic_images_per_class}-{size}px"
    if source in LOCAL_LOADERS:
        return f"{source}-{dist.folder.name}-{_fingerprint(dist.folder)}-{size}px"
    cropped = "-bbox" if dist.crop == "bounding_box" else ""
    record = manifest.recorded(Path(params.data_root), manifest.manifest()[source])
    if record is None:  # placed by hand: keyed as before the fetch command existed
        return f"{source}{cropped}-{size}px"
    archives = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:8]
    return f"{source}{cropped}-{archives}-{size}px"


def require_data(params: Config) -> None:
    """Before anything trains: DatasetUnavailable naming every paper dataset the profile needs that is neither
    cached nor under the data root, with how to fetch it (FGVC Fungi: how to supply it, its host being gone)."""
    lines = []
    for dist in params.distributions:
        source = dist.source
        if source not in paper.PAPER_DATASETS:
            continue
        cache = Path(params.data_root) / "cache" / f"{_cache_key(dist, params)}.npz"
        if not cache.exists() and not (Path(params.data_root) / paper.PAPER_DATASETS[source].folder).is_dir():
            spec = manifest.manifest()[source]
            gone = f" ({spec['gone']})" if "gone" in spec else ""
            lines.append(
                f"{spec['title']} for distribution '{dist.name}'{gone}: "
                + str(paper.unavailable(source, Path(params.data_root), "is absent"))
            )
    if lines:
        raise paper.DatasetUnavailable("; ".join(lines))


def _build(dist: DistributionSpec, params: Config) -> ClassImages:
    source, size = dist.source, params.image_size
    if source.startswith("synthetic_"):
        return synthetic.generate(source, params.synthetic_classes, params.synthetic_images_per_class, size)
    skip = params.skip_unreadable_images
    if source in LOCAL_LOADERS:
        return LOCAL_LOADERS[source](dist.folder, size, skip_unreadable=skip)
    crop = dist.crop == "bounding_box"
    return paper.load_paper_dataset(source, Path(params.data_root), size, skip_unreadable=skip, crop=crop)


def load_distribution(dist: DistributionSpec, params: Config) -> Distribution:
    """Load (from cache, or decode and cache) one distribution and split its classes."""
    key = _cache_key(dist, params)
    cache_path = Path(params.data_root) / "cache" / f"{key}.npz"
    data, hit = cached(cache_path, lambda: _build(dist, params), built_from=key)
    if not hit and dist.source in paper.PAPER_DATASETS:
        size = f"-{params.image_size}px.npz"
        older = [p.name for p in cache_path.parent.glob(f"v{CACHE_FORMAT}-{dist.source}-*{size}") if p != cache_path]
        if older:
            tqdm.write(
                f"{dist.name}: {dist.source} was fetched from other archives than {', '.join(older)} was built "
                f"from (their checksums, in fetched.json): a new cache was built, {cache_path.name}"
            )
    if dist.source in paper.PAPER_DATASETS:
        split = paper.split_file(dist.source)
    else:
        split = seeded_split(data.class_names, params.split_fractions, params.split_seed)
    parts, missing = apply_split(data, split)
    return Distribution(dist.name, dist.source, parts, cache_path, hit, missing, data.skipped)


def load_distributions(params: Config) -> list[Distribution]:
    """Every distribution named in ``params``, in order."""
    return [load_distribution(d, params) for d in params.distributions]
