"""Run the ordered notebooks headlessly with papermill: ``python -m gems_core.pipeline PARAMS.yaml``.

Each notebook ``notebooks/NN_name.ipynb`` is executed into ``outputs/<profile>/NN_name.ipynb`` and
rendered to ``NN_name.html``. A failing notebook keeps its executed copy (with the error in it), the
runner names the notebook and cell, and exits non-zero; notebooks already done keep their outputs.
Runs inside the notebooks resume from their run folders, so re-running the pipeline is cheap. After each
notebook the profile's results page ``outputs/<profile>/index.html`` is refreshed (``page``). Kernels
talk to the runner over local IPC sockets in a private folder of this pipeline's, removed when it ends,
and while a notebook trains, the status line names the run and how far it got, read from the run folders.

Pipelines may run at once: different profiles never touch each other's files, and a second pipeline
on a profile already being run waits for the first (``outputs/<profile>/.pipeline.lock``) and says so.
An executed notebook is written to a temporary file, rendered, and renamed into place with its HTML once
papermill is done, so ``NN_name.ipynb`` is always a whole execution, the one its ``NN_name.html`` was
rendered from (a pipeline killed between the two renames leaves a marker the next one mends first).
``--only`` that matches no notebook, a notebook missing from the numbering, and a profile folder, ``runs``
or log that is not what it should be stop it with one line before anything runs.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import papermill
from filelock import FileLock, Timeout
from jupyter_client.manager import AsyncKernelManager
from nbconvert import HTMLExporter
from tqdm.auto import tqdm

from . import io, page
from .data.sources import require_data
from .device import resolve_device
from .errors import KitError
from .notebook import HEADLESS, PROJECT_ROOT, from_project_root
from .params import Config, load_params
from .plan import LOG_SECONDS, plan, progress

NOTEBOOKS = PROJECT_ROOT / "notebooks"
WATCH_SECONDS = 5  # how often the status line reads the run folders while a notebook trains


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names it, the failing cell and the error."""


class NotebookKitError(KitError):
    """A notebook stopped on a KitError (bad data, a full disk, ...): reported like one, without a traceback."""


