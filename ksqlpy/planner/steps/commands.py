"""What the command log stores: ksqlDB's ``ksqlPlanV1`` entries.

A statement that changes the metastore becomes a :class:`KsqlPlan`: its text (for people: SHOW
QUERIES, EXPLAIN), a DDL command that changes the catalog (``createStreamV1``...) and, for a
persistent query, a :class:`QueryPlan` whose ``physical_plan`` is the tree of execution steps. A
restart applies the stored plans as they are; nothing is planned again from the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from ksqlpy.planner.steps.formats import Formats, TimestampColumn, WindowInfo, f_formats
from ksqlpy.planner.steps.json import (
    Field,
    PlanFormatError,
    dump,
    f_obj,
    f_step,
    f_str,
    f_strs,
    f_value,
    load,
    load_typed,
    typed,
)
from ksqlpy.planner.steps.steps import ExecutionStep


@dataclass(frozen=True, slots=True, kw_only=True)
class DdlCommand:
    TYPE: ClassVar[str]
    JSON_FIELDS: ClassVar[tuple[Field, ...]]


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSourceCommand(DdlCommand):
    """A stream or table in the catalog: ``schema`` is ksqlDB's schema text
    (```ID` STRING KEY, `V` INTEGER``)."""

    source_name: str
    schema: str
    timestamp_column: TimestampColumn | None = None
    topic_name: str
    formats: Formats
    window_info: WindowInfo | None = None
    or_replace: bool = False
    is_source: bool = False


_CREATE_FIELDS = (
    f_str("sourceName", "source_name"),
    f_str("schema", "schema"),
    f_obj("timestampColumn", "timestamp_column", TimestampColumn),
    f_str("topicName", "topic_name"),
    f_formats("formats", "formats"),
    f_obj("windowInfo", "window_info", WindowInfo),
    f_value("orReplace", "or_replace", default=False),
    f_value("isSource", "is_source", default=False),
)


@typed("createStreamV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateStreamCommand(CreateSourceCommand):
    JSON_FIELDS = _CREATE_FIELDS


@typed("createTableV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTableCommand(CreateSourceCommand):
    JSON_FIELDS = _CREATE_FIELDS


@typed("registerTypeV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterTypeCommand(DdlCommand):
    type: str
    type_name: str
    JSON_FIELDS = (f_str("type", "type"), f_str("typeName", "type_name"))


@typed("dropSourceV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class DropSourceCommand(DdlCommand):
    source_name: str
    JSON_FIELDS = (f_str("sourceName", "source_name"),)


@typed("dropTypeV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class DropTypeCommand(DdlCommand):
    type_name: str
    JSON_FIELDS = (f_str("typeName", "type_name"),)


@dataclass(frozen=True, slots=True, kw_only=True)
class ColumnSpec:
    """A column as ALTER's command lists it."""

    name: str
    type: str
    namespace: str = "VALUE"
    index: int = 0
    JSON_FIELDS: ClassVar[tuple[Field, ...]] = (
        f_str("name", "name"),
        f_str("type", "type"),
        f_value("namespace", "namespace", default="VALUE"),
        f_value("index", "index", default=0),
    )


@typed("alterSourceV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterSourceCommand(DdlCommand):
    source_name: str
    ksql_type: str  # STREAM or TABLE
    new_columns: tuple[ColumnSpec, ...]
    JSON_FIELDS = (
        f_str("sourceName", "source_name"),
        f_str("ksqlType", "ksql_type"),
        Field(
            "newColumns",
            "new_columns",
            lambda v: tuple(load(ColumnSpec, c, "newColumns") for c in v),
            lambda cs: [dump(c) for c in cs],
            optional=False,
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryPlan:
    """A persistent query: the sources it reads, the sink it writes, its id and its steps."""

    sources: tuple[str, ...]
    sink: str | None
    physical_plan: ExecutionStep
    query_id: str
    runtime_id: str | None = None
    JSON_FIELDS: ClassVar[tuple[Field, ...]] = (
        f_strs("sources", "sources", optional=False),
        f_value("sink", "sink"),
        f_step("physicalPlan", "physical_plan"),
        f_str("queryId", "query_id"),
        f_value("runtimeId", "runtime_id"),
    )


def _ddl_load(v: Any) -> DdlCommand:
    command = load_typed(v, "ddlCommand")
    if not isinstance(command, DdlCommand):
        raise PlanFormatError(f"'{v.get('@type')}' is not a DDL command.")
    return command


@typed("ksqlPlanV1")
@dataclass(frozen=True, slots=True, kw_only=True)
class KsqlPlan:
    statement_text: str
    ddl_command: DdlCommand | None = None
    query_plan: QueryPlan | None = None
    JSON_FIELDS: ClassVar[tuple[Field, ...]] = (
        f_str("statementText", "statement_text"),
        Field("ddlCommand", "ddl_command", _ddl_load, dump),
        f_obj("queryPlan", "query_plan", QueryPlan),
    )

    def to_json(self) -> dict[str, Any]:
        return dump(self)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_json())

    @classmethod
    def from_json(cls, obj: Any) -> KsqlPlan:
        plan = load_typed(obj, "plan")
        if not isinstance(plan, KsqlPlan):
            raise PlanFormatError(f"Expected a 'ksqlPlanV1', got '{obj.get('@type')}'.")
        return plan
