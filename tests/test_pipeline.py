"""The runner: order, a failing notebook named with its cell, earlier outputs kept, bad parameters."""

import re
import time

import nbformat
import pytest
import yaml

from gems_core import cli, pipeline


def _notebook(path, *sources):
    cells = [nbformat.v4.new_code_cell('parameters_file = ""')]
    cells[0].metadata["tags"] = ["parameters"]
    cells += [nbformat.v4.new_code_cell(src) for src in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def setup(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    params = {
        "profile": "p",
        "output_root": str(tmp_path / "out"),
        "distributions": [{"name": "g", "source": "synthetic_glyphs"}],
    }
    params_file = tmp_path / "p.yaml"
    params_file.write_text(yaml.safe_dump(params))
    return folder, params_file, tmp_path / "out" / "p"


@pytest.mark.slow
def test_failing_notebook_is_named_with_its_cell_and_earlier_outputs_stay(setup):
    folder, params_file, out = setup
    _notebook(folder / "00_ok.ipynb", "print('fine')")
    _notebook(folder / "01_bad.ipynb", "x = 1", "raise ValueError('broken on purpose')")
    _notebook(folder / "02_never.ipynb", "print('not reached')")
    with pytest.raises(pipeline.NotebookFailed) as err:
        pipeline.run_pipeline(params_file, folder=folder)
    message = str(err.value)
    assert "01_bad.ipynb failed in cell" in message and "ValueError: broken on purpose" in message
    assert (out / "00_ok.ipynb").exists() and (out / "00_ok.html").exists()
    executed = nbformat.read(out / "01_bad.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in executed.cells for o in c.get("outputs", []))
    assert (out / "01_bad.html").exists() and not (out / "02_never.ipynb").exists()


@pytest.mark.slow
def test_main_exits_non_zero_and_says_why(setup, capsys):
    folder, params_file, _ = setup
    _notebook(folder / "00_bad.ipynb", "1 / 0")
    assert cli.pipeline([str(params_file), "--notebooks", str(folder)]) == 1
    assert "00_bad.ipynb failed in cell" in capsys.readouterr().err


def test_bad_parameters_stop_before_any_notebook_runs(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "profile": "x",
                "output_root": str(tmp_path / "o"),
                "wayz": 3,
                "distributions": [{"name": "g", "source": "synthetic_glyphs"}],
            }
        )
    )
    assert cli.pipeline([str(bad)]) == 2  # a parameter error: one message, status 2
    assert "unknown parameter 'wayz'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_the_runner_is_quiet_and_names_its_results_page(tmp_path):
    import subprocess
    import sys

    from conftest import PROJECT_ROOT, smoke_file

    params = smoke_file(tmp_path, "quiet")
    proc = subprocess.run(
        [sys.executable, "-m", "gems_core.pipeline", str(params), "--only", "00"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "without encryption" not in proc.stderr and "IPKernelApp" not in proc.stderr
    assert "Alternative text" not in proc.stderr  # 00 draws figures, which have none
    assert f"results page: {tmp_path / 'quiet' / 'smoke' / 'index.html'}" in proc.stdout + proc.stderr
    # not a terminal (a Slurm log, CI, a file): one line per event, no carriage returns of a progress bar
    assert "\r" not in proc.stdout + proc.stderr
    assert (tmp_path / "quiet" / "smoke" / "kernels.log").exists()  # the kernels' own messages, kept aside
    assert re.search(r"^00_data_prep.ipynb: started\n00_data_prep.ipynb: \d+ s -> ", proc.stdout, re.M), proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("where, how", [("root", "-p"), ("notebooks", "-f")])
def test_plain_papermill_runs_a_notebook_from_the_root_or_from_notebooks(tmp_path, where, how):
    import os
    import subprocess
    import sys

    from conftest import PROJECT_ROOT, smoke_file

    params = smoke_file(tmp_path, "pm")
    cwd = PROJECT_ROOT if where == "root" else PROJECT_ROOT / "notebooks"
    relative = os.path.relpath(params, cwd)  # as a user would type it from there
    if how == "-p":
        args = ["-p", "parameters_file", relative]
    else:
        (tmp_path / "nb-params.yaml").write_text(yaml.safe_dump({"parameters_file": relative}))
        args = ["-f", str(tmp_path / "nb-params.yaml")]
    notebook = os.path.relpath(PROJECT_ROOT / "notebooks" / "00_data_prep.ipynb", cwd)
    papermill = [sys.executable, "-m", "papermill", notebook, str(tmp_path / "out.ipynb"), *args]
    proc = subprocess.run(papermill, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pm" / "smoke" / "data_summary.csv").exists()  # where the pipeline writes it


def test_progress_names_the_run_under_way_and_how_far_it_got(tiny_params):
    from gems_core.data import load_distributions
    from gems_core.device import resolve_device
    from gems_core.plan import plan, progress
    from gems_core.training import Run

    params = tiny_params(iterations=12, validation_every=3, checkpoint_every=3)
    runs = plan(params, ("main",))
    assert progress(runs) is None
    run = Run(params, "bmp", 21, load_distributions(params), runs[2].folder, resolve_device("cpu"))
    run.calibrate()
    for _ in range(3):
        run.step()
    run.save_checkpoint()  # a checkpoint before the first validation: nothing to report yet
    assert progress(runs) is None and not (runs[2].folder / "metrics.csv").exists()
    run.log_row()
    run.save_checkpoint()
    line = progress(runs)
    assert line.startswith("bmp seed 21: iteration 3/12, validation accuracy 0.") and re.search(
        r"about \d+ s left$", line
    )
    assert progress(runs, since=time.time() + 1) is None  # written before a process started: not its progress


def test_progress_follows_the_convergence_trace_and_the_page_gets_its_time_and_device(tiny_params, monkeypatch):
    from gems_core import convergence
    from gems_core.data import load_distributions
    from gems_core.plan import plan, progress

    params = tiny_params(convergence_iterations=30)
    [trace] = plan(params, ("convergence",))
    dists, calls, real = load_distributions(params), [], convergence.query_loss

    def dies_at_26(*args):  # the trace is killed after its progress record at iteration 25
        calls.append(1)
        if len(calls) == 26:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(convergence, "query_loss", dies_at_26)
    with pytest.raises(KeyboardInterrupt):
        trace.execute(dists, progress=False)
    line = progress(plan(params))
    assert re.fullmatch(r"convergence trace seed 21: iteration 25/30, about \d+ s left", line), line
    monkeypatch.setattr(convergence, "query_loss", real)
    trace.execute(dists, progress=False)
    assert progress(plan(params)) is None and trace.state() == ("complete", 30)
    outcome = trace.outcome()
    assert (outcome["iteration"], outcome["of"], outcome["device"]) == (30, 30, "cpu") and outcome["train_seconds"] > 0


def test_a_convergence_trace_of_other_parameters_is_never_read_back(tiny_params):
    from gems_core.plan import plan

    def trace(**overrides):
        (run,) = plan(tiny_params(**overrides), ("convergence",))
        return run.trace_path

    assert trace() == trace(ablation_sparsity=[0.9])  # bookkeeping: the same trace
    assert trace(convergence_iterations=7) != trace() != trace(fast_lr=0.2)  # what it traced: another
