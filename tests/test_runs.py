"""The run store: run identity from the schema, unchanged for every parameters file the kit ships, and the
one place other modules find runs."""

import hashlib
import re

import pytest
from conftest import PROJECT_ROOT

from gems_core.params import METHODS, SCHEMA, load_params, shapes
from gems_core.plan import plan
from gems_core.runs import run_folder, run_id

# The run ids, and a digest of every planned run's folder name, of each shipped parameters file, as they
# were before the run store took run identity over from training.py: moving it must not re-key a run.
# (Changed since on purpose: the demo's ablation runs went from 100 to 60 iterations; the demo and smoke
# profiles gained the fixed_layers control, one run more each, the other runs' ids unchanged; the demo
# went from 300 to 150 iterations, 100 test tasks, no embedding comparison, two ablation runs, a trace of 40
# iterations, to finish within 6 minutes; every run re-keyed once when validation_tasks began to shape a
# run, since it picks BMP's frozen mask; the three-seed demo gained the trained control mmsup_static; it and
# the Plain-Multi profiles gained fixed_layers_matched, three runs each, the other runs' ids unchanged;
# Plain-Multi 1-shot went from 40,000 to ARML's 50,000 iterations, and both Plain-Multi profiles test with
# ARML's queries (test_queries) on CUB and Aircraft cut to their bounding boxes.)
SHIPPED = {
    "parameters/demo.yaml": (["f183b995", "f183b995", "a48077bc", "d5f4e46a"], 8, "29fa892b55b1"),
    "parameters/demo_seeds.yaml": (["f183b995", "f183b995", "a48077bc", "d5f4e46a"], 22, "87431daef657"),
    "parameters/smoke.yaml": (["064af20c", "064af20c", "1d791ed6", "b9db1b31"], 10, "304225fbea89"),
    "parameters/paper/ablations.yaml": (["ca910c54", "ca910c54", "2b3cdf8d", "a23d2d29"], 103, "81afc5ea5859"),
    "parameters/paper/table2_cub_aircraft.yaml": (["ca910c54", "ca910c54", "2b3cdf8d", "a23d2d29"], 16, "59a730237f48"),
    "parameters/paper/table2_fungi_aircraft.yaml": (
        ["a714401c", "a714401c", "03f6df48", "677360ce"],
        16,
        "698aef9478da",
    ),
    "parameters/paper/plain_multi_1shot.yaml": (["6ecb32f1", "6ecb32f1", "7be78d07", "e7306eb1"], 22, "d5c5ebf32616"),
    "parameters/paper/plain_multi_5shot.yaml": (["e1bd6290", "e1bd6290", "c2e1ccaf", "e0dbbdc8"], 22, "f02f73ee53ec"),
    "parameters/paper/table2_vgg_aircraft.yaml": (["a0f34406", "a0f34406", "9fafc852", "193a6c5e"], 16, "a77e04e5e6ef"),
}


def test_every_shipped_parameters_file_is_pinned():
    shipped = {str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "parameters").rglob("*.yaml")}
    assert shipped == set(SHIPPED)


@pytest.mark.parametrize("path", sorted(SHIPPED))
def test_shipped_parameter_files_keep_their_run_ids(path, monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    params = load_params(path)
    hashes, count, digest = SHIPPED[path]
    assert [run_id(params, m, 21) for m in ("maml", "multi_maml", "bmp", "mmsup")] == [
        f"{m}-seed21-{h}" for m, h in zip(("maml", "multi_maml", "bmp", "mmsup"), hashes)
    ]
    names = sorted(run.folder.name for run in plan(params))
    assert (len(names), hashlib.sha1(" ".join(names).encode()).hexdigest()[:12]) == (count, digest)


def test_a_parameter_at_its_neutral_value_stays_out_of_run_ids_and_test_queries_shapes_the_meta_test(tiny_params):
    from gems_core.data import load_distributions
    from gems_core.device import resolve_device
    from gems_core.params import ParameterError
    from gems_core.training import Run

    base = tiny_params(queries=2)
    same, fewer = base.replace(test_queries=0), base.replace(test_queries=1)
    assert run_id(base, "maml", 21) == run_id(same, "maml", 21) != run_id(fewer, "maml", 21)
    with pytest.raises(ParameterError, match="'test_queries' = 3 exceeds queries = 2; valid: 0"):
        base.replace(test_queries=3)
    run = Run(fewer, "maml", 21, load_distributions(fewer), run_folder(fewer, "maml", 21), resolve_device("cpu"))
    assert (run.fixed_tasks("test")[0].sampler.queries, run.fixed_tasks("validation")[0].sampler.queries) == (1, 2)


def test_every_parameter_says_whether_it_shapes_a_run():
    for name, spec in SCHEMA.items():
        assert spec.affects_run in (True, False) or any(shapes(spec, m) for m in METHODS), name
    assert not shapes(SCHEMA["profile"], "maml") and shapes(SCHEMA["fast_lr"], "mmsup")
    assert shapes(SCHEMA["bmp_embedding"], "bmp") and not shapes(SCHEMA["bmp_embedding"], "maml")


def test_only_the_cli_and_the_run_store_import_the_training_module_for_run_identity():
    identity = re.compile(r"from \.training import [^\n]*\b(run_id|run_folder|run_lock|holding)\b")
    for module in (PROJECT_ROOT / "gems_core").rglob("*.py"):
        assert not identity.search(module.read_text()), module.name


def test_a_complete_run_keeps_each_test_tasks_accuracy(tiny_params):
    from gems_core import runs
    from gems_core.training import run_method

    params = tiny_params(iterations=3)
    result = run_method(params, "bmp", 21, progress=False)
    table = runs.RunFiles(params, "bmp", 21).task_accuracies()
    for dataset, outcome in result["test"].items():
        tasks = table[table["test_dataset"] == dataset]
        assert tasks["task"].tolist() == list(range(params.test_tasks))
        assert tasks["accuracy"].mean() == pytest.approx(outcome["accuracy"], abs=1e-12)
    assert runs.RunFiles(params, "maml", 21).task_accuracies() is None  # never trained
