"""Write docs/parameters.md from the parameter schema (tests/test_params.py checks that it is current).

python tools/parameter_reference.py
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's gems_core, wherever the kit is installed from

from gems_core.learners import METHODS  # noqa: E402 - after the path above
from gems_core.params import SCHEMA, shapes, type_name  # noqa: E402

INTRO = """# Parameters

Generated from the schema (`gems_core/params.py`, which collects the settings declared beside each learner
and in `gems_core/cluster.py`) by `python tools/parameter_reference.py`; a test fails when this file and
the schema differ. Unknown names, wrong types and out-of-range values stop the run before anything is
trained or written, with a message naming the parameter and what is valid. Write floats as `1.0e-3`
(YAML reads `1e-3` as a string; the error says so). "Shapes runs" says which runs' outcome a parameter
changes, and so which run ids it is part of (`gems_core/runs.py`): every method's, one method's, or none
(bookkeeping).
"""
PATH = ROOT / "docs" / "parameters.md"


def schema_table() -> str:
    """The schema as a Markdown table (name, type, default, shapes runs, meaning)."""
    rows = ["| name | type | default | shapes runs | meaning |", "|---|---|---|---|---|"]
    for name, spec in SCHEMA.items():
        if isinstance(spec.affects_run, bool):
            shaped = "all" if spec.affects_run else "no"
        else:  # the methods it shapes
            shaped = ", ".join(m for m in METHODS if shapes(spec, m))
        meaning = spec.doc.replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{name}` | {type_name(spec.type)} | `{spec.default!r}` | {shaped} | {meaning} |")
    return "\n".join(rows)


def parameter_reference() -> str:
    """docs/parameters.md: what every parameter means, its default and whether it shapes runs."""
    return INTRO + "\n" + schema_table() + "\n"


if __name__ == "__main__":
    PATH.write_text(parameter_reference())
    print(f"wrote {PATH}")
