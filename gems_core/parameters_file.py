"""Reading a parameters file: YAML, bounded in size and in alias expansion, with no key given twice, so a
malformed or hostile file is refused with a message before anything walks its value."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from .schema import ParameterError, shown

MAX_FILE_BYTES = 1 << 20  # a parameters file is a few KB; anything near this is not one
MAX_NODES = 100_000  # YAML nodes after expanding aliases: a real file has hundreds, an alias bomb billions


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping and a document whose aliases expand
    to more than ``MAX_NODES`` nodes (or refer to themselves), before anything walks the value."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise ParameterError(
                    f"parameter {shown(key)} is given twice (line {key_node.start_mark.line + 1}); "
                    "give each parameter once"
                )
            seen.add(key)
        return super().construct_mapping(node, deep)

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return node


def _expanded_size(node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many nodes ``node`` is once every alias is expanded (shared nodes are counted once per use)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:
        raise ParameterError("the parameters file has an alias that refers to itself; valid YAML parameters are finite")
    open_nodes.add(id(node))
    children = node.value if isinstance(node.value, list) else []
    size = 1
    for child in children:
        for part in child if isinstance(child, tuple) else (child,):
            size += _expanded_size(part, sizes, open_nodes)
            if size > MAX_NODES:
                raise ParameterError(
                    f"the parameters file expands to more than {MAX_NODES} values through its aliases (&, *); "
                    "a parameters file needs far fewer: write the values out"
                )
    open_nodes.discard(id(node))
    sizes[id(node)] = size
    return size


def read_yaml(path: Path) -> Any:
    """A parameters file's YAML, bounded in size and alias expansion, with no key given twice."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ParameterError(
            f"parameters file '{path}' is {path.stat().st_size} bytes; a parameters file may be at most "
            f"{MAX_FILE_BYTES}"
        )
    try:
        return yaml.load(path.read_text(), Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader with bounds
    except yaml.YAMLError as exc:
        raise ParameterError(f"parameters file '{path}' is not valid YAML: {str(exc)[:300]}") from None
    except UnicodeDecodeError:
        raise ParameterError(f"parameters file '{path}' is not UTF-8 text") from None
