"""CPU sharing: a training process counts the kit processes training beside it and takes its share of the
cores (benchmarks/cpu_sharing.py measures what that is worth)."""

import subprocess
import sys

import torch

from gems_core.cpu_share import CpuShare, cores

HOLD = (
    "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
    "print('held', flush=True); time.sleep(600)"
)


def test_a_process_takes_its_share_while_another_trains_and_all_again_after(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    monkeypatch.setattr("gems_core.cpu_share.cores", lambda: 8)
    (tmp_path / "killed-long-ago.lock").write_text("")  # a slot whose process ended: not held, not counted
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "other.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout.readline() == "held\n"
        with CpuShare(folder=tmp_path) as share:
            assert share.training() == 2 and chosen == [4]  # half of the 8 cores
            other.kill()
            other.wait()
            share.rebalance()
            assert chosen == [4]  # counted again only once a second ...
            share.rebalance(now=True)
            assert share.training() == 1 and chosen == [4]  # ... alone again: all 8 threads, as it started
        assert chosen == [4, 8] and not (tmp_path / share.path.name).exists()
    finally:
        other.kill()


def test_never_more_threads_than_it_started_with_nor_fewer_than_one(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # a sweep worker given one thread
    with CpuShare(folder=tmp_path) as share:
        assert share.threads() == 1
    assert cores() >= 1


def test_sharing_can_be_turned_off_and_is_off_for_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMS_CPU_SHARE", "0")
    with CpuShare(folder=tmp_path):
        assert not list(tmp_path.iterdir())
    monkeypatch.delenv("GEMS_CPU_SHARE")
    with CpuShare(active=False, folder=tmp_path):
        assert not list(tmp_path.iterdir())
