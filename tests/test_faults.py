"""Fault injection on the smoke settings: every failure is named, nothing already written is lost, and a
run that diverges is a result. One test per row of the table in docs/troubleshooting.md."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import PROJECT_ROOT, smoke_file
from PIL import Image
from test_training import run_folders

from gems_core import checkpoints, io, report, results
from gems_core.data import load_distributions
from gems_core.device import resolve_device
from gems_core.errors import DataFileError, DiskFull
from gems_core.runs import run_folder
from gems_core.training import Run, run_method


def _image_folder(root, classes=6, per_class=3):
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for j in range(per_class):
            Image.new("RGB", (12, 12), (70 * c, 30 * j, 9)).save(root / f"class{c}" / f"{j}.jpg")


def _damage_images(root):
    """An empty file and a JPEG cut in half, in two classes: the two faults users actually meet."""
    (root / "class0" / "empty.jpg").write_bytes(b"")
    whole = (root / "class1" / "0.jpg").read_bytes()
    (root / "class1" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    return [root / "class0" / "empty.jpg", root / "class1" / "cut.jpg"]


def test_unreadable_images_are_all_named_before_anything_is_cached(tmp_path, tiny_params):
    _image_folder(tmp_path / "imgs")
    bad = _damage_images(tmp_path / "imgs")
    params = tiny_params(
        distributions=[{"name": "f", "source": "folder", "path": str(tmp_path / "imgs")}],
        split_fractions=[0.34, 0.33, 0.33],
        ways=2,
        queries=1,
    )
    with pytest.raises(DataFileError) as err:
        load_distributions(params)
    message = str(err.value)
    assert "2 of 20 images" in message and all(str(path) in message for path in bad)
    assert "UnidentifiedImageError" in message and "Truncated" in message  # and why
    assert "skip_unreadable_images" in message
    assert not (tmp_path / "data" / "cache").exists() or not list((tmp_path / "data" / "cache").iterdir())
    skipping = params.replace(skip_unreadable_images=True)
    (dist,) = load_distributions(skipping)
    assert dist.summary(need=2)["skipped_unreadable_images"] == 2 and dist.cache_path.exists()
    assert sum(len(s.images) for s in dist.splits.values()) == 18
    assert load_distributions(skipping)[0].summary(need=2)["skipped_unreadable_images"] == 2  # from the cache


@pytest.mark.parametrize("damage", ["truncated", "stale"])
def test_a_damaged_or_stale_cache_is_named_and_rebuilt(tiny_params, damage):
    params = tiny_params()
    first = load_distributions(params)[0]
    path = first.cache_path
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:  # another distribution's cache under this name: built from something else
        path.write_bytes(load_distributions(params)[1].cache_path.read_bytes())
    with pytest.warns(UserWarning, match=f"image cache {path} is not usable"):
        again = load_distributions(params)[0]
    assert not again.cache_hit
    assert np.array_equal(again.splits["test"].images, first.splits["test"].images)
    assert load_distributions(params)[0].cache_hit  # and the rebuilt cache is used next time


def _two_checkpoints(folder):
    checkpoints.save(folder, {"state": {"iteration": 3}, "weights": torch.arange(1000.0)})
    checkpoints.save(folder, {"state": {"iteration": 6}, "weights": torch.arange(1000.0) * 2})
    return folder / checkpoints.NEWEST


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_a_damaged_newest_checkpoint_is_named_and_the_previous_one_used(tmp_path, how):
    newest = _two_checkpoints(tmp_path)
    data = newest.read_bytes()
    for offset in [0, 5, len(checkpoints.MAGIC) + 7, len(data) // 3, len(data) // 2, len(data) - 1]:
        damaged = (
            data[:offset] if how == "truncate" else data[:offset] + bytes([data[offset] ^ 0x20]) + data[offset + 1 :]
        )
        newest.write_bytes(damaged)
        loaded, refused = checkpoints.load(tmp_path)
        assert [path for path, _ in refused] == [newest], offset
        assert loaded["state"]["iteration"] == 3, offset
        assert torch.equal(loaded["weights"], torch.arange(1000.0))
    (tmp_path / checkpoints.PREVIOUS).write_bytes(b"GEMS")
    loaded, refused = checkpoints.load(tmp_path)
    assert loaded is None and [path.name for path, _ in refused] == [checkpoints.NEWEST, checkpoints.PREVIOUS]
    assert "does not start like a GEMS checkpoint" in refused[1][1]


def test_a_run_resumes_from_the_previous_checkpoint_to_the_same_weights(tiny_params, tmp_path, capsys):
    params = tiny_params(iterations=9, validation_every=3, checkpoint_every=3)
    dists, cpu = load_distributions(params), resolve_device("cpu")
    whole = Run(params, "bmp", 21, dists, tmp_path / "whole", cpu)
    whole.train(progress=False)
    # a run stopped after its checkpoint at iteration 6, whose newest checkpoint is then damaged
    stopped = Run(params, "bmp", 21, dists, tmp_path / "damaged", cpu)
    stopped.params = params.replace(iterations=6)  # this run, trained only so far
    stopped.train(progress=False)
    newest = tmp_path / "damaged" / checkpoints.NEWEST
    newest.write_bytes(newest.read_bytes()[:-10])
    resumed = Run(params, "bmp", 21, dists, tmp_path / "damaged", cpu)
    assert resumed.load_checkpoint() and resumed.state.iteration == 3
    assert "checkpoint.pt is not used: its checksum does not match" in capsys.readouterr().out
    assert not newest.exists() and len(list((tmp_path / "damaged" / "set-aside").rglob("checkpoint.pt"))) == 1
    resumed.train(progress=False)
    for a, b in zip(whole.members[0].learner.parameters(), resumed.members[0].learner.parameters()):
        assert torch.equal(a, b)


KILL_IN_CHECKPOINT_WRITE = """
import os, signal, sys
from pathlib import Path
from gems_core import cli
real_replace, saved = os.replace, []
def replace(src, dst):  # the atomic rename that makes a written checkpoint the newest one
    if Path(dst).name == "checkpoint.pt" and Path(src).name.startswith(".checkpoint.pt."):
        saved.append(dst)
        if len(saved) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # killed with the second checkpoint written, not yet renamed
    real_replace(src, dst)
