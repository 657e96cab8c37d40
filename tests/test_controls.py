"""The controls: learners that keep a method's training but take away its mechanism."""

import pytest
import torch
from test_gems_learners import HIDDEN, SIZE, TASKS, WAYS, _batch, _meta_grads

from gems_core.learners import MAML, METHODS, FixedLayers
from gems_core.models import LAYER_LABELS, init_conv4
from gems_core.params import TABLE2_METHODS, ParameterError


def _fixed(layers):
    init = init_conv4(WAYS, SIZE, HIDDEN, seed=3, dtype=torch.float64)
    return FixedLayers(WAYS, SIZE, HIDDEN, fast_lr=0.3, steps=2, init=init, adapt_layers=layers).double(), init


def test_fixed_layers_adapting_every_layer_is_maml():
    fixed, init = _fixed(LAYER_LABELS)
    maml = MAML(WAYS, SIZE, HIDDEN, fast_lr=0.3, steps=2, init=init).double()
    ours, reference = _meta_grads(fixed, _batch()), _meta_grads(maml, _batch())
    for name in reference:
        assert torch.allclose(ours[name], reference[name], rtol=1e-10, atol=1e-14), name


@pytest.mark.parametrize("layers", [["head"], ["conv3", "conv4", "head"], ["conv1"]])
def test_fixed_layers_adapt_only_the_named_layers_and_meta_learn_all(layers):
    fixed, init = _fixed(layers)
    adapted = fixed.adapt(_batch().support_x, _batch().support_y, create_graph=False)
    for label, names in zip(LAYER_LABELS, fixed.layers):
        for name in names:
            moved = not torch.equal(adapted[name], init[name].expand(TASKS, *init[name].shape))
            assert moved == (label in layers), name
    grads = _meta_grads(fixed, _batch())
    assert all(g.abs().sum() > 0 for g in grads.values())  # frozen in the task, still meta-learned


def test_fixed_layers_is_a_registered_control_run_only_when_asked(tiny_params):
    assert METHODS["fixed_layers"].control and "fixed_layers" not in TABLE2_METHODS
    assert tiny_params()["methods"] == list(TABLE2_METHODS) and tiny_params()["adapt_layers"] == ["head"]
    for bad in ([], ["conv5"], ["head", "head"]):
        with pytest.raises(ParameterError, match="parameter 'adapt_layers'"):
            tiny_params(adapt_layers=bad)


def test_fixed_layers_learns_at_the_smoke_settings(tiny_params):
    from gems_core.training import run_method

    params = tiny_params(
        methods=["fixed_layers"],
        adapt_layers=["conv4", "head"],
        iterations=40,
        meta_lr=3.0e-3,
        test_tasks=40,
        validation_every=20,
        checkpoint_every=20,
    )
    result = run_method(params, "fixed_layers", 21, progress=False)
    assert result["status"] == "complete"
    for dataset, outcome in result["test"].items():  # chance is 1/3
        assert outcome["accuracy"] - outcome["ci95"] > 1 / 3, (dataset, outcome)
