"""What a fused chain of steps produces, as the step compilers share it.

Both the plan compiler (:mod:`ksqlpy.runtime.compile`) and the join compiler
(:mod:`ksqlpy.runtime.join.compile`) describe a step's output the same way: its schema and, for
each column, the sqlglot expression that computes it over the decoded batch ``input``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlglot import exp

from ksqlpy.planner.expressions.scope import ColumnScope, ScopeColumn
from ksqlpy.planner.steps.schema import LogicalSchema


@dataclass(frozen=True, slots=True)
class FusedColumns:
    """A step's output: its schema, and for each column the expression computing it over
    ``input``. Keys and values are kept apart: a key may share its name with a value column
    that holds something else (``ROWKEY`` after an old PARTITION BY)."""

    schema: LogicalSchema
    keys: Mapping[str, exp.Expression]
    values: Mapping[str, exp.Expression]

    def scope(self, clause: str | None = None) -> ColumnScope:
        """Expressions over this output see its value columns, then its key columns."""
        cols = [
            ScopeColumn(c.name, c.type, sql=self.values[c.name])
            for c in self.schema.value
            if c.name in self.values
        ]
        cols += [
            ScopeColumn(c.name, c.type, sql=self.keys[c.name]) for c in self.schema.key if c.name in self.keys
        ]
        return ColumnScope(tuple(cols), clause)
