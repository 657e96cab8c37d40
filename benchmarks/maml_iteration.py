"""Time one meta-iteration (forward, inner loop, meta-gradient, Adam step) of the kit's batched MAML
against learn2learn's MAML, in the same process, on the same weights and tasks.

    python benchmarks/maml_iteration.py                 # the paper's configuration, on cuda if present
    python benchmarks/maml_iteration.py --image-size 28 --hidden 32 --queries 5 --device cpu

Prints both times (median of --repeats after --warmup), their ratio, the machine, and the memory of
one gems_core meta-iteration: the bytes autograd saves for the backward pass (device-independent,
the dominant term) and, on a GPU, the peak memory allocated.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import learn2learn as l2l
import torch
import torch.nn.functional as F

from gems_core.data.tasks import TaskBatch
from gems_core.learners import MAML
from gems_core.models import embedding_size, from_l2l_cnn4


def make_tasks(args, device) -> TaskBatch:
    gen = torch.Generator().manual_seed(0)
    t, w, s = args.meta_batch, args.ways, args.image_size
    labels = torch.arange(w)
    return TaskBatch(
        torch.rand(t, w * args.shots, 3, s, s, generator=gen).to(device),
        labels.repeat_interleave(args.shots).expand(t, -1).to(device),
        torch.rand(t, w * args.queries, 3, s, s, generator=gen).to(device),
        labels.repeat_interleave(args.queries).expand(t, -1).to(device),
        torch.zeros(t, dtype=torch.long, device=device),
    )


def l2l_maml_step(maml: l2l.algorithms.MAML, batch: TaskBatch, steps: int):
    """One meta-iteration of learn2learn's MAML as its examples write it: per task, clone, adapt
    ``steps`` times on the support set, backpropagate the query loss; then one Adam step."""
    optimizer = torch.optim.Adam(maml.parameters(), 1e-4)
    tasks = len(batch)

    def step():
        optimizer.zero_grad()
        for t in range(tasks):
            learner = maml.clone()
            for _ in range(steps):
                learner.adapt(F.cross_entropy(learner(batch.support_x[t]), batch.support_y[t]))
            (F.cross_entropy(learner(batch.query_x[t]), batch.query_y[t]) / tasks).backward()
        optimizer.step()

    return step


def timed(step, device, warmup, repeats) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def saved_tensor_bytes(step) -> int:
    """Bytes of the distinct tensor storages autograd saves for backward while ``step`` runs."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(storages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-size", type=int, default=84)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--meta-batch", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--fast-lr", type=float, default=0.01)
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = l2l.vision.models.CNN4(
        args.ways, hidden_size=args.hidden, embedding_size=embedding_size(args.image_size, args.hidden)
    ).to(device)
    theirs = l2l.algorithms.MAML(model, lr=args.fast_lr, first_order=args.first_order)
    ours = MAML(
        args.ways, args.image_size, args.hidden, args.fast_lr, args.steps, args.first_order, init=from_l2l_cnn4(model)
    ).to(device)
    opt_ours = torch.optim.Adam(ours.parameters(), 1e-4)
    batch = make_tasks(args, device)
    step_theirs = l2l_maml_step(theirs, batch, args.steps)

    def step_ours():
        opt_ours.zero_grad()
        ours.meta_loss(batch)[0].backward()
        opt_ours.step()

    t_theirs = timed(step_theirs, device, args.warmup, args.repeats)
    t_ours = timed(step_ours, device, args.warmup, args.repeats)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    saved = saved_tensor_bytes(step_ours)
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    order = "first" if args.first_order else "second"
    print(
        f"config: {args.ways}-way {args.shots}-shot, {args.queries} queries, meta-batch {args.meta_batch}, "
        f"{args.steps} steps, {args.image_size}px, {args.hidden} filters, {order} order"
    )
    print(f"device: {device} ({machine}), torch {torch.__version__}")
    print(f"learn2learn MAML: {t_theirs * 1000:.1f} ms/iteration")
    print(f"gems_core MAML:   {t_ours * 1000:.1f} ms/iteration")
    print(f"ratio learn2learn / gems_core: {t_theirs / t_ours:.2f}x")
    print(f"gems_core meta-iteration: {saved / 2**20:.0f} MiB of tensors saved for backward")
    if device.type == "cuda":
        print(
            "gems_core meta-iteration: peak GPU memory allocated "
            f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
        )


if __name__ == "__main__":
    main()
