"""BMP and MMSUP: masked inner loops, reduction to MAML, gradients reaching what they should."""

import pytest
import torch
from test_masks import kept_count

from gems_core.data.tasks import TaskBatch
from gems_core.learners import BMP, MAML, MMSUP
from gems_core.masks import MAX_SPARSITY
from gems_core.models import init_conv4

WAYS, SIZE, HIDDEN, TASKS = 3, 16, 6, 2


def _batch(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(WAYS)
    return TaskBatch(
        torch.rand(TASKS, WAYS, 3, SIZE, SIZE, generator=gen, dtype=dtype),
        labels.expand(TASKS, -1),
        torch.rand(TASKS, 2 * WAYS, 3, SIZE, SIZE, generator=gen, dtype=dtype),
        labels.repeat_interleave(2).expand(TASKS, -1),
        torch.zeros(TASKS, dtype=torch.long),
    )


def _bmp(final_bias, **kwargs):
    init = init_conv4(WAYS, SIZE, HIDDEN, seed=3, dtype=torch.float64)
    kwargs.setdefault("embedding", "log_rms")  # needs no calibration; the masks are set by final_bias here
    bmp = BMP(WAYS, SIZE, HIDDEN, fast_lr=0.3, steps=2, init=init, **kwargs).double()
    with torch.no_grad():
        bmp.mask_mlp[-1].bias.copy_(torch.as_tensor(final_bias, dtype=torch.float64))
    return bmp, init


def _meta_grads(learner, batch):
    loss, _, _ = learner.meta_loss(batch)
    return dict(zip(learner.names, torch.autograd.grad(loss, list(learner.initial().values()))))


def test_bmp_layer_with_mask_zero_keeps_its_meta_learned_value():
    bmp, init = _bmp([100.0, -100.0, 100.0, -100.0, 100.0])  # layers 2 and 4 frozen in every step
    adapted, choices = bmp.adapt(_batch().support_x, _batch().support_y, create_graph=False)
    for name in bmp.layers[1] + bmp.layers[3]:
        assert torch.equal(adapted[name], init[name].expand_as(adapted[name])), name
    for name in ("conv1.weight", "conv3.weight", "head.weight"):
        assert not torch.allclose(adapted[name], init[name].expand_as(adapted[name])), name
    assert choices["layer_masks"].tolist() == [[[1, 0, 1, 0, 1]] * 2] * TASKS
    assert bmp.probe(bmp.predict(_batch())[1])["layer_masks"].tolist() == [[[1, 0, 1, 0, 1]] * 2] * TASKS


def test_bmp_with_all_masks_one_has_mamls_meta_gradient():
    bmp, init = _bmp([100.0] * 5)
    maml = MAML(WAYS, SIZE, HIDDEN, fast_lr=0.3, steps=2, init=init).double()
    ours, reference = _meta_grads(bmp, _batch()), _meta_grads(maml, _batch())
    for name in reference:
        assert torch.allclose(ours[name], reference[name], rtol=1e-10, atol=1e-14), name


def test_bmp_mlp_and_inp_embedding_receive_gradient():
    bmp, _ = _bmp([0.5, -0.5, 0.5, -0.5, 0.5])
    loss, _, _ = bmp.meta_loss(_batch())
    loss.backward()
    assert bmp.inp_embedding.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in bmp.mask_mlp.parameters())


def _mmsup(sparsity=0.5, learn=True, seed=3):
    init = init_conv4(WAYS, SIZE, HIDDEN, seed=seed, dtype=torch.float64)
    return MMSUP(
        WAYS, SIZE, HIDDEN, fast_lr=0.3, steps=2, init=init, sparsity_init=sparsity, learn_sparsity=learn
    ).double()


def test_mmsup_forward_zeroes_the_right_fraction_of_each_conv_layer():
    for sparsity in (0.1, 0.5, 0.8):
        mmsup = _mmsup(sparsity)
        seen = {}
        original = mmsup.supermask

        def spy(name, weight, kept=None, original=original, seen=seen):
            out = original(name, weight, kept)
            seen[name] = (out == 0).flatten(1).double().mean(1)
            return out

        mmsup.supermask = spy
        mmsup.forward_model(
            {k: v.unsqueeze(0).expand(TASKS, *v.shape) for k, v in mmsup.initial().items()}, _batch().query_x
        )
        assert len(seen) == 4
        for name, zero_fraction in seen.items():
            n = mmsup.backbone[name.replace(".", "__")].numel()
            assert torch.allclose(zero_fraction, torch.tensor(1 - kept_count(n, sparsity) / n, dtype=torch.float64))


