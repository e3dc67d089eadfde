"""Physical plans: what a query runs, as data the runtime executes and the command log keeps.

A plan reads one source topic, decodes each micro-batch into an Arrow table named ``input``
whose columns are the source's columns (plus ROWTIME, ROWPARTITION, ROWOFFSET), evaluates its
DuckDB ``select`` over it, and encodes the result for the sink. Everything a step needs is in
the step; the runtime never goes back to the AST.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ksqlpy import sqltypes
from ksqlpy.planner.catalog import Source

PLAN_VERSION = 1


class StepKind(enum.Enum):
    STREAM_SELECT = "StreamSelect"  # stream -> stream: filter + project
    TABLE_SELECT = "TableSelect"  # table -> table: filter + project, tombstones for non-matches


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputColumn:
    """One output column: its name, type, whether it goes to the record key, and the DuckDB
    expression computing it over ``input``."""

    name: str
    type: sqltypes.SqlType
    sql: str
    is_key: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectStep:
    """Filter and project one source."""

    kind: StepKind
    source: Source
    where_sql: str | None
    columns: tuple[OutputColumn, ...]
    #: DuckDB expression for the output record's timestamp (ms); ROWTIME unless the sink has a
    #: TIMESTAMP column.
    timestamp_sql: str = '"ROWTIME"'
    version: int = PLAN_VERSION

    @property
    def key_columns(self) -> tuple[OutputColumn, ...]:
        return tuple(c for c in self.columns if c.is_key)

    @property
    def value_columns(self) -> tuple[OutputColumn, ...]:
        return tuple(c for c in self.columns if not c.is_key)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryPlan:
    """A persistent (sink set) or transient (no sink) query."""

    query_id: str
    step: SelectStep
    sink: Source | None = None
    limit: int | None = None
    statement: str = ""

    @property
    def source(self) -> Source:
        return self.step.source
