"""Lowering a plan's join steps into the runtime's join tree (:mod:`ksqlpy.runtime.join.plan`).

Each side of a join is a chain of stateless steps (KafkaTopic source, a SourceKeyed re-key,
the PrependAlias select) that fuses, as any stateless chain does, into one
:class:`~ksqlpy.planner.physical.SelectStep` over that topic's decoded batch; its key becomes
the join key. A side may itself be a join (n-way joins are left-deep), possibly re-keyed. The
join's result is described as a source, so the steps above it (filter, projection, PARTITION
BY, GROUP BY) compile over it exactly as over a topic.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, cast

import sqlglot
from sqlglot import exp

from ksqlpy import sqltypes
from ksqlpy.errors import PlanError
from ksqlpy.parser.ast import SourceKind
from ksqlpy.planner.catalog import Column, ColumnNamespace, FormatInfo, Source
from ksqlpy.planner.expressions.scope import duckdb_column
from ksqlpy.planner.physical import OutputColumn, SelectStep
from ksqlpy.planner.steps import steps as s
from ksqlpy.planner.steps.catalog import catalog_format
from ksqlpy.planner.steps.formats import Formats
from ksqlpy.planner.steps.schema import LogicalSchema
from ksqlpy.runtime.fused import FusedColumns as _Columns
from ksqlpy.runtime.join.plan import (
    FOREIGN_KEY,
    KEY,
    WINDOWED_KEY_FIELDS,
    JoinInput,
    JoinKind,
    JoinNode,
    JoinSide,
    Rekeyed,
    Repartition,
    StoreLog,
    windowed_key_type,
)
from ksqlpy.runtime.join.stores import store_names, store_numbers

if TYPE_CHECKING:
    from ksqlpy.runtime.compile import _Compiler


def compile_join(c: _Compiler, step: s.JoinStep, sink: Source) -> tuple[JoinNode, tuple[Source, _Columns]]:
    """The join tree for ``step`` and what the steps above it read: its output as a source
    and the columns over it."""
    node = _node(c, step, sink, numbers=store_numbers(step))
    return node, (node.output, _output_columns(c, step))


def _output_columns(c: _Compiler, step: s.ExecutionStep) -> _Columns:
    schema = c.schemas[id(step)]
    keys = _key_parts(duckdb_column(KEY), schema)
    values = {col.name: duckdb_column(col.name) for col in schema.value}
    return _Columns(schema, keys, values)


_KINDS: dict[type, JoinKind] = {
    s.StreamStreamJoin: JoinKind.STREAM_STREAM,
    s.StreamTableJoin: JoinKind.STREAM_TABLE,
    s.TableTableJoin: JoinKind.TABLE_TABLE,
    s.ForeignKeyTableTableJoin: JoinKind.FOREIGN_KEY,
}


def _node(c: _Compiler, step: s.JoinStep, sink: Source, *, numbers: dict[int, int]) -> JoinNode:
    kind = _KINDS.get(type(step))
    if kind is None:
        raise PlanError(f"Joins of this type are not supported yet: {step.TYPE} at {step.context}")
    left = _side(c, step.left_source, sink, step, "left", numbers=numbers)
    right = _side(c, step.right_source, sink, step, "right", numbers=numbers)
    windowed = _is_windowed(left) and _is_windowed(right)
    if windowed:
        left, right = _with_window(left), _with_window(right)
    if isinstance(step, s.ForeignKeyTableTableJoin):
        left = _with_foreign_key(c, step, left)
    schema = c.schemas[id(step)]
    if len(schema.key) != 1 and kind is not JoinKind.FOREIGN_KEY:
        raise PlanError(f"JOINs are only supported on one key column: {step.TYPE} at {step.context}")
    if kind is JoinKind.FOREIGN_KEY and step.join_type.upper() not in ("INNER", "LEFT"):
        raise PlanError(
            f"{step.join_type} foreign-key joins are not supported: {step.TYPE} at {step.context}"
        )
    left_names = set(left.value_names)
    right_names = set(right.value_names)
    key = schema.key[0] if len(schema.key) == 1 else Column(name=KEY, type=_key_struct(schema))
    synthetic = next(
        (
            col.name
            for col in schema.value
            if col.name == key.name and col.name not in left_names and col.name not in right_names
        ),
        None,
    )
    output = Source(
        name=step.context,
        kind=SourceKind.TABLE if kind in (JoinKind.TABLE_TABLE, JoinKind.FOREIGN_KEY) else SourceKind.STREAM,
        topic=sink.topic,
        columns=(Column(name=KEY, type=key.type, namespace=ColumnNamespace.KEY), *schema.value),
        key_format=sink.key_format,
        value_format=sink.value_format,
        partitions=sink.partitions,
        replicas=sink.replicas,
    )
    window: dict[str, int | None] = {}
    if isinstance(step, s.StreamStreamJoin):
        # ksqlDB writes these durations in seconds, whatever their names say
        window = {
            "before_ms": _millis(step.before_millis),
            "after_ms": _millis(step.after_millis),
            "grace_ms": None if step.grace_millis is None else _millis(step.grace_millis),
        }
    stores = _window_stores(step, numbers.get(id(step))) if isinstance(step, s.StreamStreamJoin) else None
    return JoinNode(
        context=step.context,
        kind=kind,
        join_type=step.join_type.upper(),
        left=left,
        right=right,
        output=output,
        synthetic=synthetic,
        windowed=windowed,
        stores=stores,
        **window,  # type: ignore[arg-type]
    )


def _is_windowed(side: JoinSide) -> bool:
    """A windowed source (re-keyed or not: ksqlDB's new key keeps the record's window), or a
    join of such."""
    match side:
        case JoinInput():
            return side.source.window is not None
        case JoinNode():
            return side.windowed
    return False


def _with_window(side: JoinSide) -> JoinSide:
    """A windowed source's join key with the record's window (see :func:`windowed_key_type`)."""
    if not isinstance(side, JoinInput):
        return side
    key = side.select.key_columns[0]
    k, ws, we = WINDOWED_KEY_FIELDS
    sql = f'struct_pack("{k}" := {key.sql}, "{ws}" := "WINDOWSTART", "{we}" := "WINDOWEND")'
    packed = replace(key, type=windowed_key_type(key.type), sql=sql)
    columns = tuple(packed if c is key else c for c in side.select.columns)
    return replace(side, select=replace(side.select, columns=columns))


def _with_foreign_key(c: _Compiler, step: s.ForeignKeyTableTableJoin, left: JoinSide) -> JoinSide:
    """The left side computing its foreign key: the join expression (old plans: a column) over
    the left side's output columns."""
    text = step.left_join_expression or step.left_join_column_name
    if not isinstance(left, JoinInput) or text is None:
        raise PlanError(
            f"A foreign-key join must read a table and name its foreign key: {step.TYPE} at {step.context}"
        )
    schema = c.schemas[id(step.left_source)]
    by_name: dict[str, exp.Expression] = {
        col.name: cast(exp.Expression, sqlglot.parse_one(col.sql, dialect="duckdb"))
        for col in left.select.columns
    }
    keys = _key_parts(by_name[KEY], schema)
    values = {col.name: by_name[col.name] for col in schema.value if col.name in by_name}
    compiled = c._compile(text, _Columns(schema, keys, values), step, "ON")
    column = OutputColumn(name=FOREIGN_KEY, type=compiled.type, sql=str(compiled.sql.sql(dialect="duckdb")))
    return replace(left, select=replace(left.select, columns=(*left.select.columns, column)))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _millis(seconds: float) -> int:
    return round(seconds * 1000)


