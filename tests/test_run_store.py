"""Run folders that vouch for themselves: each case a hostile or unlucky user met in a shared run store
(a link, another run's files, NaN, cut or garbled files), the parameters that reach it, and the pipeline's
promises. Each ends with the run named and left out (never a number from another run, never a
traceback), or with one line and exit status 2 before anything is written."""

import hashlib
import json
import math
import os
import shutil
import threading
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import PROJECT_ROOT
from PIL import Image

from gems_core import claims, cli, io, page, pipeline, report, results, runs
from gems_core.data import load_distributions
from gems_core.data.images import from_items
from gems_core.errors import DataFileError
from gems_core.gathered import gather
from gems_core.parameters_file import MAX_NODES
from gems_core.params import ParameterError, load_params
from gems_core.plan import plan, progress
from gems_core.runs import RunDamaged, RunFiles, run_folder
from gems_core.training import run_method


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the SHA-1 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def trained(tiny_params):
    """The tiny profile with maml and bmp trained (6 iterations), and an ablation-like bmp run of 3."""
    params = tiny_params(methods=["maml", "bmp"])
    for method in ("maml", "bmp"):
        run_method(params, method, 21, progress=False)
    other = params.replace(iterations=3)
    run_method(other, "bmp", 21, progress=False)
    return params, other


def _page_text(params) -> str:
    folder = Path(params.output_root) / params.profile
    folder.mkdir(parents=True, exist_ok=True)
    return page.write(params, folder, "p.yaml").read_text()


# --- a run folder proves whose it is --------------------------------------------------------------


def test_every_run_file_carries_the_runs_identity(trained):
    params, _ = trained
    files = RunFiles(params, "bmp", 21)
    identity = {"run_id": files.run_id, "params_hash": files.params_hash}
    assert files.run_id == run_folder(params, "bmp", 21).name and files.run_id.endswith(files.params_hash[:8])
    for name in ("params.json", "results.json"):
        assert json.loads((files.path / name).read_text()).items() >= identity.items(), name
    for name in ("metrics.csv", "test_accuracies.csv", "test_accuracies.bmp_frozen_mask.csv"):
        assert set(pd.read_csv(files.path / name)["run_id"]) == {files.run_id}, name
    from gems_core import checkpoints

    for name in (checkpoints.NEWEST, checkpoints.PREVIOUS):
        assert checkpoints.read(files.path / name).items() >= identity.items(), name
    assert files.damage() is None


def test_a_run_folder_that_is_a_link_is_refused_and_nothing_is_written_through_it(tiny_params, tmp_path):
    params = tiny_params()
    victim = tmp_path / "elsewhere" / "precious"
    victim.mkdir(parents=True)
    (victim / "params.json").write_text('{"theirs": 1}')
    (victim / "metrics.csv").write_text("iteration\n1\n")
    before = _tree(tmp_path / "elsewhere")
    folder = run_folder(params, "maml", 21)
    folder.parent.mkdir(parents=True)
    folder.symlink_to(victim, target_is_directory=True)
    with pytest.raises(io.LinkRefused, match="is a symbolic link"):
        run_method(params, "maml", 21, progress=False)
    assert _tree(tmp_path / "elsewhere") == before
    (state,) = [r.state()[0] for r in plan(params, ("main",)) if r.method == "maml"]
    assert state == "damaged"  # read through the link: named, never tabled


