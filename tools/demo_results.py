"""Quote the demo's results in the README from a committed file, never retyped: copy
outputs/demo/results.csv (after ``make demo``) to docs/results/demo.csv and write its table into the
README and docs/demo.md between the ``demo results`` markers (tests/test_report.py checks that they agree).

python tools/demo_results.py            # after make demo
python tools/demo_results.py --readme   # only rewrite the tables from docs/results/demo.csv
"""

import shutil
import sys
from pathlib import Path

import pandas as pd

from gems_core.report import markdown_results

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "results" / "demo.csv"
BEGIN, END = "<!-- demo results: tools/demo_results.py -->\n", "<!-- /demo results -->\n"

if __name__ == "__main__":
    if "--readme" not in sys.argv:
        shutil.copyfile(ROOT / "outputs" / "demo" / "results.csv", COMMITTED)
    table = markdown_results(pd.read_csv(COMMITTED))
    for page in (ROOT / "README.md", ROOT / "docs" / "demo.md"):
        head, rest = page.read_text().split(BEGIN)
        page.write_text(head + BEGIN + table + END + rest.split(END)[1])
        print(f"wrote the demo's table into {page} from {COMMITTED}")