def _side(
    c: _Compiler, top: s.ExecutionStep, sink: Source, join: s.JoinStep, which: str, *, numbers: dict[int, int]
) -> JoinSide:
    chain = c._chain(top)
    head = chain[0]
    if isinstance(head, s.JoinStep):
        inner = _node(c, head, sink, numbers=numbers)
        if len(chain) == 1:
            return inner
        select = c._select(chain, None, (inner.output, _output_columns(c, head)))
        return Rekeyed(
            base=inner,
            select=_keyed(select, top),
            store=_store_name(chain),
            repartition=_repartition(chain, join, which),
        )
    # a foreign-key join's left table may have several key columns: they join as one struct
    several = isinstance(join, s.ForeignKeyTableTableJoin) and which == "left"
    select = _keyed(c._select(chain, None), top, several=several)
    return JoinInput(
        source=select.source, select=select, store=_store_name(chain), repartition=_repartition(chain, join, which)
    )


def _store_name(chain: list[s.ExecutionStep]) -> str:
    """The store ksqlDB keeps a table side in: its source's (``KafkaTopic_Right-Reduce``), or,
    for a side re-keyed on the way, the re-keying step's (``RightSourceKeyed-Materialize``)."""
    rekeyed = [step for step in chain if isinstance(step, s.TableSelectKey)]
    if rekeyed:
        return f"{_op_name(rekeyed[-1].context)}-Materialize"
    # a source's context is ``KafkaTopic_Right/Source``; its store is named after the first part
    return f"{_op_name(chain[0].context.removesuffix('/Source'))}-Reduce"


