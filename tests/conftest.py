"""Shared fixtures: the project root, the real images in ../shared/data, and small parameter sets."""

from __future__ import annotations

import os
from pathlib import Path

# Parallel workers (pytest-xdist) split the cores: each worker, and every process its tests start, gets
# its share of torch's threads instead of one per core each, which oversubscribes the CPU many times over.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))

import pytest
import torch
import yaml

from gems_core.params import validate

if workers:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # this worker too, whenever torch was imported

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (real Omniglot and Caltech-101 images); skip where a clone does not have it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test images not found at {SHARED_DATA} (only present in the developers' workspace)")
    return SHARED_DATA


def tiny_config(root: Path, **overrides):
    """Validated parameters for two small synthetic distributions, with data and outputs under ``root``."""
    base = dict(
        distributions=[
            {"name": "glyphs", "source": "synthetic_glyphs"},
            {"name": "shapes", "source": "synthetic_shapes"},
        ],
        image_size=16,
        synthetic_classes=30,
        synthetic_images_per_class=6,
        hidden_size=8,
        ways=3,
        shots=1,
        queries=2,
        meta_batch_size=2,
        adaptation_steps=2,
        fast_lr=0.1,
        meta_lr=1.0e-3,
        iterations=6,
        seeds=[21],
        test_tasks=6,
        validation_tasks=4,
        validation_every=3,
        checkpoint_every=3,
        device="cpu",
        data_root=str(root / "data"),
        output_root=str(root / "outputs"),
        profile="t",
    )
    base.update(overrides)
    return validate(base)


@pytest.fixture
def tiny_params(tmp_path):
    """``tiny_config`` under tmp_path, with overrides."""
    return lambda **overrides: tiny_config(tmp_path, **overrides)


CUDA = torch.cuda.is_available()
NO_GPU = "no CUDA GPU here; the gpu tests run with `make gpu-check` on a machine with one"
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason=NO_GPU)]
DEVICES = ["cpu", pytest.param("cuda", marks=GPU)]  # parametrise a test over the CPU and, where present, CUDA


def smoke_file(tmp_path: Path, name: str, **overrides) -> Path:
    """parameters/smoke.yaml with outputs under tmp_path/name (data under tmp_path/data) and overrides,
    written to tmp_path/name.yaml: a parameters file for the command-line entry points."""
    params = yaml.safe_load((PROJECT_ROOT / "parameters" / "smoke.yaml").read_text())
    params.update({"output_root": str(tmp_path / name), "data_root": str(tmp_path / "data"), **overrides})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


SLOWEST_FIRST = (
    "test_notebooks.py",
    "test_slurm_cluster.py",
    "test_sweep.py",
    "test_attacks.py",
    "test_training.py",
    "test_learning.py",
)


def pytest_collection_modifyitems(items):
    """Start the tests of the longest files first, so the parallel workers of ``make test`` finish together."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its order


@pytest.fixture
def overflowing(monkeypatch):
    """MAML's meta-loss overflows from its 12th meta-iteration on: a divergence at the same iteration on every
    machine (a real blow-up's timing depends on the CPU's arithmetic: fast_lr 10 with 10 inner steps
    overflowed within 25 iterations on one machine and not within 60 on another)."""
    from gems_core.learners import MAML

    real, calls = MAML.meta_loss, []

    def meta_loss(self, batch):
        loss, accuracy, choices = real(self, batch)
        calls.append(1)
        return (loss * float("inf") if len(calls) >= 12 else loss), accuracy, choices

    monkeypatch.setattr(MAML, "meta_loss", meta_loss)