def test_mmsup_fixed_sparsity_never_moves():
    mmsup = _mmsup(learn=False)
    opt = torch.optim.Adam(mmsup.parameters(), lr=0.05)
    for seed in range(3):
        opt.zero_grad()
        mmsup.meta_loss(_batch(seed=seed))[0].backward()
        opt.step()
        mmsup.after_update()
    assert (mmsup.sparsity.detach() == 0.5).all()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_mmsup_sparsity_gradient_has_the_direction_of_the_loss(sign):
    """A loss that rewards keeping weights (-sum of the masked weights) must push sparsity down: its
    gradient w.r.t. sparsity is positive; the opposite loss gives the opposite sign."""
    mmsup = _mmsup()
    weight = mmsup.backbone["conv2__weight"].detach().abs().unsqueeze(0) + 0.01  # positive: keeping adds
    loss = -sign * mmsup.supermask("conv2.weight", weight).sum()
    loss.backward()
    grad = mmsup.sparsity.grad
    assert torch.sign(grad[1]) == sign and (grad[[0, 2, 3]] == 0).all()


def test_mmsup_sparsity_stays_in_range_and_comes_back_from_a_bound():
    mmsup = _mmsup(sparsity=0.9)
    opt = torch.optim.SGD([mmsup.sparsity], lr=0.5)
    for _ in range(3):  # a gradient pushing sparsity up, hard: it stops at the bound
        opt.zero_grad()
        mmsup.sparsity.grad = torch.full((4,), -1.0, dtype=torch.float64)
        opt.step()
        mmsup.after_update()
        assert (mmsup.sparsity.detach() == MAX_SPARSITY).all()
    opt.zero_grad()
    mmsup.sparsity.grad = torch.full((4,), 0.1, dtype=torch.float64)  # then pointing inwards: it leaves at once
    opt.step()
    mmsup.after_update()
    assert torch.allclose(mmsup.sparsity.detach(), torch.full((4,), MAX_SPARSITY - 0.05, dtype=torch.float64))
    assert mmsup.train_record() == {f"sparsity_conv{i}": pytest.approx(MAX_SPARSITY - 0.05) for i in range(1, 5)}
    mmsup.sparsity.grad = torch.full((4,), 10.0, dtype=torch.float64)
    opt.step()
    mmsup.after_update()
    assert (mmsup.sparsity.detach() == 0).all()


def test_mmsup_masks_differ_between_tasks_after_adaptation():
    mmsup = _mmsup()
    probe = mmsup.probe(mmsup.predict(_batch())[1])
    masks = probe["masks_conv2"]
    assert masks.shape[0] == TASKS and not torch.equal(masks[0], masks[1])
    summary = mmsup.summarize_probes({"a": [probe], "b": [probe]})
    assert 0 < summary["overlap"]["conv2"]["a|a"] < 1 and set(summary["overlap"]) == {
        "conv1",
        "conv2",
        "conv3",
        "conv4",
    }


# Spread of the MLP's first-step outputs between tasks of two distributions, relative to their size:
# the paper form measures 0.002-0.021 here (5 initialisations) and 0.003 on Omniglot vs Caltech-101 at
# 84 px; standardized measures 0.21-0.87 here and 0.37 there (tools/bmp_embedding_study.py).
SPREAD_THRESHOLD = 0.15


def _two_distribution_tasks(tiny_params, n=12):
    """Fixed training tasks of each of two synthetic distributions, and tasks of both to calibrate on."""
    from gems_core.data import SplitImages, TaskSampler, load_distributions

    params = tiny_params(image_size=28, hidden_size=16, ways=5, queries=3)
    dists = load_distributions(params)
    split = SplitImages([d.splits["train"] for d in dists], torch.device("cpu"), 4)
    batches = [TaskSampler(split, [i], 5, 1, 3, seed=i).sample(n) for i in range(2)]
    return params, batches, TaskSampler(split, [0, 1], 5, 1, 3, seed=9).sample(32)


