"""The controls: learners that keep a method's training but take away its mechanism."""

import pytest
import torch
from test_gems_learners import HIDDEN, SIZE, TASKS, WAYS, _batch, _meta_grads

from gems_core import mechanism
from gems_core.data import load_distributions
from gems_core.learners import MAML, METHODS, FixedLayers
from gems_core.models import CONV_LABELS, LAYER_LABELS, init_conv4
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
    adapted, _ = fixed.adapt(_batch().support_x, _batch().support_y, create_graph=False)
    for label, names in zip(LAYER_LABELS, fixed.layers):
        for name in names:
            moved = not torch.equal(adapted[name], init[name].expand(TASKS, *init[name].shape))
            assert moved == (label in layers), name
    grads = _meta_grads(fixed, _batch())
    assert all(g.abs().sum() > 0 for g in grads.values())  # frozen in the task, still meta-learned


def test_fixed_layers_is_a_registered_control_run_only_when_asked(tiny_params):
    assert METHODS["fixed_layers"].control and "fixed_layers" not in TABLE2_METHODS
    assert TABLE2_METHODS == ("maml", "multi_maml", "bmp", "mmsup")  # the paper's, and only they, by default
    assert tiny_params().methods == TABLE2_METHODS and tiny_params().adapt_layers == ("head",)
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


def _same_initialisation(control, trained) -> bool:
    """The control starts from the trained learner's initialisation, in tensors of its own."""
    mine, theirs = control.initial(), trained.initial()
    return all(torch.equal(mine[k], theirs[k]) and mine[k].data_ptr() != theirs[k].data_ptr() for k in theirs)


def test_bmp_frozen_mask_uses_the_pattern_most_validation_tasks_chose():
    from test_gems_learners import _bmp

    bmp, init = _bmp([100.0] * 5)  # left alone, every layer adapts in every step
    common, rare = [[1, 0, 1, 0, 1], [0, 1, 1, 1, 1]], [[1, 1, 1, 1, 1]] * 2
    probes = [{"layer_masks": torch.tensor([common, common, rare], dtype=torch.float64)}]
    control, frozen = bmp.frozen(probes, [], 0)
    assert frozen == {"layer_masks": common, "share_of_validation_tasks": pytest.approx(2 / 3)}
    adapted, choices = control.adapt(_batch().support_x, _batch().support_y, create_graph=False)
    assert choices["layer_masks"].tolist() == [common] * TASKS
    assert _same_initialisation(control, bmp)  # the trained weights, copied: the control never trains them
    for name in bmp.layers[0]:  # adapted in step 1 only, conv2 in step 2 only; both moved
        assert not torch.equal(adapted[name], init[name].expand_as(adapted[name])), name
    _, choices = bmp.adapt(_batch().support_x, _batch().support_y, create_graph=False)
    assert choices["layer_masks"].tolist() == [[[1] * 5] * 2] * TASKS


def test_bmp_frozen_on_every_layer_adapts_as_maml():
    from test_gems_learners import _bmp

    bmp, init = _bmp([-100.0] * 5)  # its own choice: adapt nothing
    maml = MAML(WAYS, SIZE, HIDDEN, fast_lr=0.3, steps=2, init=init).double()
    control, _ = bmp.frozen([{"layer_masks": torch.ones(4, 2, 5, dtype=torch.float64)}], [], 0)
    logits, _ = control.predict(_batch())
    assert torch.allclose(logits, maml.predict(_batch())[0], rtol=1e-10, atol=1e-12)
    assert torch.equal(control.evaluate(_batch()), maml.evaluate(_batch()))


def test_mmsup_frozen_mask_keeps_the_initial_weights_mask_for_every_task():
    from gems_core.learners import MMSUP

    init = init_conv4(WAYS, SIZE, HIDDEN, seed=3, dtype=torch.float64)
    mmsup = MMSUP(WAYS, SIZE, HIDDEN, fast_lr=5.0, steps=2, init=init, sparsity_init=0.5).double()

    def probe(learner):
        return learner.probe(learner.predict(_batch())[1])

    seen = probe(mmsup)
    assert any(not torch.equal(seen[f"initial_{c}"], seen[f"masks_{c}"]) for c in CONV_LABELS)  # re-masked per task
    control, _ = mmsup.frozen([], [], 0)
    seen = probe(control)
    for c in CONV_LABELS:
        initial, final = seen[f"initial_{c}"], seen[f"masks_{c}"]
        assert torch.equal(initial, final) and torch.equal(final[0], final[1]), c
    assert torch.equal(control.sparsity, mmsup.sparsity) and _same_initialisation(control, mmsup)
    seen = probe(mmsup)
    assert any(not torch.equal(seen[f"initial_{c}"], seen[f"masks_{c}"]) for c in CONV_LABELS)


