"""Write the class splits of the paper's datasets into gems_core/data/splits/*.json.

CUB-200-2011 follows the supplement (100/50/50, the "Closer Look" rule on the sorted class list:
index i % 2 == 0 train, i % 4 == 1 validation, i % 4 == 3 test). VGG Flowers, FGVC Aircraft and
FGVC Fungi follow learn2learn's Meta-Dataset splits. Run once; the JSON files are the source of truth
and tests/test_paper_datasets.py checks them against this rule and learn2learn.
"""

import json
from pathlib import Path

from learn2learn.vision.datasets import cu_birds200, fgvc_aircraft, fgvc_fungi, vgg_flowers

OUT = Path(__file__).resolve().parents[1] / "gems_core" / "data" / "splits"


def closer_look_split(classes):
    ordered = sorted(classes)
    return {"train": ordered[0::2], "validation": ordered[1::4], "test": ordered[3::4]}


def main():
    splits = {
        "cub": closer_look_split(sum(cu_birds200.SPLITS.values(), [])),
        "vgg_flowers": {k: [str(c) for c in vgg_flowers.SPLITS[k]] for k in ("train", "validation", "test")},
        "aircraft": {
            "train": fgvc_aircraft.SPLITS["train"],
            "validation": fgvc_aircraft.SPLITS["valid"],
            "test": fgvc_aircraft.SPLITS["test"],
        },
        "fungi": {k: fgvc_fungi.SPLITS[k] for k in ("train", "validation", "test")},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        (OUT / f"{name}.json").write_text(json.dumps(split, indent=1) + "\n")
        print(name, {k: len(v) for k, v in split.items()})


if __name__ == "__main__":
    main()
