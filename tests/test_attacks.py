"""A hostile user's cases: data files that would run code, names that would inject HTML, paths that would
escape their root, images that would decode wrongly, mistakes that would end in a traceback. Each is a row
of the table in docs/troubleshooting.md."""

import hashlib
import io as _io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PROJECT_ROOT, smoke_file
from PIL import Image

from gems_core import checkpoints, explore
from gems_core import runs as runs_store
from gems_core.data import load_distributions
from gems_core.data.images import MODES, to_rgb
from gems_core.errors import DataFileError
from gems_core.params import MAX_SEED, ParameterError
from gems_core.runs import run_folder
from gems_core.training import run_method

CLI = [sys.executable, "-m"]


class _RunsCode:
    """What a crafted checkpoint carries: unpickling it would create ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _crafted_checkpoint(folder: Path, planted: Path) -> None:
    """A checkpoint with the kit's header and a valid checksum, whose payload would run code when loaded."""
    buffer = _io.BytesIO()
    torch.save({"state": {"iteration": 3}, "members": [_RunsCode(planted)]}, buffer)
    payload = buffer.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    for name in (checkpoints.NEWEST, checkpoints.PREVIOUS):
        (folder / name).write_bytes(checkpoints.MAGIC + hashlib.sha256(payload).digest() + payload)


def test_a_crafted_checkpoint_never_runs_is_named_in_one_line_and_set_aside(tiny_params, tmp_path, capsys):
    params = tiny_params()
    planted = tmp_path / "the-payload-ran"
    folder = run_folder(params, "maml", 21)
    _crafted_checkpoint(folder, planted)
    runs, problems = explore.explorable_runs(params, ["maml"])  # a viewer moves nothing
    assert runs == {} and problems[0].startswith("maml: no usable checkpoint") and "would run code" in problems[0]
    assert (folder / checkpoints.NEWEST).exists() and not planted.exists()
    capsys.readouterr()
    result = run_method(params, "maml", 21, progress=False)
    assert result["status"] == "complete" and not planted.exists()
    said = [line for line in capsys.readouterr().out.splitlines() if "is not used" in line]
    assert len(said) == 2 and all("so loading it would run code; nothing in it was run" in line for line in said)
    assert "torch" not in " ".join(said).lower()  # the kit's own reason, not torch's advice
    (aside,) = {p.parent for p in (folder / "set-aside").rglob("checkpoint*.pt")}
    assert sorted(p.name for p in aside.iterdir()) == sorted([checkpoints.NEWEST, checkpoints.PREVIOUS])
    assert checkpoints.read(folder / checkpoints.PREVIOUS)["run_id"] == folder.name  # not the crafted one
    runs, problems = explore.explorable_runs(params, ["maml"])
    assert list(runs) == ["maml"] and not problems


def test_every_methods_checkpoint_loads_as_data_only(tiny_params):
    params = tiny_params(iterations=3)
    for method in ("maml", "multi_maml", "bmp", "mmsup"):
        run_method(params, method, 21, progress=False)
        saved = checkpoints.read(run_folder(params, method, 21) / checkpoints.NEWEST)  # weights_only=True
        assert saved["method"] == method and saved["state"]["iteration"] == 3


@pytest.mark.parametrize(
    "written_by, opened_as, overrides",
    [
        ("bmp", "maml", {}),  # another method's checkpoint
        ("maml", "bmp", {}),
        ("maml", "maml", {"hidden_size": 4}),  # the same method at other shapes, as an older kit wrote it
    ],
)
def test_a_checkpoint_of_another_run_is_never_resumed_from(tiny_params, written_by, opened_as, overrides, capsys):
    source, target = tiny_params(iterations=3, **overrides), tiny_params(iterations=6)
    run_method(source, written_by, 21, progress=False)
    folder = run_folder(target, opened_as, 21)
    folder.mkdir(parents=True)
    for name in (checkpoints.NEWEST, checkpoints.PREVIOUS):
        shutil.copy(run_folder(source, written_by, 21) / checkpoints.NEWEST, folder / name)
    runs, problems = explore.explorable_runs(target, [opened_as])
    assert runs == {} and problems[0].startswith(f"{opened_as}: no usable checkpoint")
    capsys.readouterr()
    result = run_method(target, opened_as, 21, progress=False)
    out = capsys.readouterr().out
    assert f"it belongs to run {run_folder(source, written_by, 21).name}, not to this run ({folder.name})" in out
    assert result["iterations"] == 6 and result["run_id"] == folder.name
    assert runs_store.RunFiles(target, opened_as, 21).metrics()["iteration"].tolist() == [3, 6]  # from the start
    assert len(list((folder / "set-aside").rglob("checkpoint*.pt"))) == 2


