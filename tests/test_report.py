"""Table 2 in the supplement's shape, the comparison with the paper, and the convergence summaries."""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT_ROOT

from gems_core import convergence, report
from gems_core.params import validate


def _results(names=("cub", "aircraft")):
    rows = []
    for method, base in (("maml", 0.40), ("bmp", 0.50)):
        for seed, jitter in ((21, 0.0), (42, 0.02)):
            for k, test in enumerate(names):
                rows.append(
                    {
                        "method": method,
                        "train_datasets": "+".join(names),
                        "test_dataset": test,
                        "seed": seed,
                        "accuracy": base + jitter + k / 10,
                        "ci95": 0.01,
                        "train_seconds": 7200.0,
                        "iterations": 100,
                        "status": "complete",
                    }
                )
    return pd.DataFrame(rows)


PAPER_PARAMS = validate(
    {"distributions": [{"name": "cub", "source": "cub"}, {"name": "aircraft", "source": "aircraft"}]}
)


SUPPLEMENT = PROJECT_ROOT.parent / "shared" / "seeds" / "000_8ae103d086335fa9.txt"
SUPPLEMENT_NAMES = {"CUB200": "cub", "CUB": "cub", "VGG102": "vgg_flowers", "Fungi": "fungi", "Aircraft": "aircraft"}


def _supplement_table2() -> list[tuple]:
    """Table 2 as the supplement's text prints it: a line per pair, two test datasets, then per method
    (MAML, Multi-MAML, BMP, MMSUP) two accuracies and a time."""
    rows = []
    for line in SUPPLEMENT.read_text().splitlines():
        cells = line.split("\t")
        if len(cells) != 10 or "+" not in cells[0]:
            continue
        pair = "+".join(SUPPLEMENT_NAMES[n.strip()] for n in cells[0].split("+"))
        tests = [SUPPLEMENT_NAMES[n] for n in cells[1].split()]
        for m, method in enumerate(report.TABLE2_METHODS):
            accuracies, time = cells[2 + 2 * m].split(), float(cells[3 + 2 * m])
            rows += [(pair, test, method, float(a), time) for test, a in zip(tests, accuracies)]
    return rows


def test_reference_is_the_supplements_table2():
    """Every value of the kit's reference table against the supplement's own text (not a second copy)."""
    if not SUPPLEMENT.is_file():
        pytest.skip(f"the supplement's text is not at {SUPPLEMENT} (only in the developers' workspace and CI)")
    ref = report.reference_table()
    assert sorted(map(tuple, ref[["train_sources", "test_source", "method", "accuracy", "time"]].values)) == sorted(
        _supplement_table2()
    )
    assert len(ref) == 3 * 2 * 4


def test_table2_shape_mean_and_spread_over_seeds():
    table = report.table2(_results())
    assert list(table.index) == [("cub+aircraft", "cub"), ("cub+aircraft", "aircraft")]
    assert table.loc[("cub+aircraft", "cub"), ("maml", "accuracy")] == "0.410 ± 0.014"
    assert table.loc[("cub+aircraft", "cub"), ("bmp", "time (h)")] == pytest.approx(2.0)


def test_beside_paper_gives_differences_for_paper_data():
    joined = report.beside_paper(_results(), PAPER_PARAMS)
    row = joined[(joined.test_source == "cub") & (joined.method == "maml")].iloc[0]
    assert row.paper == 0.468 and row.difference == pytest.approx(0.41 - 0.468)
    assert "one of the supplement's Table 2 pairs" in report.data_note(PAPER_PARAMS)
    diverged = {**_results().iloc[0].to_dict(), "seed": 7, "status": "diverged", "accuracy": float("nan")}
    with_diverged = report.beside_paper(pd.concat([_results(), pd.DataFrame([diverged])]), PAPER_PARAMS)
    pd.testing.assert_frame_equal(with_diverged, joined)  # the notebook and the page count complete seeds alike


def test_other_data_is_said_plainly_and_not_compared():
    params = validate(
        {"distributions": [{"name": "g", "source": "synthetic_glyphs"}, {"name": "s", "source": "synthetic_shapes"}]}
    )
    assert report.beside_paper(_results(("g", "s")), params).empty
    assert "cannot be compared with the paper's" in report.data_note(params)


