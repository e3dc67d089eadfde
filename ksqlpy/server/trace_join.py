"""Following a trace through a join (``POST /trace``, :mod:`ksqlpy.server.trace`).

A join query reads several sources; a traced record of one of them reaches the join's sink
under the key the join gives it. That key is computed as the query computes it, with its own
DuckDB expressions over the traced records:

1. the side's pre-join select (re-key by the join expression, the alias-prefixed columns) gives
   each traced record its join key, as the join operator's input;
2. a foreign-key join's right side (the referenced table): the left table's rows whose foreign
   key is a traced key carry on instead, under their own primary key, as the join emits them;
3. the query's own step over the join's result (projection, ``PARTITION BY`` or ``GROUP BY``)
   maps the join key, and the traced side's columns, to the sink key. A key that needs the other
   side's columns cannot be computed from one side's records: the query is then not followed.
   A ``WHERE`` over the other side's columns is left out (the sink then shows what passed it).

Each sink key comes with the ROWTIME spans its records can have: a stream record joined with a
table keeps its own ROWTIME; a stream–stream join emits within the join window after the traced
record (the later of the two records' times); anything else (a table side, which joins every
later record of its key, an aggregate, nested joins) from the traced record's time on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot import exp

from ksqlpy.planner.catalog import Source
from ksqlpy.planner.physical import AggregateStep, SelectStep
from ksqlpy.runtime.codec import HEADERS, TOMBSTONE
from ksqlpy.runtime.evaluate import TS, StepEvaluator
from ksqlpy.runtime.join.plan import FOREIGN_KEY, KEY, JoinInput, JoinKind, JoinNode, JoinSide, Rekeyed
from ksqlpy.runtime.query import new_connection

KeyRow = tuple[Any, ...]
#: ROWTIME bounds of a sink record, both included; ``None``: no upper bound
Span = tuple[int, int | None]

#: columns of the table the query's step is evaluated over that say which spans a key has
_LO, _HI = "__TRACE_LO", "__TRACE_HI"


class NotFollowed(Exception):
    """The trace cannot go through this join; the message says why (the answer's ``notFollowed``)."""


@dataclass(frozen=True, slots=True)
class JoinHop:
    """Where traced records of one side go: the sink keys and, per key, the ROWTIME spans."""

    keys: list[KeyRow]
    spans: dict[KeyRow, list[Span]]


def follow_join(
    root: JoinNode, step: SelectStep | AggregateStep, source: Source, rows: pa.Table, read: Any
) -> JoinHop:
    """The sink keys a join query gives ``rows`` (decoded records of ``source``, one of its
    inputs). ``read(source)`` reads another input's topic (a foreign-key join's left table)."""
    path = _path(root, source.name)
    if path is None:
        raise NotFollowed(f"{source.name} is not one of the join's inputs")
    side, ups = path
    if any(isinstance(node, Rekeyed) for node, _ in ups):
        raise NotFollowed(
            "the result of one join is re-keyed into another: which key carries on is not followed"
        )
    joins = [node for node, _ in ups if isinstance(node, JoinNode)]
    inner, which = ups[0]
    assert isinstance(inner, JoinNode)
    selected = _selected(side, rows)
    if inner.kind is JoinKind.FOREIGN_KEY and which == "R":
        selected = _referencing(inner, selected, read)
    elif any(n.kind is JoinKind.FOREIGN_KEY for n, w in ups[1:] if isinstance(n, JoinNode) and w == "R"):
        raise NotFollowed("a foreign-key join reads the result of another join on its right side")
    if selected.num_rows == 0:
        return JoinHop([], {})
    lo = selected.column(_LO)
    hi = _upper(inner, which, lo, exact=len(joins) == 1 and _timed(step))
    selected = selected.set_column(selected.column_names.index(_HI), _HI, hi)
    return _sink_keys(step, selected)


def spans_mask(rows: pa.Table, sink: Source, spans: Mapping[KeyRow, Sequence[Span]]) -> pa.Array:
    """Sink rows whose key has a span holding their ROWTIME."""
    if not spans or not sink.key_columns or rows.num_rows == 0:
        return pa.array([False] * rows.num_rows, pa.bool_())
    keys = zip(*(rows.column(c.name).to_pylist() for c in sink.key_columns))
    times = rows.column("ROWTIME").to_pylist()
    return pa.array(
        [
            any(lo <= t and (hi is None or t <= hi) for lo, hi in spans.get(tuple(k), ()))
            for k, t in zip(keys, times)
        ],
        pa.bool_(),
    )


def _path(node: JoinSide, name: str) -> tuple[JoinInput, list[tuple[JoinSide, str]]] | None:
    """The input reading ``name`` under ``node`` and the joins above it, innermost first, each
    with the side (``L`` or ``R``) the input is on."""
    match node:
        case JoinInput():
            return (node, []) if node.source.name == name else None
        case Rekeyed():
            found = _path(node.base, name)
            return None if found is None else (found[0], [*found[1], (node, "L")])
        case JoinNode():
            for side, which in ((node.left, "L"), (node.right, "R")):
                found = _path(side, name)
                if found is not None:
                    return found[0], [*found[1], (node, which)]
    return None


def _selected(side: JoinInput, rows: pa.Table) -> pa.Table:
    """The traced records through the side's pre-join select: join key, prefixed columns,
    ROWTIME (as ``__TRACE_LO``), without null join keys, which never join."""
    if rows.num_rows == 0:
        return _with_spans(
            pa.table({c.name: pa.array([], pa.null()) for c in side.select.columns}), pa.array([], pa.int64())
        )
    out = _evaluate(side.select, rows)
    out = out.filter(pc.is_valid(out.column(KEY)))
    keep = [c.name for c in side.select.columns]
    return _with_spans(out.select(keep), out.column(TS))


def _evaluate(select: SelectStep, rows: pa.Table) -> pa.Table:
    """A side's pre-join select over decoded records, as the join query runs it."""
    if TOMBSTONE not in rows.column_names:
        # the query reads a stream's records without a value too; the trace read skips them
        rows = rows.append_column(TOMBSTONE, pa.array([False] * rows.num_rows, pa.bool_()))
    evaluator = StepEvaluator(select, new_connection())
    try:
        return evaluator.evaluate(rows, "trace").rows
    finally:
        evaluator.con.close()


def _with_spans(table: pa.Table, times: Any) -> pa.Table:
    """``table`` with ROWTIME, and its spans from ``times`` on (no end yet)."""
    times = pc.cast(times, pa.int64())
    if "ROWTIME" not in table.column_names:
        table = table.append_column("ROWTIME", times)
    return table.append_column(_LO, times).append_column(_HI, pa.nulls(table.num_rows, pa.int64()))


def _referencing(node: JoinNode, traced: pa.Table, read: Any) -> pa.Table:
    """A foreign-key join traced from its right table: the left table's rows whose foreign key
    is one of the traced keys, each from the earliest traced record of that key on."""
    left = node.left
    if not isinstance(left, JoinInput):
        raise NotFollowed("a foreign-key join's left side is another join")
    since: dict[Any, int] = {}
    for key, t in zip(traced.column(KEY).to_pylist(), traced.column(_LO).to_pylist()):
        since[key] = min(t, since.get(key, t))
    rows = read(left.source)
    if rows.num_rows == 0 or not since:
        return _selected(left, rows.slice(0, 0))
    out = _evaluate(left.select, rows)
    fks = out.column(FOREIGN_KEY).to_pylist()
    keys = out.column(KEY).to_pylist()
    take = [i for i, (fk, key) in enumerate(zip(fks, keys)) if key is not None and fk in since]
    starts = pa.array([since[fks[i]] for i in take], pa.int64())
    table = out.take(pa.array(take, pa.int64())).select(
        [c.name for c in left.select.columns if c.name != FOREIGN_KEY]
    )
    # the join's result is the left row's, at the time the traced right record came
    return _with_spans(table, starts)


def _upper(node: JoinNode, which: str, lo: Any, *, exact: bool) -> pa.Array:
    """Each traced record's latest sink ROWTIME: its own (a stream side of a stream–table
    join, when the step keeps ROWTIME), the end of the join window (stream–stream), else none."""
    lo = pc.cast(lo, pa.int64())
    if node.kind is JoinKind.STREAM_TABLE and which == "L" and exact:
        return lo if isinstance(lo, pa.Array) else lo.combine_chunks()
    if node.kind is JoinKind.STREAM_STREAM and exact:
        window = node.after_ms if which == "L" else node.before_ms
        out = pc.add(lo, window)
        return out if isinstance(out, pa.Array) else out.combine_chunks()
    return pa.nulls(len(lo), pa.int64())


def _timed(step: SelectStep | AggregateStep) -> bool:
    return isinstance(step, SelectStep) and step.timestamp_sql == '"ROWTIME"'


def _columns(sql: str) -> set[str]:
    """The column names a DuckDB expression reads."""
    return {c.name for c in sqlglot.parse_one(sql, dialect="duckdb").find_all(exp.Column)}


def _sink_keys(step: SelectStep | AggregateStep, selected: pa.Table) -> JoinHop:
    """The step's key expressions over the traced side's columns, with each key's spans."""
    available = set(selected.column_names)
    if isinstance(step, AggregateStep):
        exprs = [k.sql for k in step.group_keys]
    else:
        exprs = [c.sql for c in step.key_columns]
    if not step.key_columns:
        return JoinHop([], {})
    missing = sorted(set().union(*(_columns(e) for e in exprs)) - available)
    if missing:
        raise NotFollowed(
            f"its key needs columns of the join's other side ({', '.join(missing)}), "
            "which the traced records do not have"
        )
    where = step.where_sql
    if where and not _columns(where) <= available:
        where = None  # it reads the other side: the sink shows what passed it
    condition = f" WHERE COALESCE({where}, FALSE)" if where else ""
    con = new_connection()
    try:
        con.register("input", selected.drop_columns([n for n in (HEADERS, TOMBSTONE) if n in available]))
        if isinstance(step, AggregateStep):
            inner = ", ".join(f'{k.sql} AS "{k.name}"' for k in step.group_keys)
            out = ", ".join(c.sql for c in step.key_columns)
            # every later update of the group includes the traced record
            sql = (
                f'SELECT DISTINCT {out}, "{_LO}", NULL::BIGINT '
                f'FROM (SELECT {inner}, "{_LO}" FROM input{condition})'
            )
        else:
            out = ", ".join(c.sql for c in step.key_columns)
            hi = f'"{_HI}"' if _timed(step) else "NULL::BIGINT"
            sql = f'SELECT DISTINCT {out}, "{_LO}", {hi} FROM input{condition}'
        found = con.execute(sql).fetchall()
    finally:
        con.close()
    width = len(step.key_columns)
    spans: dict[KeyRow, list[Span]] = {}
    for row in found:
        spans.setdefault(tuple(row[:width]), []).append((int(row[width]), row[width + 1]))
    return JoinHop(sorted(spans, key=repr), spans)
