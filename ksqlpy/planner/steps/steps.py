"""ksqlDB's execution steps: a query's plan as a tree of pure data.

One class per step type ksqlDB writes (``ksqldb-execution/.../execution/plan/``), with the same
fields under the same JSON names, so a plan built here serializes to the JSON ksqlDB's command
topic holds and a plan ksqlDB wrote loads here. Expressions stay as ksqlDB formats them
(``"(A + 1) AS B"``): the plan is the contract, and the runtime parses and compiles them when it
builds operators. Every step names its place in the query with ``context`` (ksqlDB's
``queryContext``, e.g. ``Aggregate/GroupBy``); internal topics and state stores are named from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from ksqlpy.planner.steps.formats import (
    Formats,
    TimestampColumn,
    WindowExpression,
    WindowInfo,
    f_formats,
    f_window_expression,
)
from ksqlpy.planner.steps.json import Field, f_obj, f_step, f_str, f_strs, f_value, strings_load, typed


def _context_load(v: Any) -> str:
    ctx = v.get("queryContext") if isinstance(v, dict) else None
    if not isinstance(ctx, str):
        raise ValueError("expected {'queryContext': ...}")
    return ctx


def _one_or_more(v: Any) -> tuple[str, ...]:
    return (v,) if isinstance(v, str) else strings_load(v)


_CONTEXT = Field("properties", "context", _context_load, lambda c: {"queryContext": c}, optional=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionStep:
    """A node of a query's plan."""

    TYPE: ClassVar[str]
    JSON_FIELDS: ClassVar[tuple[Field, ...]]
    context: str

    @property
    def sources(self) -> tuple[ExecutionStep, ...]:
        """The steps this one reads from (two for a join, none for a source)."""
        return tuple(
            getattr(self, name) for name in ("source", "left_source", "right_source") if hasattr(self, name)
        )

    def walk(self) -> Iterator[ExecutionStep]:
        """This step and every step under it, parents first."""
        yield self
        for s in self.sources:
            yield from s.walk()


# ------------------------------------------------------------------------------ sources