def _masks(rng, tasks, steps=2):
    return torch.tensor(rng.random((tasks, steps, 5)) < 0.5, dtype=torch.float64)


def test_bmp_shuffled_masks_deal_the_test_tasks_own_masks_to_other_tasks_in_order():
    import numpy as np
    from test_gems_learners import _bmp

    bmp, _ = _bmp([100.0] * 5)
    test = [{"layer_masks": _masks(np.random.default_rng(0), TASKS)} for _ in range(3)]  # three batches
    control, used = bmp.shuffled([], test, seed=21)
    pooled = torch.cat([p["layer_masks"] for p in test])
    order = torch.randperm(len(pooled), generator=torch.Generator().manual_seed(21))
    seen = torch.cat([control.predict(_batch())[1].choices["layer_masks"] for _ in test])
    assert torch.equal(seen, pooled[order]) and not torch.equal(seen, pooled) and used == {"permutation_seed": 21}
    assert bmp.adapt(_batch().support_x, _batch().support_y, False).choices["layer_masks"].eq(1).all()  # still its own
    with pytest.raises(RuntimeError, match="given masks"):
        control.predict(_batch())  # each task's mask is used once


def test_bmp_random_masks_keep_the_per_layer_per_step_frequencies():
    import numpy as np
    from test_gems_learners import _bmp

    bmp, _ = _bmp([100.0] * 5)
    frequency = torch.tensor([[0.1, 0.9, 0.5, 0.5, 1.0], [0.0, 0.3, 0.7, 0.2, 1.0]], dtype=torch.float64)
    rng = np.random.default_rng(1)
    pooled = torch.tensor(rng.random((4000, 2, 5)) < frequency.numpy(), dtype=torch.float64)
    control, used = bmp.at_random([], [{"layer_masks": pooled}], seed=5)
    drawn = control.task_masks
    assert drawn.shape == pooled.shape and not torch.equal(drawn, pooled)
    assert torch.allclose(drawn.mean(0), pooled.mean(0), atol=0.03)
    assert torch.allclose(torch.tensor(used["layer_adapt_frequency_by_step"], dtype=torch.float64), pooled.mean(0))


def test_mmsup_random_mask_keeps_each_layers_sparsity_and_one_mask_for_every_task():
    from gems_core.learners import MMSUP

    init = init_conv4(WAYS, SIZE, HIDDEN, seed=3, dtype=torch.float64)
    mmsup = MMSUP(WAYS, SIZE, HIDDEN, fast_lr=5.0, steps=2, init=init, sparsity_init=0.5).double()
    control, _ = mmsup.random_mask([], [], seed=3)
    seen = control.probe(control.predict(_batch())[1])
    own = mmsup.probe(mmsup.predict(_batch())[1])
    for c in CONV_LABELS:
        masks = seen[f"masks_{c}"]
        assert torch.equal(masks[0], masks[1]) and torch.equal(seen[f"initial_{c}"], masks), c
        assert abs(masks.float().mean() - own[f"masks_{c}"].float().mean()) < 0.05, c  # the same sparsity
        assert (masks != own[f"initial_{c}"]).float().mean() > 0.3, c  # not the weights' own mask


def test_mmsup_static_is_a_trained_control_whose_one_mask_is_kept_for_every_task(tiny_params):
    from gems_core.learners import MMSUP

    spec = METHODS["mmsup_static"]
    assert spec.control and spec.learner is MMSUP and "mmsup_static" not in TABLE2_METHODS
    assert spec.build(tiny_params(), seed=21).static_mask and not METHODS["mmsup"].build(tiny_params(), 21).static_mask
    init = init_conv4(WAYS, SIZE, HIDDEN, seed=3, dtype=torch.float64)
    learner = MMSUP(WAYS, SIZE, HIDDEN, fast_lr=5.0, steps=2, init=init, **dict(spec.options)).double()
    seen = learner.probe(learner.predict(_batch())[1])
    for c in CONV_LABELS:
        assert torch.equal(seen[f"masks_{c}"][0], seen[f"masks_{c}"][1]), c
    loss, _, _ = learner.meta_loss(_batch())
    (sparsity,) = torch.autograd.grad(loss, [learner.sparsity])
    assert sparsity.abs().sum() > 0  # the one mask's sparsity is still meta-learned