def test_the_training_command_refuses_a_linked_run_folder_in_one_line(tiny_params, tmp_path, capsys):
    params = tiny_params()
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params.as_dict()))
    victim = tmp_path / "victim"
    victim.mkdir()
    run_folder(params, "maml", 21).parent.mkdir(parents=True)
    run_folder(params, "maml", 21).symlink_to(victim, target_is_directory=True)
    assert cli.train([str(path), "--method", "maml", "--seed", "21", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a symbolic link" in err and list(victim.iterdir()) == []


def test_the_runs_root_or_a_lock_that_is_a_link_is_refused(tiny_params, tmp_path):
    params = tiny_params()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (Path(params.output_root)).mkdir(parents=True)
    (Path(params.output_root) / "runs").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(io.LinkRefused, match="runs' is a symbolic link"):
        run_method(params, "maml", 21, progress=False)
    assert list(elsewhere.iterdir()) == []


def test_another_runs_results_copied_in_are_never_tabled_paired_or_paged(trained, capsys):
    params, other = trained
    ours, theirs = run_folder(params, "bmp", 21), run_folder(other, "bmp", 21)
    kept = RunFiles(params, "bmp", 21).results()
    for name in (
        "results.json",
        "test_accuracies.csv",
        *(f"test_accuracies.{c}.csv" for c in RunFiles(params, "bmp", 21).controls),
    ):
        shutil.copy(theirs / name, ours / name)
    planted = json.loads((theirs / "results.json").read_text())["test"]["glyphs"]["accuracy"]
    table = results.gather(Path(params.output_root) / "t", params)
    assert set(table["method"]) == {"maml"}  # bmp and its control left out, not relabelled
    compared = claims.comparisons(params)  # every pair of bmp's: not comparable, saying why
    assert (compared["verdict"] == claims.NOT_COMPARABLE).all() and compared["unit"].str.contains("damaged").all()
    damaged = results.damaged(params)
    assert len(damaged) == 1 and f"belongs to run {theirs.name}, not to this run ({ours.name})" in damaged[0]
    text = _page_text(params)
    assert "Left out as damaged" in text and ours.name in text and f"{planted:.3f}" not in text
    again = run_method(params, "bmp", 21, progress=False)  # re-evaluated from its own last checkpoint
    said = capsys.readouterr().out
    assert "bmp seed 21 is damaged" in said and "set-aside" in said
    assert again["test"] == kept["test"] and again["run_id"] == ours.name
    assert len(list((ours / "set-aside").rglob("results.json"))) == 1


def test_another_runs_params_json_and_checkpoints_are_set_aside_and_the_run_starts_over(tiny_params, capsys):
    params = tiny_params()
    other = params.replace(fast_lr=0.2)
    run_method(other, "maml", 21, progress=False)
    ours = run_folder(params, "maml", 21)
    shutil.copytree(run_folder(other, "maml", 21), ours, ignore=shutil.ignore_patterns("results.json", "test_*"))
    result = run_method(params, "maml", 21, progress=False)
    said = capsys.readouterr().out
    assert "params.json: it belongs to run" in said and said.count("is not used: it belongs to run") == 2
    assert json.loads((ours / "params.json").read_text())["fast_lr"] == 0.1
    assert RunFiles(params, "maml", 21).metrics()["iteration"].tolist() == [3, 6]  # trained from the start
    assert result["run_id"] == ours.name


# --- damaged or implausible run files never become numbers -----------------------------------------


def _damage(folder: Path, case: str) -> None:
    """One of the ways a user met a damaged run file."""
    path = folder / ("metrics.csv" if case == "garbage metrics line" else "results.json")
    if case == "nan task accuracy":
        table = pd.read_csv(folder / "test_accuracies.csv")
        table.loc[2, "accuracy"] = math.nan
        table.to_csv(folder / "test_accuracies.csv", index=False)
    elif case == "tasks cut from 6 to 3":
        table = pd.read_csv(folder / "test_accuracies.csv")
        table.groupby("test_dataset").head(3).to_csv(folder / "test_accuracies.csv", index=False)
    elif case == "nan accuracy and 600 tasks":
        recorded = json.loads(path.read_text())
        recorded["test"]["glyphs"].update(accuracy=math.nan, tasks=600)
        path.write_text(json.dumps(recorded))
    elif case == "truncated results":
        path.write_text(path.read_text()[:40])
    elif case == "garbage metrics line":
        path.write_text(path.read_text() + "\x00garbage;;not,a,row\n")


DAMAGE = {
    "nan task accuracy": "test_accuracies.csv: holds an accuracy that is not a finite number",
    "tasks cut from 6 to 3": "test_accuracies.csv: holds 3 tasks of glyphs, not tasks 0..5",
    "nan accuracy and 600 tasks": "results.json: test.glyphs: accuracy nan",
    "truncated results": "results.json: cannot be read as JSON (JSONDecodeError",
    "garbage metrics line": "metrics.csv: ",
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_run_file_marks_the_run_damaged_and_everything_else_renders(trained, case, capsys):
    params, _ = trained
    folder = run_folder(params, "bmp", 21)
    kept = RunFiles(params, "bmp", 21).results()
    _damage(folder, case)
    states = {r.method: r.state()[0] for r in plan(params, ("main",))}
    assert states == {"maml": "complete", "bmp": "damaged"}
    (line,) = results.damaged(params)
    assert DAMAGE[case] in line and str(folder) in line
    gathered = gather(params, Path(params.output_root) / "t")
    table, compared = gathered.table, gathered.compared
    assert set(table["method"]) == {"maml"} and "diverged" not in set(table["status"])
    assert not report.table2(table).astype(str).apply(lambda c: c.str.contains("nan|diverged")).any().any()
    said = " ".join(sum(gathered.evidence(), []))
    assert (compared["verdict"] == claims.NOT_COMPARABLE).all() and "nan" not in said.lower().replace("nan ", "")
    text = _page_text(params)
    assert "+nan" not in text and "Left out as damaged" in text and 'class="damaged"' in text
    assert progress(plan(params)) is None  # the pipeline's status line reads the curves without a traceback
    capsys.readouterr()
    again = run_method(params, "bmp", 21, progress=False)
    assert "bmp seed 21 is damaged" in capsys.readouterr().out
    assert again["test"] == kept["test"] and RunFiles(params, "bmp", 21).damage() is None


def test_a_mismatched_pair_of_runs_is_left_out_not_a_failure_of_the_page(trained):
    params, _ = trained
    _damage(run_folder(params, "maml", 21), "tasks cut from 6 to 3")
    assert gather(params, Path(params.output_root) / "t").evidence()[1][-1].startswith("Left out as damaged (1 runs")
    compared = claims.comparisons(params)
    against_maml = compared["against"] == "maml"
    assert (compared.loc[against_maml, "verdict"] == claims.NOT_COMPARABLE).all()
    assert compared.loc[against_maml, "unit"].str.contains("maml seed 21 is damaged").all()
    assert (compared.loc[~against_maml, "verdict"] != claims.NOT_COMPARABLE).all()  # the other pairs all stay
    assert "not comparable" in _page_text(params)


def test_a_diverged_run_records_its_training_time(tiny_params, overflowing):
    params = tiny_params(fast_lr=10.0, meta_lr=1.0, adaptation_steps=10, iterations=60, loss_explosion_factor=0.0)
    result = run_method(params, "maml", 21, progress=False)
    assert result["status"] == "diverged" and result["train_seconds"] > 0


def test_a_second_trainer_of_a_run_says_it_waits(tiny_params, capsys):
    params = tiny_params()
    folder = run_folder(params, "maml", 21)
    lock = runs.run_lock(folder, params.output_root)
    lock.acquire()
    done = []
    waiter = threading.Thread(target=lambda: done.append(run_method(params, "maml", 21, progress=False)))
    waiter.start()
    deadline = time.time() + 30
    while "waiting for the other process training this run" not in capsys.readouterr().out:
        assert time.time() < deadline and waiter.is_alive()
        time.sleep(0.1)
    lock.release()
    waiter.join(timeout=120)
    assert done and done[0]["status"] == "complete"


# --- images ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_float_image_with_a_nan_or_infinite_pixel_is_refused_naming_the_file(tmp_path, bad):
    values = np.full((8, 8), 0.5, dtype=np.float32)
    values[3, 4] = bad
    path = tmp_path / "odd.tiff"
    Image.fromarray(values, "F").save(path)
    good = tmp_path / "good.tiff"
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), "F").save(good)
    items = [(lambda p=p: Image.open(p), "c", str(p)) for p in (path, good)]
    with pytest.raises(DataFileError, match=f"{path}: DataFileError: 1 of its pixels are NaN or infinite"):
        from_items(items, 8, desc="c")


# --- parameters --------------------------------------------------------------------------------------


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"distributions: [{{name: g, source: synthetic_glyphs}}]\noutput_root: {tmp_path / 'o'}\n"
        f"data_root: {tmp_path / 'd'}\n" + text
    )
    return path


