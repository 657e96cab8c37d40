import pytest

from gems_core.data import check_against_data, load_distributions
from gems_core.params import SCHEMA, ParameterError, load_params, validate

DISTS = [{"name": "glyphs", "source": "synthetic_glyphs"}]


def test_defaults_are_the_papers_settings():
    p = validate({"distributions": DISTS})
    assert (p.ways, p.shots, p.meta_batch_size, p.adaptation_steps) == (5, 1, 5, 5)
    assert (p.fast_lr, p.meta_lr, p.iterations, p.seeds) == (0.01, 1e-4, 30000, (21, 42, 56))
    assert p.first_order is False and p.image_size == 84


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"wayz": 5}, "unknown parameter 'wayz' (did you mean 'ways'?)"),
        ({"ways": "five"}, "parameter 'ways' must be of type int"),
        ({"ways": True}, "parameter 'ways' must be of type int"),
        ({"meta_lr": "1e-3"}, "write 1.0e-3"),
        ({"ways": 1}, "parameter 'ways' = 1 must be between 2 and 100"),
        ({"device": "tpu"}, "must be one of ['auto', 'cpu', 'cuda']"),
        ({"methods": ["maml", "reptile"]}, "has unknown method(s) ['reptile']"),
        ({"split_fractions": [0.5, 0.5, 0.5]}, "must sum to 1"),
        ({"distributions": [{"name": "x", "source": "imagenet"}]}, "distributions[0].source is 'imagenet'; valid:"),
        (
            {"distributions": [{"name": "x", "source": "folder", "path": "/no/such/dir"}]},
            "'/no/such/dir' does not exist",
        ),
        ({"distributions": [{"name": "x", "source": "folder"}]}, "needs a 'path'"),
        ({"distributions": [{"name": "x", "source": "cub", "path": "/tmp"}]}, "'path' is only valid for sources"),
        ({"distributions": DISTS * 2}, "names must be unique"),
    ],
)
def test_bad_parameters_are_named(params, fragment):
    with pytest.raises(ParameterError) as err:
        validate({"distributions": DISTS, **params})
    assert fragment in str(err.value)


def test_missing_distributions_is_required():
    with pytest.raises(ParameterError, match="'distributions' is required"):
        validate({})


def test_float_parameters_accept_integers():
    assert validate({"distributions": DISTS, "fast_lr": 1}).fast_lr == 1.0


def test_parameters_file_errors(tmp_path):
    with pytest.raises(ParameterError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ways: [1, 2\n")
    with pytest.raises(ParameterError, match="not valid YAML"):
        load_params(bad)


@pytest.mark.parametrize("name", ["demo", "smoke"])
def test_shipped_parameter_files_are_valid(name):
    from conftest import PROJECT_ROOT

    assert load_params(PROJECT_ROOT / "parameters" / f"{name}.yaml").profile == name


def test_ways_larger_than_a_split_is_rejected_before_training(tiny_params):
    params = tiny_params(ways=8)  # 30 classes at 0.6/0.2/0.2 give 6 validation classes
    with pytest.raises(ParameterError) as err:
        check_against_data(params, load_distributions(params))
    assert "'ways' = 8 is larger than the 6 classes of glyphs/validation" in str(err.value)


def _reference_tool():
    import importlib.util

    from conftest import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location(
        "parameter_reference", PROJECT_ROOT / "tools" / "parameter_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schema_table_lists_every_parameter():
    table = _reference_tool().schema_table()
    assert all(f"`{name}`" in table for name in SCHEMA)


def test_the_parameter_reference_in_docs_is_the_schemas():
    tool = _reference_tool()
    written = tool.PATH.read_text()
    assert written == tool.parameter_reference(), "docs/parameters.md is stale: run python tools/parameter_reference.py"


def test_paper_parameter_files_hold_table2_and_the_full_ablation_grid():
    from conftest import PROJECT_ROOT

    from gems_core.plan import ablation_grid as grid

    paper = PROJECT_ROOT / "parameters" / "paper"
    pairs = set()
    for path in sorted(paper.glob("table2_*.yaml")):
        p = load_params(path)
        assert p.methods == ("maml", "multi_maml", "bmp", "mmsup") and p.seeds == (21, 42, 56)
        assert (p.iterations, p.ways, p.shots, p.meta_batch_size, p.adaptation_steps) == (
            30000,
            5,
            1,
            5,
            5,
        )
        assert (p.fast_lr, p.meta_lr, p.image_size) == (0.01, 1e-4, 84)
        pairs.add("+".join(d.source for d in p.distributions))
    assert pairs == {"cub+aircraft", "vgg_flowers+aircraft", "fungi+aircraft"}
    ablation = load_params(paper / "ablations.yaml")
    points = grid(ablation)
    assert len(points) == 2 * (5 + 6) + 9 and all(run.iterations == 30000 for *_, run in points)
    assert [v for s, v, m, _ in points if s == "sparsity"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def test_a_config_is_frozen_typed_and_validated_again_when_varied():
    import dataclasses

    config = validate({"distributions": DISTS})
    assert sorted(f.name for f in dataclasses.fields(config)) == sorted(SCHEMA)  # one attribute per parameter
    import typing

    from gems_core.params import Config, DistributionSpec

    hints = typing.get_type_hints(Config)  # written out, so editors and type checkers see each field's type
    for name, spec in SCHEMA.items():  # a list is held as a tuple: nothing inside a frozen Config changes
        assert (typing.get_origin(hints[name]) or hints[name]) is (tuple if spec.type is list else spec.type), name
    assert config.distributions == (DistributionSpec("glyphs", "synthetic_glyphs"),) and config.seeds == (21, 42, 56)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.ways = 3
    assert config.replace(ways=3).ways == 3 and config.ways == 5
    with pytest.raises(ParameterError, match="parameter 'ways'"):
        config.replace(ways=0)
    assert validate(config.as_dict()) == config
