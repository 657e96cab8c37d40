"""Table 2 in the supplement's shape, the comparison with the paper, and the convergence summaries."""
import pandas as pd
import pytest

from gems_core import convergence, report


def _results(names=("cub", "aircraft")):
    rows = []
    for method, base in (("maml", 0.40), ("bmp", 0.50)):
        for seed, jitter in ((21, 0.0), (42, 0.02)):
            for k, test in enumerate(names):
                rows.append({"method": method, "train_datasets": "+".join(names), "test_dataset": test,
                             "seed": seed, "accuracy": base + jitter + k / 10, "ci95": 0.01,
                             "train_seconds": 7200.0, "iterations": 100})
    return pd.DataFrame(rows)


PAPER_PARAMS = {"distributions": [{"name": "cub", "source": "cub"}, {"name": "aircraft", "source": "aircraft"}]}


def test_reference_is_the_supplements_table2():
    ref = report.reference_table()
    assert len(ref) == 3 * 2 * 4
    row = ref[(ref.train_sources == "fungi+aircraft") & (ref.test_source == "aircraft") & (ref.method == "bmp")]
    assert row[["accuracy", "time"]].values.tolist() == [[0.438, 13.7]]


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


def test_other_data_is_said_plainly_and_not_compared():
    params = {"distributions": [{"name": "g", "source": "synthetic_glyphs"}, {"name": "s", "source": "synthetic_shapes"}]}
    assert report.beside_paper(_results(("g", "s")), params).empty
    assert "cannot be compared with the paper's" in report.data_note(params)


def test_convergence_summaries():
    trace = pd.DataFrame({"delta": [-1.0, -0.5, 0.2, -0.1], "swaps_conv1": [3, 1, 0, 0], "swaps_conv2": [0, 0, 0, 2],
                          "swaps_conv3": [0, 0, 0, 0], "swaps_conv4": [0, 0, 0, 0]})
    trace["swaps"] = trace.filter(like="swaps_").sum(1)
    holds = convergence.claim_holds(trace).set_index("iterations")
    assert holds.loc["all", "loss_decreased"] == 0.75
    assert holds.loc["with swaps (any layer)", "loss_decreased"] == 1.0
    assert holds.loc["without swaps", "count"] == 1 and holds.loc["without swaps", "loss_decreased"] == 0.0
    assert holds.loc["with swaps in conv2", "count"] == 1
    corr = convergence.correlations(trace).set_index("swaps")
    assert corr.loc["swaps_conv1", "spearman_with_delta"] < 0
    assert holds.loc["more swaps than the median", "count"] == 2
    text = convergence.verdict(convergence.claim_holds(trace), convergence.correlations(trace))
    assert text.startswith("The loss on the same tasks fell after 75% of 4 updates.")
    assert "100% of 3 updates with swaps and 0% of 1 without" in text
    no_free = convergence.claim_holds(trace[trace["swaps"] > 0])
    assert "no swap-free baseline" in convergence.verdict(no_free, convergence.correlations(trace))


def test_reference_wide_keeps_the_papers_row_and_method_order():
    wide = report.reference_wide()
    assert list(wide.columns) == ["maml", "multi_maml", "bmp", "mmsup"]
    assert list(wide.index)[:4] == [("cub+aircraft", "cub"), ("cub+aircraft", "aircraft"),
                                ("vgg_flowers+aircraft", "vgg_flowers"), ("vgg_flowers+aircraft", "aircraft")]
    assert wide.loc[("vgg_flowers+aircraft", "vgg_flowers"), "bmp"] == 0.738
