"""Tiny stand-ins for the paper's datasets in each one's real on-disk layout (as learn2learn expects
it after a completed download), for testing the loaders without network."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from gems_core.data.paper import PAPER_DATASETS, split_file


def _jpg(path: Path, value: int) -> None:
    """A 12 x 10 image: its left half coloured by ``value``, its right half white (a box of the left half
    crops the white away)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (12, 10), (255, 255, 255))
    image.paste((value % 256, (value * 7) % 256, 90), (0, 0, 6, 10))
    image.save(path)


def make_cub(root: Path, per_class: int = 2) -> None:
    """With ``images.txt`` and ``bounding_boxes.txt`` (id, x, y, width, height), a box of the left half."""
    images = root / "cubirds200" / "CUB_200_2011" / "images"
    listed = []
    for c, name in enumerate(sorted(PAPER_DATASETS["cub"].class_names())):
        for j in range(per_class):
            listed.append(f"{name}/{name.split('.')[1]}_{j:04d}_{c}.jpg")
            _jpg(images / listed[-1], c)
    (images.parent / "images.txt").write_text("".join(f"{i} {p}\n" for i, p in enumerate(listed, 1)))
    (images.parent / "bounding_boxes.txt").write_text(
        "".join(f"{i} 0.0 0.0 6.0 10.0\n" for i in range(1, len(listed) + 1))
    )


def make_vgg_flowers(root: Path, per_class: int = 2) -> None:
    data = root / "vgg_flower102"
    labels = np.repeat(np.arange(1, 103), per_class)
    for i, label in enumerate(labels, start=1):
        _jpg(data / "jpg" / f"image_{i:05d}.jpg", int(label))
    scipy.io.savemat(data / "imagelabels.mat", {"labels": labels[None, :]})


def make_aircraft(root: Path, per_class: int = 2) -> None:
    data = root / "fgvc_aircraft" / "fgvc-aircraft-2013b" / "data"
    pairs = []
    for c, variant in enumerate(PAPER_DATASETS["aircraft"].class_names()):
        for j in range(per_class):
            image_id = f"{1000000 + c * per_class + j}"
            _jpg(data / "images" / f"{image_id}.jpg", c)
            pairs.append((image_id, variant))
    (data / "images_box.txt").write_text("".join(f"{i} 0 0 6 10\n" for i, _ in pairs))  # xmin ymin xmax ymax
    (data / "images_variant_trainval.txt").write_text("".join(f"{i} {v}\n" for i, v in pairs))
    for k, split in enumerate(("train", "val", "test")):  # the three lists the archive holds (labels.pkl is built)
        (data / f"images_variant_{split}.txt").write_text("".join(f"{i} {v}\n" for i, v in pairs[k::3]))
    with open(data / "labels.pkl", "wb") as f:  # written by learn2learn's download() from those lists
        pickle.dump(pairs, f)


def make_fungi(root: Path, per_split: int = 6, per_class: int = 2) -> list[str]:
    """A subset of Fungi's classes (``per_split`` of each split); returns their names."""
    data = root / "fgvc_fungi"
    names = [n for split in split_file("fungi").values() for n in split[:per_split]]
    annotations = {"images": [], "annotations": []}
    for c, name in enumerate(names):
        for j in range(per_class):
            image_id = c * per_class + j
            file_name = f"images/{name.replace(' ', '_')}/{image_id}.JPG"
            _jpg(data / file_name, c)
            annotations["images"].append({"id": image_id, "file_name": file_name})
            annotations["annotations"].append({"image_id": image_id, "category_id": int(name[:4])})
    (data / "train.json").write_text(json.dumps(annotations))
    (data / "val.json").write_text(json.dumps({"images": [], "annotations": []}))
    return names


def make_dtd(root: Path, per_class: int = 2) -> None:
    images = root / "describable_textures" / "dtd" / "images"
    for c, name in enumerate(PAPER_DATASETS["dtd"].class_names()):
        for j in range(per_class):
            _jpg(images / name / f"{name}_{j:04d}.jpg", c)
    (images / "banded" / ".directory").write_text("[Dolphin]\n")  # a file manager's note, not an image


MAKERS = {
    "cub": make_cub,
    "vgg_flowers": make_vgg_flowers,
    "aircraft": make_aircraft,
    "fungi": make_fungi,
    "dtd": make_dtd,
}
