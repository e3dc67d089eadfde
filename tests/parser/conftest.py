"""Helpers shared by the parser tests."""

from __future__ import annotations

import dataclasses
from typing import Any


def without_text(node: Any) -> Any:
    """``node`` with every statement ``text`` blanked, to compare trees parsed from different text."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {f.name: without_text(getattr(node, f.name)) for f in dataclasses.fields(node) if f.name != "pos"}
        if "text" in changes:
            changes["text"] = ""
        return dataclasses.replace(node, **changes)
    if isinstance(node, tuple):
        return tuple(without_text(x) for x in node)
    return node
