"""What only a GPU can show: the captured CUDA graph computes what the eager step computes, the hot loop
never waits for the device, and deterministic runs repeat bit for bit. Skipped without CUDA."""

import pytest
import torch
from conftest import GPU

from gems_core.data import load_distributions
from gems_core.params import METHODS
from gems_core.training import Run

pytestmark = GPU


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Parameters and distributions at small settings on CUDA."""
    from gems_core.params import validate

    tmp = tmp_path_factory.mktemp("gpu")
    params = validate(
        dict(
            distributions=[
                {"name": "glyphs", "source": "synthetic_glyphs"},
                {"name": "shapes", "source": "synthetic_shapes"},
            ],
            image_size=28,
            synthetic_classes=30,
            synthetic_images_per_class=8,
            hidden_size=16,
            ways=5,
            shots=1,
            queries=3,
            meta_batch_size=4,
            adaptation_steps=3,
            fast_lr=0.1,
            meta_lr=1.0e-3,
            iterations=8,
            seeds=[21],
            test_tasks=10,
            validation_tasks=10,
            validation_every=4,
            checkpoint_every=4,
            device="cuda",
            data_root=str(tmp / "data"),
            output_root=str(tmp / "outputs"),
            profile="gpu",
        )
    )
    return params, load_distributions(params), tmp


def _trained(small, method, iterations, **overrides) -> Run:
    params, dists, tmp = small
    params = params.replace(**overrides)
    run = Run(params, method, 21, dists, tmp / f"{method}-{sorted(overrides.items())}", torch.device("cuda"))
    run.calibrate()
    for _ in range(iterations):
        run.step()
    torch.cuda.synchronize()
    return run


def _weights(run: Run) -> list[torch.Tensor]:
    return [p.detach().clone() for m in run.members for p in m.learner.parameters()]


@pytest.mark.parametrize("method", METHODS)
def test_cuda_graph_step_equals_the_eager_step(small, method):
    # 3 eager warm-up iterations, the capture, then replays: 7 iterations exercise all three
    graphed = _trained(small, method, 7, cuda_graph=True, deterministic=True)
    eager = _trained(small, method, 7, cuda_graph=False, deterministic=True)
    assert all(step.graph is not None and step.failed is None for step in graphed.steps.steps)
    for a, b in zip(_weights(graphed), _weights(eager)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for ma, mb in zip(graphed.members, eager.members):
        for k in mb.sums:
            torch.testing.assert_close(ma.sums[k], mb.sums[k], rtol=1e-5, atol=1e-6)
    # the replays trained: the weights moved after the capture
    assert not all(torch.equal(a, b) for a, b in zip(_weights(graphed), _weights(_trained(small, method, 4))))


@pytest.mark.parametrize("cuda_graph", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_meta_iterations_never_wait_for_the_gpu(small, method, cuda_graph):
    run = _trained(small, method, 4, cuda_graph=cuda_graph)  # warm-up and capture happen before the check
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            run.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_runs_repeat_bit_for_bit(small, method):
    first, second = (_trained(small, method, 6, deterministic=True) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(_weights(first), _weights(second)))
    tasks = first.fixed_tasks("test")[0]
    assert first.evaluate("test", 0)["accuracy"] == second.evaluate("test", 0)["accuracy"] and len(tasks) == 10


def test_evaluation_batches_many_tasks_and_keeps_no_graph(small, monkeypatch):
    run = _trained(small, "bmp", 2)
    learner = run.learner_for(1)
    sizes, evaluate = [], learner.evaluate
    monkeypatch.setattr(learner, "evaluate", lambda batch: sizes.append(len(batch)) or evaluate(batch))
    outcome = run.evaluate("test", 1)
    assert outcome["tasks"] == 10 and 0 <= outcome["accuracy"] <= 1
    assert sizes == [10]  # all ten test tasks adapted in one batch, not one by one
    logits, _ = learner.predict(run.fixed_tasks("test")[1].task(0))
    assert logits.grad_fn is None and not logits.requires_grad
