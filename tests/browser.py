"""A real browser for the tests: Debian's Chromium (installed here if missing), driven by Playwright,
and JupyterLab on a free local port with a token and its own settings folders."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
]


def _installed() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def _apt_install() -> str:
    """Install Debian's chromium package; return why not where it cannot be."""
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and not shutil.which("sudo"):
        return "not root and no sudo to run apt-get with"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]

    def run(command: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)

    done = run(install)
    if done.returncode != 0:  # perhaps stale package lists
        run(sudo + ["apt-get", "update", "-q"])
        done = run(install)
    return (
        ""
        if done.returncode == 0
        else f"`{' '.join(install)}` failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
    )


def chromium() -> str:
    """The path of a Chromium, installed from the system's packages if missing; skips the test, saying
    why, only where neither works."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make setup installs it)")
    path = _installed()
    if path is None:
        why = _apt_install()
        path = _installed()
        if path is None:
            pytest.skip(f"no Chromium and it could not be installed: {why}")
    return path


@contextlib.contextmanager
def page(executable: str, failure_shot: Path, width: int = 1400, height: int = 1000):
    """A headless Chromium page, closed afterwards; if the test fails while it is open, the page as it
    was goes to ``failure_shot``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": width, "height": height})
        try:
            yield tab
        except BaseException:
            tab.screenshot(path=failure_shot, full_page=True)
            raise
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(root: Path, scratch: Path, timeout: float = 90):
    """JupyterLab serving ``root`` on 127.0.0.1 with a random token; yields the URL of ``/lab`` with the
    token. Settings, workspaces and runtime files live under ``scratch``, so the user's are untouched;
    the server and its kernels are stopped afterwards."""
    port, token = free_port(), secrets.token_hex(16)
    notification = scratch / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True, exist_ok=True)
    notification.write_text('{"checkForUpdates": false, "fetchNews": "false"}')  # no pop-up over the page
    env = {
        **os.environ,
        **{
            name: str(scratch / folder)
            for name, folder in (
                ("JUPYTER_CONFIG_DIR", "config"),
                ("JUPYTER_RUNTIME_DIR", "runtime"),
                ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
            )
        },
    }
    log = open(scratch / "jupyterlab.log", "w")  # noqa: SIM115 - the server's log, closed when it stops
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
        ]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; see {scratch / 'jupyterlab.log'}") from None
                time.sleep(0.5)
        yield f"{base}/lab", token
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # the server shuts its kernels down
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        log.close()