def _op_name(context: str) -> str:
    return context.replace("/", "-")


def _repartition(chain: list[s.ExecutionStep], join: s.JoinStep, which: str) -> Repartition | None:
    """The internal topic ksqlDB re-keys this side through, if it does. A re-keyed table goes
    through its select-key step's own topic (Kafka Streams' ``toTable`` after ``selectKey``);
    a re-keyed stream is repartitioned by the join it feeds, which names the topic after itself
    (``KStreamImplJoin``: ``-left``/``-right``; a stream-table join: none)."""
    for step in chain:
        if isinstance(step, s.TableSelectKey):
            return Repartition(
                topic=f"{step.context}-SelectKey-repartition",
                key_format=_format(step.internal_formats, key=True),
                value_format=_format(step.internal_formats, key=False),
                changelog=f"{step.context}-Materialize-changelog",
            )
    if not any(isinstance(step, s.StreamSelectKey | s.StreamSelectKeyV1) for step in chain):
        return None
    if isinstance(join, s.StreamStreamJoin):
        formats = join.left_internal_formats if which == "left" else join.right_internal_formats
        topic = f"{join.context}-{which}-repartition"
    elif isinstance(join, s.StreamTableJoin) and which == "left":
        formats, topic = join.internal_formats, f"{join.context}-repartition"
    else:
        return None
    return Repartition(
        topic=topic, key_format=_format(formats, key=True), value_format=_format(formats, key=False)
    )


def _window_stores(step: s.StreamStreamJoin, number: int | None) -> tuple[StoreLog, StoreLog] | None:
    """The changelogs of a stream-stream join's two window stores, where their number is known
    (:mod:`ksqlpy.runtime.join.stores`), in the formats of the join's inputs."""
    if number is None:
        return None
    this, other = store_names(step, number)
    return (
        StoreLog(
            topic=this,
            key_format=_format(step.left_internal_formats, key=True),
            value_format=_format(step.left_internal_formats, key=False),
        ),
        StoreLog(
            topic=other,
            key_format=_format(step.right_internal_formats, key=True),
            value_format=_format(step.right_internal_formats, key=False),
        ),
    )


def _format(formats: Formats, *, key: bool) -> FormatInfo:
    if key:
        return catalog_format(formats.key_format, formats.key_features, key=True)
    return catalog_format(formats.value_format, formats.value_features, key=False)


def _key_struct(schema: LogicalSchema) -> sqltypes.Struct:
    return sqltypes.Struct(fields=tuple(sqltypes.Field(name=c.name, type=c.type) for c in schema.key))


def _key_parts(key: exp.Expression, schema: LogicalSchema) -> dict[str, exp.Expression]:
    """Each key column of ``schema`` over the join key ``key``: the key itself, or, for
    several key columns, its struct's fields."""
    if len(schema.key) == 1:
        return {schema.key[0].name: key}
    packed = key.sql(dialect="duckdb")
    out: dict[str, exp.Expression] = {}
    for col in schema.key:
        field = col.name.replace("'", "''")
        out[col.name] = cast(
            exp.Expression, sqlglot.parse_one(f"struct_extract({packed}, '{field}')", dialect="duckdb")
        )
    return out


def _keyed(select: SelectStep, top: s.ExecutionStep, *, several: bool = False) -> SelectStep:
    """The side's select with its one key column named :data:`KEY` (``several`` key columns:
    packed in one struct)."""
    keys = select.key_columns
    if several and len(keys) > 1:
        packed = ", ".join(f"{_quoted(k.name)} := {k.sql}" for k in keys)
        struct = sqltypes.Struct(fields=tuple(sqltypes.Field(name=k.name, type=k.type) for k in keys))
        key = OutputColumn(name=KEY, type=struct, sql=f"struct_pack({packed})", is_key=True)
        return replace(select, columns=(key, *select.value_columns), timestamp_sql='"ROWTIME"')
    if len(keys) != 1:
        raise PlanError(f"JOINs are only supported on one key column: {top.TYPE} at {top.context}")
    return replace(
        select, columns=(replace(keys[0], name=KEY), *select.value_columns), timestamp_sql='"ROWTIME"'
    )


__all__ = ["compile_join"]