def kit_error_names() -> set[str]:
    """Class names of every KitError (those of the modules this one imports, which are all of them), to
    recognise one raised inside a notebook's kernel."""
    names, pending = set(), [KitError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending += cls.__subclasses__()
    return names


def notebooks(only: list[str] | None = None, folder: Path = NOTEBOOKS) -> list[Path]:
    """The ordered notebooks, optionally only those whose name starts with one of ``only``. KitError when
    one is missing from the numbering (they build on each other) or an ``only`` matches none."""
    found = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise KitError(f"no notebooks (NN_name.ipynb) in {folder}")
    numbers = {int(nb.name[:2]) for nb in found}
    if gaps := sorted(set(range(max(numbers) + 1)) - numbers):
        raise KitError(
            f"notebook {', '.join(f'{n:02d}' for n in gaps)} is missing from {folder}; the notebooks run in order "
            "and build on each other: restore it (git checkout notebooks/)"
        )
    valid = ", ".join(nb.stem for nb in found)
    for prefix in only or []:
        if not any(nb.name.startswith(prefix) for nb in found):
            raise KitError(f"--only {prefix!r} matches no notebook in {folder}; valid: the start of one of {valid}")
    return [nb for nb in found if not only or any(nb.name.startswith(o) for o in only)]


def _not_alt_text_notice(record: logging.LogRecord) -> bool:
    """nbconvert warns, for every notebook, that its figures have no alternative text, then gives them a
    generic one itself; matplotlib's figures never have one, so the warning is noise to the user."""
    return not record.getMessage().startswith("Alternative text is missing")


JSON_SCRIPT = re.compile(r'(<script type="application/[^"]*json"[^>]*>)(.*?)(</script>)', re.S)


def _json_escaped(match: re.Match) -> str:
    """A JSON block's text with <, > and & as the \\u escapes that mean the same in JSON strings (the only
    place JSON has them), as Go's HTMLEscape does: a name with a tag in it stays a string, never a tag."""
    body = match[2].replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return match[1] + body + match[3]


def html_of(executed: Path) -> str:
    """The HTML render of an executed notebook. Outputs are escaped where the kit makes them; the JSON that
    nbconvert embeds raw (ipywidgets' state, holding dataset names) is escaped here."""
    exporter = HTMLExporter()
    exporter.log.addFilter(_not_alt_text_notice)
    return JSON_SCRIPT.sub(_json_escaped, exporter.from_notebook_node(nbformat.read(executed, as_version=4))[0])


def render_html(executed: Path) -> Path:
    """Write the HTML render of an executed notebook beside it."""
    html = executed.with_suffix(".html")
    io.write_text(html, html_of(executed))
    return html


def _marker(executed: Path) -> Path:
    """Present while an executed notebook and its HTML are being replaced (``replace_pair``)."""
    return executed.with_name(f".{executed.stem}.replacing")


def replace_pair(partial: Path, executed: Path) -> None:
    """Put a new execution (``partial``) and its HTML render in place of ``executed`` and its HTML: the
    render is made first; the two renames happen under a marker, so a process killed between them leaves
    the marker, and ``mend`` renders the HTML again from the notebook before anything else."""
    html = html_of(partial)
    io.write_text(_marker(executed), "")
    os.replace(partial, executed)
    io.write_text(executed.with_suffix(".html"), html)
    _marker(executed).unlink()


def mend(out_dir: Path) -> None:
    """Re-render the HTML of every notebook whose replacement a killed pipeline left half done."""
    for marker in Path(out_dir).glob(".*.replacing"):
        executed = marker.with_name(marker.name[1 : -len(".replacing")] + ".ipynb")
        if executed.exists():
            render_html(executed)
        marker.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def kernel_runtime(log: Path) -> Iterator[type]:
    """A kernel manager class whose kernels listen on IPC sockets (not TCP: nothing listens on a port,
    and the kernel has no reason to warn about unencrypted TCP) in a private folder, so pipelines running
    at once never share a socket. When the block ends, however it ends, its kernels are stopped, then the
    folder removed; Ctrl-C inside it stops the kernels at once (they run in a session of their own, which
    a terminal's Ctrl-C does not reach), then interrupts the pipeline. Folders left by pipelines that were
    killed (SIGKILL runs no clean-up) are removed when the next one starts.

    The kernels' own messages (ipykernel's log, not the cells' output, which the notebooks keep) go to
    ``log``, not the console: jupyter_client interrupts every kernel it shuts down, and ipykernel then
    sometimes logs "KeyboardInterrupt caught in kernel". The kernels know they are headless
    (``notebook.headless``): no one is there to use a widget, and a widget cell can stall a headless
    execution (jupyter/nbclient#312)."""
    for stale in Path(tempfile.gettempdir()).glob("gems-kernels-*-*"):
        pid = stale.name.split("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"gems-kernels-{os.getpid()}-"))
    started: list[AsyncKernelManager] = []  # each kernel's manager, numbering their connection files
    messages = open(log, "a")  # noqa: SIM115 - open for the whole block, closed in its finally

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(transport="ipc", ip=str(folder / "kernel"), **kwargs)
            self.connection_file = str(folder / f"kernel-{len(started)}.json")
            started.append(self)

        async def start_kernel(self, **kwargs):
            env = {**os.environ, **kwargs.pop("env", {}), HEADLESS: "1"}  # notebook.headless() in its kernel
            await super().start_kernel(**{"stderr": messages, "stdout": messages, "env": env, **kwargs})

    def stop_kernels() -> None:
        for manager in started:
            process = getattr(manager.provisioner, "process", None)
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    def on_ctrl_c(signum, frame):
        stop_kernels()
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()  # where Python delivers signals
    previous = signal.signal(signal.SIGINT, on_ctrl_c) if main else None
    try:
        yield IPCKernelManager
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        stop_kernels()
        messages.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def profile_lock(out_dir: Path) -> Iterator[None]:
    """Hold the profile's pipeline lock for the block, waiting (and saying so) while another pipeline holds
    it. An OS file lock: released when its process ends, however it ends."""
    lock = FileLock(Path(out_dir) / ".pipeline.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        tqdm.write(f"profile {Path(out_dir).name!r} is being run by another pipeline: waiting for it to finish")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


class RunWatcher(threading.Thread):
    """While a notebook runs, says which run it trains and how far it got, read from the run folders every
    few seconds, counting only progress written since the notebook started (an earlier process's record of
    an unfinished run is not this one's pace). On a terminal it updates the bar's status line; elsewhere (a
    Slurm log, CI, a file) it prints one line per run at most every ``LOG_SECONDS``."""

    def __init__(self, params: Config, bar: tqdm, notebook: str, live: bool):
        super().__init__(daemon=True)
        self.runs, self.bar, self.notebook, self.live = plan(params), bar, notebook, live
        self.since, self.printed = time.time(), dict[str, float]()  # run label -> when last printed
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(WATCH_SECONDS):
            line = progress(self.runs, since=self.since)
            if self.live:
                self.bar.set_postfix_str(f"{self.notebook}, {line}" if line else self.notebook)
            elif line:
                run, now = line.split(":")[0], time.time()  # the line starts with the run's label
                if now - self.printed.get(run, 0) >= LOG_SECONDS:
                    self.printed[run] = now
                    print(f"{self.notebook}: {line}", flush=True)


def execute(notebook: Path, executed: Path, kernels: type, parameters: dict) -> None:
    """Execute ``notebook`` with papermill into ``executed`` and render it, through a temporary file put in
    place with its HTML (``replace_pair``) when papermill is done (also when a cell failed: that copy holds
    the traceback); an interrupted execution leaves the previous ``executed`` and HTML as they were."""
    partial = executed.with_name(f".{executed.stem}.{os.getpid()}.partial.ipynb")
    failure = None
    try:
        papermill.execute_notebook(
            str(notebook),
            str(partial),
            cwd=str(PROJECT_ROOT),
            kernel_name="python3",
            progress_bar=False,
            kernel_manager_class=kernels,
            parameters=parameters,
        )
    except papermill.PapermillExecutionError as exc:
        failure = exc  # a whole execution, stopped at its failing cell: kept like a finished one
    try:
        replace_pair(partial, executed)
    finally:
        partial.unlink(missing_ok=True)
    if failure is not None:
        raise failure


def run_notebook(
    notebook: Path, parameters_file: Path, out_dir: Path, kernels: type, extra: dict | None = None
) -> Path:
    """Execute one notebook into ``out_dir`` and render it; raise NotebookFailed on an error."""
    executed = out_dir / notebook.name
    try:
        execute(notebook, executed, kernels, {"parameters_file": str(parameters_file), **(extra or {})})
    except papermill.PapermillExecutionError as exc:
        if exc.ename in kit_error_names():  # the user's parameters, paths, data or disk: exit status 2
            raise NotebookKitError(f"{notebook.name}: {exc.evalue}") from None
        raise NotebookFailed(
            f"{notebook.name} failed in cell {exc.cell_index} (execution {exc.exec_count}): "
            f"{exc.ename}: {exc.evalue}; its executed copy with the traceback is {executed}"
        ) from None
    return executed


def profile_folder(params: Config) -> Path:
    """``outputs/<profile>``, created, after checking that it, ``runs`` beside it and its kernels' log are
    what they should be (folders, a file) and no link: KitError naming the one that is not."""
    root = Path(params.output_root)
    io.make_folder(root, root / "runs")
    out_dir = io.make_folder(root, root / params.profile)
    for name in ("kernels.log", ".pipeline.lock", "index.html"):
        path = out_dir / name
        io.refuse_link(path)
        if path.exists() and not path.is_file():
            raise KitError(f"'{path}' is not a file; the pipeline writes {name} there: move it away and run again")
    return out_dir


def run_pipeline(parameters_file: str | Path, only: list[str] | None = None, folder: Path = NOTEBOOKS) -> list[Path]:
    """Validate the parameters, then execute the notebooks in order; return the executed paths."""
    parameters_file = from_project_root(parameters_file)  # injected into the notebooks: no machine's folders
    os.chdir(PROJECT_ROOT)  # where the notebooks work: relative paths in parameters mean the same everywhere
    params = load_params(parameters_file)
    resolve_device(params.device)  # a missing GPU is a parameter error, found before any notebook runs
    require_data(params)  # and so is a paper dataset neither cached nor fetched
    chosen = notebooks(only, folder)
    out_dir = profile_folder(params)
    live = sys.stderr.isatty()  # a terminal gets a live bar; a log (Slurm, CI, a file) one line per event
    page_written = False
    with profile_lock(out_dir), kernel_runtime(out_dir / "kernels.log") as kernels:
        mend(out_dir)
        done = []
        bar = tqdm(chosen, desc=f"pipeline {params.profile}", unit="notebook", disable=not live)
        for nb in bar:
            bar.set_postfix_str(nb.name)
            if not live:
                print(f"{nb.name}: started", flush=True)
            start = time.perf_counter()
            watcher = RunWatcher(params, bar, nb.name, live)
            watcher.start()
            try:
                done.append(run_notebook(nb, parameters_file, out_dir, kernels))
            finally:
                watcher.stopped.set()
                page.write(params, out_dir, parameters_file)  # refreshed after every notebook, failed ones too
                page_written = True
            tqdm.write(f"{nb.name}: {time.perf_counter() - start:.0f} s -> {done[-1].with_suffix('.html')}")
    if page_written:
        tqdm.write(f"results page: {out_dir / 'index.html'}")
    return done


if __name__ == "__main__":
    from .cli import pipeline

    raise SystemExit(pipeline())
