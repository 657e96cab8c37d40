"""``outputs/<profile>/index.html``: the page a reader opens first.

One static page per profile, written by the pipeline after its notebooks: the profile's parameters in
brief, Table 2 as reproduced beside the paper's values, every planned run's state (complete, partial
at some iteration, diverged, damaged, failed, missing) with its training time and device, the key figures (PNG
files beside the page) and a link to each rendered notebook. Links are relative and there is no
JavaScript, so the page opens from the file system, or from a copy of the folder, anywhere.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from . import io, plots, report, results
from .gathered import Gathered, gather
from .learners import METHODS, Pictured
from .notebook import from_project_root
from .params import Config

BRIEF = (
    "image_size",
    "hidden_size",
    "ways",
    "shots",
    "queries",
    "meta_batch_size",
    "adaptation_steps",
    "fast_lr",
    "meta_lr",
    "iterations",
    "seeds",
    "methods",
    "test_tasks",
    "device",
)
STYLE = """body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;display:block;max-width:100%;overflow-x:auto;font-size:.85em}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.complete{color:#176b2c}.diverged,.failed,.damaged{color:#a31515}.partial{color:#8a5a00}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}code{background:#f3f3f3;padding:0 .2em}"""


def _table(frame: pd.DataFrame, index: bool = False) -> str:
    return frame.to_html(index=index, na_rep="-", float_format=lambda v: f"{v:.3f}", border=0)


def _figure(fig, folder: Path, name: str) -> str:
    """Save ``fig`` as figures/<name>.png beside the page and return its <img> tag."""
    path = folder / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<p><img src="figures/{quote(name)}.png" alt="{html.escape(name)}"></p>'


def _runs_table(gathered: Gathered) -> str:
    """Every planned run: its state, how far it got, its training time and device, and its folder."""
    rows = []
    for run, row in zip(gathered.planned, gathered.states):
        done = run.outcome()
        state = html.escape(str(row["state"]), quote=True)
        cells = [
            html.escape(row["run"]),
            html.escape(row["kind"]),
            f'<span class="{state}">{state}</span>',
            html.escape(f"{row['iteration']} / {row['of']}"),
            results.duration(done["train_seconds"]) if "train_seconds" in done else "-",
            html.escape(str(done.get("device", "-"))),
            f"<code>{html.escape(str(from_project_root(run.folder)))}</code>",
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("run", "kind", "state", "iteration", "training time", "device", "folder"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _figures(gathered: Gathered, folder: Path) -> str:
    """The figures a reader looks at first: test accuracy, then, for each method that pictures its choice
    (``learners.Pictured``; controls aside), its first complete seed's summary with the finding in words."""
    parts = []
    if not gathered.complete.empty:
        summary = results.summary(gathered.complete)
        parts.append(_figure(plots.accuracy_bars(summary, gathered.params.ways), folder, "accuracy"))
    complete = [r for r, s in zip(gathered.planned, gathered.states) if r.kind == "main" and s["state"] == "complete"]
    for name, method in METHODS.items():
        if method.control or not issubclass(method.learner, Pictured):
            continue
        run = next((r for r in complete if r.method == name), None)
        if run is not None:
            outcome = run.outcome()
            finding = method.learner.records_finding(outcome["records"], outcome.get("mechanism", {}))
            figure = method.learner.records_figure(outcome["records"])
            parts.append(_figure(figure, folder, f"{name}-seed{run.seed}") + f"<p>{html.escape(finding)}</p>")
    return "".join(parts) or "<p>No complete run yet.</p>"


def _protocol(params: Config) -> str:
    """The published protocol beside the kit's (``report.protocol``), or nothing off a published benchmark."""
    table = report.protocol(params)
    if table is None:
        return ""
    return f"<h3>The protocol beside the published one</h3><p>{html.escape(report.protocol_note(table))}</p>" + _table(
        table
    )


def _comparisons(gathered: Gathered, folder: Path) -> str:
    """Each method against MAML and against its controls on the same test tasks
    (``claims.comparisons``), then the mechanism scores; also as comparisons.csv and mechanism.csv."""
    params, table, scores = gathered.params, gathered.compared, gathered.scores
    io.write_text(folder / "comparisons.csv", table.to_csv(index=False))
    io.write_text(folder / "mechanism.csv", scores.to_csv(index=False))
    if table.empty:
        return "<p>No two complete runs to compare yet.</p>"
    note = (
        "<p>Mean accuracy difference over the same fixed test tasks, with its 95 % interval, over the unit and n "
        "of each row: seeds where both have several, else the tasks of one seed (then it speaks for that trained "
        "model only). The p-values of this table are one family, adjusted by Holm's method (<code>p_holm</code>): "
        "<b>better</b> or <b>worse</b> needs an adjusted p under 0.05; <b>equivalent</b> needs the whole "
        f"interval within +-{params.equivalence_margin:g} accuracy (parameter <code>equivalence_margin</code>); "
        "anything else is <b>inconclusive</b>. Test-time controls are the same trained weights tested without the "
        "per-task choice: one mask for every task (<code>_frozen_mask</code>), the test tasks' masks shuffled "
        "across tasks (<code>_shuffled_masks</code>), masks drawn at BMP's frequencies (<code>_random_masks</code>), "
        "a random mask at MMSUP's sparsity (<code>_random_mask</code>); <code>fixed_layers</code>, "
        "<code>fixed_layers_matched</code> (per inner step the layers BMP chose most, trained as a freeze) and "
        "<code>mmsup_static</code> are trained controls.</p>"
    )
    mechanism = (
        "<p>Mechanism scores (docs/methods.md): does the mask vary (<code>variation</code>: BMP's largest "
        "mask-bit entropy in bits, MMSUP's mean Jaccard distance between tasks' kept sets), and does it vary with "
        "the distribution (a permutation test, <code>p</code>)? BMP: the most informative layer and inner step, "
        "in bits, and a decoder's accuracy predicting the distribution from the mask; MMSUP: the within - across "
        "overlap with its 95 % interval over blocks of tasks. The reading is constant, varies (not with the "
        "distribution), or depends on the distribution.</p>" + _table(scores)
        if not scores.empty
        else ""
    )
    return note + _table(table) + mechanism


def _evidence(gathered: Gathered, folder: Path) -> str:
    """The generated "what the evidence says" (``claims.evidence``): one line per question first, then the
    forest plot of every paired difference with the equivalence band, then the detail."""
    answers, detail = gathered.evidence()
    compared = gathered.compared
    margin = gathered.params.equivalence_margin
    forest = _figure(plots.forest(compared, margin), folder, "forest") if len(compared) else ""
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in answers)
    return (f"<ul>{lines}</ul>" if lines else "") + forest + "".join(f"<p>{html.escape(p)}</p>" for p in detail)


def write(params: Config, folder: Path, parameters_file: str | Path) -> Path:
    """Write (or refresh) the profile's page in ``folder`` (``outputs/<profile>``) and return its path."""
    matplotlib.use("Agg")
    folder = Path(folder)
    gathered = gather(params, folder)  # read once: each reading checks every run's files
    table = gathered.table
    brief = pd.DataFrame(
        [
            {"parameter": k, "value": ", ".join(map(str, v)) if isinstance(v, list) else v}
            for k, v in params.as_dict().items()
            if k in BRIEF
        ]
    )
    data = ", ".join(f"{d.name} ({d.source})" for d in params.distributions)
    compared = report.beside_paper(table, params)
    published = report.beside_published(table, params)
    notebooks = sorted(p.name for p in folder.glob("[0-9][0-9]_*.html"))
    body = [
        f"<h1>GEMS kit: profile <code>{html.escape(params.profile)}</code></h1>",
        f"<p>Parameters file <code>{html.escape(str(from_project_root(parameters_file)))}</code>; data: "
        f"{html.escape(data)}. {html.escape(report.data_note(params))}</p>",
        "<h2>What the evidence says</h2>",
        _evidence(gathered, folder),
        "<h2>Notebooks</h2><ul>"
        + "".join(f'<li><a href="{quote(n)}">{html.escape(n[:-5])}</a></li>' for n in notebooks)
        + "</ul>",
        "<h2>Table 2, reproduced</h2>",
        _table(report.table2(table), index=True) if not table.empty else "<p>No complete run yet.</p>",
        "<h2>Paired comparisons and mechanism scores</h2>",
        _comparisons(gathered, folder),
        "<h2>Beside the paper</h2>",
        _table(compared)
        if not compared.empty
        else _table(published)
        if published is not None
        else "<p>This profile's data are not one of the supplement's pairs: nothing to set beside the paper.</p>",
        _protocol(params),
        "<h2>Figures</h2>",
        _figures(gathered, folder),
        "<h2>Runs</h2>",
        _runs_table(gathered),
        "<h2>Parameters in brief</h2>",
        _table(brief),
    ]
    page = folder / "index.html"
    io.write_text(
        page,
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>GEMS: '
        f"{html.escape(params.profile)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n",
    )
    return page
