"""Registers ksqlDB's scalar function families (string, math, date/time, JSON, URL, conversion,
null/conditional and the rest) when the ``ksqlpy.planner.functions`` package loads its builtins."""

from __future__ import annotations

import importlib

# Each family module registers its functions on import.
_FAMILIES = ("misc", "math", "string", "conditional", "conversion", "json", "datetime", "url", "collections", "tablefns")

for _family in _FAMILIES:
    try:
        importlib.import_module(f"ksqlpy.planner.functions.{_family}")
    except ModuleNotFoundError as exc:  # a family not written yet must not break the others
        if exc.name != f"ksqlpy.planner.functions.{_family}":
            raise