def test_a_yaml_alias_bomb_is_refused_in_milliseconds_naming_the_limit(tmp_path):
    levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)
    ]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\nseeds: *a9\n")
    assert path.stat().st_size < 1500
    start = time.perf_counter()
    with pytest.raises(ParameterError, match=f"more than {MAX_NODES} values through its aliases") as err:
        load_params(path)
    assert time.perf_counter() - start < 0.5 and len(str(err.value)) < 300


def test_a_recursive_alias_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="alias that refers to itself"):
        load_params(_file(tmp_path, "seeds: &s [1, *s]\n"))


def test_a_parameter_given_twice_is_refused_naming_it_and_its_line(tmp_path):
    with pytest.raises(ParameterError, match=r"parameter 'ways' is given twice \(line 5\)"):
        load_params(_file(tmp_path, "ways: 3\nways: 5\n"))


def test_a_huge_bad_value_is_quoted_by_a_short_prefix(tmp_path):
    with pytest.raises(ParameterError) as err:
        load_params(_file(tmp_path, f"seeds: [{', '.join(['-1'] * 5000)}]\n"))
    assert "seeds" in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("name", ["bmp_inp_embedding_init", "fast_lr", "meta_lr", "mmsup_temperature"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_inf_are_refused_for_every_float_parameter(tmp_path, name, value):
    with pytest.raises(ParameterError, match=f"parameter '{name}' = .* must be a finite number|must be between"):
        load_params(_file(tmp_path, f"{name}: {value}\n"))


@pytest.mark.parametrize("key", ["profile", "output_root", "data_root"])
def test_control_characters_are_refused_in_names_that_become_paths(tiny_params, key):
    with pytest.raises(ParameterError, match=f"parameter '{key}'.*control characters"):
        tiny_params(**{key: "smo\nke"})


def test_the_ways_hint_names_the_smallest_split(tiny_params):
    params = tiny_params(ways=20)  # 30 classes: 18 / 6 / 6
    from gems_core.data import check_against_data

    with pytest.raises(ParameterError, match=r"valid: ways <= 6,") as err:
        check_against_data(params, load_distributions(params))
    assert "glyphs/validation" in str(err.value)


@pytest.mark.parametrize("seed", ["99999999999999999999", "-5", "2147483648"])
def test_the_command_lines_seed_is_checked_by_the_schema_before_anything(tmp_path, seed, capsys):
    path = _file(tmp_path, "")
    assert cli.train([str(path), "--method", "maml", "--seed", seed, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "parameter 'seeds'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--time-limit", "0"], "parameter 'slurm_time_limit_min' = 0 must be between 1"),
        (["--sbatch", "nokeyvalue"], "parameter 'slurm_sbatch_options'"),
        (["--array-parallelism", "-3"], "parameter 'slurm_array_parallelism'"),
    ],
)
def test_the_sweeps_slurm_flags_are_checked_by_the_schema(tmp_path, flags, fragment, capsys):
    assert cli.sweep([str(_file(tmp_path, "")), "--executor", "slurm", *flags]) == 2
    assert fragment in capsys.readouterr().err


