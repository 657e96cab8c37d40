"""The notebooks' sections: each function reads or trains what one section of a notebook shows, draws its
figures, says its findings and returns its table, so a notebook holds only parameters, calls and prose.

Figures are drawn with matplotlib's current backend (inline in a notebook, in the render under the
pipeline); findings go through ``notebook.say``; every file written is written atomically (``io``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import ablations, claims, findings, io, plots, report, results
from .data import Distribution
from .gathered import Gathered
from .learners import LAYER_CHOOSER, SUBNETWORK_MASKER, TESTED_ON
from .notebook import say
from .params import Config
from .plan import plan


# --- 00 data prep ------------------------------------------------------------------------------
def data_summary(params: Config, distributions: list[Distribution], out: Path) -> pd.DataFrame:
    """Per distribution and split: classes and images, usable or dropped; written to data_summary.csv."""
    summary = pd.DataFrame([d.summary(params.shots + params.queries) for d in distributions])
    io.write_text(out / "data_summary.csv", summary.to_csv(index=False))
    return summary


def dropped_classes(params: Config, distributions: list[Distribution]) -> list[str]:
    """Say which classes and images no task will use, and why; return those lines."""
    need = params.shots + params.queries
    lines = []
    for d in distributions:
        for split in d.splits:
            absent, few = len(d.missing.get(split, [])), len(d.too_few(split, need))
            if absent or few:
                lines.append(
                    f"{d.name}/{split}: {absent} classes named by the split but absent from the data, "
                    f"{few} with fewer than shots + queries = {need} images"
                )
    lines += [
        f"{d.name}: {d.skipped_images} unreadable images left out (skip_unreadable_images)"
        for d in distributions
        if d.skipped_images
    ]
    say(
        f"Tasks are drawn only from readable images of classes present with at least {need} images; the run "
        f"stops if a split drops more than max_dropped_classes = {params.max_dropped_classes:.0%} of its "
        "classes. " + ("Dropped:" if lines else "None dropped: every image of every class of every split is used."),
        title="Classes and images dropped.",
        items=lines,
    )
    return lines


def image_caches(distributions: list[Distribution]) -> pd.DataFrame:
    """Each distribution's image cache: its file, size, and whether this run read or built it."""
    return pd.DataFrame(
        [
            {
                "distribution": d.name,
                "cache file": str(d.cache_path),
                "MiB": round(d.cache_path.stat().st_size / 2**20, 1),
                "status": "read from cache" if d.cache_hit else "built now",
            }
            for d in distributions
        ]
    )


def sample_grids(distributions: list[Distribution]) -> None:
    """A grid of meta-train images per distribution."""
    for d in distributions:
        plots.sample_grid(d.splits["train"], f"{d.name} ({d.source}), meta-train classes")


# --- shared by 01, 02, 03 ----------------------------------------------------------------------
def learning_curves(params: Config, methods: list[str], names: list[str]) -> dict[str, pd.DataFrame]:
    """The validation curve of every complete run of ``methods`` (those the profile trains), in one figure."""
    done = {(r["method"], r["seed"]) for r in results.read_runs(params)}
    curves = {
        f"{m} seed {s}": results.metrics(params, m, s)
        for m in methods
        if m in params.methods
        for s in params.seeds
        if (m, s) in done
    }
    plots.learning_curves(curves, names)
    return curves


def paired_with(params: Config, methods: list[str]) -> pd.DataFrame:
    """The paired comparisons (``claims.comparisons``) of ``methods`` and their test-time controls."""
    rows = set(methods) | {row for row, method in TESTED_ON.items() if method in methods}
    paired = claims.comparisons(params)
    return paired[paired["method"].isin(rows)]


def mechanism_readings(params: Config, method: str, label: str) -> list[str]:
    """Say, per seed, what the mechanism score of ``method`` (BMP or MMSUP) reads; return the readings."""
    readings = [row for row in claims.mechanism_scores(params).itertuples() if row.method == method]
    for row in readings:
        say(row.says, title=f"{label} seed {row.seed}.")
    return [row.says for row in readings]


# --- 02 BMP ------------------------------------------------------------------------------------
def bmp_layer_choices(run_params: Config, runs: list[dict], form: str, names: list[str]) -> None:
    """Per BMP run: the meta-test heatmap of its layer choices, how each distribution's training tasks
    adapted each layer, and the finding in words (a diverged run: where it diverged)."""
    for run in runs:
        if diverged := findings.diverged(run):
            say(diverged, title=f"BMP ({form}).")
            continue
        plots.layer_adaptation_heatmap(run["records"], f"BMP ({form}) seed {run['seed']}: meta-test")
        plots.adaptation_over_training(results.metrics(run_params, LAYER_CHOOSER, run["seed"]), names, f"BMP ({form})")
        say(
            findings.bmp_layer_choices(run["records"], run.get("mechanism", {})),
            title=f"BMP ({form}), seed {run['seed']}.",
        )