def test_a_bmp_run_is_also_tested_with_its_mask_frozen(tiny_params):
    from gems_core import mechanism, results, runs
    from gems_core.training import run_method

    params = tiny_params(iterations=3, methods=["bmp"])
    outcome = run_method(params, "bmp", 21, progress=False)
    frozen = outcome["controls"]["bmp_frozen_mask"]
    assert frozen["method"] == "bmp_frozen_mask" and set(frozen["test"]) == {"glyphs", "shapes"}
    assert set(outcome["controls"]) == {"bmp_frozen_mask", "bmp_shuffled_masks", "bmp_random_masks"}
    steps = params.adaptation_steps
    assert len(frozen["used"]["layer_masks"]) == steps and 0 < frozen["used"]["share_of_validation_tasks"] <= 1
    for dataset, summary in frozen["records"].items():  # every test task used the one pattern
        assert summary["layer_adapt_frequency_by_step"] == frozen["used"]["layer_masks"], dataset
    own = {d: r["layer_adapt_frequency"] for d, r in outcome["records"].items()}
    shuffled = outcome["controls"]["bmp_shuffled_masks"]["records"]
    pooled = [sum(own[d][i] for d in own) / len(own) for i in range(5)]  # the same masks, dealt anew
    assert [sum(shuffled[d]["layer_adapt_frequency"][i] for d in own) / len(own) for i in range(5)] == pytest.approx(
        pooled
    )
    assert frozen["mechanism"]["mask"]["reading"] == mechanism.CONSTANT  # one mask for every task
    assert outcome["mechanism"]["mask"]["reading"] in mechanism.READINGS
    assert 0 <= max(map(max, outcome["mechanism"]["mask"]["information_bits"])) <= 1.0
    per_task = runs.row_task_accuracies(params, "bmp_frozen_mask", 21)
    assert len(per_task) == 2 * params.test_tasks
    assert per_task.groupby("test_dataset").accuracy.mean().to_dict() == pytest.approx(
        {d: t["accuracy"] for d, t in frozen["test"].items()}
    )
    table = results.gather(tmp := runs.run_folder(params, "bmp", 21).parent.parent, params)
    assert sorted(set(table.method)) == ["bmp", "bmp_frozen_mask", "bmp_random_masks", "bmp_shuffled_masks"]
    assert (tmp / "results.csv").exists()


def test_an_mmsup_run_is_also_tested_with_its_mask_frozen_and_scored(tiny_params):
    from gems_core.training import run_method

    params = tiny_params(iterations=3, methods=["mmsup"])
    outcome = run_method(params, "mmsup", 21, progress=False)
    frozen = outcome["controls"]["mmsup_frozen_mask"]
    assert frozen["method"] == "mmsup_frozen_mask"
    assert outcome["controls"]["mmsup_random_mask"]["mechanism"]["subnetwork"]["reading"] == mechanism.CONSTANT
    assert frozen["mechanism"]["subnetwork"]["difference"] == 0.0  # one subnetwork for every task
    assert frozen["mechanism"]["subnetwork"]["reading"] == mechanism.CONSTANT
    specificity = outcome["mechanism"]["subnetwork"]
    assert specificity["low"] <= specificity["difference"] <= specificity["high"]
    assert set(specificity["by_layer"]) == set(CONV_LABELS)


def test_fixed_layers_with_a_pattern_adapt_per_inner_step():
    init = init_conv4(WAYS, SIZE, HIDDEN, seed=3, dtype=torch.float64)
    pattern = [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]]  # conv1 in the first step, the head in the second
    fixed = FixedLayers(WAYS, SIZE, HIDDEN, fast_lr=0.3, steps=2, init=init, adapt_pattern=pattern).double()
    assert [sorted(a) for a in fixed.adapted] == [sorted(fixed.layers[0]), sorted(fixed.layers[4])]
    adapted, _ = fixed.adapt(_batch().support_x, _batch().support_y, create_graph=False)
    for label, names in zip(LAYER_LABELS, fixed.layers):
        for name in names:
            moved = not torch.equal(adapted[name], init[name].expand(TASKS, *init[name].shape))
            assert moved == (label in ("conv1", "head")), name
    every = FixedLayers(WAYS, SIZE, HIDDEN, fast_lr=0.3, steps=2, init=init, adapt_pattern=[[1] * 5] * 2).double()
    maml = MAML(WAYS, SIZE, HIDDEN, fast_lr=0.3, steps=2, init=init).double()
    ours, reference = _meta_grads(every, _batch()), _meta_grads(maml, _batch())
    assert all(torch.allclose(ours[k], reference[k], rtol=1e-10, atol=1e-14) for k in reference)
    for bad in ([[1] * 5], [[1] * 4] * 2, [[2, 0, 0, 0, 0]] * 2):
        with pytest.raises(ValueError, match="adapt_pattern must be 2 rows"):
            FixedLayers(WAYS, SIZE, HIDDEN, steps=2, init=init, adapt_pattern=bad)


