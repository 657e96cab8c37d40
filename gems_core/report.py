"""Table 2 of the supplement, reproduced from a profile's results.csv and set beside the paper's values."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .learners import ROWS, TESTED_ON
from .params import TABLE2_METHODS, Config

REFERENCE = Path(__file__).parent / "reference" / "table2.csv"
PUBLISHED = Path(__file__).parent / "reference" / "plain_multi.csv"  # other benchmarks' published accuracies


def reference_table() -> pd.DataFrame:
    """The supplement's Table 2 (train_sources, test_source, method, accuracy, time), kept in the kit."""
    return pd.read_csv(REFERENCE, comment="#")


def reference_wide() -> pd.DataFrame:
    """The supplement's Table 2 accuracies: a row per (pair, test dataset), a column per method."""
    ref = reference_table()
    rows = pd.MultiIndex.from_frame(ref[["train_sources", "test_source"]].drop_duplicates())
    wide = ref.pivot_table(index=["train_sources", "test_source"], columns="method", values="accuracy")
    return wide.reindex(index=rows, columns=TABLE2_METHODS)


def with_sources(results: pd.DataFrame, params: Config) -> pd.DataFrame:
    """results.csv rows with the distributions' sources (cub, aircraft, ...) beside their names."""
    source = {d.name: d.source for d in params.distributions}
    out = results.copy()
    out["train_sources"] = out["train_datasets"].map(lambda s: "+".join(source.get(n, n) for n in s.split("+")))
    out["test_source"] = out["test_dataset"].map(lambda n: source.get(n, n))
    return out


def table2(results: pd.DataFrame) -> pd.DataFrame:
    """The supplement's shape: a row per (train pair, test dataset), per method mean accuracy ± std over
    seeds and mean training hours."""
    grouped = (
        results.groupby(["train_datasets", "test_dataset", "method"], sort=False)
        .agg(
            accuracy=("accuracy", "mean"),
            accuracy_std=("accuracy", "std"),
            hours=("train_seconds", "mean"),
            seeds=("seed", "nunique"),
            complete=("accuracy", "count"),
        )
        .reset_index()
    )
    grouped["hours"] = (grouped["hours"] / 3600).round(4)
    grouped["cell"] = grouped.apply(_cell, axis=1)
    rows = pd.MultiIndex.from_frame(grouped[["train_datasets", "test_dataset"]].drop_duplicates())
    methods = [m for m in ROWS if m in set(grouped["method"])]
    indexed = grouped.set_index(["train_datasets", "test_dataset", "method"])
    table = pd.DataFrame(index=rows)
    for method in methods:
        for column, label in (("cell", "accuracy"), ("hours", "time (h)")):
            table[(method, label)] = [indexed[column].get((*row, method)) for row in rows]
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def _cell(row) -> str:
    """Mean accuracy ± std over the seeds that completed; 'diverged' where none did."""
    if row.complete == 0:
        return "diverged"
    text = f"{row.accuracy:.3f}" + (f" ± {row.accuracy_std:.3f}" if row.complete > 1 else "")
    lost = row.seeds - row.complete
    return text + (f" ({lost} of {row.seeds} seeds diverged)" if lost else "")


def beside_paper(results: pd.DataFrame, params: Config) -> pd.DataFrame:
    """Each (pair, test dataset, method) of the profile that the paper also reports: ours (over its complete
    runs), the paper's, and the difference. Empty when the profile used other data than the paper's."""
    ours = (
        with_sources(results[results["status"] == "complete"], params)
        .groupby(["train_sources", "test_source", "method"])
        .agg(
            ours=("accuracy", "mean"),
            ours_std=("accuracy", "std"),
            seeds=("seed", "nunique"),
            ours_hours=("train_seconds", lambda s: s.mean() / 3600),
        )
        .reset_index()
    )
    paper = reference_table().rename(columns={"accuracy": "paper", "time": "paper_time"})
    joined = ours.merge(paper, on=["train_sources", "test_source", "method"], how="inner")
    joined["difference"] = joined["ours"] - joined["paper"]
    return joined


def published_table() -> pd.DataFrame:
    """Published accuracies of other benchmarks (train_sources, shots, test_source, method, accuracy)."""
    return pd.read_csv(PUBLISHED, comment="#")


def train_sources(params: Config) -> str:
    """The profile's sources joined as the reference tables name a pair: ``cub+aircraft``."""
    return "+".join(d.source for d in params.distributions)


def beside_published(results: pd.DataFrame, params: Config) -> pd.DataFrame | None:
    """For a profile on a published benchmark's data and shots (Plain-Multi): per test dataset, each kit
    method's mean accuracy over complete seeds (NaN where no run exists) beside each published method's
    (NaN where none is entered). None when the profile is on no such benchmark."""
    sources = train_sources(params)
    published = published_table()
    if sources not in set(published["train_sources"]):
        return None
    theirs = published[(published["train_sources"] == sources) & (published["shots"] == params.shots)]
    ours = with_sources(results[results["status"] == "complete"], params)
    table = pd.DataFrame(index=pd.Index([d.source for d in params.distributions], name="test dataset"))
    for method in ROWS:
        mine = ours[ours["method"] == method].groupby("test_source")["accuracy"].mean()
        if method in params.methods or not mine.empty:
            table[f"{method} (kit)"] = mine
    for method in published.loc[published["train_sources"] == sources, "method"].unique():
        table[f"{method} (published)"] = theirs[theirs["method"] == method].set_index("test_source")["accuracy"]
    return table.reset_index()