def _source_fields(*, windowed: bool, table: bool) -> tuple[Field, ...]:
    fields = [_CONTEXT, f_str("topicName", "topic_name"), f_formats("formats", "formats")]
    if windowed:
        fields.append(f_obj("windowInfo", "window_info", WindowInfo, optional=False))
    fields += [
        f_obj("timestampColumn", "timestamp_column", TimestampColumn),
        f_str("sourceSchema", "source_schema"),
        f_value("pseudoColumnVersion", "pseudo_column_version"),
    ]
    if table:
        fields.append(f_formats("stateStoreFormats", "state_store_formats", optional=True))
    return tuple(fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceStep(ExecutionStep):
    """Reads a topic. ``source_schema`` is the source's columns in ksqlDB's schema text."""

    topic_name: str
    formats: Formats
    timestamp_column: TimestampColumn | None = None
    source_schema: str
    pseudo_column_version: int | None = None


@typed("streamSourceV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSource(SourceStep):
    JSON_FIELDS = _source_fields(windowed=False, table=False)


@typed("windowedStreamSourceV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class WindowedStreamSource(SourceStep):
    window_info: WindowInfo
    JSON_FIELDS = _source_fields(windowed=True, table=False)


@typed("tableSourceV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class TableSourceV1(SourceStep):
    force_changelog: bool | None = None
    JSON_FIELDS = (
        _CONTEXT,
        f_str("topicName", "topic_name"),
        f_formats("formats", "formats"),
        f_obj("timestampColumn", "timestamp_column", TimestampColumn),
        f_str("sourceSchema", "source_schema"),
        f_value("forceChangelog", "force_changelog"),
        f_value("pseudoColumnVersion", "pseudo_column_version"),
    )


@typed("tableSourceV2")
@dataclass(frozen=True, slots=True, kw_only=True)
class TableSource(SourceStep):
    state_store_formats: Formats | None = None
    JSON_FIELDS = _source_fields(windowed=False, table=True)


@typed("windowedTableSourceV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class WindowedTableSource(SourceStep):
    window_info: WindowInfo
    JSON_FIELDS = _source_fields(windowed=True, table=False)


# ------------------------------------------------------------------------------ one input


@dataclass(frozen=True, slots=True, kw_only=True)
class OneInput(ExecutionStep):
    source: ExecutionStep


@typed("streamSelectV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSelect(OneInput):
    """Projection: ``select_expressions`` are ``"<expr> AS <name>"``; ``key_column_names`` name
    the key columns of the result (the input's key, renamed)."""

    key_column_names: tuple[str, ...] | None = None
    selected_keys: tuple[str, ...] | None = None
    select_expressions: tuple[str, ...]
    JSON_FIELDS = (
        _CONTEXT,
        f_step("source", "source"),
        f_strs("keyColumnNames", "key_column_names"),
        f_strs("selectedKeys", "selected_keys"),
        f_strs("selectExpressions", "select_expressions", optional=False),
    )


@typed("tableSelectV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class TableSelect(OneInput):
    key_column_names: tuple[str, ...] | None = None
    select_expressions: tuple[str, ...]
    internal_formats: Formats | None = None
    JSON_FIELDS = (
        _CONTEXT,
        f_step("source", "source"),
        f_strs("keyColumnNames", "key_column_names"),
        f_strs("selectExpressions", "select_expressions", optional=False),
        f_formats("internalFormats", "internal_formats", optional=True),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterStep(OneInput):
    filter_expression: str


_FILTER_FIELDS = (_CONTEXT, f_step("source", "source"), f_str("filterExpression", "filter_expression"))


@typed("streamFilterV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamFilter(FilterStep):
    JSON_FIELDS = _FILTER_FIELDS


@typed("tableFilterV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class TableFilter(FilterStep):
    JSON_FIELDS = _FILTER_FIELDS


@typed("streamSelectKeyV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSelectKeyV1(OneInput):
    """PARTITION BY one expression (plans of ksqlDB before 0.15)."""

    key_expression: str
    JSON_FIELDS = (_CONTEXT, f_step("source", "source"), f_str("keyExpression", "key_expression"))

    @property
    def key_expressions(self) -> tuple[str, ...]:
        return (self.key_expression,)


@typed("streamSelectKeyV2")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSelectKey(OneInput):
    """PARTITION BY (or a join's re-keying): the new key columns' expressions."""

    key_expressions: tuple[str, ...]
    JSON_FIELDS = (
        _CONTEXT,
        f_step("source", "source"),
        # ksqlDB 0.15-0.22 wrote one expression as a plain string under this type name too
        Field("keyExpression", "key_expressions", _one_or_more, list, optional=False),
    )


@typed("tableSelectKeyV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class TableSelectKey(OneInput):
    internal_formats: Formats
    key_expressions: tuple[str, ...]
    JSON_FIELDS = (
        _CONTEXT,
        f_step("source", "source"),
        f_formats("internalFormats", "internal_formats"),
        f_strs("keyExpression", "key_expressions", optional=False),
    )


@typed("streamFlatMapV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamFlatMap(OneInput):
    """Table functions (EXPLODE...): each input row becomes as many rows as they return."""

    table_functions: tuple[str, ...]
    JSON_FIELDS = (_CONTEXT, f_step("source", "source"), f_strs("tableFunctions", "table_functions", optional=False))


# ------------------------------------------------------------------------------ aggregation


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupByStep(OneInput):
    internal_formats: Formats
    group_by_expressions: tuple[str, ...]


_GROUP_BY_FIELDS = (
    _CONTEXT,
    f_step("source", "source"),
    f_formats("internalFormats", "internal_formats"),
    f_strs("groupByExpressions", "group_by_expressions", optional=False),
)


@typed("streamGroupByV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamGroupByV1(GroupByStep):
    JSON_FIELDS = _GROUP_BY_FIELDS


@typed("streamGroupByV2")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamGroupBy(GroupByStep):
    JSON_FIELDS = _GROUP_BY_FIELDS


@typed("tableGroupByV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class TableGroupByV1(GroupByStep):
    JSON_FIELDS = _GROUP_BY_FIELDS


@typed("tableGroupByV2")
@dataclass(frozen=True, slots=True, kw_only=True)
class TableGroupBy(GroupByStep):
    JSON_FIELDS = _GROUP_BY_FIELDS


@typed("streamGroupByKeyV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamGroupByKey(OneInput):
    """GROUP BY the stream's own key: no repartition."""

    internal_formats: Formats
    JSON_FIELDS = (_CONTEXT, f_step("source", "source"), f_formats("internalFormats", "internal_formats"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateStep(OneInput):
    """``non_aggregate_columns`` are the input columns the aggregation carries (group keys and
    columns the projection needs); ``aggregation_functions`` the calls, e.g. ``COUNT(ROWTIME)``.
    The result's columns are the non-aggregate ones, then ``KSQL_AGG_VARIABLE_<i>``."""

    internal_formats: Formats
    non_aggregate_columns: tuple[str, ...]
    aggregation_functions: tuple[str, ...]


_AGGREGATE_FIELDS = (
    _CONTEXT,
    f_step("source", "source"),
    f_formats("internalFormats", "internal_formats"),
    f_strs("nonAggregateColumns", "non_aggregate_columns", optional=False),
    f_strs("aggregationFunctions", "aggregation_functions", optional=False),
)


@typed("streamAggregateV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamAggregate(AggregateStep):
    JSON_FIELDS = _AGGREGATE_FIELDS


@typed("tableAggregateV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class TableAggregate(AggregateStep):
    JSON_FIELDS = _AGGREGATE_FIELDS


@typed("streamWindowedAggregateV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamWindowedAggregate(AggregateStep):
    window_expression: WindowExpression
    JSON_FIELDS = (*_AGGREGATE_FIELDS, f_window_expression("windowExpression", "window_expression"))


@typed("tableSuppressV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class TableSuppress(OneInput):
    """EMIT FINAL: a windowed table's rows held until their window closes."""

    output_refinement: str
    internal_formats: Formats
    JSON_FIELDS = (
        _CONTEXT,
        f_step("source", "source"),
        Field(
            "refinementInfo",
            "output_refinement",
            lambda v: str(v["outputRefinement"]),
            lambda r: {"outputRefinement": r},
            optional=False,
        ),
        f_formats("internalFormats", "internal_formats"),
    )


# ------------------------------------------------------------------------------ sinks


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkStep(OneInput):
    formats: Formats
    topic_name: str
    timestamp_column: TimestampColumn | None = None


_SINK_FIELDS = (
    _CONTEXT,
    f_step("source", "source"),
    f_formats("formats", "formats"),
    f_str("topicName", "topic_name"),
    f_obj("timestampColumn", "timestamp_column", TimestampColumn),
)


@typed("streamSinkV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSink(SinkStep):
    JSON_FIELDS = _SINK_FIELDS


@typed("tableSinkV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class TableSink(SinkStep):
    JSON_FIELDS = _SINK_FIELDS


# ------------------------------------------------------------------------------ joins


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinStep(ExecutionStep):
    """``join_type`` is INNER, LEFT, RIGHT or OUTER; ``key_col_name`` names the result's key."""

    join_type: str
    left_source: ExecutionStep
    right_source: ExecutionStep


@typed("streamStreamJoinV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStreamJoin(JoinStep):
    """A windowed join; ``before``/``after``/``grace`` are seconds as ksqlDB writes them; no
    grace (None) is the old behaviour: 24 h grace and eager left/outer results."""

    left_internal_formats: Formats
    right_internal_formats: Formats
    before_millis: float
    after_millis: float
    grace_millis: float | None = None
    key_col_name: str | None = None
    JSON_FIELDS = (
        _CONTEXT,
        f_str("joinType", "join_type"),
        f_formats("leftInternalFormats", "left_internal_formats"),
        f_formats("rightInternalFormats", "right_internal_formats"),
        f_step("leftSource", "left_source"),
        f_step("rightSource", "right_source"),
        f_value("beforeMillis", "before_millis", optional=False),
        f_value("afterMillis", "after_millis", optional=False),
        f_value("graceMillis", "grace_millis"),
        f_value("keyColName", "key_col_name"),
    )


@typed("streamTableJoinV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class StreamTableJoin(JoinStep):
    internal_formats: Formats
    key_col_name: str | None = None
    JSON_FIELDS = (
        _CONTEXT,
        f_str("joinType", "join_type"),
        f_formats("internalFormats", "internal_formats"),
        f_step("leftSource", "left_source"),
        f_step("rightSource", "right_source"),
        f_value("keyColName", "key_col_name"),
    )


@typed("tableTableJoinV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class TableTableJoin(JoinStep):
    key_col_name: str | None = None
    JSON_FIELDS = (
        _CONTEXT,
        f_str("joinType", "join_type"),
        f_step("leftSource", "left_source"),
        f_step("rightSource", "right_source"),
        f_value("keyColName", "key_col_name"),
    )


@typed("fkTableTableJoinV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class ForeignKeyTableTableJoin(JoinStep):
    """The left table's ``left_join_expression`` (or, in old plans, column) looked up in the
    right table's key; the result is keyed by the left table's key."""

    left_join_column_name: str | None = None
    left_join_expression: str | None = None
    formats: Formats
    JSON_FIELDS = (
        _CONTEXT,
        f_str("joinType", "join_type"),
        Field("leftJoinColumnName", "left_join_column_name", str, str, omit_empty=True),
        f_value("leftJoinExpression", "left_join_expression"),
        f_formats("formats", "formats"),
        f_step("leftSource", "left_source"),
        f_step("rightSource", "right_source"),
    )
