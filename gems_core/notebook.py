"""What every notebook does first: find the project, load and validate its parameters file."""
from __future__ import annotations

import os
from pathlib import Path

from .params import load_params

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def setup(parameters_file: str, **overrides) -> tuple[dict, Path]:
    """Work from the project root (as papermill and JupyterLab may start elsewhere), load and
    validate ``parameters_file``, and return (params, outputs/<profile>/ folder)."""
    os.chdir(PROJECT_ROOT)
    params = load_params(parameters_file, **{k: v for k, v in overrides.items() if v is not None})
    out = Path(params["output_root"]) / params["profile"]
    out.mkdir(parents=True, exist_ok=True)
    return params, out
