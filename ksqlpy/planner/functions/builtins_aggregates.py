"""Registers ksqlDB's aggregate functions (the :mod:`ksqlpy.planner.functions.aggregates` package)."""

from __future__ import annotations

from ksqlpy.planner.functions import aggregates  # noqa: F401  (registers on import)
