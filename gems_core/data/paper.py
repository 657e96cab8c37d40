"""The paper's four datasets (CUB-200-2011, VGG Flowers 102, FGVC Aircraft, FGVC Fungi), and DTD for the
Plain-Multi benchmark, loaded through learn2learn's dataset classes from the data root, where
``make data`` (``fetch``) put them, checked against their checksums; the loaders never download.

learn2learn's DescribableTextures keeps decoded images and no file names, so their order would follow the
file system's listing; the kit reads its ``<class>/<image>`` folder itself (``image_folder``), in the
order of the file names. An absent or incomplete dataset raises ``DatasetUnavailable`` naming the
dataset, the data root, the command that fetches it and how to provide the files by hand.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

from ..errors import KitError
from .folders import load_folder
from .images import ClassImages, from_items

SPLIT_DIR = Path(__file__).parent / "splits"


class DatasetUnavailable(KitError, RuntimeError):
    """A paper dataset is absent from the data root and could not be downloaded."""


@dataclass(frozen=True)
class PaperDataset:
    """Where learn2learn keeps one dataset and what a user must place there to provide it by hand."""

    title: str
    module: str  # learn2learn.vision.datasets.<module>
    cls: str  # its dataset class
    folder: str  # the folder it creates under the data root
    layout: str  # what must be inside that folder
    image_folder: str | None = None  # <class>/<image> under ``folder``, read by the kit itself (see DTD)

    def l2l_module(self):
        """learn2learn's module for this dataset. Importing learn2learn imports gym, which prints a notice
        that gym is unmaintained; the kit never uses gym, so that notice is kept out of notebooks and logs
        (an error in the import still raises)."""
        with contextlib.redirect_stderr(StringIO()):
            return importlib.import_module(f"learn2learn.vision.datasets.{self.module}")

    def class_names(self) -> list[str]:
        """learn2learn's class order for mode='all': its labels index this list."""
        splits = self.l2l_module().SPLITS
        names = splits["all"] if "all" in splits else sum(splits.values(), [])
        return [str(n) for n in names]


PAPER_DATASETS = {
    "cub": PaperDataset(
        "CUB-200-2011",
        "cu_birds200",
        "CUBirds200",
        "cubirds200",
        "CUB_200_2011/images/<class>/<image>.jpg (extract CUB_200_2011.tgz here)",
    ),
    "vgg_flowers": PaperDataset(
        "VGG Flowers 102",
        "vgg_flowers",
        "VGGFlower102",
        "vgg_flower102",
        "jpg/image_NNNNN.jpg (from 102flowers.tgz) and imagelabels.mat",
    ),
    "aircraft": PaperDataset(
        "FGVC Aircraft",
        "fgvc_aircraft",
        "FGVCAircraft",
        "fgvc_aircraft",
        "fgvc-aircraft-2013b/data/images/*.jpg and fgvc-aircraft-2013b/data/labels.pkl "
        "(a list of (image id, variant) pairs from images_variant_{train,val,test}.txt)",
    ),
    "fungi": PaperDataset(
        "FGVC Fungi",
        "fgvc_fungi",
        "FGVCFungi",
        "fgvc_fungi",
        "images/<class>/<image>.JPG with train.json and val.json (fungi_train_val.tgz and "
        "train_val_annotations.tgz of FGVCx 2018)",
    ),
    "dtd": PaperDataset(
        "Describable Textures (DTD)",
        "describable_textures",
        "DescribableTextures",
        "describable_textures",
        "dtd/images/<class>/<image>.jpg (extract dtd-r1.0.1.tar.gz here)",
        image_folder="dtd/images",
    ),
}


def split_file(source: str) -> dict[str, list[str]]:
    """The kit's class split of a paper dataset: {'train'|'validation'|'test': [class names]}."""
    return json.loads((SPLIT_DIR / f"{source}.json").read_text())


def unavailable(source: str, data_root: Path, why: str) -> DatasetUnavailable:
    """The error for a paper dataset the data root does not hold: what, where, how to fetch or place it."""
    spec = PAPER_DATASETS[source]
    target = (Path(data_root) / spec.folder).resolve()
    return DatasetUnavailable(
        f"{spec.title} ({source}) {why} under data root '{Path(data_root).resolve()}'. Fetch it with: make data "
        f"DATASETS={source} DATA_ROOT={data_root} (python -m gems_core.data.fetch {source} --data-root "
        f"{data_root}; docs/data.md); or place {spec.layout} in '{target}' by hand"
    )


def open_l2l_dataset(source: str, data_root: Path, crop: bool = False):
    """learn2learn's dataset object (mode='all') for ``source``, never downloading; with ``crop``, each image
    cut to its annotated bounding box (CUB, Aircraft)."""
    spec = PAPER_DATASETS[source]
    if not (Path(data_root) / spec.folder).is_dir():
        raise unavailable(source, data_root, "is absent")
    boxes = {"bounding_box_crop": True} if crop else {}
    try:
        return getattr(spec.l2l_module(), spec.cls)(root=str(data_root), mode="all", download=False, **boxes)
    except Exception as exc:  # noqa: BLE001 - any failure here means the data is not usable
        raise unavailable(source, data_root, f"is incomplete ({type(exc).__name__}: {exc})") from exc


def load_paper_dataset(
    source: str, data_root: Path, size: int, skip_unreadable: bool = False, crop: bool = False
) -> ClassImages:
    """Every image of a paper dataset, decoded through learn2learn (or, for a dataset with an
    ``image_folder``, read from that folder), with ``crop`` cut to its bounding box, and resized to ``size``."""
    spec = PAPER_DATASETS[source]
    if spec.image_folder:
        images = Path(data_root) / spec.folder / spec.image_folder
        if not images.is_dir():
            fetched = (Path(data_root) / spec.folder).is_dir()
            raise unavailable(source, data_root, "is incomplete" if fetched else "is absent")
        return load_folder(images, size, skip_unreadable=skip_unreadable)
    dataset = open_l2l_dataset(source, data_root, crop)
    names = PAPER_DATASETS[source].class_names()
    entries = getattr(dataset, "data", None) or dataset.data_map  # (path, label) pairs
    if not entries:
        raise DatasetUnavailable(f"{PAPER_DATASETS[source].title} under '{data_root}' has no images")
    # learn2learn lists images in the file system's order: the kit orders them by (class, path) instead
    items = [((lambda i=i: dataset[i][0]), names[label], str(path)) for i, (path, label) in enumerate(entries)]
    return from_items(items, size, total=len(items), desc=source, skip_unreadable=skip_unreadable)