def test_the_matched_control_trains_bmp_first_and_adapts_bmps_favourite_pattern(tiny_params):
    from gems_core import runs
    from gems_core.params import SCHEMA, shapes
    from gems_core.plan import plan
    from gems_core.training import run_method

    params = tiny_params(methods=["fixed_layers_matched", "bmp"])
    assert [r.method for r in plan(params, ("main",))] == ["bmp", "fixed_layers_matched"]  # the match first
    assert shapes(SCHEMA["bmp_embedding"], "fixed_layers_matched") and shapes(SCHEMA["fast_lr"], "fixed_layers_matched")
    assert not shapes(SCHEMA["adapt_layers"], "fixed_layers_matched")  # its layers come from BMP's run
    result = run_method(params, "fixed_layers_matched", 21, progress=False)
    bmp = runs.RunFiles(params, "bmp", 21).intact_results()
    assert bmp["status"] == result["status"] == "complete"
    chosen = bmp["controls"]["bmp_frozen_mask"]["used"]["layer_masks"]
    assert result["matched"] == {"run_id": runs.run_id(params, "bmp", 21), "options": {"adapt_pattern": chosen}}


def test_a_matched_control_whose_match_diverged_is_left_untrained_with_the_reason(tiny_params, overflowing, capsys):
    from gems_core import claims
    from gems_core.plan import plan, train

    params = tiny_params(methods=["bmp", "fixed_layers_matched"], iterations=30, validation_every=10)
    outcomes = train(params, "main", None)
    assert outcomes[0]["status"] == "diverged" and outcomes[1] is None
    assert "fixed_layers_matched seed 21 is not trained: " in capsys.readouterr().out
    assert [r.state()[0] for r in plan(params, ("main",))] == ["diverged", "missing"]
    row = claims.comparisons(params).set_index("against").loc["fixed_layers_matched"].iloc[0]
    assert row["verdict"] == "not comparable" and "bmp seed 21 diverged" in row["unit"]


def test_a_method_in_one_file_plus_one_registry_line_is_trained_scored_tabled_paged_and_explored(
    tiny_params, monkeypatch, tmp_path
):
    """The throwaway method of tests/brightness_method.py, registered by its one line and edited nowhere
    else: its run keeps the score its own ``mechanism_score`` gives, the results table and the claims read
    it, the page shows its figure and finding, and the explorer draws its choice for one task."""
    import matplotlib

    matplotlib.use("Agg")
    from brightness_method import PANEL_TITLE, REGISTRY_LINE

    from gems_core import claims, explore, page, results
    from gems_core.learners import Pictured, Scored
    from gems_core.training import run_method

    name, method = REGISTRY_LINE
    assert issubclass(method.learner, Scored) and issubclass(method.learner, Pictured) and not method.paper
    monkeypatch.setitem(METHODS, name, method)  # the one registry line
    params = tiny_params(iterations=3, methods=["maml", name])
    for m in params.methods:
        result = run_method(params, m, 21, progress=False)
    score = result["mechanism"]["mask"]  # scored
    assert score["reading"] in mechanism.READINGS and score["tasks"] == 2 * params.test_tasks
    assert max(map(max, score["entropy_bits"])) > 0  # the head's bit varies from task to task
    (row,) = claims.mechanism_scores(params).itertuples()
    assert (row.method, row.says) == (name, mechanism.reading(result["mechanism"]))
    table = results.gather(tmp_path / "profile", params)  # tabled
    assert set(table[table["method"] == name]["status"]) == {"complete"}
    assert name in set(claims.comparisons(params)["method"])  # set against MAML
    html = page.write(params, tmp_path / "profile", "parameters/throwaway.yaml").read_text()  # paged
    assert f"figures/{name}-seed21.png" in html and "Share of test tasks whose head adapted" in html
    loaded, problems = explore.explorable_runs(params)  # explored
    assert list(loaded) == [name, "maml"] and not problems  # a method that draws its choice first
    seen = explore.inspect_task(loaded[name], load_distributions(params), 1, 0)
    titles = [ax.get_title() for ax in explore.task_figure(seen).axes]
    assert f"{name}: {PANEL_TITLE}" in titles and seen["choices"]["choice"].shape == (1, 2, len(LAYER_LABELS))
