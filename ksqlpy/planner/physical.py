"""Physical plans: what a query runs, as data the runtime executes and the command log keeps.

A plan reads one source topic, decodes each micro-batch into an Arrow table named ``input``
whose columns are the source's columns (plus ROWTIME, ROWPARTITION, ROWOFFSET), evaluates its
DuckDB ``select`` over it, and encodes the result for the sink. Everything a step needs is in
the step; the runtime never goes back to the AST.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ksqlpy import sqltypes
from ksqlpy.planner.catalog import FormatInfo, Source

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
    #: the select item's expression, as written (qualified names and all), for plans that
    #: write it as ksqlDB does; None for columns the analyzer makes up
    expr: Any = None


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
    #: the select list calls a table function (EXPLODE...): any number of rows per input row
    multiplies_rows: bool = False
    #: PARTITION BY: the key is computed anew, not the source record's key
    rekeyed: bool = False
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
    step: SelectStep | AggregateStep
    sink: Source | None = None
    limit: int | None = None
    statement: str = ""
    #: a join query: the runtime's join tree whose output ``step`` reads (``step.source`` is
    #: then the join's result, not a topic)
    join: Any = None
    #: ``ksql.timestamp.throw.on.invalid``: a record whose TIMESTAMP column cannot be read
    #: fails the query rather than being skipped
    throw_on_invalid_timestamp: bool = False

    @property
    def source(self) -> Source:
        return self.step.source


# ---------------------------------------------------------------------------------------------
# Aggregation (GROUP BY)


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowSpec:
    """A WINDOW clause with its defaults applied (milliseconds)."""

    type: str  # "TUMBLING", "HOPPING" or "SESSION"
    size_ms: int = 0  # tumbling/hopping
    advance_ms: int = 0  # hopping (= size for tumbling)
    gap_ms: int = 0  # session
    grace_ms: int = 0
    retention_ms: int | None = None

    @property
    def is_session(self) -> bool:
        return self.type == "SESSION"


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateCall:
    """One distinct aggregate call: ``args_sql`` are DuckDB expressions over ``input`` for the
    accumulator's column arguments; ``name`` is its column in the aggregated relation."""

    name: str
    text: str  # the call as ksqlDB formats it, for EXPLAIN
    args_sql: tuple[str, ...]
    arg_types: tuple[sqltypes.SqlType, ...]
    accumulator: Any  # ksqlpy.planner.functions.aggregate.Accumulator


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupByTopic:
    """Where ksqlDB's GROUP BY re-keys its input through an internal topic (``streamGroupByV2``,
    ``tableGroupBy``; grouping by the source's own key needs none): the topic's name after the
    query's application id (``Aggregate-GroupBy-repartition``), the GROUP BY step's key column
    names and its internal formats."""

    topic: str
    key_names: tuple[str, ...]
    key_format: FormatInfo
    value_format: FormatInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateStep:
    """GROUP BY over one source (stream or table), optionally windowed.

    Input side (over ``input``): ``where_sql`` filters, ``group_keys`` compute the grouping
    values (their ``sql``), ``calls`` the aggregate arguments. Output side: ``having_sql`` and
    ``columns`` are DuckDB expressions over the aggregated relation, whose columns are the group
    keys (named ``__K0``...), ``WINDOWSTART``/``WINDOWEND`` and the calls' results (by name).
    """

    source: Source
    where_sql: str | None
    group_keys: tuple[OutputColumn, ...]
    calls: tuple[AggregateCall, ...]
    window: WindowSpec | None
    having_sql: str | None
    columns: tuple[OutputColumn, ...]
    emit_final: bool = False
    #: one output per input record (ksqlDB with ``ksql.streams.cache.max.bytes.buffering=0``);
    #: False: per micro-batch only the last change of each group
    per_record: bool = True
    #: the repartition topic the GROUP BY goes through, if it re-keys (a persistent query on
    #: Kafka writes and reads it; elsewhere its partitioning is emulated)
    repartition: GroupByTopic | None = None
    version: int = PLAN_VERSION

    @property
    def key_columns(self) -> tuple[OutputColumn, ...]:
        return tuple(c for c in self.columns if c.is_key)

    @property
    def value_columns(self) -> tuple[OutputColumn, ...]:
        return tuple(c for c in self.columns if not c.is_key)


def group_key_name(i: int) -> str:
    """The aggregated relation's column for the i-th GROUP BY expression."""
    return f"__K{i}"