# --- paths ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["../../escape", "/tmp/abs", "", ".", "..", "a/b", "a\\b", " demo"])
def test_a_profile_must_be_a_plain_folder_name(tiny_params, profile):
    with pytest.raises(ParameterError, match="parameter 'profile' .* must be a plain folder name"):
        tiny_params(profile=profile)


@pytest.mark.slow
def test_a_profile_that_would_escape_stops_the_pipeline_with_status_2(tmp_path):
    path = smoke_file(tmp_path, "o", profile="../x")
    proc = subprocess.run(
        CLI + ["gems_core.pipeline", str(path)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "parameter 'profile' = '../x' must be a plain folder name" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.yaml"]


@pytest.mark.parametrize("name", ["a+b", "a|b", " a", "a\n"])
def test_a_distribution_name_must_not_carry_the_kits_separators(tiny_params, name):
    with pytest.raises(ParameterError, match=r"distributions\[0\].name"):
        tiny_params(
            distributions=[
                {"name": name, "source": "synthetic_glyphs"},
                {"name": "shapes", "source": "synthetic_shapes"},
            ]
        )


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 99999999999999999999])
def test_seeds_out_of_range_are_refused(tiny_params, seed):
    with pytest.raises(ParameterError, match=f"parameter 'seeds' .* between 0 and {MAX_SEED}"):
        tiny_params(seeds=[21, seed])
    with pytest.raises(ParameterError, match="parameter 'split_seed'"):
        tiny_params(split_seed=seed)


def _readonly_mount(folder: Path) -> Path:
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a read-only file system here (needs root): {proc.stderr.decode().strip()}")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("root", ["output_root", "data_root"])
@pytest.mark.parametrize("case", ["a file", "under a file", "read-only"])
def test_an_unusable_root_is_one_line_and_exit_2_before_anything_runs(tmp_path, root, case):
    if case == "read-only":
        where, fragment = _readonly_mount(tmp_path / "ro") / "outputs", "is on a read-only file system"
    else:
        (tmp_path / "file").write_text("not a folder")
        where = tmp_path / "file" if case == "a file" else tmp_path / "file" / "sub"
        fragment = "is a file" if case == "a file" else "which is a file"
    path = smoke_file(tmp_path, "p", **{root: str(where)})
    entry_points = [("gems_core.pipeline", [])] + (
        [("gems_core.training", ["--method", "maml", "--seed", "1"]), ("gems_core.sweep", ["--no-render"])]
        if case == "read-only"
        else []
    )
    try:
        for module, args in entry_points:
            proc = subprocess.run(
                CLI + [module, str(path), *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
            )
            errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
            assert proc.returncode == 2 and "Traceback" not in proc.stderr, (module, proc.stderr)
            assert len(errors) == 1 and f"parameter '{root}'" in errors[0] and fragment in errors[0], errors
    finally:
        if case == "read-only":
            subprocess.run(["umount", str(tmp_path / "ro")], check=True)


def _project_files() -> set[str]:
    """Every file and folder git does not track in the project (ignored ones too), but caches of Python's."""
    out = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line[3:] for line in out.splitlines() if "__pycache__" not in line and ".pytest_cache" not in line}


