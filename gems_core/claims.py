"""Whether a method beats another: paired comparisons on the same test tasks, the numbers a claim about
GEMS's mechanisms rests on (``mechanism`` says whether a mask varies, and with the distribution).

``paired`` compares two rows on the same fixed test tasks: every method and seed meets the same tasks,
each stored with its fingerprint (``runs.TASK_ACCURACIES``), so differences are taken task by task,
matched by fingerprint, which removes the tasks' difficulty from the comparison. With two or more seeds
in common the 95 % interval is two-way (``statistics.crossed_test``: seeds and tasks both random, so it
speaks for other seeds and other test tasks); with one seed it is a t-interval over that seed's tasks,
which speaks for that trained model and nothing about others. ``unit`` and ``n`` say which and how many,
in every table and sentence.

``comparisons`` makes the rows the registry asks for (``Method.compared_with``), each under its question
(``QUESTIONS``), and every profile method against MAML, per test dataset: one family, whose p-values are
adjusted by Holm's method (``p_holm``). A verdict is ``better`` or ``worse`` when the Holm-adjusted
p-value is under 5 %, ``equivalent within +-m`` when the (unadjusted) 95 % interval lies inside the
equivalence margin ``m`` (parameter ``equivalence_margin``), and ``inconclusive`` otherwise; a pair whose
runs cannot be matched task by task, or with no intact seed in common, is ``not comparable`` with the
reason, and every other row stays.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from . import mechanism, results, runs
from .learners import BASELINE, BEATS_MAML, METHODS, QUESTIONS, TESTED_ON
from .params import Config
from .statistics import ALPHA, crossed_test, holm, mean_test

BETTER, WORSE, INCONCLUSIVE, NOT_COMPARABLE = "better", "worse", "inconclusive", "not comparable"
DISTRIBUTION_SPECIFIC = "Are the subnetworks distribution-specific?"  # answered by the mechanism scores
COLUMNS = [
    "question", "method", "against", "test_dataset", "difference", "low", "high", "p", "p_holm", "verdict", "unit", "n"
]  # fmt: skip


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


def paired(ours: dict[int, pd.Series], theirs: dict[int, pd.Series]) -> dict:
    """Our mean accuracy difference from theirs on the same test tasks, with its 95 % interval.

    Arguments:
        ours, theirs: per seed, each test task's accuracy: a Series indexed by the tasks' fingerprints,
            or a sequence in the tasks' order.

    Returns:
        ``difference``, ``low``, ``high``, ``p`` (two-sided, against no difference), ``unit`` ("seeds and
        T tasks", or "tasks of one seed") and ``n`` (seeds, or tasks). ValueError when the runs met
        different tasks.

    Example:
        >>> paired({21: pd.Series([0.6, 0.4], ["a", "b"])}, {21: pd.Series([0.4, 0.2], ["b", "a"])})["difference"]
        0.2
    """
    seeds = sorted(set(ours) & set(theirs))
    if not seeds:
        raise ValueError("the two rows have no seed in common")
    ours, theirs = ({s: pd.Series(side[s]) for s in seeds} for side in (ours, theirs))
    tasks = ours[seeds[0]].index
    for seed in seeds:
        for side in (ours[seed], theirs[seed]):
            if len(side) != len(tasks) or set(side.index) != set(tasks):
                matched = len(set(side.index) & set(tasks))
                raise ValueError(f"seed {seed}: {matched} of {len(tasks)} test tasks match by fingerprint")
    differences = np.stack([ours[s].loc[tasks].to_numpy() - theirs[s].loc[tasks].to_numpy() for s in seeds])
    if len(seeds) >= 2 and len(tasks) >= 2:
        test, unit, n = crossed_test(differences), f"seeds and {len(tasks)} tasks", len(seeds)
    else:
        test, unit, n = mean_test(differences[0]), "tasks of one seed", len(tasks)
    return {k: test[k] for k in ("difference", "low", "high", "p")} | {"unit": unit, "n": n}


def compared_pairs(params: Config) -> list[tuple[str, str, str]]:
    """(question, ours, theirs) for every comparison a profile's tables make: each method's own comparisons
    (``Method.compared_with``: its test-time controls, and the trained controls the profile runs), then
    every profile method against MAML."""
    rows = []
    for method in params.methods:
        spec = METHODS[method]
        tested = {row for row, _ in spec.test_controls}
        rows += [(q, method, row) for row, q in spec.compared_with if row in tested or row in params.methods]
    if BASELINE in params.methods:
        rows += [(BEATS_MAML, m, BASELINE) for m in params.methods if m != BASELINE]
    return rows


def comparisons(params: Config, diverged_at_chance: bool = False) -> pd.DataFrame:
    """Every pair of ``compared_pairs``, per test dataset, paired on the same test tasks (``paired``): a
    row per (question, method, against, test dataset) with the difference, its interval, p-value,
    Holm-adjusted p-value over the whole table, verdict, unit and n. Seeds whose runs are not both intact
    are left out (incomplete runs silently; damaged and diverged ones named); a pair with no seed left
    because of them, or whose tasks do not match, is ``not comparable`` with the reason in ``unit``.
    ``diverged_at_chance``: the sensitivity analysis: a diverged run counts as a failure, chance accuracy
    (1 / ways) on every test task, instead of being left out."""
    rows = []
    for question, ours_name, theirs_name in compared_pairs(params):
        found = {name: [_task_accuracies(params, name, s) for s in params.seeds] for name in (ours_name, theirs_name)}
        if diverged_at_chance:
            found = _diverged_at_chance(found, 1 / params.ways)
        common = [
            i
            for i, s in enumerate(params.seeds)
            if found[ours_name][i].table is not None and found[theirs_name][i].table is not None
        ]
        reasons = list(dict.fromkeys(side.why for name in found for side in found[name] if side.why))
        datasets = [d.name for d in params.distributions]
        for dataset in datasets:
            row = {"question": question, "method": ours_name, "against": theirs_name, "test_dataset": dataset}
            if not common:
                if not reasons:
                    continue  # nothing complete yet: no row
                rows.append(row | {"verdict": NOT_COMPARABLE, "unit": "; ".join(reasons)})
                continue
            try:
                row |= paired(
                    *({params.seeds[i]: _tasks(found[name][i].table, dataset) for i in common} for name in found)
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


class Side(NamedTuple):
    """One row's run of one seed, as a comparison sees it: its per-task accuracies if it is complete and
    intact, else why it is left out (None while it is simply not complete), and whether it diverged."""

    table: pd.DataFrame | None
    why: str | None = None
    diverged: bool = False


def _diverged_at_chance(found: dict[str, list[Side]], chance: float) -> dict[str, list[Side]]:
    """``found`` with each diverged run of a trained row replaced by chance accuracy on every test task (the
    tasks of any intact run of the pair: every run of a profile meets the same ones); a test-time control of
    a diverged run stays left out (it was never tested); as it was if no run of the pair is intact."""
    intact = next((side.table for sides in found.values() for side in sides if side.table is not None), None)
    if intact is None:
        return found
    failed = Side(intact.assign(accuracy=chance))
    return {
        name: [failed if side.diverged and name not in TESTED_ON else side for side in sides]
        for name, sides in found.items()
    }


def _task_accuracies(params: Config, row: str, seed: int) -> Side:
    """A row's run of one seed (``Side``), read through one check of every file it rests on."""
    method = TESTED_ON.get(row, row)
    try:
        result = runs.RunFiles(params, method, seed).checked_results()
    except runs.RunDamaged as damage:
        return Side(None, f"{method} seed {seed} is damaged ({damage.reason})")
    if result is None:
        return Side(None)
    if result["status"] != "complete":
        return Side(None, f"{method} seed {seed} {result['status']}", result["status"] == "diverged")
    return Side(runs.row_task_accuracies(params, row, seed))


def _tasks(table: pd.DataFrame, dataset: str) -> pd.Series:
    """One test dataset's task accuracies, indexed by the tasks' fingerprints."""
    rows = table.loc[table["test_dataset"] == dataset]
    return pd.Series(rows["accuracy"].to_numpy(), index=rows["fingerprint"].to_numpy())


def mechanism_scores(params: Config) -> pd.DataFrame:
    """Per complete run that scores its per-task choice (``Scored.mechanism_score``), and per test-time
    control of it: the score, its interval or chance level, and what it says."""
    rows = []
    for method in params.methods:
        for seed in params.seeds:
            result = results.intact_results(params, method, seed)
            if not result or result.get("status") != "complete" or not result.get("mechanism"):
                continue
            scored = [(method, result["mechanism"])]
            scored += [(name, c["mechanism"]) for name, c in result.get("controls", {}).items() if c.get("mechanism")]
            for name, scores in scored:
                rows.append(
                    {"method": name, "seed": seed, **mechanism.value_row(scores), "says": mechanism.reading(scores)}
                )
    columns = ["method", "seed", "score", "reading", "value", "low", "high", "p", "variation", "decoding"]
    return pd.DataFrame(rows, columns=[*columns, "decoding_chance", "says"])


def answers(params: Config, compared: pd.DataFrame, scores: pd.DataFrame) -> list[str]:
    """One line per question and method, answer first: each comparison's verdict per test dataset with its
    difference and interval, and the unit; then, per method and seed, whether its subnetworks (BMP's layer
    masks, MMSUP's kept weights) are distribution-specific, with the score's numbers (``mechanism.reading``)."""
    lines = []
    for question in QUESTIONS:
        for method, rows in compared[compared["question"] == question].groupby("method", sort=False):
            parts = []
            for against, pair in rows.groupby("against", sort=False):
                cells = ", ".join(sentence(r) for r in pair.itertuples())
                parts.append(f"vs {against}: {cells}")
            lines.append(f"{question} {method}: " + "; ".join(parts) + ".")
    own = scores[scores["method"].isin(list(params.methods))]
    for row in own.itertuples():
        lines.append(f"{DISTRIBUTION_SPECIFIC} {row.method} seed {row.seed}: {row.says}.")
    return lines


def sentence(row) -> str:
    """One comparison's verdict on its test dataset in words, with its difference, interval, unit and n: what
    a reader may quote (its pair and question stand before it in ``answers``)."""
    if row.verdict == NOT_COMPARABLE:
        return f"not comparable on {row.test_dataset} ({row.unit})"
    return (
        f"{row.verdict} on {row.test_dataset} ({row.difference:+.3f}, {row.low:+.3f} to {row.high:+.3f}, "
        f"over {row.n} {row.unit})"
    )


def sensitivity(params: Config, compared: pd.DataFrame) -> str:
    """Which verdicts change when each diverged run counts as a failure, chance accuracy on every test task
    (``comparisons(diverged_at_chance=True)``), instead of being left out: a line for the evidence."""
    key = ["question", "method", "against", "test_dataset"]
    at_chance = comparisons(params, diverged_at_chance=True)
    merged = compared[key + ["verdict"]].merge(at_chance, on=key, suffixes=("_left_out", ""))
    changed = merged[merged["verdict_left_out"] != merged["verdict"]]
    head = f"Counting each diverged run as a failure instead (chance accuracy, 1/{params.ways}, on every test task), "
    if changed.empty:
        return head + f"no verdict of the {len(merged)} changes."
    cells = "; ".join(
        f"{r.method} vs {r.against}: {r.verdict_left_out}, then {sentence(r)}" for r in changed.itertuples()
    )
    return head + f"{len(changed)} of {len(merged)} verdicts change: {cells}."


def evidence(
    params: Config, table: pd.DataFrame, compared: pd.DataFrame, scores: pd.DataFrame
) -> tuple[list[str], list[str]]:
    """ "What the evidence says", generated from the results: the answers (``answers``: one line per
    question and method), then the detail: per test dataset the methods' ordering, how far the verdicts
    speak, diverged and damaged runs.

    Arguments:
        params: the profile's parameters.
        table: its results (``results.gather``).
        compared: its ``comparisons``.
        scores: its ``mechanism_scores``.
    (``gathered.gather`` reads all three once.)
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
        return [], ["No complete run yet: nothing to say.", *left_out]
    pair = " + ".join(d.name for d in params.distributions)
    paragraphs = []
    for dataset, rows in complete.groupby("test_dataset", sort=False):
        means = rows.groupby("method")["accuracy"].mean().sort_values(ascending=False)
        order = " > ".join(f"{m} {a:.3f}" for m, a in means.items())
        paragraphs.append(f"Trained on {pair}, tested on {dataset}, mean accuracy: {order}.")
    one_seed = any(u == "tasks of one seed" for u in compared["unit"])
    paragraphs.append(
        f"Verdicts: better or worse when the Holm-adjusted p-value over these {len(compared)} comparisons is under "
        f"0.05; equivalent when the 95 % interval lies within +-{params.equivalence_margin:g} accuracy; "
        "inconclusive otherwise. "
        + (
            "An interval over the tasks of one seed speaks for one trained model of each method, not for "
            "the method; run more seeds (parameter seeds) for a claim."
            if one_seed
            else "Each interval includes the variation of seeds and of test tasks, so it speaks for the method at "
            "these settings."
        )
    )
    failed = [f"{r['method']} seed {r['seed']}" for r in results.read_runs(params) if r["status"] == "diverged"]
    if failed:
        paragraphs.append(
            f"Diverged, so left out of every comparison and counted as failures: {', '.join(failed)} "
            f"({len(failed)} of {len(params.methods) * len(params.seeds)} runs). " + sensitivity(params, compared)
        )
    return answers(params, compared, scores), paragraphs + left_out
