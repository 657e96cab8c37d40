"""Time a whole meta-training step, the kit's against learn2learn's, in one process on one machine.

The kit's step is what a run does per iteration (``Run.step``): sample a meta-batch from the run's
training images, the task-batched inner loop, the meta-gradient, the gradient and weight norms, the Adam
step and the running sums of the training log. learn2learn's is its examples' loop
(examples/vision/maml_miniimagenet.py): a ``TaskDataset`` over the same training images (NWays, KShots,
LoadData, RemapLabels, ConsecutiveLabels), then per task ``clone``, ``adapt`` on the support set and
``backward`` of the query loss, then Adam. Both start from the same weights (learn2learn's CNN4 copied
into the kit's model) at the profile's sizes, with torch's default threads.

    python benchmarks/training_step.py parameters/demo.yaml --repeats 30

Prints both medians and their ratio and writes them, with the machine, to
``benchmarks/results/<machine>-training-step.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import learn2learn as l2l
import torch
import torch.nn.functional as F
from maml_iteration import timed

from gems_core.data import load_distributions
from gems_core.device import resolve_device
from gems_core.models import embedding_size, from_l2l_cnn4
from gems_core.params import Config, load_params
from gems_core.training import Run

RESULTS = Path(__file__).parent / "results"


def l2l_training_step(params: Config, images: torch.Tensor, labels: torch.Tensor, maml: l2l.algorithms.MAML):
    """learn2learn's meta-training step on ``images`` [N, 3, H, W] (float, in [0, 1]) with ``labels``."""
    ways, shots, queries = params.ways, params.shots, params.queries
    dataset = l2l.data.MetaDataset(torch.utils.data.TensorDataset(images, labels))
    transforms = [
        l2l.data.transforms.NWays(dataset, ways),
        l2l.data.transforms.KShots(dataset, shots + queries),
        l2l.data.transforms.LoadData(dataset),
        l2l.data.transforms.RemapLabels(dataset),
        l2l.data.transforms.ConsecutiveLabels(dataset),
    ]
    tasks = l2l.data.TaskDataset(dataset, task_transforms=transforms, num_tasks=-1)
    support = (torch.arange(ways * (shots + queries)) % (shots + queries)) < shots  # per class: shots, then queries
    optimizer = torch.optim.Adam(maml.parameters(), params.meta_lr)

    def step():
        optimizer.zero_grad()
        for _ in range(params.meta_batch_size):
            x, y = tasks.sample()
            learner = maml.clone()
            for _ in range(params.adaptation_steps):
                learner.adapt(F.cross_entropy(learner(x[support]), y[support]))
            (F.cross_entropy(learner(x[~support]), y[~support]) / params.meta_batch_size).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parameters", help="a parameters file; its sizes and training images are used")
    parser.add_argument("--method", default="maml", help="the kit's method to time (learn2learn's is MAML)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    params = load_params(args.parameters)
    device = resolve_device(params.device)
    distributions = load_distributions(params)
    torch.manual_seed(0)
    model = l2l.vision.models.CNN4(
        params.ways,
        hidden_size=params.hidden_size,
        embedding_size=embedding_size(params.image_size, params.hidden_size),
    ).to(device)
    with tempfile.TemporaryDirectory() as folder:
        run = Run(params, args.method, 21, distributions, Path(folder), device)
        run.members[0].learner.backbone.load_state_dict(
            {k.replace(".", "__"): v for k, v in from_l2l_cnn4(model).items()}
        )
        run.calibrate()
        train = run.splits["train"]
        labels = torch.repeat_interleave(torch.arange(len(train.class_count)), train.class_count)
        theirs = l2l_training_step(
            params,
            train.images.float().mul(1.0 / 255.0),
            labels,
            l2l.algorithms.MAML(model, lr=params.fast_lr, first_order=params.first_order),
        )
        ours_s = timed(run.step, device, args.warmup, args.repeats)
        theirs_s = timed(theirs, device, args.warmup, args.repeats)
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    report = {
        "parameters": str(args.parameters),
        "method": args.method,
        "machine": machine,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "kit_ms_per_iteration": round(ours_s * 1000, 1),
        "learn2learn_ms_per_iteration": round(theirs_s * 1000, 1),
        "speedup_over_learn2learn": round(theirs_s / ours_s, 2),
    }
    print(json.dumps(report, indent=1))
    RESULTS.mkdir(exist_ok=True)
    name = machine.split(",")[0].replace(" ", "_")
    (RESULTS / f"{name}-training-step.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
