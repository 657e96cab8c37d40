"""The kit's GPU check: correctness on CUDA, then the speed and memory of every method at the paper's
settings against learn2learn's MAML, in one process, written to ``benchmarks/results/<gpu>.json``.

    make gpu-check                                   # on a machine with one NVIDIA GPU, offline
    python benchmarks/gpu_check.py --skip-tests      # timings only
    python benchmarks/gpu_check.py --device cpu --settings small --skip-tests   # a dry run of the script
                                       # (every section it times; tests/test_gpu_check.py runs it in the suite)

1. (last, after the timings) ``pytest -m gpu``: meta-gradients against learn2learn on CUDA in float64 (first and
   second order;
   BMP adapting every layer and MMSUP at sparsity 0 too), the CUDA graph against the eager step, the
   hot loop under ``torch.cuda.set_sync_debug_mode("error")``, deterministic repeats, a resume after
   SIGKILL of every method, and the smoke pipeline with ``device: cuda``.
2. Per method, the kit's real training step (``Run.step``: on-device sampling, meta-update, running
   sums; a CUDA graph unless ``cuda_graph`` is off) on random images, median milliseconds per
   meta-iteration over repeats after warm-up and capture, and the peak GPU memory of the run; beside
   it learn2learn's MAML on the same settings, and variants that say what each setting costs.
3. The time to meta-test 600 tasks of one distribution, and the GPU-hours of Table 2 and the ablations.
4. With ``--throughput``: runs per hour when K runs share the GPU (what ``python -m gems_core.sweep
   --per-gpu K`` does), for K = 1..4: K processes each time MAML's training step at once, and their
   iterations add up. Off by default to keep the check under 8 minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import learn2learn as l2l
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maml_iteration import l2l_maml_step, make_tasks  # noqa: E402
from packing import packing_table  # noqa: E402

from gems_core import numerics  # noqa: E402
from gems_core.data import ClassImages, Distribution  # noqa: E402
from gems_core.graphs import GraphedStep  # noqa: E402
from gems_core.models import embedding_size  # noqa: E402
from gems_core.params import METHODS, TABLE2_METHODS, Config, validate  # noqa: E402
from gems_core.training import Run  # noqa: E402

SETTINGS = {
    "paper": dict(
        image_size=84,
        hidden_size=64,
        ways=5,
        shots=1,
        queries=15,
        meta_batch_size=5,
        adaptation_steps=5,
        fast_lr=0.01,
        meta_lr=1.0e-4,
        first_order=False,
    ),
    "small": dict(
        image_size=28,
        hidden_size=16,
        ways=5,
        shots=1,
        queries=5,
        meta_batch_size=4,
        adaptation_steps=2,
        fast_lr=0.1,
        meta_lr=1.0e-3,
        first_order=False,
    ),
}
VARIANTS: dict[
    str, tuple[str, dict[str, Any]]
] = {  # name: (method, parameter overrides): what a setting costs against the default
    "maml_eager": ("maml", {"cuda_graph": False}),
    "maml_tf32": ("maml", {"tf32": True}),
    "maml_deterministic": ("maml", {"deterministic": True}),
    "bmp_paper_embedding": ("bmp", {"bmp_embedding": "paper"}),
}
TABLE2_RUNS_PER_METHOD = 3 * 3  # three dataset pairs, three seeds
ABLATION_RUNS = 93
ITERATIONS = 30_000


def random_distribution(name: str, settings: dict, classes=(64, 16, 16), per_class=20, seed=0) -> Distribution:
    """A distribution of random uint8 images with the kit's split layout (no files, no download)."""
    rng = np.random.default_rng(seed)
    size = settings["image_size"]
    splits = {}
    for split, n in zip(("train", "validation", "test"), classes):
        labels = np.repeat(np.arange(n), per_class)
        images = rng.integers(0, 256, (len(labels), size, size, 3), dtype=np.uint8)
        splits[split] = ClassImages(images, labels, [f"{split}{i}" for i in range(n)])
    return Distribution(name, "random", splits, Path("-"), True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device: torch.device, iterations: int, repeats: int, warmup: int = 6) -> dict:
    """Median ms per call of ``step`` over ``repeats`` timed blocks of ``iterations`` calls, after ``warmup``
    calls (the kit's 3 eager warm-up iterations, its capture and 2 replays); the same for every timing."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            step()
        sync(device)
        times.append((time.perf_counter() - start) / iterations)
    return {"ms": 1000 * statistics.median(times), "ms_spread": 1000 * (max(times) - min(times))}


def time_run(params: Config, method: str, dists, device, folder: Path, iterations: int, repeats: int) -> dict:
    """Median ms per meta-iteration of ``Run.step`` after warm-up (and capture), how each member stepped
    (a captured CUDA graph, why capture failed, or eager), peak GPU memory, and the meta-test's time."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    run = Run(params, method, 21, dists, folder, device)
    run.calibrate()
    out = time_steps(run.step, device, iterations, repeats)
    if device.type == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    assert run.steps is not None  # built by the first step
    out["graph"] = [
        ("captured" if step.graph is not None else step.failed) if isinstance(step, GraphedStep) else "eager"
        for step in run.steps.steps
    ]
    start = time.perf_counter()
    outcome = run.evaluate("test", 0)
    sync(device)
    out["eval_seconds_600_tasks"] = (time.perf_counter() - start) * 600 / outcome["tasks"]
    return out