@pytest.mark.slow
def test_training_and_a_sweep_write_only_under_their_roots(tmp_path):
    before = _project_files()
    path = smoke_file(tmp_path, "roots", profile="r", iterations=3, convergence_iterations=3, ablation_iterations=2)
    train = subprocess.run(
        CLI + ["gems_core.training", str(path), "--method", "bmp", "--seed", "21", "--no-progress"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr
    sweep = subprocess.run(
        CLI + ["gems_core.sweep", str(path), "--no-render"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert sweep.returncode == 0, sweep.stderr
    assert _project_files() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "roots", "roots.yaml"]


# --- images --------------------------------------------------------------------------------------------


def _saved(image: Image.Image, fmt: str, tmp_path: Path) -> Image.Image:
    path = tmp_path / f"{image.mode.replace(';', '_')}.{fmt.lower()}"
    image.save(path, fmt)
    return Image.open(path)


def _wide(mode, values, fmt):
    dtype = {"I;16": "<u2", "I;16B": ">u2", "I": "<i4", "F": "<f4"}[mode]
    image = Image.frombytes(mode, (len(values), 1), np.asarray([values], dtype=dtype).tobytes())
    return image, fmt


WIDE_FILES = {  # mode: (pixel values, format to store them in, the 8-bit grey they must decode to)
    "I;16": ([0, 32768, 65535, 4000], "PNG", [0, 128, 255, 16]),
    "I;16B": ([0, 32768, 65535, 4000], "TIFF", [0, 128, 255, 16]),
    "I": ([-1000, 0, 1000, 3000], "TIFF", [0, 64, 128, 255]),  # beyond 16 bits: by its own range
    "F": ([0.0, 0.25, 1.0, 0.5], "TIFF", [0, 64, 255, 128]),
}


@pytest.mark.parametrize("mode", sorted(WIDE_FILES))
def test_wide_grayscale_is_scaled_by_its_range_not_clipped(tmp_path, mode):
    values, fmt, grey = WIDE_FILES[mode]
    opened = _saved(_wide(mode, values, fmt)[0], fmt, tmp_path)
    assert opened.mode == mode  # a real file of that mode
    rgb = np.asarray(to_rgb(opened))
    assert rgb[0, :, 0].tolist() == grey and (rgb == rgb[..., :1]).all()


def test_a_sixteen_bit_class_is_not_flat_white(tmp_path, tiny_params):
    """The case that was silently wrong: 16-bit PNGs, once clipped at 255, became white."""
    for c in range(6):
        (tmp_path / "imgs" / f"c{c}").mkdir(parents=True)
        for j in range(3):
            values = np.random.default_rng(c * 10 + j).integers(0, 65535, (12, 12)).astype(np.uint16)
            Image.fromarray(values).save(tmp_path / "imgs" / f"c{c}" / f"{j}.png")
    params = tiny_params(
        distributions=[{"name": "f", "source": "folder", "path": str(tmp_path / "imgs")}],
        split_fractions=[0.34, 0.33, 0.33],
        ways=2,
        queries=1,
    )
    images = np.concatenate([s.images for s in load_distributions(params)[0].splits.values()])
    assert 100 < images.mean() < 155 and images.std() > 20


EIGHT_BIT_FILES = {  # mode: (format, whether a transparent pixel is in it)
    "1": ("PNG", False),
    "L": ("PNG", False),
    "P": ("PNG", False),
    "RGB": ("PNG", False),
    "CMYK": ("JPEG", False),
    "YCbCr": ("TIFF", False),
    "LA": ("PNG", True),
    "RGBA": ("PNG", True),
}


def _eight_bit(mode):
    base = Image.new("RGBA", (4, 4), (200, 30, 30, 255))
    base.putpixel((0, 0), (10, 10, 200, 0))  # fully transparent
    if mode in ("RGBA", "LA"):
        return base.convert(mode)
    return base.convert("RGB").convert(mode)


@pytest.mark.parametrize("mode", sorted(EIGHT_BIT_FILES))
def test_every_eight_bit_mode_decodes_and_transparency_is_white(tmp_path, mode):
    fmt, transparent = EIGHT_BIT_FILES[mode]
    opened = _saved(_eight_bit(mode), fmt, tmp_path)
    assert opened.mode == mode
    rgb = np.asarray(to_rgb(opened)).astype(int)
    assert rgb.shape == (4, 4, 3)
    if transparent:
        assert rgb[0, 0].tolist() == [255, 255, 255]
    assert rgb[3, 3].max() - rgb[3, 3].min() > 0 or mode in ("1", "L", "LA")  # the colour, where it is kept


def test_a_palette_image_with_a_transparent_index_is_composited_on_white(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.info["transparency"] = 0
    opened = _saved(image, "PNG", tmp_path)
    assert opened.mode == "P" and "transparency" in opened.info
    rgb = np.asarray(to_rgb(opened))
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[1, 1].tolist() == [200, 30, 30]


def test_every_accepted_mode_is_tested_and_others_are_refused(tmp_path):
    assert set(MODES) == set(WIDE_FILES) | set(EIGHT_BIT_FILES) | {"I;16L"}  # I;16L: Pillow's alias of I;16
    with pytest.raises(DataFileError, match="image mode LAB is not supported; supported modes: 1, L"):
        to_rgb(_saved(Image.new("LAB", (4, 4)), "TIFF", tmp_path))


# --- interruptions and explosions ------------------------------------------------------------------------


def _interrupt_when(proc: subprocess.Popen, ready, timeout=300):
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole process group
    return proc.communicate(timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("module", ["gems_core.training", "gems_core.pipeline"])
def test_ctrl_c_is_one_line_exit_130_and_the_run_resumes(tmp_path, module):
    path = smoke_file(tmp_path, "c", iterations=100000, checkpoint_every=3, validation_every=3)
    args = ["--method", "maml", "--seed", "21", "--no-progress"] if module == "gems_core.training" else ["--only", "01"]
    proc = subprocess.Popen(
        CLI + [module, str(path), *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    runs = tmp_path / "c" / "runs"
    _, stderr = _interrupt_when(proc, lambda: any(runs.glob(f"*/{checkpoints.NEWEST}")))
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == (
        "interrupted: every run keeps its last checkpoint; run the same command again to resume"
    )
    assert not list(PROJECT_ROOT.glob("kernel-ipc*"))
    folder = next(runs.glob(f"*/{checkpoints.NEWEST}")).parent
    assert checkpoints.load(folder)[0]["state"]["iteration"] >= 3  # what it did is kept, to resume from


def test_an_exploding_finite_loss_is_divergence(tiny_params):
    # BMP with fast lr 10 and 10 inner steps: the training loss grows to ~1e7 without becoming non-finite
    params = tiny_params(fast_lr=10.0, adaptation_steps=10, iterations=200, validation_every=100, checkpoint_every=100)
    result = run_method(params, "bmp", 21, progress=False)
    assert result["status"] == "diverged" and result["test"] == {}
    diverged = result["diverged"]
    assert diverged["quantities"] == ["loss"] and diverged["iteration"] == 25
    assert "exceeds loss_explosion_factor 100 x ln(3) = 109.9" in diverged["reason"]
    calm = run_method(params.replace(loss_explosion_factor=0.0, iterations=30), "bmp", 21, progress=False)
    assert calm["status"] == "complete"  # the check can be turned off, and only it stopped the run


def test_an_uncalibrated_standardized_bmp_refuses_to_train_or_evaluate(tiny_params):
    from gems_core.data import SplitImages, TaskSampler
    from gems_core.learners import BMP

    params = tiny_params()
    dists = load_distributions(params)
    split = SplitImages([d.splits["train"] for d in dists], torch.device("cpu"), 3)
    batch = TaskSampler(split, [0, 1], 3, 1, 2, seed=0).sample(2)
    bmp = BMP.from_params(params, seed=21)
    for use in (bmp.meta_loss, bmp.evaluate):
        with pytest.raises(RuntimeError, match="never calibrated"):
            use(batch)
    bmp.calibrate(batch)
    bmp.meta_loss(batch)
    restored = BMP.from_params(params, seed=21)
    restored.load_state_dict(bmp.state_dict())  # the statistics travel with the model
    restored.evaluate(batch)
    assert params.replace(bmp_embedding="paper")  # forms without statistics need no calibration


# --- hostile names, and pipelines at once ---------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror=alert(2)> & "q" é'
RAW = ("<script>alert(", "<img src=x onerror=")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _hostile_images(root: Path) -> None:
    """15 classes of 4 small PNGs, each class folder named with a tag."""
    rng = np.random.default_rng(0)
    for c in range(15):
        folder = root / f"<img src=x onerror=alert({c})> {c}"
        folder.mkdir(parents=True)
        for j in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{j}.png")


def _pipeline(path: Path, *args) -> subprocess.Popen:
    return subprocess.Popen(
        CLI + ["gems_core.pipeline", str(path), *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_two_pipelines_at_once_with_hostile_names(tmp_path):
    """A profile, distributions and classes named with tags: no raw tag in any render or page, the names still
    read as they are; a second pipeline on the same profile waits for the first, another profile runs beside
    them; every executed notebook is the one its render shows, and no kernel socket is left behind."""
    import html
    import tempfile

    import yaml

    from gems_core import pipeline

    _hostile_images(tmp_path / "imgs")
    profile = "<img src=x onerror=alert(9)>"
    first = smoke_file(
        tmp_path,
        "out",
        profile=profile,
        distributions=[
            {"name": SCRIPT, "source": "synthetic_glyphs"},
            {"name": IMG, "source": "folder", "path": str(tmp_path / "imgs")},
        ],
    )
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**yaml.safe_load(first.read_text()), "profile": "other"}))
    kernels_before = set(Path(tempfile.gettempdir()).glob("gems-kernels-*"))
    lock = tmp_path / "out" / profile / ".pipeline.lock"
    procs = [_pipeline(first, "--only", "00", "02", "06")]  # the notebooks that show distribution names
    while not lock.exists() and procs[0].poll() is None:
        time.sleep(0.1)
    procs += [_pipeline(first, "--only", "00", "06"), _pipeline(other, "--only", "00")]
    logs = [p.communicate(timeout=1200)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], logs
    assert f"profile {profile!r} is being run by another pipeline: waiting for it to finish" in logs[1]
    assert not list(PROJECT_ROOT.glob("kernel-ipc*"))
    assert set(Path(tempfile.gettempdir()).glob("gems-kernels-*")) <= kernels_before  # theirs removed (others may run)
    renders = sorted((tmp_path / "out").glob("*/*.html"))
    assert len(renders) == 3 + 1 + 1 + 1  # 3 notebooks and the page; 00 and the page of the other profile
    for render in renders:
        text = render.read_text()
        assert not any(tag in text for tag in RAW), render.name
        if render.name != "index.html":
            again = pipeline.html_of(render.with_suffix(".ipynb"))  # the render of that very execution
            assert UUID.sub("", text) == UUID.sub("", again), render.name  # (element ids are drawn per render)
        assert render.with_suffix(".ipynb").exists() or render.name == "index.html"
    for name in ("00_data_prep.html", "02_bmp.html", "06_report.html", "index.html"):
        shown = html.unescape((tmp_path / "out" / profile / name).read_text())
        assert SCRIPT in shown and IMG in shown, name
    assert not list((tmp_path / "out").glob("*/.*.partial.ipynb"))


def test_kernel_folders_of_killed_pipelines_are_removed_by_the_next(tmp_path):
    import tempfile

    from gems_core import pipeline

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = Path(tempfile.mkdtemp(prefix=f"gems-kernels-{ended.stdout.strip()}-"))
    (stale / "kernel-1").write_text("a socket's name, once")
    alive = Path(tempfile.mkdtemp(prefix=f"gems-kernels-{os.getppid()}-"))
    try:
        with pipeline.kernel_runtime(tmp_path / "kernels.log"):
            assert not stale.exists() and alive.exists()
    finally:
        shutil.rmtree(alive, ignore_errors=True)
