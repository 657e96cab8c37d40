"""Time packed training against the same runs stepped one by one, side by side in one process.

For P runs of one method (seeds 21, 22, ...), each repeat times one meta-iteration of every run stepped
alone (``Run.step``, one after another) and one of the same runs as a pack (``packing.Pack.update``),
alternating, so both meet the same machine state. Reported per P: milliseconds per run-iteration of each
and their ratio (packed / alone: below 1, the pack pays). Settings: the parameters file's sizes (``demo``)
and the same at a real image size (``real``: 84 x 84 images, as the paper's datasets).

    python benchmarks/packing.py parameters/demo.yaml --packs 1 2 3 6 --repeats 7

Writes ``benchmarks/results/<machine>-packing.json``. The GPU check times the same table on a GPU
(``packing_table``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gems_core.data import Distribution, load_distributions
from gems_core.device import resolve_device
from gems_core.graphs import GraphedStep, synchronize
from gems_core.packing import Pack
from gems_core.params import Config, load_params
from gems_core.training import Run

RESULTS = Path(__file__).parent / "results"
REAL_IMAGES = {"image_size": 84}  # the paper's datasets' size; the rest of the profile as it is


def _timed(step, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


def packing_row(
    params: Config,
    method: str,
    size: int,
    device: torch.device,
    warmup: int,
    repeats: int,
    distributions: list[Distribution] | None = None,
) -> dict:
    """Milliseconds per run-iteration of ``size`` runs stepped alone and as one pack (each a CUDA graph where
    the runs use one), and the pack's peak GPU memory."""
    distributions = distributions if distributions is not None else load_distributions(params)
    with tempfile.TemporaryDirectory() as folder:
        alone = [Run(params, method, 21 + s, distributions, Path(folder) / f"a{s}", device) for s in range(size)]
        packed = [Run(params, method, 21 + s, distributions, Path(folder) / f"p{s}", device) for s in range(size)]
        for run in alone + packed:
            run.calibrate()
        pack = Pack([m for run in packed for m in run.members])
        step_packed = pack.update
        if packed[0].graphed:
            step_packed = GraphedStep(pack.update, [m.sampler.gen for m in pack.members], f"{method} pack")

        def step_alone():
            for run in alone:
                run.step()

        for _ in range(warmup):
            step_alone()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(warmup):
            step_packed()
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
        times_alone, times_packed = [], []
        for _ in range(repeats):
            times_alone.append(_timed(step_alone, device))
            times_packed.append(_timed(step_packed, device))
    ms_alone = statistics.median(times_alone) * 1000 / size
    ms_packed = statistics.median(times_packed) * 1000 / size
    row = {
        "method": method,
        "runs": size,
        "ms_per_run_iteration_alone": round(ms_alone, 2),
        "ms_per_run_iteration_packed": round(ms_packed, 2),
        "packed_over_alone": round(ms_packed / ms_alone, 3),
    }
    if device.type == "cuda":
        row["peak_gpu_memory_gib_alone_and_packed"] = round(peak / 2**30, 2)
    return row


def packing_table(
    params: Config,
    methods: list[str],
    packs: list[int],
    device: torch.device,
    warmup: int,
    repeats: int,
    distributions: list[Distribution] | None = None,
) -> list[dict]:
    """``packing_row`` for every method and pack size."""
    return [packing_row(params, m, p, device, warmup, repeats, distributions) for m in methods for p in packs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parameters", nargs="?", default="parameters/demo.yaml")
    parser.add_argument("--methods", nargs="+", default=["maml", "bmp", "mmsup"])
    parser.add_argument("--packs", nargs="+", type=int, default=[1, 2, 3, 6])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    params = load_params(args.parameters)
    device = resolve_device(params.device)
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    report: dict = {"parameters": str(args.parameters), "machine": machine, "torch": torch.__version__}
    for name, setting in (("demo", params), ("real", params.replace(**REAL_IMAGES))):
        report[name] = {
            "image_size": setting.image_size,
            "hidden_size": setting.hidden_size,
            "meta_batch_size": setting.meta_batch_size,
            "adaptation_steps": setting.adaptation_steps,
            "rows": packing_table(setting, args.methods, args.packs, device, args.warmup, args.repeats),
        }
        for row in report[name]["rows"]:
            print(name, json.dumps(row), flush=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{machine.split(',')[0].replace(' ', '_')}-packing.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
