"""Walking and rewriting syntax trees.

Nodes are frozen dataclasses holding nodes and tuples of nodes; positions (``pos``) are not
part of a tree's shape. A rewrite rebuilds only the spine above what it replaces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any


def walk(node: Any) -> Iterator[Any]:
    """Every node under ``node`` (itself included), parents before children."""
    if isinstance(node, tuple):
        for item in node:
            yield from walk(item)
        return
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return
    yield node
    for f in dataclasses.fields(node):
        if f.name != "pos":
            yield from walk(getattr(node, f.name))


def rewrite(node: Any, fn: Callable[[Any], Any | None]) -> Any:
    """Rebuild ``node`` top-down: where ``fn`` returns a node it replaces the subtree."""
    if isinstance(node, tuple):
        return tuple(rewrite(item, fn) for item in node)
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return node
    replaced = fn(node)
    if replaced is not None:
        return replaced
    changes = {}
    for f in dataclasses.fields(node):
        if f.name == "pos":
            continue
        value = getattr(node, f.name)
        new = rewrite(value, fn)
        if new is not value:
            changes[f.name] = new
    return dataclasses.replace(node, **changes) if changes else node
