"""The kit's MAML against learn2learn's, in float64: same initial weights, same tasks, same meta-gradient."""

import learn2learn as l2l
import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES

from gems_core.data.tasks import TaskBatch
from gems_core.learners import BMP, MAML, MMSUP
from gems_core.models import conv4_forward, embedding_size, from_l2l_cnn4, init_conv4

WAYS, SHOTS, QUERIES, SIZE, HIDDEN, TASKS, STEPS, LR = 3, 2, 2, 20, 6, 3, 2, 0.3


def _tasks(seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    sx = torch.rand(TASKS, WAYS * SHOTS, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
    qx = torch.rand(TASKS, WAYS * QUERIES, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
    labels = torch.arange(WAYS)
    tasks = (
        sx,
        labels.repeat_interleave(SHOTS).expand(TASKS, -1),
        qx,
        labels.repeat_interleave(QUERIES).expand(TASKS, -1),
    )
    return tuple(t.to(device) for t in tasks)


def _l2l_model(device="cpu"):
    torch.manual_seed(0)
    model = l2l.vision.models.CNN4(WAYS, hidden_size=HIDDEN, embedding_size=embedding_size(SIZE, HIDDEN)).double()
    return model.train().to(device)


def _l2l_meta_grads(model, first_order, sx, sy, qx, qy):
    maml = l2l.algorithms.MAML(model, lr=LR, first_order=first_order)
    maml.zero_grad()
    for t in range(TASKS):
        learner = maml.clone()
        for _ in range(STEPS):
            learner.adapt(F.cross_entropy(learner(sx[t]), sy[t]))
        (F.cross_entropy(learner(qx[t]), qy[t]) / TASKS).backward()
    return from_l2l_cnn4_grads(model)


def from_l2l_cnn4_grads(model):
    grads = {}
    for i, block in enumerate(model.features, start=1):
        grads[f"conv{i}.weight"], grads[f"conv{i}.bias"] = block.conv.weight.grad, block.conv.bias.grad
        grads[f"bn{i}.weight"], grads[f"bn{i}.bias"] = block.normalize.weight.grad, block.normalize.bias.grad
    grads["head.weight"], grads["head.bias"] = model.classifier.weight.grad, model.classifier.bias.grad
    return grads


def _rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def assert_same_meta_gradient(ours, expected, tol=1e-9):
    """Relative error <= tol over the whole meta-gradient and per tensor. A conv bias followed by batch
    norm has a true gradient of zero (both sides hold rounding noise ~1e-16), so tensors whose expected
    norm is below tol of the total are held to an absolute error of tol times the total norm instead."""
    total = torch.cat([g.flatten() for g in expected.values()]).norm()
    flat = lambda grads: torch.cat([grads[k].flatten() for k in expected])  # noqa: E731
    assert _rel_err(flat(ours), flat(expected)) <= tol
    for name, g in expected.items():
        if g.norm() > tol * total:
            assert _rel_err(ours[name], g) <= tol, name
        else:
            assert (ours[name] - g).norm() <= tol * total, name


def test_forward_matches_l2l_cnn4():
    model = _l2l_model()
    x = _tasks()[0]
    ours = conv4_forward({k: v.unsqueeze(0).expand(TASKS, *v.shape) for k, v in from_l2l_cnn4(model).items()}, x)
    theirs = torch.stack([model(x[t]) for t in range(TASKS)])
    assert _rel_err(ours, theirs) < 1e-12


def l2l_meta_gradient(first_order, device="cpu"):
    """learn2learn's MAML meta-gradient on the module's fixed problem, with the weights it started from."""
    model = _l2l_model(device)
    init = from_l2l_cnn4(model)
    return _l2l_meta_grads(model, first_order, *_tasks(device=device)), init


def meta_gradient(learner, device="cpu", choices=None):
    """A kit learner's meta-gradient w.r.t. its initialisation on the module's fixed problem (and, into
    ``choices`` where given, what it chose per task)."""
    sx, sy, qx, qy = _tasks(device=device)
    loss, _, chosen = learner.meta_loss(TaskBatch(sx, sy, qx, qy, torch.zeros(TASKS, dtype=torch.long, device=device)))
    if choices is not None:
        choices.update(chosen)
    return dict(zip(learner.names, torch.autograd.grad(loss, list(learner.initial().values()))))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_equals_learn2learn(first_order, device):
    expected, init = l2l_meta_gradient(first_order, device)
    ours = MAML(WAYS, SIZE, HIDDEN, fast_lr=LR, steps=STEPS, first_order=first_order, init=init).to(device)
    assert_same_meta_gradient(meta_gradient(ours, device), expected)
    # the check has teeth: first- and second-order meta-gradients differ on this problem
    other, _ = l2l_meta_gradient(not first_order, device)
    assert _rel_err(other["conv1.weight"], expected["conv1.weight"]) > 1e-4


def test_other_image_sizes_work():
    for size in (16, 28, 84):
        params = init_conv4(5, size, 8)
        logits = conv4_forward({k: v.unsqueeze(0) for k, v in params.items()}, torch.rand(1, 10, 3, size, size))
        assert logits.shape == (1, 10, 5)
    with pytest.raises(ValueError, match="too small"):
        embedding_size(8, 8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("method", ["bmp", "mmsup"])
def test_bmp_adapting_every_layer_and_mmsup_at_sparsity_0_equal_learn2learn(method, first_order, device):
    """Both methods reduce to MAML: BMP when its mask adapts every layer in every step (its MLP's last
    bias forced high), MMSUP when it keeps every weight. Their meta-gradients w.r.t. the initialisation
    must then be learn2learn's MAML's, in float64, first and second order."""
    expected, init = l2l_meta_gradient(first_order, device)
    common = dict(fast_lr=LR, steps=STEPS, first_order=first_order, init=init)
    if method == "bmp":
        learner = BMP(WAYS, SIZE, HIDDEN, embedding="paper", **common).double()
        with torch.no_grad():
            learner.mask_mlp[-1].bias.fill_(100.0)
    else:
        learner = MMSUP(WAYS, SIZE, HIDDEN, sparsity_init=0.0, **common).double()
    learner = learner.to(device)
    choices = {}
    assert_same_meta_gradient(meta_gradient(learner, device, choices), expected)
    if method == "bmp":
        assert choices["layer_masks"].all()


def test_init_conv4_has_learn2learn_cnn4_initialisation_statistics():
    ours = init_conv4(5, 84, 64, seed=1)
    torch.manual_seed(1)
    theirs = from_l2l_cnn4(l2l.vision.models.CNN4(5, hidden_size=64, embedding_size=embedding_size(84, 64)))
    assert ours.keys() == theirs.keys()
    for name, t in theirs.items():
        o = ours[name]
        assert o.shape == t.shape, name
        if t.abs().max() == 0:
            assert o.abs().max() == 0, name  # zero-initialised biases
            continue
        n = o.numel()  # tolerances of 4 standard errors: the BN scales have only 64 entries
        if n > 1000:  # Xavier-uniform: the same bound
            assert float(o.abs().max()) == pytest.approx(float(t.abs().max()), rel=0.02), name
        else:  # BN scale: U(0, 1)
            assert float(o.min()) >= 0 and float(o.max()) <= 1 and float(t.min()) >= 0 and float(t.max()) <= 1, name
        assert float(o.std()) == pytest.approx(float(t.std()), rel=4 / (2 * n) ** 0.5 + 0.01), name
        assert float(o.mean()) == pytest.approx(float(t.mean()), abs=4 * float(t.std()) / n**0.5), name
