"""Two kit processes training on one CPU at once, against one alone, with and without CPU sharing.

    python benchmarks/cpu_sharing.py                 # the demo's MAML, 40 iterations per run
    python benchmarks/cpu_sharing.py --iterations 100 --method bmp

Each configuration runs ``python -m gems_core.training`` on the demo's settings in fresh output folders
and reads each run's meta-training seconds (``train_seconds``: iterations only, no data loading or test)
from its results.json. Printed per configuration: seconds per iteration of each process, and the speed
of a process sharing the machine as a fraction of its speed alone (``gems_core.cpu_share``: each
process gets its share of the cores; ``GEMS_CPU_SHARE=0``: each takes every core, torch's default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def runs_at_once(params: dict, method: str, processes: int, share: bool, tmp: Path) -> list[float]:
    """Seconds per meta-iteration of each of ``processes`` runs trained at the same time."""
    procs, folders = [], []
    for i in range(processes):
        folder = tmp / f"{'share' if share else 'greedy'}-{processes}-{i}"
        path = folder.with_suffix(".yaml")
        path.write_text(yaml.safe_dump({**params, "output_root": str(folder)}))
        env = {**os.environ, "GEMS_CPU_SHARE": "1" if share else "0"}
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gems_core.training",
                    str(path),
                    "--method",
                    method,
                    "--seed",
                    str(21 + i),
                    "--no-progress",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
            )
        )
        folders.append(folder)
    if any(p.wait() for p in procs):
        raise SystemExit("a training process failed")
    results = [json.loads(next((f / "runs").glob("*/results.json")).read_text()) for f in folders]
    return [r["train_seconds"] / r["iterations"] for r in results]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="maml")
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args()
    params = yaml.safe_load((ROOT / "parameters" / "demo.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        params.update(
            iterations=args.iterations,
            validation_every=10**6,
            checkpoint_every=10**6,
            test_tasks=10,
            data_root=str(Path(tmp) / "data"),
        )
        runs_at_once(params, args.method, 1, True, Path(tmp))  # builds the image caches once, untimed
        alone = runs_at_once(params, args.method, 1, True, Path(tmp))[0]
        print(f"{os.cpu_count()} cores; {args.method}, demo settings, {args.iterations} iterations per run")
        print(f"alone: {alone:.3f} s/iteration")
        for share in (False, True):
            both = runs_at_once(params, args.method, 2, share, Path(tmp))
            label = "two at once, sharing" if share else "two at once, each on every core (GEMS_CPU_SHARE=0)"
            print(
                f"{label}: {' and '.join(f'{s:.3f}' for s in both)} s/iteration, "
                f"each at {alone / max(both):.2f}-{alone / min(both):.2f} of its speed alone"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
