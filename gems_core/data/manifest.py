"""The paper's datasets as ``make data`` fetches them: ``manifest.json`` (per dataset its files, ordered
source URLs, published MD5s, whether to extract) and each dataset's record of what was fetched
(``fetched.json``: every file's MD5), which the image caches are keyed by (``sources``)."""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = Path(__file__).with_name("manifest.json")
RECORD = "fetched.json"  # in each dataset's folder: what was fetched and verified, with each file's MD5


def manifest(path: Path = MANIFEST) -> dict:
    return json.loads(Path(path).read_text())


def folder(data_root: Path, spec: dict) -> Path:
    """Where a dataset's loaders read it: ``<data_root>/<folder>``."""
    return Path(data_root) / spec["folder"]


def recorded(data_root: Path, spec: dict) -> dict[str, str] | None:
    """The MD5 of each file a completed fetch laid out (``fetched.json``), or None if none completed."""
    path = folder(data_root, spec) / RECORD
    return json.loads(path.read_text())["md5"] if path.exists() else None
