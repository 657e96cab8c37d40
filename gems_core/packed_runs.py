"""Runs trained as a pack (``packing.Pack``): the seeds of one method at one setting, their meta-updates
batched into one step. Each run keeps everything else its own: its lock, folder, checkpoints, metrics,
divergence watch, meta-test and results.json, written as a run trained alone writes them (its
``train_seconds`` is the pack's wall time, and ``packed_with`` names the other runs).

A pack whose runs are at different iterations (one resumed, one new) first lets the ones behind catch up
alone to the furthest, then packs them. A run that diverges leaves the pack at the next check, with its
outcome written; the others go on as a smaller pack. On a stop (SIGTERM) every run saves its checkpoint
before the pack stops, so a killed pack resumes every run where it was.

    python -m gems_core.training PARAMS.yaml --method bmp --seed 21 --seed 42 --seed 56   # one pack
"""

from __future__ import annotations

from contextlib import ExitStack

from tqdm.auto import tqdm

from .data import Distribution, check_against_data, load_distributions
from .divergence import Diverged
from .graphs import GraphedStep
from .learners import METHODS
from .packing import Pack
from .params import Config
from .runs import RunFiles, holding
from .stopping import Stopped
from .training import Run, open_run, progress_bar, read_back_or_set_aside, run_method


def run_packed(
    params: Config, method: str, seeds: list[int], distributions: list[Distribution] | None = None, progress=True
) -> dict[int, dict | None]:
    """Run (or resume, or read back) ``method``'s runs with ``seeds`` as one pack, each under its lock: a run
    another process holds is left to it (None). A control matched to another method's runs trains alone
    (its options differ from seed to seed)."""
    if len(seeds) == 1 or METHODS[method].matched_to is not None:
        return {s: run_method(params, method, s, distributions, progress, wait=False) for s in seeds}
    outcomes: dict[int, dict | None] = {}
    with ExitStack() as locks:
        todo = []
        for seed in seeds:
            files = RunFiles(params, method, seed)
            if (done := files.intact_results()) is not None:
                outcomes[seed] = done
            elif not locks.enter_context(holding(files.path, params.output_root, wait=False)):
                outcomes[seed] = None  # another process trains it
            elif (done := read_back_or_set_aside(files)) is not None:
                outcomes[seed] = done
            else:
                todo.append(seed)
        if todo:
            distributions = distributions if distributions is not None else load_distributions(params)
            check_against_data(params, distributions)
            runs = [open_run(params, method, seed, distributions) for seed in todo]
            outcomes.update(zip(todo, run_pack(runs, progress)))
    return {s: outcomes[s] for s in seeds}


def run_pack(runs: list[Run], progress: bool = True) -> list[dict]:
    """Train ``runs`` as one pack, then test each and write its results.json; their results, in order."""
    begun = [run.begin(progress) for run in runs]
    ids = [run.files.run_id for run in runs]
    for i, results in enumerate(begun):
        results["packed_with"] = [other for other in ids if other != ids[i]]
    with runs[0].cpu_share:
        diverged = train_pack(runs, progress)
        return [run.end(results, diverged.get(i)) for i, (run, results) in enumerate(zip(runs, begun))]


def train_pack(runs: list[Run], progress: bool = True) -> dict[int, Diverged]:
    """Meta-train ``runs`` to their ``iterations`` in lockstep; the runs that diverged, by index."""
    diverged: dict[int, Diverged] = {}
    furthest = max(run.state.iteration for run in runs)
    for i, run in enumerate(runs):  # calibrate where new, and catch up alone to the furthest
        try:
            run.train(progress, until=furthest)
        except Diverged as exc:
            diverged[i] = exc
    active = [i for i, run in enumerate(runs) if i not in diverged and not run.trained]
    while active:
        newly = _lockstep([runs[i] for i in active], progress)
        diverged.update({active[j]: exc for j, exc in newly.items()})
        active = [i for i in active if i not in diverged and not runs[i].trained]
    return diverged


def _lockstep(runs: list[Run], progress: bool) -> dict[int, Diverged]:
    """Train ``runs`` (at one iteration) as one pack until they are trained or some diverge (by index; the
    others' weights are written back, ready to pack again)."""
    pack = Pack([member for run in runs for member in run.members])
    first = runs[0]
    step = pack.update
    if first.graphed:
        generators = [m.sampler.gen for m in pack.members]
        step = GraphedStep(pack.update, generators, f"{first.method} pack of {len(runs)}")
    label = f"{first.method} seeds {', '.join(str(r.seed) for r in runs)} (a pack)"
    bar = progress_bar(label, first.params.iterations, first.state.iteration, progress)
    diverged: dict[int, Diverged] = {}
    stopped: Stopped | None = None
    for run in runs:
        run.start_clock()
    try:
        while not first.trained and not diverged:
            step()
            for run in runs:
                run.count_step()
            bar.update(1)
            first.cpu_share.rebalance()
            if any(run.due() for run in runs):
                pack.sync()
            for i, run in enumerate(runs):
                try:
                    run.after_step(bar)
                except Diverged as exc:
                    run.stop_clock()
                    diverged[i] = exc
                except Stopped as exc:  # the others save their checkpoints too before the pack stops
                    stopped = exc
            if stopped is not None:
                raise stopped
        pack.sync()
    finally:
        bar.close()
    for i, why in diverged.items():
        tqdm.write(f"{runs[i].label} leaves its pack: {why}")
    return diverged
