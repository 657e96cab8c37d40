"""Whether a method beats another: paired comparisons on the same test tasks, the numbers a claim about
GEMS's mechanisms rests on (``mechanism`` says whether a mask varies, and with the distribution).

``paired`` compares two methods on the same fixed test tasks: every method and seed meets the same
tasks (``runs.TASK_ACCURACIES``), so differences are taken task by task, which removes the tasks'
difficulty from the comparison. The interval is a 95 % t-interval over seeds when both methods have
two or more seeds in common (the seed is the unit a claim is about: another seed is another trained
model), else over the tasks of the one seed, which says how sure the comparison is for that trained
model and nothing about others; ``unit`` and ``n`` say which and how many, in every table and sentence.

``comparisons`` sets every method and control of a profile beside MAML this way, and each method with a
per-task mask beside its frozen-mask control, per test dataset: one family, whose p-values are adjusted
by Holm's method (``p_holm``). A verdict is ``better`` or ``worse`` when the Holm-adjusted p-value is
under 5 %, ``equivalent within +-m`` when the (unadjusted) 95 % interval lies inside the equivalence
margin ``m`` (parameter ``equivalence_margin``), and ``inconclusive`` otherwise; a pair whose runs
cannot be matched task by task is ``not comparable``, with the reason, and every other row stays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import mechanism, results, runs
from .learners import FROZEN_MASK_OF, METHODS
from .params import Config
from .statistics import ALPHA, holm, mean_test

BETTER, WORSE, INCONCLUSIVE, NOT_COMPARABLE = "better", "worse", "inconclusive", "not comparable"
COLUMNS = ["method", "against", "test_dataset", "difference", "low", "high", "p", "p_holm", "verdict", "unit", "n"]


def equivalent(margin: float) -> str:
    return f"equivalent within +-{margin:g}"


def verdict(difference: float, low: float, high: float, p_holm: float, margin: float) -> str:
    """better / worse (Holm-adjusted p under 5 %), equivalent within the margin (the interval inside
    +-margin), or inconclusive."""
    if p_holm < ALPHA:
        return BETTER if difference > 0 else WORSE
    if -margin <= low and high <= margin:
        return equivalent(margin)
    return INCONCLUSIVE


def paired(ours: dict[int, Sequence[float]], theirs: dict[int, Sequence[float]]) -> dict:
    """Our method's mean accuracy difference from theirs on the same test tasks, with its 95 % interval.

    Arguments:
        ours, theirs: per seed, the accuracy of each fixed test task (in the tasks' order).

    Returns:
        ``difference``, ``low``, ``high``, ``p`` (two-sided, against no difference), ``unit`` ("seeds" or
        "tasks of one seed") and ``n`` (how many seeds or tasks the interval is over).

    Example:
        >>> paired({21: [0.6, 0.4]}, {21: [0.4, 0.4]})["difference"]
        0.1
    """
    seeds = sorted(set(ours) & set(theirs))
    if not seeds:
        raise ValueError("the two methods have no seed in common")
    for seed in seeds:
        if len(ours[seed]) != len(theirs[seed]):
            raise ValueError(f"seed {seed}: {len(ours[seed])} against {len(theirs[seed])} test tasks")
    if len(seeds) >= 2:
        values, unit = [np.mean(np.subtract(ours[s], theirs[s])) for s in seeds], "seeds"
    else:
        values, unit = np.subtract(ours[seeds[0]], theirs[seeds[0]]), "tasks of one seed"
    test = mean_test(values)
    return {k: test[k] for k in ("difference", "low", "high", "p")} | {"unit": unit, "n": len(values)}


def sentence(row) -> str:
    """One comparison in words, with its unit and n: what a reader may quote."""
    if row.verdict == NOT_COMPARABLE:
        return f"{row.method} vs {row.against}: not comparable ({row.unit})"
    return (
        f"{row.method} vs {row.against}: {row.verdict} ({row.difference:+.3f}, 95 % interval {row.low:+.3f} to "
        f"{row.high:+.3f}, Holm-adjusted p = {row.p_holm:.3f}; over {row.n} {row.unit})"
    )


BASELINE = "maml"


def compared_pairs(params: Config) -> list[tuple[str, str]]:
    """(ours, theirs) for every comparison a profile's tables make: each method and frozen-mask control
    against MAML, then each method with a per-task mask against its own frozen-mask control."""
    frozen = [(m, c) for m in params.methods if (c := METHODS[m].frozen_mask)]
    rows = [*params.methods, *(c for _, c in frozen)]
    against_maml = [(row, BASELINE) for row in rows if row != BASELINE] if BASELINE in params.methods else []
    return against_maml + frozen


def comparisons(params: Config) -> pd.DataFrame:
    """Every pair of ``compared_pairs``, per test dataset, paired on the same test tasks (``paired``): a
    row per (method, against, test dataset) with the difference, its interval, p-value, Holm-adjusted
    p-value over the whole table, verdict, unit and n. Runs without intact per-task accuracies (not
    complete, or damaged) are left out; a pair with none has no row; a pair that cannot be matched is
    ``not comparable``, its reason in ``unit``."""
    rows = []
    for ours_name, theirs_name in compared_pairs(params):
        ours = {s: _task_accuracies(params, ours_name, s) for s in params.seeds}
        theirs = {s: _task_accuracies(params, theirs_name, s) for s in params.seeds}
        common = [s for s in params.seeds if ours[s] is not None and theirs[s] is not None]
        if not common:
            continue
        for dataset in ours[common[0]]["test_dataset"].unique():
            row = {"method": ours_name, "against": theirs_name, "test_dataset": dataset}
            try:
                row |= paired(
                    {s: _tasks(ours[s], dataset) for s in common}, {s: _tasks(theirs[s], dataset) for s in common}
                )
            except ValueError as exc:
                row |= {"verdict": NOT_COMPARABLE, "unit": str(exc)}
            rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS).astype({"verdict": object, "unit": object})
    table["p_holm"] = holm(table["p"].astype(float).tolist()) if len(table) else []
    comparable = table["verdict"] != NOT_COMPARABLE
    table.loc[comparable, "verdict"] = [
        verdict(r.difference, r.low, r.high, r.p_holm, params.equivalence_margin)
        for r in table[comparable].itertuples()
    ]
    return table


def _task_accuracies(params: Config, row: str, seed: int) -> pd.DataFrame | None:
    """A row's per-task accuracies of one seed, if its run is intact (a damaged run is left out, and
    named by ``plan.damaged``)."""
    method = FROZEN_MASK_OF.get(row, row)
    if results.intact_results(params, method, seed) is None:
        return None
    return runs.row_task_accuracies(params, row, seed)


def _tasks(table: pd.DataFrame, dataset: str) -> list[float]:
    """One test dataset's task accuracies, in the tasks' order."""
    return table.loc[table["test_dataset"] == dataset].sort_values("task")["accuracy"].tolist()


def mechanism_scores(params: Config) -> pd.DataFrame:
    """Per complete run of a method with a per-task mask, and of its frozen-mask control: the mechanism
    score (``mechanism.score``), its interval or chance level, and what it says."""
    rows = []
    for method in params.methods:
        control = METHODS[method].frozen_mask
        for seed in params.seeds:
            result = results.intact_results(params, method, seed)
            if not control or not result or result.get("status") != "complete" or "mechanism" not in result:
                continue
            for name, scores in ((method, result["mechanism"]), (control, result["frozen_mask"]["mechanism"])):
                rows.append(
                    {"method": name, "seed": seed, **mechanism.value_row(scores), "says": mechanism.reading(scores)}
                )
    columns = ["method", "seed", "score", "reading", "value", "low", "high", "p", "variation", "decoding"]
    return pd.DataFrame(rows, columns=[*columns, "decoding_chance", "says"])


def evidence(params: Config, table: pd.DataFrame) -> list[str]:
    """ "What the evidence says", generated from the results: per test dataset of the profile's pair, the
    methods' ordering and every paired verdict, then the mechanism scores, then how far it speaks.

    Arguments:
        params: the profile's parameters.
        table: its results (``results.gather``).
    """
    broken = results.damaged(params)
    left_out = (
        [
            f"Left out as damaged ({len(broken)} runs; run the profile again to retrain or re-evaluate them): "
            + "; ".join(broken)
            + "."
        ]
        if broken
        else []
    )
    complete = table[table["status"] == "complete"]
    if complete.empty:
        return ["No complete run yet: nothing to say.", *left_out]
    compared, scores = comparisons(params), mechanism_scores(params)
    pair = " + ".join(d["name"] for d in params.distributions)
    paragraphs = []
    for dataset, rows in complete.groupby("test_dataset", sort=False):
        means = rows.groupby("method")["accuracy"].mean().sort_values(ascending=False)
        order = " > ".join(f"{m} {a:.3f}" for m, a in means.items())
        verdicts = [sentence(r) for r in compared[compared["test_dataset"] == dataset].itertuples()]
        paragraphs.append(
            f"Trained on {pair}, tested on {dataset}: {order}. "
            + ("Paired on the same test tasks: " + "; ".join(verdicts) + "." if verdicts else "")
        )
    own = scores[~scores["method"].isin(list(FROZEN_MASK_OF))]
    if not own.empty:
        paragraphs.append(
            "Mechanism: " + "; ".join(f"{r.method} seed {r.seed}: {r.says}" for r in own.itertuples()) + "."
        )
    units = set(compared["unit"])
    paragraphs.append(
        f"Verdicts: better or worse when the Holm-adjusted p-value over these {len(compared)} comparisons is under "
        f"0.05; equivalent when the 95 % interval lies within +-{params.equivalence_margin:g} accuracy; "
        "inconclusive otherwise. "
        + (
            "Each interval over seeds speaks for the method at these settings (every seed meets the same test "
            "tasks, so task sampling is not in it)."
            if units == {"seeds"}
            else "An interval over the tasks of one seed speaks for one trained model of each method, not for "
            "the method; run more seeds (parameter seeds) for a claim."
        )
    )
    failed = [f"{r['method']} seed {r['seed']}" for r in results.read_runs(params) if r["status"] == "diverged"]
    if failed:
        paragraphs.append(
            f"Diverged, so left out of every comparison and counted as failures: {', '.join(failed)} "
            f"({len(failed)} of {len(params.methods) * len(params.seeds)} runs)."
        )
    return paragraphs + left_out
