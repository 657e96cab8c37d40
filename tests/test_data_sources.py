"""Synthetic, folder and Omniglot distributions, their splits and caches."""

import numpy as np
import pytest
from PIL import Image

from gems_core.data import load_distribution, synthetic
from gems_core.data.folders import DataFileError, load_folder, load_omniglot
from gems_core.data.splits import seeded_split


def test_synthetic_is_deterministic_and_extends_stably():
    a = synthetic.generate("synthetic_glyphs", 4, 3, 24)
    b = synthetic.generate("synthetic_glyphs", 6, 3, 24)
    assert np.array_equal(a.images, b.images[:12]) and a.class_names == b.class_names[:4]
    assert b.images.shape == (18, 24, 24, 3) and list(b.counts()) == [3] * 6


def test_synthetic_sources_have_enough_classes_and_differ_visibly():
    assert min(synthetic.MAX_CLASSES.values()) >= 150
    glyphs = synthetic.generate("synthetic_glyphs", 64, 2, 32).images.astype(float)
    shapes = synthetic.generate("synthetic_shapes", 64, 2, 32).images.astype(float)
    saturation = lambda x: (x.max(-1) - x.min(-1)).mean()  # noqa: E731
    assert saturation(shapes) > 3 * saturation(glyphs)  # colourful shapes vs ink on paper
    assert len({img.tobytes() for img in glyphs.astype(np.uint8)}) == 128  # no two images alike


def test_seeded_split_is_disjoint_complete_and_reproducible():
    names = [f"c{i}" for i in range(100)]
    s1, s2 = seeded_split(names, [0.6, 0.2, 0.2], 3), seeded_split(names, [0.6, 0.2, 0.2], 3)
    assert s1 == s2 and [len(s1[k]) for k in ("train", "validation", "test")] == [60, 20, 20]
    assert sorted(sum(s1.values(), [])) == sorted(names)
    assert seeded_split(names, [0.6, 0.2, 0.2], 4) != s1


def _write_folder(root, classes=4, per_class=3):
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for j in range(per_class):
            Image.new("RGB", (10 + j, 12), (60 * c, 10 * j, 0)).save(root / f"class{c}" / f"{j}.png")


def test_folder_loader_reads_class_per_folder(tmp_path):
    _write_folder(tmp_path / "imgs")
    data = load_folder(tmp_path / "imgs", 8)
    assert data.class_names == ["class0", "class1", "class2", "class3"]
    assert data.images.shape == (12, 8, 8, 3) and data.images[3, 0, 0, 0] == 60


def test_folder_without_images_names_the_expected_layout(tmp_path):
    with pytest.raises(DataFileError, match="expected .*<class>/<image>"):
        load_folder(tmp_path, 8)


def test_distribution_is_cached_once_and_read_back(tiny_params, tmp_path):
    _write_folder(tmp_path / "imgs", classes=10)
    params = tiny_params(distributions=[{"name": "f", "source": "folder", "path": str(tmp_path / "imgs")}])
    first = load_distribution(params.distributions[0], params)
    second = load_distribution(params.distributions[0], params)
    assert not first.cache_hit and second.cache_hit and first.cache_path == second.cache_path
    assert np.array_equal(first.splits["test"].images, second.splits["test"].images)
    assert not list(first.cache_path.parent.glob("*.tmp"))
    (tmp_path / "imgs" / "class0" / "extra.png").write_bytes((tmp_path / "imgs" / "class0" / "0.png").read_bytes())
    assert load_distribution(params.distributions[0], params).cache_path != first.cache_path  # files changed


def test_caltech_folder_from_shared_data(shared_data):
    data = load_folder(shared_data / "caltech101_84", 16)
    assert len(data.class_names) == 101 and "Faces" in data.class_names
    assert data.images.shape[1:] == (16, 16, 3) and data.counts().min() >= 31


def test_omniglot_zips_from_shared_data(shared_data, tmp_path):
    data = load_omniglot(shared_data / "omniglot", 16)
    assert data.class_names[0] == "Balinese/character01" and len(data.class_names) > 200
    assert set(data.counts()) == {20}  # 20 drawers per character
    one_zip = load_omniglot(shared_data / "omniglot" / "images_background_small1.zip", 16)
    assert 0 < len(one_zip.class_names) < len(data.class_names)
    assert set(one_zip.class_names) <= set(data.class_names)


def test_omniglot_extracted_folder_matches_its_zip(shared_data, tmp_path):
    import zipfile

    archive = shared_data / "omniglot" / "images_background_small1.zip"
    zipfile.ZipFile(archive).extractall(tmp_path)
    extracted = load_omniglot(tmp_path / "images_background_small1", 16)
    zipped = load_omniglot(archive, 16)
    assert extracted.class_names == zipped.class_names
    assert np.array_equal(extracted.images, zipped.images)


def test_images_are_ordered_by_class_then_path_whatever_the_listing_order():
    from gems_core.data.images import from_items

    rng = np.random.default_rng(0)
    items = [
        ((lambda c=c, j=j: Image.new("RGB", (4, 4), (c * 40, j * 10, 0))), f"class{c}", f"img{j:02d}.png")
        for c in range(3)
        for j in range(5)
    ]
    listed = from_items(items, 4)
    shuffled = from_items([items[i] for i in rng.permutation(len(items))], 4)
    assert np.array_equal(listed.images, shuffled.images) and np.array_equal(listed.labels, shuffled.labels)
    assert listed.images[:, 0, 0, 1].tolist() == [j * 10 for _ in range(3) for j in range(5)]


def test_dropped_classes_are_counted_and_too_many_stop_before_training(tmp_path, tiny_params):
    from gems_core.data import Distribution, check_against_data
    from gems_core.data.splits import apply_split
    from gems_core.params import ParameterError

    _write_folder(tmp_path / "f", classes=8, per_class=3)
    for j in range(3, 5):  # class0 and class1 get a fourth and fifth image: enough for shots + queries = 5
        for c in (0, 1):
            Image.new("RGB", (8, 8)).save(tmp_path / "f" / f"class{c}" / f"x{j}.png")
    data = load_folder(tmp_path / "f", 8)
    split = {
        "train": ["class0", "class1", "class2", "gone1"],
        "validation": ["class3", "class4"],
        "test": ["class5", "class6", "class7", "gone2"],
    }
    parts, missing = apply_split(data, split)
    dist = Distribution("f", "folder", parts, tmp_path / "cache", False, missing)
    row = dist.summary(need=5)
    assert (
        row["train_classes"],
        row["train_missing_classes"],
        row["train_too_few_images"],
        row["train_usable_classes"],
    ) == (3, 1, 1, 2)
    assert (row["test_missing_classes"], row["test_too_few_images"]) == (1, 3)
    params = tiny_params(ways=2, shots=1, queries=4, max_dropped_classes=0.5)
    with pytest.raises(ParameterError, match=r"f/validation drops 2 of its 2 classes .*max_dropped_classes = 0.5"):
        check_against_data(params, [dist])
    with pytest.raises(ParameterError, match=r"gone2"):
        check_against_data(
            params,
            [
                Distribution(
                    "f",
                    "folder",
                    {**parts, "validation": parts["train"]},
                    tmp_path,
                    False,
                    {**missing, "validation": []},
                )
            ],
        )