# --- every root and log, every executor -----------------------------------------------------------


@pytest.mark.parametrize("root", ["/proc/gems-outputs", "/sys/gems-outputs"])
def test_a_root_under_proc_or_sys_is_refused(tmp_path, root):
    with pytest.raises(ParameterError, match="valid: a folder this user can write"):
        load_params(_file(tmp_path, ""), output_root=root)


@pytest.mark.parametrize("case", ["kernels.log a folder", "profile a file", "runs a file"])
def test_a_profile_folder_runs_or_log_that_is_not_what_it_should_be_is_one_line(tmp_path, case, capsys):
    path = _file(tmp_path, "profile: p\n")
    out = tmp_path / "o"
    out.mkdir()
    if case == "kernels.log a folder":
        (out / "p" / "kernels.log").mkdir(parents=True)
    else:
        (out / ("p" if case == "profile a file" else "runs")).write_text("a file")
    cwd = os.getcwd()
    try:
        assert cli.pipeline([str(path)]) == 2
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "move it away" in err


def _fake_commands(folder: Path, sbatch_says: str | None) -> None:
    folder.mkdir()
    for command in ("sbatch", "srun", "squeue", "sacct"):
        body = f"echo '{sbatch_says}' >&2; exit 1" if command == "sbatch" else "exit 0"
        (folder / command).write_text(f"#!/bin/sh\n{body}\n")
        (folder / command).chmod(0o755)


