"""A real one-node Slurm cluster on localhost for the tests: munge, MariaDB, slurmdbd, slurmctld and slurmd,
every file in one temporary folder, every daemon stopped at the end.

Debian's packages (slurm-wlm, slurmdbd, munge, mariadb-server) are installed when absent and the machine
permits it (root with apt-get); otherwise ``unavailable`` says why and the tests skip. Accounting goes
through slurmdbd into a private MariaDB, so ``sacct`` answers as on a real cluster. Commands reach this
cluster through ``SLURM_CONF`` (``env``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PACKAGES = ("slurm-wlm", "slurmdbd", "munge", "mariadb-server")
PROGRAMS = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mariadb-install-db", "sbatch", "sacct")
CLUSTER = "gemstest"
START_TIMEOUT = 60  # seconds for every daemon to answer


def unavailable() -> str | None:
    """Why a real cluster cannot run here (None when it can), after installing what is absent if permitted."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]
    if not missing:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{', '.join(missing)} not installed, and installing needs root with apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, log: Path) -> None:
    deadline = time.time() + START_TIMEOUT
    while not check():
        if time.time() > deadline:
            tail = log.read_text()[-2000:] if log.exists() else "(no log)"
            raise RuntimeError(f"{what} did not start within {START_TIMEOUT} s; its log ends:\n{tail}")
        time.sleep(0.3)


def _ok(command: list[str], env: dict) -> bool:
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode == 0


@contextmanager
def one_node_cluster() -> Iterator[dict]:
    """Start the cluster; yield the environment that reaches it (``SLURM_CONF`` set); stop it all."""
    root = Path(tempfile.mkdtemp(prefix="gems-slurm-"))  # short: unix socket paths are limited to 107 bytes
    sbin = Path("/usr/sbin")
    node = socket.gethostname()
    ports = {name: _free_port() for name in ("db", "dbd", "ctld", "slurmd")}
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    daemons: list[subprocess.Popen] = []

    def start(command: list, what: str) -> None:
        log = open(root / f"{what}.out", "w")  # noqa: SIM115 - closed with the folder
        daemons.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    try:
        # munge, with its own key and socket
        subprocess.run([sbin / "mungekey", "--create", f"--keyfile={root}/munge.key"], check=True, capture_output=True)
        munge = [f"--socket={root}/munge.sock", f"--key-file={root}/munge.key", f"--pid-file={root}/munged.pid"]
        munge += [f"--log-file={root}/munged.log", f"--seed-file={root}/munge.seed", "--force", "--foreground"]
        start([sbin / "munged", *munge], "munged")

        # MariaDB for slurmdbd's accounting
        db = root / "db"
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={db}", "--user=root", "--skip-test-db"],
            check=True,
            capture_output=True,
        )
        start(
            [
                sbin / "mariadbd",
                "--no-defaults",
                f"--datadir={db}",
                f"--socket={root}/mysql.sock",
                f"--port={ports['db']}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--pid-file={root}/mysql.pid",
                f"--log-error={root}/mysql.log",
                "--skip-grant-tables",
            ],  # fmt: skip
            "mariadbd",
        )
        _wait("MariaDB", lambda: (root / "mysql.pid").exists() and (root / "mysql.sock").exists(), root / "mysql.log")

        auth = f"AuthType=auth/munge\nAuthInfo=socket={root}/munge.sock\n"
        dbd = root / "slurmdbd.conf"
        dbd.write_text(
            auth + f"DbdHost=localhost\nDbdPort={ports['dbd']}\nSlurmUser=root\nPidFile={root}/slurmdbd.pid\n"
            f"LogFile={root}/slurmdbd.log\nStorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
            f"StoragePort={ports['db']}\nStorageUser=root\nStorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)
        (root / "slurm.conf").write_text(
            auth + f"CredType=cred/munge\nClusterName={CLUSTER}\nSlurmctldHost={node}\nSlurmctldPort={ports['ctld']}\n"
            f"SlurmdPort={ports['slurmd']}\nSlurmUser=root\nSlurmdUser=root\nStateSaveLocation={root}/state\n"
            f"SlurmdSpoolDir={root}/spool\nSlurmctldPidFile={root}/slurmctld.pid\nSlurmdPidFile={root}/slurmd.pid\n"
            f"SlurmctldLogFile={root}/slurmctld.log\nSlurmdLogFile={root}/slurmd.log\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSelectType=select/cons_tres\n"
            "SelectTypeParameters=CR_Core\nJobAcctGatherType=jobacct_gather/none\nMpiDefault=none\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            f"AccountingStoragePass={root}/munge.sock\n"  # the munge socket for talking to slurmdbd
            f"AccountingStoragePort={ports['dbd']}\nJobCompType=jobcomp/none\nReturnToService=2\n"
            "KillWait=2\n"  # seconds from SIGTERM to SIGKILL when a job is requeued or cancelled
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN\n"
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
        )
        for folder in ("state", "spool"):
            (root / folder).mkdir()

        start([sbin / "slurmdbd", "-D"], "slurmdbd")
        _wait("slurmdbd", lambda: _ok(["sacctmgr", "-n", "list", "cluster"], env), root / "slurmdbd.log")
        subprocess.run(["sacctmgr", "-i", "add", "cluster", CLUSTER], env=env, capture_output=True, timeout=30)

        start([sbin / "slurmctld", "-D", "-c"], "slurmctld")
        start([sbin / "slurmd", "-D"], "slurmd")

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=30)
            return out.stdout.strip() == "idle"

        _wait("slurmctld and slurmd", idle, root / "slurmctld.log")
        yield env
    finally:
        subprocess.run(["scancel", "--full", "-u", "root"], env=env, capture_output=True, timeout=30)
        for daemon in reversed(daemons):  # slurmd first, munge last
            daemon.terminate()
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        shutil.rmtree(root, ignore_errors=True)