os.replace = replace
sys.exit(cli.train([sys.argv[1], "--method", "mmsup", "--seed", "21", "--no-progress"]))
"""


@pytest.mark.slow
def test_a_process_killed_while_writing_a_checkpoint_resumes_from_the_one_before(tmp_path):
    overrides = dict(iterations=9, checkpoint_every=3, validation_every=3)
    killed, whole = smoke_file(tmp_path, "killed", **overrides), smoke_file(tmp_path, "whole", **overrides)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_IN_CHECKPOINT_WRITE, str(killed)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -9, proc.stderr
    (folder,) = run_folders(tmp_path / "killed" / "runs")
    assert not (folder / checkpoints.NEWEST).exists() and (folder / checkpoints.PREVIOUS).exists()
    cli = [sys.executable, "-m", "gems_core.training", "--method", "mmsup", "--seed", "21", "--no-progress"]
    for path in (killed, whole):
        assert subprocess.run(cli + [str(path)], cwd=PROJECT_ROOT, capture_output=True, timeout=600).returncode == 0
    (reference,) = run_folders(tmp_path / "whole" / "runs")
    a, b = (checkpoints.load(f)[0]["members"][0]["learner"] for f in (folder, reference))
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert (
        json.loads((folder / "results.json").read_text())["test"]
        == json.loads((reference / "results.json").read_text())["test"]
    )


def test_a_diverging_run_stops_and_is_reported_as_diverged(tiny_params, overflowing):
    # the meta-loss overflows at iteration 12 (``overflowing``); the loss-explosion check is off here, to see
    # the non-finite one (test_attacks has the other)
    params = tiny_params(
        fast_lr=10.0,
        meta_lr=1.0,
        adaptation_steps=10,
        iterations=60,
        validation_every=30,
        checkpoint_every=10,
        loss_explosion_factor=0.0,
    )
    result = run_method(params, "maml", 21, progress=False)
    assert result["status"] == "diverged" and result["test"] == {}
    diverged = result["diverged"]
    assert 1 <= diverged["iteration"] <= 25 and diverged["quantities"]
    saved, _ = checkpoints.load(run_folder(params, "maml", 21))
    assert saved["state"]["iteration"] < diverged["iteration"]  # what is kept is from before the divergence
    assert all(torch.isfinite(v).all() for v in saved["members"][0]["learner"].values())
    assert run_method(params, "maml", 21, progress=False) == result  # a result: read back, not retrained
    fine = run_method(tiny_params(), "mmsup", 21, progress=False)
    table = pd.DataFrame(results.result_rows(result) + results.result_rows(fine))
    assert table.loc[table["method"] == "maml", "status"].tolist() == ["diverged", "diverged"]
    assert table.loc[table["method"] == "maml", "accuracy"].isna().all()
    table2 = report.table2(table)
    assert table2.loc[("glyphs+shapes", "glyphs"), ("maml", "accuracy")] == "diverged"
    assert results.summary(table).set_index("method").loc["maml", "diverged"].tolist() == [1, 1]


def test_divergence_names_the_iteration_and_what_broke_first(tiny_params, tmp_path, monkeypatch):
    from gems_core.divergence import Diverged

    calls, step = [], torch.optim.Adam.step

    def poisoned(self, *args, **kwargs):  # the weights become non-finite in the update of iteration 7
        step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 7:
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("inf")

    monkeypatch.setattr(torch.optim.Adam, "step", poisoned)
    params = tiny_params(iterations=30, validation_every=30, checkpoint_every=30)
    run = Run(params, "maml", 21, load_distributions(params), tmp_path / "r", resolve_device("cpu"))
    with pytest.raises(Diverged) as err:
        run.train(progress=False)
    assert (err.value.iteration, err.value.quantities) == (7, ["weights"])
    assert run.state.iteration == 25  # found at the first check after it


def test_a_full_disk_leaves_the_previous_file_intact_and_says_how_much_is_needed(tmp_path, monkeypatch):
    target = tmp_path / "out" / "metrics.csv"
    io.write_text(target, "iteration\n1\n")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFull) as err:
        io.write_text(target, "iteration\n1\n2\n" * 1000)
    assert f"no space left in '{target.parent}'" in str(err.value) and "MiB" in str(err.value)
    assert target.read_text() == "iteration\n1\n" and [p.name for p in target.parent.iterdir()] == ["metrics.csv"]


def test_a_full_disk_while_checkpointing_names_the_checkpoint_that_is_kept(tmp_path, monkeypatch):
    newest = _two_checkpoints(tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in (checkpoints.NEWEST, checkpoints.PREVIOUS)}

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFull, match=f"the previous {checkpoints.NEWEST}, if any, is intact"):
        checkpoints.save(tmp_path, {"state": {"iteration": 9}})
    assert {name: (tmp_path / name).read_bytes() for name in before} == before  # both kept, neither moved
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before) and newest.exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])  # none is mkstemp's 0o600
def test_files_get_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        io.write_json(tmp_path / "results.json", {"a": 1})
        checkpoints.save(tmp_path, {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / checkpoints.NEWEST).stat().st_mode & 0o777 == mode


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, args, fragment",
    [
        ("gems_core.training", ["--method", "maml", "--seed", "1"], "unknown parameter 'wayz'"),
        ("gems_core.pipeline", [], "unknown parameter 'wayz'"),
    ],
)
def test_entry_points_print_a_bad_parameter_in_a_line_and_exit_2(tmp_path, module, args, fragment):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "wayz": 3,
                "distributions": [{"name": "g", "source": "synthetic_glyphs"}],
                "output_root": str(tmp_path / "o"),
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", module, str(bad), *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and fragment in lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def _damaged_folder_parameters(tmp_path):
    """A smoke parameters file on a class folder with two damaged images, and those images' paths."""
    _image_folder(tmp_path / "imgs")
    bad = _damage_images(tmp_path / "imgs")
    params = smoke_file(
        tmp_path,
        "p",
        distributions=[{"name": "f", "source": "folder", "path": str(tmp_path / "imgs")}],
        split_fractions=[0.34, 0.33, 0.33],
        ways=2,
        queries=1,
    )
    return params, bad


@pytest.mark.slow
def test_unreadable_images_stop_the_command_line_with_their_paths(tmp_path):
    params, bad = _damaged_folder_parameters(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "gems_core.training", str(params), "--method", "maml", "--seed", "1"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert all(str(path) in proc.stderr for path in bad)


@pytest.mark.slow
def test_a_data_error_inside_a_notebook_stops_the_pipeline_with_status_2(tmp_path):
    from gems_core import pipeline

    params, bad = _damaged_folder_parameters(tmp_path)
    assert {"DataFileError", "ParameterError", "DiskFull", "CheckpointUnreadable"} <= pipeline.kit_error_names()
    proc = subprocess.run(
        [sys.executable, "-m", "gems_core.pipeline", str(params), "--only", "00"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: 00_data_prep.ipynb: 2 of 20 images" in proc.stderr and all(str(p) in proc.stderr for p in bad)
