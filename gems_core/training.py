"""Meta-training runs: one method, one seed, one folder; resumable after a kill at any point.

A run folder ``outputs/<profile>/runs/<run_id>/`` holds ``params.json`` (the resolved parameters),
``metrics.csv`` (learning curve), ``checkpoint.pt`` (everything needed to continue bit for bit:
weights, optimiser, samplers' and torch's random states, the curve so far) and, once the run is
complete, ``results.json``. Every file is written atomically. Meta-test runs on fixed task sets, so
every method and seed of a profile is tested on the same tasks.

Command line (one run, e.g. from a cluster job): ``python -m gems_core.training PARAMS.yaml --method maml --seed 21``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import io
from .data import (SPLITS, Distribution, FixedTasks, ImagePool, TaskBatch, TaskSampler, check_against_data,
                   load_distributions)
from .evaluation import evaluate
from .learners import LEARNERS
from .params import METHODS, ParameterError, load_params

EVAL_SEED = 10_000  # fixed validation/test task sets: the same for every method and seed of a profile
# Parameters that do not change a run's outcome, left out of its folder's hash.
BOOKKEEPING = ("profile", "output_root", "data_root", "device", "seeds", "methods", "ablation_methods",
               "ablation_adaptation_steps", "ablation_fast_lr", "ablation_sparsity", "ablation_iterations",
               "convergence_iterations")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParameterError("parameter 'device' is 'cuda' but torch sees no CUDA device; valid here: 'cpu' or 'auto'")
    return torch.device(name)


def run_id(params: dict, method: str, seed: int) -> str:
    """Folder name of a run: method, seed and a hash of every parameter that changes its outcome
    (another method's own parameters, named ``<method>_*``, do not)."""
    others = tuple(f"{m}_" for m in METHODS if m != method)
    relevant = {k: v for k, v in params.items() if k not in BOOKKEEPING and not k.startswith(others)}
    digest = hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]
    return f"{method}-seed{seed}-{digest}"


@dataclass
class Member:
    """One learner with its optimiser and task sampler (Multi-MAML has one per distribution)."""

    learner: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sampler: TaskSampler
    distributions: list[int]  # indices of the distributions it trains on (and is tested on)

    def update(self, meta_batch_size: int) -> tuple[torch.Tensor, torch.Tensor, TaskBatch]:
        """One meta-update on a fresh meta-batch; returns (meta-loss, per-task query accuracy, the batch)."""
        batch = self.sampler.sample(meta_batch_size)
        loss, acc = self.learner.meta_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss, acc, batch


@dataclass
class RunState:
    iteration: int = 0
    train_seconds: float = 0.0
    rows: list = field(default_factory=list)
    interval: list = field(default_factory=list)  # (loss, accuracy) since the last metrics row


