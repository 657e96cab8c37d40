"""Sharing a CPU politely: kit processes that train at once split its cores instead of each taking all.

torch gives every process a thread per core; two processes training at once (a pipeline and a notebook in
JupyterLab, two profiles) then run far more threads than cores, and each slows to a small fraction of
its speed alone. A process that trains on the CPU holds a slot while it does: an OS file lock in a folder
that every kit process of this user on the machine shares (released when the process ends, however it
ends). A run counts the slots held (at most once a second) and sets torch's threads to its share of the
cores: cores // processes, at least 1, at most what it started with (a sweep worker's
``OMP_NUM_THREADS``, say). ``GEMS_CPU_SHARE=0`` turns this off (each process takes every core, as torch
does by default).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
from filelock import FileLock, Timeout

FOLDER = Path(tempfile.gettempdir()) / f"gems-kit-cpu-{os.getuid()}"
RECOUNT_SECONDS = 1.0  # how often a training process counts the others


def enabled() -> bool:
    """Whether processes share the CPU (``GEMS_CPU_SHARE`` is not 0)."""
    return os.environ.get("GEMS_CPU_SHARE", "1") != "0"


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


class CpuShare:
    """This process's slot among the kit processes training on the CPU, and its share of the threads.

    Example:
        >>> with CpuShare() as share:       # while training
        ...     for step in range(n):
        ...         train_step()
        ...         share.rebalance()      # another process may have started or ended
    """

    def __init__(self, active: bool = True, folder: Path = FOLDER):
        self.active, self.folder = active and enabled(), folder
        self.ceiling = torch.get_num_threads()
        self.path = folder / f"{os.getpid()}-{id(self)}.lock"
        self.lock: FileLock | None = None
        self.counted = -RECOUNT_SECONDS  # time.monotonic() of the last count

    def __enter__(self) -> CpuShare:
        if self.active:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.lock = FileLock(self.path)
            self.lock.acquire()
            self.rebalance(now=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.lock is not None:
            self.path.unlink(missing_ok=True)
            self.lock.release()
            self.lock = None
            torch.set_num_threads(self.ceiling)

    def training(self) -> int:
        """How many kit processes hold a slot now, this one included (a file left by a killed process is
        not held, so it does not count)."""
        count = 1
        for other in self.folder.glob("*.lock"):
            if other == self.path:
                continue
            probe = FileLock(other)
            try:
                probe.acquire(timeout=0)
            except Timeout:
                count += 1
            else:
                probe.release()
        return count

    def threads(self) -> int:
        """This process's fair share of threads."""
        return max(1, min(self.ceiling, cores() // self.training()))

    def rebalance(self, now: bool = False) -> None:
        """Set torch's threads to this process's share, if it holds a slot and, unless ``now``, the last
        count is ``RECOUNT_SECONDS`` old (so calling it every iteration costs nothing)."""
        if self.lock is None or not now and time.monotonic() - self.counted < RECOUNT_SECONDS:
            return
        self.counted = time.monotonic()
        if (share := self.threads()) != torch.get_num_threads():
            torch.set_num_threads(share)