def profile_step(params: Config, dists, device, folder: Path, path: Path) -> None:
    """The 25 costliest kernels (on the CPU: operators) of eager MAML meta-iterations (where the time goes),
    as a text table."""
    from torch.profiler import ProfilerActivity, profile

    run = Run(params.replace(cuda_graph=False), "maml", 21, dists, folder, device)
    for _ in range(3):
        run.step()
    sync(device)
    activity, key = (ProfilerActivity.CUDA, "cuda") if device.type == "cuda" else (ProfilerActivity.CPU, "cpu")
    with profile(activities=[activity]) as prof:
        for _ in range(3):
            run.step()
        sync(device)
    path.write_text(prof.key_averages().table(sort_by=f"{key}_time_total", row_limit=25) + "\n")


def time_l2l(params: Config, device, iterations: int, repeats: int) -> float:
    """Median ms per meta-iteration of learn2learn's MAML on the same settings, under the numerics the kit's
    MAML is timed with (set here, not inherited from whichever run was built last) and the same repeats."""
    numerics.configure(device, params.tf32, params.deterministic)
    torch.manual_seed(0)
    s = params
    model = l2l.vision.models.CNN4(
        s.ways, hidden_size=s.hidden_size, embedding_size=embedding_size(s.image_size, s.hidden_size)
    ).to(device)
    maml = l2l.algorithms.MAML(model, lr=s.fast_lr, first_order=s.first_order)
    args = argparse.Namespace(
        meta_batch=s.meta_batch_size,
        ways=s.ways,
        shots=s.shots,
        queries=s.queries,
        image_size=s.image_size,
    )
    step = l2l_maml_step(maml, make_tasks(args, device), s.adaptation_steps)
    return time_steps(step, device, iterations, repeats)["ms"]


def time_alone(args) -> float:
    """One process's ms per MAML meta-iteration (``--one-process``), printed for ``throughput``."""
    settings = SETTINGS[args.settings]
    params = validate(
        {
            **settings,
            "distributions": [{"name": "a", "source": "synthetic_glyphs"}, {"name": "b", "source": "synthetic_shapes"}],
            "device": args.device,
        }
    )
    dists = [random_distribution("a", settings, seed=0), random_distribution("b", settings, seed=1)]
    with tempfile.TemporaryDirectory() as tmp:
        return time_run(params, "maml", dists, torch.device(args.device), Path(tmp), args.iterations, args.repeats)[
            "ms"
        ]