class Run:
    """A meta-training run of ``method`` with ``seed`` on ``distributions``, kept in ``folder``."""

    def __init__(self, params: dict, method: str, seed: int, distributions: list[Distribution], folder: Path,
                 device: torch.device):
        self.params, self.method, self.seed, self.device = params, method, seed, device
        self.distributions, self.folder = distributions, Path(folder)
        need = params["shots"] + params["queries"]
        self.pools = {split: [ImagePool(d.splits[split], device, need) for d in distributions] for split in SPLITS}
        self.members = self._members()
        self.state = RunState()
        self._fixed: dict[str, dict[int, FixedTasks]] = {}

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "checkpoint.pt"

    def _members(self) -> list[Member]:
        p = self.params
        groups = [[i] for i in range(len(self.distributions))] if self.method == "multi_maml" \
            else [list(range(len(self.distributions)))]
        members = []
        for m, group in enumerate(groups):
            torch.manual_seed(self.seed)
            learner = LEARNERS[self.method].from_params(p, seed=self.seed).to(self.device)
            if p["task_sampling"] == "proportional":
                weights = [len(self.pools["train"][i].classes) for i in group]
            else:
                weights = None
            sampler = TaskSampler([self.pools["train"][i] for i in group], p["ways"], p["shots"], p["queries"],
                                  seed=self.seed * 1000 + m, weights=weights)
            members.append(Member(learner, torch.optim.Adam(learner.parameters(), lr=p["meta_lr"]), sampler, group))
        return members

    # --- persistence -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        io.save_torch(self.checkpoint_path, {
            "state": self.state.__dict__,
            "members": [{"learner": m.learner.state_dict(), "optimizer": m.optimizer.state_dict(),
                         "sampler": m.sampler.state_dict()} for m in self.members],
            "torch_rng": torch.get_rng_state(),
        })
        io.write_text(self.folder / "metrics.csv", pd.DataFrame(self.state.rows).to_csv(index=False))

    def load_checkpoint(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        # Loaded on the CPU: random-number states must stay CPU tensors; weights and optimiser state
        # are copied onto the run's device by load_state_dict.
        ckpt = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        self.state = RunState(**ckpt["state"])
        for member, saved in zip(self.members, ckpt["members"]):
            member.learner.load_state_dict(saved["learner"])
            member.optimizer.load_state_dict(saved["optimizer"])
            member.sampler.load_state_dict(saved["sampler"])
        torch.set_rng_state(ckpt["torch_rng"])
        return True

    # --- training ----------------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> None:
        """One meta-iteration of every member; adds its wall-clock time to train_seconds."""
        self._sync()
        start = time.perf_counter()
        for member in self.members:
            loss, acc, _ = member.update(self.params["meta_batch_size"])
            self.state.interval.append((loss.item(), acc.mean().item()))
        self._sync()
        self.state.train_seconds += time.perf_counter() - start
        self.state.iteration += 1

    def learner_for(self, distribution: int) -> torch.nn.Module:
        return next(m.learner for m in self.members if distribution in m.distributions)

    def fixed_tasks(self, split: str) -> dict[int, FixedTasks]:
        """The fixed validation or test tasks of every distribution (drawn once per run object)."""
        if split not in self._fixed:
            p = self.params
            n_tasks = p["validation_tasks"] if split == "validation" else p["test_tasks"]
            self._fixed[split] = {i: FixedTasks(pool, n_tasks, p["ways"], p["shots"], p["queries"], EVAL_SEED + i,
                                                pool_id=i) for i, pool in enumerate(self.pools[split])}
        return self._fixed[split]

    def log_row(self, validation: dict[int, FixedTasks]) -> None:
        losses, accs = zip(*self.state.interval)
        row = {"iteration": self.state.iteration, "train_loss": sum(losses) / len(losses),
               "train_accuracy": sum(accs) / len(accs)}
        for i, tasks in validation.items():
            row[f"val_accuracy_{self.distributions[i].name}"] = evaluate(
                self.learner_for(i), tasks, self.params["meta_batch_size"])["accuracy"]
        row["val_accuracy"] = sum(row[f"val_accuracy_{d.name}"] for d in self.distributions) / len(self.distributions)
        for member in self.members:
            row.update(getattr(member.learner, "train_record", dict)())
        row["train_seconds"] = self.state.train_seconds
        self.state.rows.append(row)
        self.state.interval = []

    def train(self, progress: bool = True) -> None:
        p = self.params
        validation = self.fixed_tasks("validation")
        bar = tqdm(total=p["iterations"], initial=self.state.iteration, disable=not progress, leave=False,
                   desc=f"{self.method} seed {self.seed}", unit="it")
        while self.state.iteration < p["iterations"]:
            self.step()
            bar.update(1)
            it = self.state.iteration
            if it % p["validation_every"] == 0 or it == p["iterations"]:
                self.log_row(validation)
                bar.set_postfix(val_acc=f"{self.state.rows[-1]['val_accuracy']:.3f}")
            if it % p["checkpoint_every"] == 0 or it == p["iterations"]:
                self.save_checkpoint()
        bar.close()

    # --- meta-test ---------------------------------------------------------------------------
    def test(self) -> dict:
        results, records = {}, {}
        for i, tasks in self.fixed_tasks("test").items():
            outcome = evaluate(self.learner_for(i), tasks, self.params["meta_batch_size"])
            name = self.distributions[i].name
            results[name] = {k: outcome[k] for k in ("accuracy", "ci95", "tasks")}
            if outcome["records"]:
                records[name] = outcome["records"]
        summarize = getattr(self.members[0].learner, "summarize_records", None)
        return {"test": results, "records": summarize(records) if summarize and records else {}}

    def run(self, progress: bool = True) -> dict:
        """Train (resuming if a checkpoint exists), test, write results.json; return the results."""
        self.folder.mkdir(parents=True, exist_ok=True)
        io.write_json(self.folder / "params.json", {**self.params, "method": self.method, "seed": self.seed})
        self.load_checkpoint()
        self.train(progress)
        results = {"complete": True, "method": self.method, "seed": self.seed,
                   "train_datasets": [d.name for d in self.distributions], "iterations": self.state.iteration,
                   "train_seconds": self.state.train_seconds, "device": str(self.device), **self.test()}
        io.write_json(self.folder / "results.json", results)
        return results


def run_folder(params: dict, method: str, seed: int) -> Path:
    return Path(params["output_root"]) / params["profile"] / "runs" / run_id(params, method, seed)


def open_run(params: dict, method: str, seed: int, distributions: list[Distribution]) -> Run:
    """The Run of ``method`` and ``seed`` in its profile's run folder, on the parameters' device."""
    return Run(params, method, seed, distributions, run_folder(params, method, seed), resolve_device(params["device"]))


def run_method(params: dict, method: str, seed: int, distributions: list[Distribution] | None = None,
               progress: bool = True) -> dict:
    """Run (or resume, or read back) one method and seed; distributions are loaded if not given."""
    results = run_folder(params, method, seed) / "results.json"
    if results.exists():
        return json.loads(results.read_text())
    distributions = distributions if distributions is not None else load_distributions(params)
    check_against_data(params, distributions)
    return open_run(params, method, seed, distributions).run(progress)


def run_methods(params: dict, methods: list[str], distributions: list[Distribution] | None = None) -> list[dict]:
    """Run (or resume, or read back) every seed of each of ``methods`` that the profile asks for."""
    distributions = distributions if distributions is not None else load_distributions(params)
    wanted = [m for m in methods if m in params["methods"]]
    jobs = [(m, s) for m in wanted for s in params["seeds"]]
    return [run_method(params, m, s, distributions) for m, s in tqdm(jobs, desc="runs", unit="run")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one method with one seed (resumes if interrupted).")
    parser.add_argument("parameters")
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    params = load_params(args.parameters, methods=[args.method])
    results = run_method(params, args.method, args.seed, progress=not args.no_progress)
    print(json.dumps(results["test"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