def data_note(params: Config) -> str:
    """A plain statement of whether this profile's data are the paper's."""
    sources = train_sources(params)
    named = sources.replace("+", " + ")
    if sources in set(reference_table()["train_sources"]):
        return f"This profile trains on {named}, one of the supplement's Table 2 pairs."
    if sources in set(published_table()["train_sources"]):
        return (
            f"This profile trains on {named}, the Plain-Multi benchmark of HSML and ARML: the "
            "supplement has no values for it, the published ones are set beside the kit's below."
        )
    used = " + ".join(f"{d.name} ({d.source})" for d in params.distributions)
    return (
        f"This profile trains on {used}, "
        "which is not one of the supplement's pairs (CUB + Aircraft, VGG Flowers + Aircraft, Fungi + "
        "Aircraft): its numbers cannot be compared with the paper's, which are shown for reference only."
    )


def markdown_results(results: pd.DataFrame) -> str:
    """A results table (``results.gather``'s rows of one seed) as Markdown: per method, the accuracy ± 95 %
    CI on each test dataset and the meta-training time (a test-time control reuses its method's weights)."""
    datasets = list(dict.fromkeys(results["test_dataset"]))
    lines = ["| method | " + " | ".join(datasets) + " | meta-training time |", "|---" * (len(datasets) + 2) + "|"]
    for method, rows in results.groupby("method", sort=False):
        by_test = rows.set_index("test_dataset")
        cells = [f"{by_test.loc[d, 'accuracy']:.3f} ± {by_test.loc[d, 'ci95']:.3f}" for d in datasets]
        time = "same weights" if method in TESTED_ON else f"{rows['train_seconds'].iloc[0]:.0f} s"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {time} |")
    return "\n".join(lines) + "\n"


PROTOCOLS = Path(__file__).parent / "reference" / "protocols.csv"
SHORT_NAMES = {"cub": "CUB", "aircraft": "Aircraft"}  # as the protocols name the sources with boxes
KIT_CHOICES = {  # the kit's value of a published setting that no parameter holds
    "class splits": lambda p: (
        "the kit's split files (docs/data.md): CUB 100/50/50 classes (the supplement's rule), VGG Flowers "
        "71/15/16, Aircraft 70/15/15, Fungi 994/200/200 (learn2learn's), DTD 33/7/7; HSML's own draw followed the "
        "file system's listing order, so its classes cannot be drawn again"
    ),
    "bounding-box crop": lambda p: (
        " and ".join(SHORT_NAMES[d.source] for d in p.distributions if d.crop) + " cropped to their boxes "
        "before resizing"
        if any(d.crop for d in p.distributions)
        else "none: the whole image, resized"
    ),
    "inner steps at meta-test": lambda p: (
        f"{p.adaptation_steps} (as in meta-training: BMP's layer masks are chosen per training step)"
    ),
    "queries per class at meta-test": lambda p: (
        f"{p.test_queries} (test_queries)" if p.test_queries else f"{p.queries} (as in meta-training)"
    ),
    "tested checkpoint": lambda p: "the last iteration's",
}


def benchmark(params: Config) -> str | None:
    """Which published protocol the profile's data are on: ``table2`` (a supplement pair), ``plain_multi``, or
    None."""
    sources = train_sources(params)
    if sources in set(reference_table()["train_sources"]):
        return "table2"
    return "plain_multi" if sources in set(published_table()["train_sources"]) else None


def protocol(params: Config) -> pd.DataFrame | None:
    """The published protocol of the profile's benchmark beside the kit's, a row per setting: the published
    value, the kit's, whether they agree (``same``, ``differs``, or ``not stated`` by the publication) and
    where it is stated; every difference is a row. None when the profile is on no published benchmark."""
    name = benchmark(params)
    if name is None:
        return None
    table = pd.read_csv(PROTOCOLS, comment="#", dtype=str, keep_default_na=False)
    rows = table[(table["benchmark"] == name) & table["shots"].isin(["any", str(params.shots)])]
    out = []
    for row in rows.itertuples():
        kit = _shown(getattr(params, row.parameter)) if row.parameter else KIT_CHOICES[row.setting](params)
        out.append(
            {"setting": row.setting, "published": row.published, "kit": kit, "agree": _agree(row.published, kit)}
            | {"source": row.source}
        )
    return pd.DataFrame(out)


def _shown(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _agree(published: str, kit: str) -> str:
    """``not stated``, ``same`` (equal text, or equal leading numbers: ``0.5 (learned)`` and ``0.5``), or
    ``differs``."""
    if published == "not stated":
        return "not stated"
    if published == kit or (_number(published) is not None and _number(published) == _number(kit)):
        return "same"
    return "differs"


def _number(text: str) -> float | None:
    try:
        return float(text.split(" ")[0])
    except ValueError:
        return None


def protocol_note(table: pd.DataFrame) -> str:
    """One line on a protocol table: how many settings differ from the publication's, how many it leaves
    unstated."""
    differs, unstated = (table["agree"] == "differs").sum(), (table["agree"] == "not stated").sum()
    return (
        f"{differs} of {len(table)} settings differ from the publication's and {unstated} are not stated there; "
        "every difference is a row below, so numbers set beside the published ones are read with them in mind."
    )