def throughput(args, sharing=(1, 2, 3, 4)) -> dict:
    """Runs of 30,000 iterations per hour on one device when K processes train at once on it."""
    out = {}
    for k in sharing:
        cmd = [
            sys.executable,
            __file__,
            "--one-process",
            "--device",
            args.device,
            "--settings",
            args.settings,
            "--iterations",
            str(args.iterations),
            "--repeats",
            "2",
        ]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(k)]
        ms = [float(proc.communicate()[0].strip().splitlines()[-1]) for proc in procs]
        out[k] = round(sum(3600 * 1000 / m / ITERATIONS for m in ms), 2)
        print(
            f"{k} run(s) sharing the device: {out[k]} runs of {ITERATIONS} iterations per hour "
            f"(ms/iteration each: {', '.join(f'{m:.1f}' for m in ms)})",
            flush=True,
        )
    return out


def run_tests(log: Path, timeout: int) -> dict:
    """``pytest -m gpu`` in a subprocess; its counts and wall-clock time (the log is kept)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with open(log, "w") as f:
        # pytest-xdist where installed, one module per worker (the CUDA smoke pipeline runs once)
        parallel = ["-n", "4", "--dist", "loadscope"] if importlib.util.find_spec("xdist") else []
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-rfEs", *parallel],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=timeout,
        )
    text = log.read_text()
    counts = {
        k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", text.splitlines()[-1])
    }
    return {
        "exit_status": proc.returncode,
        **counts,
        "seconds": round(time.perf_counter() - start, 1),
        "failures": [line for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))],
    }


def run_hours(ms: float, eval_s: float, params: Config) -> float:
    """GPU-hours of one run at ``ms`` per meta-iteration: meta-iterations plus validation (every
    ``validation_every``, ``validation_tasks`` per distribution) and the meta-test (two datasets)."""
    validations = ITERATIONS // params.validation_every
    evaluation = eval_s / 600 * 2 * (validations * params.validation_tasks + params.test_tasks)
    return (ms / 1000 * ITERATIONS + evaluation) / 3600


def table2_hours(ms: dict, eval_s: dict, params: Config) -> float:
    """GPU-hours of Table 2: every Table 2 method's runs (three pairs, three seeds)."""
    return sum(run_hours(ms[m], eval_s[m], params) for m in TABLE2_METHODS) * TABLE2_RUNS_PER_METHOD


def gpu_hours(ms: dict, eval_s: dict, params: Config) -> dict:
    """GPU-hours of Table 2 (36 runs) and of the 93 ablation runs (``run_hours``)."""
    ablations = (
        ABLATION_RUNS
        * (run_hours(ms["bmp"], eval_s["bmp"], params) + run_hours(ms["mmsup"], eval_s["mmsup"], params))
        / 2
    )
    return {
        "table2": round(table2_hours(ms, eval_s, params), 1),
        "ablations_upper_bound": round(ablations, 1),
        "per_run": {m: round(run_hours(ms[m], eval_s[m], params), 2) for m in METHODS},
    }