def test_bmp_default_embedding_lets_the_mask_see_the_task(tiny_params):
    """At initialisation, the MLP's first-step outputs must differ between tasks of different
    distributions by a margin comparable to their size, so that some task pairs get different masks.
    The supplement's literal embedding (per-layer means) fails this: its outputs are the MLP's biases."""
    from gems_core.params import SCHEMA

    params, (a_tasks, b_tasks), calibration = _two_distribution_tasks(tiny_params)
    assert SCHEMA["bmp_embedding"].default == "standardized"
    spreads, differ = {}, []
    for form in ("paper", "standardized"):
        for seed in range(5):
            torch.manual_seed(seed)  # the MLP's initialisation, as a run seeds it
            bmp = BMP.from_params(params.replace(bmp_embedding=form), seed=seed)
            bmp.calibrate(calibration)
            a, b = bmp.first_step_logits(a_tasks), bmp.first_step_logits(b_tasks)
            spread = float((a[:, None] - b[None]).abs().mean() / torch.cat([a, b]).abs().mean())
            spreads.setdefault(form, []).append(spread)
            if form == "standardized":
                differ.append(bool(((a[:, None] > 0) != (b[None] > 0)).any()))
    assert max(spreads["paper"]) < 0.05 < SPREAD_THRESHOLD < min(spreads["standardized"])
    assert any(differ), "no MLP initialisation gave two tasks of different distributions different masks"


def test_bmp_calibration_centres_and_scales_the_first_step_embedding(tiny_params):
    params, _, calibration = _two_distribution_tasks(tiny_params)
    bmp = BMP.from_params(params, seed=0)
    assert bmp.calibration_tasks() > 0
    bmp.calibrate(calibration)
    assert bmp.calibration_tasks() == 0
    standardized = bmp.standardize(bmp.first_step_embedding(calibration))
    assert torch.allclose(standardized.mean(0), torch.zeros(10), atol=1e-5)
    spread = standardized.std(0)
    gradient_entries, weight_entries = spread[1::2], spread[0::2]
    assert torch.allclose(gradient_entries, torch.ones(5), atol=1e-4)  # tasks differ in their gradients
    assert (weight_entries < 1e-3).all()  # every task starts from the same weights: centred, not magnified


def test_jaccard_on_hand_made_masks():
    from gems_core.learners.mmsup import jaccard

    a = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0]], dtype=torch.float)
    # pairs within a: (0,1) 1/3, (0,2) 1, (1,2) 1/3
    assert jaccard(a, a, same=True) == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    b = torch.tensor([[0, 0, 1, 1]], dtype=torch.float)
    assert jaccard(a, b, same=False) == pytest.approx((0 + 1 / 3 + 0) / 3)


def test_probe_summaries_on_hand_made_probes():
    bmp, _ = _bmp([1.0] * 5)
    masks = torch.tensor([[[1, 0, 1, 0, 0], [1, 1, 1, 0, 0]], [[1, 0, 0, 0, 1], [1, 0, 0, 0, 1]]], dtype=torch.float)
    summary = bmp.summarize_probes({"a": [{"layer_masks": masks[:1]}, {"layer_masks": masks[1:]}]})["a"]
    assert summary["layer_adapt_frequency"] == pytest.approx([1.0, 0.25, 0.5, 0.0, 0.5])
    assert summary["layer_adapt_frequency_by_step"] == [[1.0, 0.0, 0.5, 0.0, 0.5], [1.0, 0.5, 0.5, 0.0, 0.5]]
    mmsup = _mmsup()
    final = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    initial = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0]], dtype=torch.bool)
    record = {f"{kind}_conv{i}": m for i in range(1, 5) for kind, m in (("masks", final), ("initial", initial))}
    summary = mmsup.summarize_probes({"a": [record], "b": [record]})
    assert summary["overlap"]["conv3"] == pytest.approx(
        {"a|a": 1 / 3, "a|b": (1 + 1 / 3 + 1 / 3 + 1) / 4, "b|b": 1 / 3}
    )
    assert summary["changed_during_adaptation"]["conv1"] == {"a": 0.25, "b": 0.25}  # 2 of 8 entries differ
