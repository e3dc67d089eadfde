"""Repartition topics of a join query: re-keyed sides written through ksqlDB's internal topics.

Where ksqlDB's plan re-keys a join side (a ``streamSelectKeyV2`` before a join, a
``tableSelectKeyV1``), Kafka Streams sends the re-keyed records through an internal topic so
that each lands in the partition of its new key, and the join reads them back from there. A
persistent ksqlpy query does the same, in two stages of one runner:

1. the side's own topic is read through its pre-join chain (re-key, alias select), and the
   re-keyed records are written to ``<application id>-<name>-repartition`` with the formats the
   plan gives that topic, partitioned by their new key over as many partitions as the side's
   topic has (a record with a null key is dropped, as Kafka Streams' repartition filter does);
2. the join reads that topic as one of its inputs, through a select that only renames its key.

A windowed side (session-windowed streams keyed in a Schema Registry format, which ksqlDB
re-keys) writes its records with their windows, and reads them back joined on key and window.

A re-keyed table is also materialized by ksqlDB (``toTable`` into the ``Materialize`` store);
each change the join's table side takes from the repartition topic is logged, as read, to the
store's changelog topic ``<application id>-<context>-Materialize-changelog``. And each record a
stream-stream join keeps in one of its window stores is logged to that store's changelog
(``<application id>-KSTREAM-JOINTHIS-0000000016-store-changelog``), keyed by the join key and
the record's timestamp, as Kafka Streams logs a window store.

The re-keyed record and the join's input commit in separate batches (the second is read back
after the first commits), exactly once each: a batch's produced records and consumed positions
commit in one store transaction. A transient query (no application id) re-keys in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.parser.ast import SourceKind
from ksqlpy.planner.catalog import Column, ColumnNamespace, FormatInfo, Source, WindowInfo, WindowType
from ksqlpy.planner.expressions.scope import duckdb_column
from ksqlpy.planner.physical import OutputColumn, SelectStep
from ksqlpy.runtime.evaluate import DELETE as EVAL_DELETE
from ksqlpy.runtime.evaluate import WINDOW_END, WINDOW_START
from ksqlpy.runtime.join.plan import (
    DELETE,
    FOREIGN_KEY,
    KEY,
    WINDOWED_KEY_FIELDS,
    JoinInput,
    JoinNode,
    JoinSide,
    Rekeyed,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RepartitionWriter:
    """Stage one of a re-keyed side: ``side`` reads the side's topic and re-keys it; its rows
    go to ``target``, the repartition topic."""

    side: JoinInput
    target: Source


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinWriter:
    """Stage one of a re-keyed join result (an n-way join's inner join re-keyed for the next):
    the inner join ``root``, whose output ``select`` re-keys; its rows go to ``target``."""

    root: JoinNode
    select: SelectStep
    target: Source


@dataclass(frozen=True, slots=True, kw_only=True)
class Repartitioned:
    """A join tree whose re-keyed sides read their repartition topics, the writers that fill
    those topics, and the changelog topic (by repartition topic) of each re-keyed table."""

    root: JoinNode
    writers: tuple[RepartitionWriter, ...]
    changelogs: dict[str, str]
    join_writers: tuple[JoinWriter, ...] = ()

    @property
    def topics(self) -> list[str]:
        """Every topic the query reads: the joins' inputs and the writers' sources."""
        names = {i.source.topic for i in self.root.inputs()}
        names |= {i.source.topic for w in self.join_writers for i in w.root.inputs()}
        names |= {w.side.source.topic for w in self.writers}
        return sorted(names)

    @property
    def targets(self) -> list[Source]:
        """Every repartition topic, as a source."""
        return [w.target for w in self.writers] + [w.target for w in self.join_writers]


def repartitioned(root: JoinNode, application_id: str, partitions: Callable[[str], int]) -> Repartitioned:
    """``root`` with each side that has a :class:`~ksqlpy.runtime.join.plan.Repartition`
    reading its topic (named after ``application_id``); ``partitions`` gives a topic's
    partition count."""
    writers: list[RepartitionWriter] = []
    join_writers: list[JoinWriter] = []
    changelogs: dict[str, str] = {}

    def side(node: JoinSide) -> JoinSide:
        match node:
            case JoinNode():
                return replace(node, left=side(node.left), right=side(node.right))
            case Rekeyed():
                base = side(node.base)
                assert isinstance(base, JoinNode)
                spec = node.repartition
                if spec is None:
                    return replace(node, base=base)
                count = max(partitions(i.source.topic) for i in base.inputs())
                target = _rekeyed_source(node, f"{application_id}-{spec.topic}", count)
                join_writers.append(JoinWriter(root=base, select=node.select, target=target))
                return JoinInput(source=target, select=_read_back(node.select, target))
            case JoinInput(repartition=None):
                return node
            case JoinInput(repartition=spec):
                assert spec is not None
                target = _topic_source(node, f"{application_id}-{spec.topic}", partitions(node.source.topic))
                writers.append(RepartitionWriter(side=replace(node, repartition=None), target=target))
                if spec.changelog is not None:
                    changelogs[target.topic] = f"{application_id}-{spec.changelog}"
                return JoinInput(source=target, select=_read_back(node.select, target))
        raise AssertionError(node)

    top = side(root)
    assert isinstance(top, JoinNode)
    return Repartitioned(
        root=top, writers=tuple(writers), changelogs=changelogs, join_writers=tuple(join_writers)
    )


def _rekeyed_source(node: Rekeyed, topic: str, partitions: int) -> Source:
    """The repartition topic of a re-keyed join result, as a source."""
    assert node.repartition is not None
    keys = node.select.key_columns
    return Source(
        name=topic,
        kind=SourceKind.STREAM,
        topic=topic,
        columns=(
            Column(name=KEY, type=keys[0].type, namespace=ColumnNamespace.KEY),
            *(Column(name=c.name, type=c.type) for c in node.select.value_columns),
        ),
        key_format=_own_schema(node.repartition.key_format),
        value_format=_own_schema(node.repartition.value_format),
        partitions=max(1, partitions),
    )


def _topic_source(node: JoinInput, topic: str, partitions: int) -> Source:
    """The repartition topic as a source: key :data:`KEY`, the side's values after its
    pre-join chain."""
    assert node.repartition is not None
    key_type = node.select.key_columns[0].type
    if node.source.window is not None:
        # a windowed side's join key is (key, window start, window end): the topic's key is the
        # key, written with its window as the source's was
        assert isinstance(key_type, sqltypes.Struct)
        key_type = key_type.fields[0].type
    columns = (
        Column(name=KEY, type=key_type, namespace=ColumnNamespace.KEY),
        *(Column(name=c.name, type=c.type) for c in node.select.value_columns),
    )
    return Source(
        name=topic,
        kind=SourceKind.TABLE if node.source.is_table else SourceKind.STREAM,
        topic=topic,
        columns=columns,
        key_format=_own_schema(node.repartition.key_format),
        value_format=_own_schema(node.repartition.value_format),
        window=node.source.window,
        partitions=max(1, partitions),
    )


def _own_schema(fmt: FormatInfo) -> FormatInfo:
    """An internal topic's format writes with a schema of its own columns, never with the
    registered schema a source's topic names (``VALUE_SCHEMA_ID``)."""
    if "schemaId" not in fmt.properties:
        return fmt
    return replace(fmt, properties={k: v for k, v in fmt.properties.items() if k != "schemaId"})


def _read_back(select: SelectStep, target: Source) -> SelectStep:
    """The side's select over its repartition topic: key and values as written (a windowed
    side's join key packed with the window read back, as from its source)."""
    columns = tuple(
        OutputColumn(name=c.name, type=c.type, sql=_read_back_sql(c, target), is_key=c.is_key)
        for c in select.columns
    )
    return replace(
        select, source=target, where_sql=None, columns=columns, multiplies_rows=False, rekeyed=False
    )


def _read_back_sql(column: OutputColumn, target: Source) -> str:
    written = duckdb_column(column.name).sql(dialect="duckdb")
    if not column.is_key or target.window is None:
        return written
    k, ws, we = WINDOWED_KEY_FIELDS
    return f'struct_pack("{k}" := {written}, "{ws}" := "WINDOWSTART", "{we}" := "WINDOWEND")'


def with_window_columns(rows: pa.Table, target: Source) -> pa.Table:
    """Re-keyed rows of a windowed side as its repartition topic's encoder takes them: the join
    key unpacked into the key and the window bounds the encoder writes with it."""
    if target.window is None:
        return rows
    packed = rows.column(KEY).combine_chunks()
    k, ws, we = WINDOWED_KEY_FIELDS
    index = rows.schema.get_field_index(KEY)
    rows = rows.set_column(index, KEY, pc.struct_field(packed, k))
    return rows.append_column(WINDOW_START, pc.struct_field(packed, ws)).append_column(
        WINDOW_END, pc.struct_field(packed, we)
    )


def window_store_logs(
    root: JoinNode, application_id: str, partitions: Callable[[str], int]
) -> dict[tuple[int, str], Source]:
    """The changelog topic, as a windowed source, of each stream-stream join's window store
    that has a known name, by (``id`` of the join, side ``L``/``R``): keyed by the join key
    with the record's timestamp as its window start, valued by the side's columns."""
    out: dict[tuple[int, str], Source] = {}
    for node in root.nodes():
        if node.stores is None:
            continue
        count = max(partitions(i.source.topic) for i in node.inputs())
        for which, side, store in (("L", node.left, node.stores[0]), ("R", node.right, node.stores[1])):
            out[(id(node), which)] = Source(
                name=store.topic,
                kind=SourceKind.STREAM,
                topic=f"{application_id}-{store.topic}",
                columns=_logged_columns(side, windowed=node.windowed),
                key_format=_own_schema(store.key_format),
                value_format=_own_schema(store.value_format),
                window=WindowInfo(type=WindowType.TUMBLING, size_ms=node.after_ms),
                partitions=max(1, count),
            )
    return out


def _logged_columns(side: JoinSide, *, windowed: bool) -> tuple[Column, ...]:
    """The columns of a join side's window store changelog: the side's, except that between
    windowed sources, whose join key holds the record's window too (see
    :func:`~ksqlpy.runtime.join.plan.windowed_key_type`; an inner join's output already has
    the key alone), the key is logged alone."""
    key, *values = _side_columns(side)
    if windowed and not isinstance(side, JoinNode) and isinstance(key.type, sqltypes.Struct):
        key = replace(key, type=key.type.fields[0].type)
    return (key, *values)


def _side_columns(side: JoinSide) -> tuple[Column, ...]:
    """A join side's columns: its key as :data:`KEY`, then its values."""
    if isinstance(side, JoinNode):
        return side.output.columns
    key = side.select.key_columns[0]
    values = (c for c in side.select.value_columns if c.name != FOREIGN_KEY)
    return (
        Column(name=KEY, type=key.type, namespace=ColumnNamespace.KEY),
        *(Column(name=c.name, type=c.type) for c in values),
    )


def stored_rows(rows: pa.Table) -> pa.Table:
    """The rows of a run a window store keeps: those with a key and a value."""
    keep = pc.and_(
        pc.invert(pc.is_null(rows.column(KEY))), pc.invert(pc.fill_null(rows.column(DELETE), True))
    )
    return rows.filter(keep)


def rows_to_write(rows: pa.Table, target: Source) -> pa.Table:
    """The re-keyed rows that go to the repartition topic: a row without a key is dropped (Kafka
    Streams' repartition filter), and so is a stream record without a value, which no join
    reads; a table's tombstone goes on, to delete the row at its new key."""
    keep = pc.invert(pc.is_null(rows.column(KEY)))
    if not target.is_table and EVAL_DELETE in rows.column_names:
        keep = pc.and_(keep, pc.invert(pc.fill_null(rows.column(EVAL_DELETE), True)))
    return rows.filter(keep)


__all__ = [
    "JoinWriter",
    "RepartitionWriter",
    "Repartitioned",
    "repartitioned",
    "rows_to_write",
    "stored_rows",
    "window_store_logs",
    "with_window_columns",
]