def packing_report(rows: list[dict], eval_s: dict, params: Config) -> dict:
    """Per pack size: each method's ms per run-iteration alone and packed, runs per GPU-hour (training
    only), peak memory, and Table 2's GPU-hours with every method's seeds packed (``gpu_hours``)."""
    out = {}
    for size in sorted({row["runs"] for row in rows}):
        at = {row["method"]: row for row in rows if row["runs"] == size}
        packed_ms = {m: at[m]["ms_per_run_iteration_packed"] for m in at}
        out[str(size)] = {
            "rows": list(at.values()),
            "runs_per_gpu_hour": {m: round(3.6e6 / (ms * ITERATIONS), 2) for m, ms in packed_ms.items()},
            "table2_gpu_hours": round(table2_hours(packed_ms, eval_s, params), 1),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--settings", choices=sorted(SETTINGS), default="paper")
    parser.add_argument("--iterations", type=int, default=20, help="meta-iterations per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--eval-tasks", type=int, default=600, help="meta-test tasks timed (scaled to 600)")
    parser.add_argument("--test-timeout", type=int, default=420)
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--throughput",
        action="store_true",
        help="also measure runs per hour with 1-4 runs sharing the GPU (about 3 minutes more on an H100)",
    )
    parser.add_argument("--packs", nargs="+", type=int, default=[1, 2, 3, 6], help="pack sizes timed (packing)")
    parser.add_argument("--one-process", action="store_true", help=argparse.SUPPRESS)  # a throughput worker
    args = parser.parse_args()
    if args.one_process:
        print(time_alone(args))
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: torch sees no CUDA GPU; the check needs one (or --device cpu for a dry run)", file=sys.stderr)
        return 2
    args.results_dir.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report: dict[str, Any] = {
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "settings": {**SETTINGS[args.settings], "name": args.settings},
    }
    settings = SETTINGS[args.settings]
    params = validate(
        {
            **settings,
            "distributions": [{"name": "a", "source": "synthetic_glyphs"}, {"name": "b", "source": "synthetic_shapes"}],
            "device": args.device,
            "validation_every": 500,
            "validation_tasks": 100,
            "test_tasks": args.eval_tasks,
        }
    )
    dists = [random_distribution("a", settings, seed=0), random_distribution("b", settings, seed=1)]
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        timed: dict[str, tuple[str, dict[str, Any]]] = {m: (m, {}) for m in METHODS} | VARIANTS
        for name, (method, overrides) in timed.items():
            timings[name] = time_run(
                params.replace(**overrides), method, dists, device, Path(tmp) / name, args.iterations, args.repeats
            )
            print(
                f"{name:>22}: {timings[name]['ms']:8.2f} ms/iteration (spread {timings[name]['ms_spread']:.2f})"
                + (f", peak {timings[name]['peak_mib']:.0f} MiB" if "peak_mib" in timings[name] else "")
                + f", meta-test of 600 tasks {timings[name]['eval_seconds_600_tasks']:.1f} s",
                flush=True,
            )
        profile_step(params, dists, device, Path(tmp) / "profile", args.results_dir / f"{slug(gpu)}-profile.txt")
        packs = packing_table(params, list(TABLE2_METHODS), args.packs, device, 3, args.repeats, dists)
        for row in packs:
            print(f"{'pack':>22}: {json.dumps(row)}", flush=True)
    l2l_ms = time_l2l(params, device, args.iterations, args.repeats)
    print(f"{'learn2learn_maml':>22}: {l2l_ms:8.2f} ms/iteration", flush=True)
    ms = {m: timings[m]["ms"] for m in timings}
    report["ms_per_iteration"] = {"learn2learn_maml": l2l_ms, **{m: ms[m] for m in METHODS}}
    report["variants_ms_per_iteration"] = {v: ms[v] for v in VARIANTS}
    report["peak_memory_mib"] = {m: timings[m].get("peak_mib") for m in timings}
    report["eval_seconds_per_600_tasks"] = {m: timings[m]["eval_seconds_600_tasks"] for m in timings}
    report["capture"] = {m: timings[m].get("graph") for m in timings}
    report["speedup_over_learn2learn"] = {m: l2l_ms / ms[m] for m in METHODS}
    report["ratio_to_kit_maml"] = {m: ms[m] / ms["maml"] for m in ("bmp", "mmsup")}
    report["gpu_hours"] = gpu_hours(ms, report["eval_seconds_per_600_tasks"], params)
    report["packing"] = packing_report(packs, report["eval_seconds_per_600_tasks"], params)
    if args.throughput:
        report["runs_per_hour_sharing_one_gpu"] = throughput(args)
    path = args.results_dir / f"{slug(gpu)}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"learn2learn / kit MAML: {report['speedup_over_learn2learn']['maml']:.2f}x; "
        f"BMP / MAML {report['ratio_to_kit_maml']['bmp']:.2f}, "
        f"MMSUP / MAML {report['ratio_to_kit_maml']['mmsup']:.2f}; "
        f"Table 2 ~{report['gpu_hours']['table2']} GPU-hours; written to {path}"
    )
    if args.skip_tests:
        return 0
    report["tests"] = run_tests(args.results_dir / f"{slug(gpu)}-tests.log", args.test_timeout)
    print("gpu tests:", {k: v for k, v in report["tests"].items() if k != "failures"}, flush=True)
    for line in report["tests"]["failures"]:
        print("  ", line)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["tests"]["exit_status"] == 0 else 1


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


if __name__ == "__main__":
    raise SystemExit(main())
