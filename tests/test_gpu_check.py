"""The GPU check's own code path, run on the CPU at a tiny size: every section it times (each method's
training step and how it stepped, the variants, the profile, learn2learn's MAML, the meta-test, the
GPU-hours), so a rename in the kit can never again break ``make gpu-check`` on the first GPU it meets."""

import json
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT

from gems_core.params import METHODS, TABLE2_METHODS


@pytest.mark.slow
def test_the_gpu_checks_dry_run_on_the_cpu_times_every_section(tmp_path):
    command = [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--settings", "small", "--skip-tests"]
    args = ["--iterations", "1", "--repeats", "1", "--eval-tasks", "4", "--packs", "1", "2"]
    args += ["--results-dir", str(tmp_path)]
    proc = subprocess.run([*command, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "cpu.json").read_text())
    assert set(report["ms_per_iteration"]) == {"learn2learn_maml", *METHODS}
    assert set(report["variants_ms_per_iteration"]) == {
        "maml_eager",
        "maml_tf32",
        "maml_deterministic",
        "bmp_paper_embedding",
    }
    assert all(v > 0 for v in report["ms_per_iteration"].values())
    assert report["capture"]["maml"] == ["eager"] and len(report["capture"]["multi_maml"]) == 2
    assert set(report["packing"]) == {"1", "2"}  # packed training: each Table 2 method alone and in packs
    for size, packed in report["packing"].items():
        assert [row["method"] for row in packed["rows"]] == list(TABLE2_METHODS) and packed["table2_gpu_hours"] > 0
        assert all(row["runs"] == int(size) and row["ms_per_run_iteration_packed"] > 0 for row in packed["rows"])
    assert report["gpu_hours"]["table2"] > 0 and set(report["eval_seconds_per_600_tasks"]) >= set(METHODS)
    assert "Self CPU" in (tmp_path / "cpu-profile.txt").read_text()