def bmp_embedding_forms(params: Config, runs: list[dict], distributions: list[Distribution], out: Path) -> pd.DataFrame:
    """Train BMP with every other embedding form of ``bmp_compare_embeddings`` (each seed), show each
    form's layer choices, and write every form's results to bmp_embeddings.csv; returns their summary."""
    by_form = {params.bmp_embedding: (params, runs)}
    for planned in plan(params, ("bmp_embedding",)):
        form = planned.params.bmp_embedding
        by_form.setdefault(form, (planned.params, []))[1].append(planned.execute(distributions))
    names = [d.name for d in distributions]
    for form, (form_params, form_runs) in list(by_form.items())[1:]:
        bmp_layer_choices(form_params, form_runs, form, names)
    table = pd.DataFrame(
        [
            row
            for form, (_, form_runs) in by_form.items()
            for run in form_runs
            for row in results.result_rows(run, f"{LAYER_CHOOSER} ({form})")
        ],
        columns=results.COLUMNS + ["run_id"],
    )
    io.write_text(out / "bmp_embeddings.csv", table.to_csv(index=False))
    return results.summary(table)


# --- 03 MMSUP ----------------------------------------------------------------------------------
def mmsup_sparsity(params: Config) -> dict[str, pd.DataFrame]:
    """The learned sparsity of each conv layer over training, per seed."""
    ran = SUBNETWORK_MASKER in params.methods
    curves = {f"seed {s}": results.metrics(params, SUBNETWORK_MASKER, s) for s in params.seeds if ran}
    plots.sparsity_trajectories(curves)
    return curves


def mmsup_overlaps(runs: list[dict]) -> None:
    """Per MMSUP run: the overlap of task subnetworks within and across test datasets, and the finding."""
    for run in runs:
        if diverged := findings.diverged(run):
            say(diverged)
            continue
        plots.overlap_heatmaps(run["records"]["overlap"])
        say(findings.mmsup_overlap(run["records"], run.get("mechanism", {})), title=f"MMSUP seed {run['seed']}.")


# --- 04 ablations ------------------------------------------------------------------------------
def ablation_grid(params: Config, distributions: list[Distribution]) -> pd.DataFrame:
    """Train (or read) every ablation run and return the summary; says so when the profile asks for none."""
    summary = ablations.summary(ablations.run_grid(params, distributions))
    if summary.empty:
        say(
            "This profile asks for no ablation (its ablation_* lists are empty); parameters/paper/ablations.yaml "
            "runs the supplement's whole grid, parameters/demo.yaml a slice of it.",
            title="No ablation grid.",
        )
    return summary


def ablation_figures(summary: pd.DataFrame) -> None:
    """One figure per ablated setting: accuracy against the setting's values, per method."""
    for setting in summary["setting"].unique() if not summary.empty else []:
        plots.ablation_curves(summary[summary["setting"] == setting], setting)


# --- 06 report ---------------------------------------------------------------------------------
def evidence(gathered: Gathered) -> list[str]:
    """Say what the evidence says (``claims.evidence``): the answers first, then the forest plot of every
    paired difference, then the detail, a paragraph at a time; return the paragraphs."""
    answers, detail = gathered.evidence()
    for line in answers:
        say(line)
    if not gathered.compared.empty:
        plots.forest(gathered.compared, gathered.params.equivalence_margin)
    for paragraph in detail:
        say(paragraph)
    return answers + detail


def table2(table: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Table 2 as reproduced (``report.table2``), written to table2.csv."""
    reproduced = report.table2(table)
    io.write_text(out / "table2.csv", reproduced.to_csv())
    return reproduced


def protocol(params: Config):
    """The published protocol beside the kit's (``report.protocol``), said in a line and shown; a line alone
    when the profile is on no published benchmark."""
    table = report.protocol(params)
    if table is None:
        say("This profile's data are on no published benchmark: no published protocol to set beside it.")
        return None
    say(report.protocol_note(table))
    return results.shown(table)


def beside_the_paper(table: pd.DataFrame, params: Config):
    """The profile's results beside the paper's Table 2, or beside a published benchmark (Plain-Multi), or,
    when neither matches its data, the paper's table for reference (said so)."""
    compared = report.beside_paper(table, params)
    if not compared.empty:
        return results.shown(compared)
    published = report.beside_published(table, params)
    if published is not None:
        return results.shown(published)
    say("No run of this profile matches a pair of the supplement's Table 2; the paper's table for reference:")
    return report.reference_wide()