@pytest.mark.parametrize("slurm", ["absent", "unconfigured"])
def test_slurm_absent_or_unconfigured_is_one_line_with_the_way_to_run_here(tmp_path, monkeypatch, slurm, capsys):
    bin_dir = tmp_path / "bin"
    if slurm == "unconfigured":
        _fake_commands(bin_dir, "sbatch: error: invalid partition specified: gpu")
    else:
        bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    assert cli.sweep([str(_file(tmp_path, "iterations: 2\n")), "--executor", "slurm", "--kinds", "main"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]  # beside what sbatch itself said
    assert "--executor local" in line and "Traceback" not in err
    assert ("no sbatch" if slurm == "absent" else "invalid partition specified: gpu") in line


# --- the pipeline's promises -------------------------------------------------------------------------


def _executed(path: Path, text: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])
    nbformat.write(nb, path)


def test_a_notebook_and_its_html_are_replaced_together_and_a_half_done_pair_is_mended(tmp_path):
    executed = tmp_path / "03_mmsup.ipynb"
    _executed(executed, "old execution")
    pipeline.render_html(executed)
    partial = tmp_path / ".03_mmsup.1.partial.ipynb"
    _executed(partial, "new execution")
    seen = []
    real = os.replace

    def watching(src, dst):  # at each rename: is the marker there?
        seen.append((Path(dst).name, (tmp_path / ".03_mmsup.replacing").exists()))
        real(src, dst)

    os.replace = watching
    try:
        pipeline.replace_pair(partial, executed)
    finally:
        os.replace = real
    assert [name for name, marked in seen if marked] == ["03_mmsup.ipynb", "03_mmsup.html"]
    assert "new execution" in executed.with_suffix(".html").read_text()
    # a pipeline killed between the two renames: the notebook is new, the HTML old, the marker left
    _executed(executed, "newest execution")
    (tmp_path / ".03_mmsup.replacing").write_text("")
    pipeline.mend(tmp_path)
    assert "newest execution" in executed.with_suffix(".html").read_text()
    assert not (tmp_path / ".03_mmsup.replacing").exists()


@pytest.mark.parametrize("only, missing", [(["6"], None), (["03"], "03_mmsup.ipynb"), (None, "02_bmp.ipynb")])
def test_only_that_matches_nothing_or_a_missing_notebook_is_exit_2_and_no_page_is_claimed(
    tmp_path, only, missing, capsys
):
    folder = tmp_path / "notebooks"
    shutil.copytree(PROJECT_ROOT / "notebooks", folder)
    if missing:
        (folder / missing).unlink()
    cwd = os.getcwd()
    try:
        code = cli.pipeline(
            [str(_file(tmp_path, "")), "--notebooks", str(folder), *(["--only", *only] if only else [])]
        )
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    assert code == 2 and "results page" not in captured.out + captured.err
    assert (
        f"--only '{only[0]}' matches no notebook" if only and not missing else f"notebook {missing[:2]} is missing"
    ) in (captured.err)


def test_a_local_workers_ctrl_c_is_one_line_without_a_traceback(tmp_path, monkeypatch, capsys):
    from gems_core import jobs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "train_one", interrupted)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"kind": "main"}))
    assert cli.sweep(["--job", str(spec)]) == 130
    err = capsys.readouterr().err
    assert "interrupted: every run keeps its last checkpoint" in err and "Traceback" not in err
    assert jobs.EXIT_STATUS  # the worker's statuses are unchanged otherwise


def test_yaml_safe_dump_round_trips_through_the_bounded_loader(tmp_path):
    params = load_params(PROJECT_ROOT / "parameters" / "demo.yaml", output_root=str(tmp_path))
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(params.as_dict()))
    assert load_params(path).as_dict() == params.as_dict()


def test_run_damaged_names_the_file_and_the_reason():
    damage = RunDamaged(Path("/x/results.json"), "why")
    assert str(damage) == "/x/results.json: why" and damage.path.name == "results.json"
