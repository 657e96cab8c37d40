"""The paper's datasets through learn2learn, on fake data in their real layouts, without network."""

import pytest
import requests
from fake_datasets import MAKERS, make_dtd, make_fungi
from PIL import Image

from gems_core.data import load_distribution
from gems_core.data.paper import PAPER_DATASETS, DatasetUnavailable, load_paper_dataset, split_file

EXPECTED_SPLITS = {
    "cub": (100, 50, 50),
    "vgg_flowers": (71, 15, 16),
    "aircraft": (70, 15, 15),
    "fungi": (994, 200, 200),
    "dtd": (33, 7, 7),
}


@pytest.fixture
def no_network(monkeypatch):
    """Every HTTP request fails at once, as on a machine without internet."""

    def refuse(*args, **kwargs):
        raise requests.ConnectionError("network unreachable (test)")

    monkeypatch.setattr(requests.sessions.Session, "request", refuse)


@pytest.mark.parametrize("source", sorted(EXPECTED_SPLITS))
def test_split_files_have_the_documented_sizes_and_are_disjoint(source):
    split = split_file(source)
    assert tuple(len(split[k]) for k in ("train", "validation", "test")) == EXPECTED_SPLITS[source]
    assert len(set(sum(split.values(), []))) == sum(EXPECTED_SPLITS[source])


def test_cub_split_is_the_closer_look_rule():
    ordered = sorted(PAPER_DATASETS["cub"].class_names())
    split = split_file("cub")
    assert split["train"][:2] == [ordered[0], ordered[2]]
    assert split["validation"][0] == ordered[1] and split["test"][0] == ordered[3]


@pytest.mark.parametrize("source", ["vgg_flowers", "aircraft", "fungi", "dtd"])
def test_other_splits_are_learn2learns_meta_dataset_splits(source):
    l2l = PAPER_DATASETS[source].l2l_module().SPLITS
    mine = split_file(source)
    assert mine["train"] == [str(c) for c in l2l["train"]]
    assert mine["test"] == [str(c) for c in l2l["test"]]


@pytest.mark.parametrize("source", ["cub", "vgg_flowers", "aircraft", "dtd"])
def test_loads_fake_dataset_in_real_layout(source, tmp_path, no_network, tiny_params):
    MAKERS[source](tmp_path / "data")
    data = load_paper_dataset(source, tmp_path / "data", 8)
    assert len(data.class_names) == sum(EXPECTED_SPLITS[source]) and set(data.counts()) == {2}
    assert data.images.shape[1:] == (8, 8, 3)
    params = tiny_params(distributions=[{"name": source, "source": source}])
    dist = load_distribution(params.distributions[0], params)
    sizes = tuple(len(dist.splits[k].class_names) for k in ("train", "validation", "test"))
    assert sizes == EXPECTED_SPLITS[source] and dist.cache_path.exists()


@pytest.mark.parametrize("source", ["cub", "aircraft"])
def test_a_bounding_box_crop_cuts_each_image_to_its_box_before_resizing_and_has_its_own_cache(
    source, tmp_path, no_network, tiny_params
):
    from gems_core.params import ParameterError

    MAKERS[source](tmp_path / "data")
    whole, cropped = (load_paper_dataset(source, tmp_path / "data", 8, crop=crop) for crop in (False, True))
    right = [data.images[:, :, -1].mean() for data in (whole, cropped)]  # the last column of pixels
    assert right[0] > 230 and right[1] < 200  # white (the right half), then the coloured box only
    params = tiny_params(distributions=[{"name": "boxes", "source": source, "crop": "bounding_box"}])
    dist = load_distribution(params.distributions[0], params)
    assert "-bbox-" in dist.cache_path.name
    for bad in ({"source": "dtd", "crop": "bounding_box"}, {"source": source, "crop": "centre"}):
        with pytest.raises(
            ParameterError, match="crop is .*; valid: 'bounding_box' .* for sources \\['cub', 'aircraft'\\]"
        ):
            tiny_params(distributions=[{"name": "x", **bad}])


def test_dtd_images_are_ordered_by_file_name_not_by_listing(tmp_path, no_network):
    make_dtd(tmp_path / "data", per_class=3)
    banded = tmp_path / "data" / "describable_textures" / "dtd" / "images" / "banded"
    for j, red in ((2, 200), (0, 10), (1, 100)):  # written out of order
        Image.new("RGB", (12, 10), (red, 0, 0)).save(banded / f"banded_{j:04d}.jpg")
    data = load_paper_dataset("dtd", tmp_path / "data", 8)
    reds = data.images[data.labels == data.class_names.index("banded")][..., 0].mean((1, 2))
    assert reds.tolist() == pytest.approx([10, 100, 200], abs=3)
    assert data.counts().tolist() == [3] * 47  # the file manager's .directory is not an image


def test_loads_fake_fungi_subset(tmp_path, no_network, tiny_params):
    names = make_fungi(tmp_path / "data")
    data = load_paper_dataset("fungi", tmp_path / "data", 8)
    assert sorted(data.class_names) == sorted(names)
    params = tiny_params(distributions=[{"name": "fungi", "source": "fungi"}])
    dist = load_distribution(params.distributions[0], params)
    assert [len(dist.splits[k].class_names) for k in ("train", "validation", "test")] == [6, 6, 6]


@pytest.mark.parametrize("source", sorted(PAPER_DATASETS))
def test_an_absent_dataset_is_never_downloaded_and_the_error_names_the_fetch_command(source, tmp_path, no_network):
    root = tmp_path / "data"
    with pytest.raises(DatasetUnavailable) as err:
        load_paper_dataset(source, root, 8)
    message = str(err.value)
    assert f"{PAPER_DATASETS[source].title} ({source}) is absent under data root '{root.resolve()}'" in message
    assert f"make data DATASETS={source} DATA_ROOT={root}" in message and "by hand" in message
    assert not root.exists()  # nothing made, nothing downloaded


def test_a_profile_needing_an_absent_paper_dataset_stops_before_anything_trains(tiny_params, tmp_path):
    from gems_core.data.sources import require_data

    params = tiny_params(
        distributions=[{"name": "fungi", "source": "fungi"}, {"name": "shapes", "source": "synthetic_shapes"}]
    )
    with pytest.raises(
        DatasetUnavailable, match="FGVC Fungi .* for distribution 'fungi' \\(its public host .* --from DIR\\)"
    ):
        require_data(params)
    make_fungi(tmp_path / "data")
    require_data(params.replace(data_root=str(tmp_path / "data")))  # present: no error


def test_incomplete_dataset_is_reported_and_kept(tmp_path, no_network):
    folder = tmp_path / "data" / "cubirds200"
    folder.mkdir(parents=True)
    (folder / "my_notes.txt").write_text("user files")
    with pytest.raises(DatasetUnavailable, match="is incomplete"):
        load_paper_dataset("cub", tmp_path / "data", 8)
    assert (folder / "my_notes.txt").exists()


@pytest.mark.slow
def test_loading_learn2learn_keeps_gyms_notice_out_of_notebooks():
    import subprocess
    import sys

    load = "from gems_core.data.paper import PAPER_DATASETS; print(len(PAPER_DATASETS['cub'].class_names()))"
    proc = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "200", proc.stderr
    assert "gym" not in proc.stderr.lower(), proc.stderr
    assert (
        "Gym has been unmaintained"
        in subprocess.run([sys.executable, "-c", "import gym"], capture_output=True, text=True, timeout=120).stderr
    )  # what it keeps out
