"""A plan as EXPLAIN shows it: ksqlDB's plan summary, one line per step.

Each line names the operation, the step's output schema and its logger (``<query id>.<query
context>``), children indented under their parent with tabs, exactly as ksqlDB's PlanSummary
writes the ``executionPlan`` of a query description.
"""

from __future__ import annotations

from collections.abc import Mapping

from ksqlpy import sqltypes
from ksqlpy.planner.catalog import Column, ColumnNamespace
from ksqlpy.planner.expressions.formatter import format_name
from ksqlpy.planner.steps import steps as s
from ksqlpy.planner.steps.schema import LogicalSchema, resolve_all

OP_NAMES: dict[type[s.ExecutionStep], str] = {
    s.StreamAggregate: "AGGREGATE",
    s.StreamWindowedAggregate: "AGGREGATE",
    s.TableAggregate: "AGGREGATE",
    s.StreamFilter: "FILTER",
    s.TableFilter: "FILTER",
    s.StreamFlatMap: "FLAT_MAP",
    s.StreamGroupByV1: "GROUP_BY",
    s.StreamGroupBy: "GROUP_BY",
    s.StreamGroupByKey: "GROUP_BY",
    s.TableGroupByV1: "GROUP_BY",
    s.TableGroupBy: "GROUP_BY",
    s.StreamSelect: "PROJECT",
    s.TableSelect: "PROJECT",
    s.StreamSelectKeyV1: "REKEY",
    s.StreamSelectKey: "REKEY",
    s.TableSelectKey: "REKEY",
    s.StreamSink: "SINK",
    s.TableSink: "SINK",
    s.StreamSource: "SOURCE",
    s.WindowedStreamSource: "SOURCE",
    s.TableSourceV1: "SOURCE",
    s.TableSource: "SOURCE",
    s.WindowedTableSource: "SOURCE",
    s.StreamStreamJoin: "JOIN",
    s.StreamTableJoin: "JOIN",
    s.TableTableJoin: "JOIN",
    s.ForeignKeyTableTableJoin: "JOIN",
    s.TableSuppress: "SUPPRESS",
}


def summarize(root: s.ExecutionStep, query_id: str, types: Mapping[str, sqltypes.SqlType] | None = None) -> str:
    """The plan summary of ``root``'s tree (ends with a newline, as ksqlDB's does)."""
    schemas = resolve_all(root, types)

    def summary(step: s.ExecutionStep, indent: str) -> str:
        children = [summary(c, indent + "\t") for c in step.sources]
        logger = ".".join([query_id, *step.context.split("/")])
        line = f"{indent} > [ {OP_NAMES[type(step)]} ] | Schema: {schema_text(schemas[id(step)])} | Logger: {logger}\n"
        return line + "".join("\t" + indent + c for c in children)

    return summary(root, "")


def schema_text(schema: LogicalSchema) -> str:
    """A schema with names quoted only where they need it (ksqlDB's FormatOptions)."""
    return ", ".join(_column(c) for c in schema.columns)


def _column(c: Column) -> str:
    suffix = "" if c.namespace is ColumnNamespace.VALUE else " " + c.namespace.value
    if c.namespace is ColumnNamespace.HEADERS and c.header_key is not None:
        suffix = f" HEADER('{c.header_key}')"
    return f"{format_name(c.name)} {_type(c.type)}{suffix}"


def _type(t: sqltypes.SqlType) -> str:
    match t:
        case sqltypes.Array(element=e):
            return f"ARRAY<{_type(e)}>"
        case sqltypes.Map(key=k, value=v):
            return f"MAP<{_type(k)}, {_type(v)}>"
        case sqltypes.Struct(fields=fields):
            return "STRUCT<" + ", ".join(f"{format_name(f.name)} {_type(f.type)}" for f in fields) + ">"
    return str(t)