def test_convergence_summaries():
    trace = pd.DataFrame(
        {
            "delta": [-1.0, -0.5, 0.2, -0.1],
            "swaps_conv1": [3, 1, 0, 0],
            "swaps_conv2": [0, 0, 0, 2],
            "swaps_conv3": [0, 0, 0, 0],
            "swaps_conv4": [0, 0, 0, 0],
        }
    )
    trace["swaps"] = trace.filter(like="swaps_").sum(1)
    holds = convergence.claim_holds(trace).set_index("iterations")
    assert holds.loc["all", "loss_decreased"] == 0.75
    assert holds.loc["with swaps (any layer)", "loss_decreased"] == 1.0
    assert holds.loc["without swaps", "count"] == 1 and holds.loc["without swaps", "loss_decreased"] == 0.0
    assert holds.loc["with swaps in conv2", "count"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a layer that never swaps is reported, not warned about
        corr = convergence.correlations(trace).set_index("swaps")
    assert corr.loc["swaps_conv1", "spearman_with_delta"] < 0
    assert np.isnan(corr.loc["swaps_conv3", "spearman_with_delta"])  # never swapped: undefined
    assert holds.loc["more swaps than the median", "count"] == 2
    text = convergence.verdict(convergence.claim_holds(trace), convergence.correlations(trace))
    assert text.startswith("The loss on the same tasks fell after 75% of 4 updates.")
    assert "100% of 3 updates with swaps and 0% of 1 without" in text
    no_free = convergence.claim_holds(trace[trace["swaps"] > 0])
    assert "no swap-free baseline" in convergence.verdict(no_free, convergence.correlations(trace))


def test_reference_wide_keeps_the_papers_row_and_method_order():
    wide = report.reference_wide()
    assert list(wide.columns) == ["maml", "multi_maml", "bmp", "mmsup"]
    assert list(wide.index)[:4] == [
        ("cub+aircraft", "cub"),
        ("cub+aircraft", "aircraft"),
        ("vgg_flowers+aircraft", "vgg_flowers"),
        ("vgg_flowers+aircraft", "aircraft"),
    ]
    assert wide.loc[("vgg_flowers+aircraft", "vgg_flowers"), "bmp"] == 0.738


def test_figures_of_fractions_use_their_whole_range():
    """Overlap, adaptation frequency and accuracy run from 0 to 1; a colour scale or axis fitted to the data
    would show 0.988 and 0.998 as opposites."""
    import pandas as pd

    from gems_core import plots

    overlap = {"conv1": {"a|a": 0.988, "a|b": 0.998, "b|b": 0.99}}
    fig = plots.overlap_heatmaps(overlap)
    assert fig.axes[0].collections[0].get_clim() == (0, 1)
    records = {"a": {"layer_adapt_frequency": [0.9, 0.95, 1, 1, 0.92]}}
    assert plots.layer_adaptation_heatmap(records).axes[0].collections[0].get_clim() == (0, 1)
    curve = pd.DataFrame({"iteration": [1, 2], **{f"adapt_{layer}_a": [0.97, 0.99] for layer in ("conv1", "head")}})
    assert plots.adaptation_over_training(curve, ["a"]).axes[0].get_ylim() == (-0.05, 1.05)
    summary = pd.DataFrame({"method": ["maml"], "test_dataset": ["a"], "accuracy": [0.61], "ci95": [0.02]})
    assert plots.accuracy_bars(summary, 5).axes[0].get_ylim() == (0, 1)
    grid = pd.DataFrame(
        {
            "method": ["bmp"] * 2,
            "test_dataset": ["a"] * 2,
            "value": [0.1, 0.5],
            "accuracy": [0.6, None],
            "accuracy_std": [None, None],
            "ci95": [0.02, None],
            "seeds": [1, 1],
            "diverged": [0, 1],
        }
    )
    ax = plots.ablation_curves(grid, "fast_lr").axes[0]
    assert ax.get_ylim() == (0, 1) and any("1 of 1 diverged" in t.get_text() for t in ax.texts)


def test_tables_show_a_missing_spread_as_a_dash():
    import pandas as pd

    from gems_core import results

    table = pd.DataFrame(
        [
            {
                "method": "maml",
                "train_datasets": "a+b",
                "test_dataset": "a",
                "seed": 21,
                "status": "complete",
                "accuracy": 0.61,
                "ci95": 0.02,
                "train_seconds": 5.0,
            }
        ]
    )
    html = results.shown(results.summary(table)).to_html()
    assert "nan" not in html.lower() and "<td" in html and ">-<" in html and "0.610" in html


def test_page_says_training_times_in_seconds_minutes_or_hours():
    from gems_core.results import duration

    assert [duration(t) for t in (0.4, 59, 60, 750, 3599, 3600, 11_520)] == [
        "0 s",
        "59 s",
        "1.0 min",
        "12.5 min",
        "60.0 min",
        "1.0 h",
        "3.2 h",
    ]


PLAIN_MULTI = ["cub", "dtd", "aircraft", "fungi"]


@pytest.mark.parametrize("shots", [1, 5])
def test_plain_multi_profiles_pass_the_check_and_meet_their_published_values(shots, monkeypatch):
    from gems_core.params import load_params

    monkeypatch.chdir(PROJECT_ROOT)
    params = load_params(f"parameters/paper/plain_multi_{shots}shot.yaml")
    assert [d.source for d in params.distributions] == PLAIN_MULTI and params.shots == shots
    results = _results(names=("cub", "dtd")).assign(status="complete")  # runs tested on two of the four
    results["train_datasets"] = "+".join(PLAIN_MULTI)
    table = report.beside_published(results, params).set_index("test dataset")
    assert list(table.index) == PLAIN_MULTI
    assert table.loc["cub", "maml (kit)"] == pytest.approx(0.41) and np.isnan(table.loc["fungi", "maml (kit)"])
    assert np.isnan(table.loc["cub", "multi_maml (kit)"])  # in the profile, no run yet: "-"
    published = [c for c in table.columns if c.endswith("(published)")]
    methods = ["maml", "metasgd", "mt_net", "mumomaml", "hsml", "protonet", "tadam", "arml"]
    assert published == [f"{m} (published)" for m in methods]
    maml, arml = {1: ([0.5394, 0.3166, 0.5137, 0.4212], 0.4482), 5: ([0.6852, 0.4456, 0.6618, 0.5185], 0.5755)}[shots]
    assert table["maml (published)"].tolist() == maml  # ARML's Table 1
    assert table.loc["fungi", "arml (published)"] == arml
    assert "Plain-Multi" in report.data_note(params)
    assert report.beside_published(results, params.replace(distributions=PAPER_PARAMS.distributions)) is None


@pytest.mark.parametrize("shots", [1, 5])
def test_every_difference_from_the_published_plain_multi_protocol_is_a_row(shots, monkeypatch):
    from gems_core.params import load_params

    monkeypatch.chdir(PROJECT_ROOT)
    params = load_params(f"parameters/paper/plain_multi_{shots}shot.yaml")
    table = report.protocol(params).set_index("setting")
    assert table.loc["meta-training iterations", "published"] == {1: "50000", 5: "40000"}[shots]
    assert (table.loc["meta-training iterations", "agree"], table.loc["ways", "agree"]) == ("same", "same")
    differ = set(table.index[table["agree"] == "differs"])
    assert differ == {"inner steps at meta-test", "class splits", "tested checkpoint", "seeds"}
    followed = table.loc[["queries per class at meta-test", "bounding-box crop"]]  # the kit follows these
    assert followed["agree"].tolist() == ["same", "same"] and followed["kit"].iloc[0] == f"{shots} (test_queries)"
    assert table["source"].str.contains("ARML|HSML").all()
    wrong = report.protocol(params.replace(fast_lr=0.1)).set_index("setting")  # a changed setting is a difference
    assert wrong.loc["inner step size", ["kit", "agree"]].tolist() == ["0.1", "differs"]
    assert report.protocol_note(table.reset_index()).startswith("4 of 16 settings differ from the publication's")
    from gems_core import page

    shown = page._protocol(params)  # the results page's section, and notebook 06's
    assert (
        shown.startswith("<h3>The protocol beside the published one</h3><p>4 of 16")
        and "inner steps at meta-test" in shown
    )


def test_the_table2_protocol_says_what_the_supplement_leaves_unstated(monkeypatch):
    from gems_core.params import load_params

    monkeypatch.chdir(PROJECT_ROOT)
    table = report.protocol(load_params("parameters/paper/table2_cub_aircraft.yaml")).set_index("setting")
    assert table.loc["seeds", "agree"] == "same" and table.loc["MMSUP initial sparsity", "agree"] == "same"
    assert table.loc["queries per class", ["published", "agree"]].tolist() == ["not stated", "not stated"]
    assert table.loc["class splits", "agree"] == "differs"  # Aircraft: three equal parts in the supplement
    assert report.protocol(load_params("parameters/demo.yaml")) is None  # not a published benchmark's data


def test_a_profile_without_an_ablation_grid_gets_empty_tables_not_an_error(tiny_params):
    from gems_core import ablations

    none = dict(ablation_methods=[], ablation_adaptation_steps=[], ablation_fast_lr=[], ablation_sparsity=[])
    params = tiny_params(**none)
    assert ablations.grid(params).empty
    table = ablations.run_grid(params, [])
    assert table.empty and {"setting", "value", "method", "accuracy"} <= set(table.columns)
    assert ablations.summary(table).empty
    assert list(ablations.grid(tiny_params(**{**none, "ablation_sparsity": [0.3]}))["grid"]) == [[0.3]]


@pytest.mark.parametrize("page", ["README.md", "docs/demo.md"])
def test_the_demo_table_is_quoted_from_the_committed_results(page):
    text = (PROJECT_ROOT / page).read_text()
    quoted = text.split("<!-- demo results: tools/demo_results.py -->\n")[1].split("<!-- /demo results -->")[0]
    committed = pd.read_csv(PROJECT_ROOT / "docs" / "results" / "demo.csv")
    assert quoted == report.markdown_results(committed), "run python tools/demo_results.py after make demo"
    assert {"maml", "bmp", "bmp_frozen_mask"} <= set(committed["method"])
