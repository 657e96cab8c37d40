"""Write docs/parameters.md from the parameter schema (tests/test_params.py checks that it is current).

python tools/parameter_reference.py
"""

from pathlib import Path

from gems_core.params import parameter_reference

if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "docs" / "parameters.md"
    path.write_text(parameter_reference())
    print(f"wrote {path}")
