"""The join operators: a query's join tree over micro-batches, with its state in DuckDB.

Per batch, every input topic's decoded records go through their side's pre-join select (one
DuckDB query per input), and are then processed in the order the batch holds them (its
``__SEQ``: the order the runner puts a batch in, see :mod:`.runner`) as *runs*:
consecutive records of one input. A run goes up the tree one join at a time, each join
handling it as one vectorized query against the other side's state; what a join emits is the
next run of its parent. Since the other side's state cannot change within a run, this is
ksqlDB's per-record semantics:

- stream–table: a stream record joins the table's value for its key as of that moment; table
  records only change state (a tombstone deletes). Output key: the join key; timestamp: the
  stream record's.
- stream–stream: see :mod:`ksqlpy.runtime.join.windowed`.
- foreign-key table–table: see :meth:`JoinProcessor._foreign_key`.
- table–table (primary keys): an update on either side emits the joined row, a row padded with
  nulls for an outer side, or a tombstone when the key's joined row no longer exists; the
  timestamp is the later of the two sides' (Kafka Streams' KTable-KTable join processors).

Stream records with a null key or without a value never join. State lives in tables of schema
``joins`` on the store transaction's connection, so it commits with outputs and positions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.errors import PlanError
from ksqlpy.planner.physical import OutputColumn, SelectStep
from ksqlpy.runtime.codec import HEADERS, TOMBSTONE
from ksqlpy.runtime.evaluate import DELETE as EVAL_DELETE
from ksqlpy.runtime.evaluate import TS as EVAL_TS
from ksqlpy.runtime.evaluate import Evaluated, StepEvaluator
from ksqlpy.runtime.join.plan import (
    DELETE,
    FOREIGN_KEY,
    KEY,
    TS,
    JoinInput,
    JoinKind,
    JoinNode,
    JoinSide,
    Rekeyed,
)
from ksqlpy.runtime.join.windowed import StreamStreamJoin
from ksqlpy.runtime.processing_log import ProcessingError
from ksqlpy.runtime.store.base import HEADER_TYPE

#: a record's place in the batch (the order runs are processed in)
SEQ = "__SEQ"

_PRESERVED = {"LEFT": ("L",), "RIGHT": ("R",), "OUTER": ("L", "R"), "INNER": ()}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sequenced(select: SelectStep) -> SelectStep:
    """The select carrying each record's ``__SEQ`` through."""
    seq = OutputColumn(name=SEQ, type=sqltypes.BIGINT, sql=_q(SEQ))
    return replace(select, columns=(*select.columns, seq))


class JoinProcessor:
    """Runs one query's join tree; ``process`` takes each input's decoded records."""

    def __init__(self, root: JoinNode, query_id: str, con: duckdb.DuckDBPyConnection) -> None:
        self.root = root
        self.query_id = query_id
        self.inputs = root.inputs()
        self.nodes = root.nodes()
        self._evaluators: dict[int, StepEvaluator] = {}
        #: each side's parent: the join (and which side it is) or the re-keying chain
        self._parent: dict[int, tuple[JoinNode | Rekeyed, str]] = {}
        for node in self.nodes:
            for which, side in (("L", node.left), ("R", node.right)):
                self._parent[id(side)] = (node, which)
                if isinstance(side, Rekeyed):
                    self._parent[id(side.base)] = (side, "")
        selected: list[JoinInput | Rekeyed] = [*self.inputs, *self._rekeyed()]
        for chain in selected:
            self._evaluators[id(chain)] = StepEvaluator(_sequenced(chain.select), con)
        self._windowed = {
            id(n): StreamStreamJoin(n, {w: self.table(n, w) for w in ("L", "R", "T")}, SEQ)
            for n in self.nodes
            if n.kind is JoinKind.STREAM_STREAM
        }
        self._ensured = False
        #: the runs of the last batch that went into a stream-stream join's window stores
        #: (join, side L or R, rows), for the runner to log to the stores' changelogs
        self.stored: list[tuple[JoinNode, str, pa.Table]] = []

    def _rekeyed(self) -> list[Rekeyed]:
        return [side for node in self.nodes for side in (node.left, node.right) if isinstance(side, Rekeyed)]

    # ------------------------------------------------------------------------ state tables

    def table(self, node: JoinNode, which: str) -> str:
        """The state of ``node``'s side ``which`` (L or R)."""
        return f"joins.{_q(f'{self.query_id}/{node.context}/{which}')}"

    def state_tables(self) -> list[str]:
        return [self.table(n, w) for n in self.nodes for w in ("L", "R", "T")]

    def _ensure_tables(self, state: duckdb.DuckDBPyConnection) -> None:
        if self._ensured:
            return
        state.execute("CREATE SCHEMA IF NOT EXISTS joins")
        for node in self.nodes:
            if id(node) in self._windowed:
                fields = {"L": _side_fields(node.left), "R": _side_fields(node.right)}
                self._windowed[id(node)].create(state, fields)
                continue
            for which, side in (("L", node.left), ("R", node.right)):
                schema = pa.schema([*_side_fields(side), pa.field(TS, pa.int64()), pa.field(SEQ, pa.int64())])
                state.register("__empty", schema.empty_table())
                try:
                    state.execute(
                        f"CREATE TABLE IF NOT EXISTS {self.table(node, which)} AS SELECT * FROM __empty"
                    )
                finally:
                    state.unregister("__empty")
        self._ensured = True

    def drop_state(self, state: duckdb.DuckDBPyConnection) -> None:
        for table in self.state_tables():
            state.execute(f"DROP TABLE IF EXISTS {table}")
        self._ensured = False

    # ------------------------------------------------------------------------ batches

    def process(self, decoded: list[pa.Table | None], state: duckdb.DuckDBPyConnection) -> Evaluated:
        """Join each input's decoded records (``decoded[i]`` for ``self.inputs[i]``, with a
        ``__SEQ`` column), returning the root join's output as a decoded batch of its
        output source."""
        self._ensure_tables(state)
        self.stored = []
        errors: list[ProcessingError] = []
        sides: list[pa.Table] = []
        for side, batch in zip(self.inputs, decoded, strict=True):
            if batch is None or batch.num_rows == 0:
                sides.append(_empty_side(side))
                continue
            result = self._evaluators[id(side)].evaluate(batch, self.query_id)
            errors += result.errors
            sides.append(_side_rows(side, result.rows))
        outputs: list[pa.Table] = []
        for index, rows in _runs(sides):
            out = self._push(self.inputs[index], rows, state)
            if out is not None and out.num_rows:
                outputs.append(out)
        schema = _decoded_schema(self.root)
        if not outputs:
            return Evaluated(schema.empty_table(), errors)
        return Evaluated(pa.concat_tables([_as_decoded(o, schema) for o in outputs]), errors)

    def _push(self, side: JoinSide, rows: pa.Table, state: duckdb.DuckDBPyConnection) -> pa.Table | None:
        """Send a run from ``side`` up the tree; the root's output, if any."""
        while rows.num_rows:
            parent = self._parent.get(id(side))
            if parent is None:
                return rows
            over, which = parent
            if isinstance(over, Rekeyed):
                decoded = _as_decoded(rows, _decoded_schema(over.base))
                result = self._evaluators[id(over)].evaluate(decoded, self.query_id)
                rows = _side_rows(over, result.rows)
            else:
                rows = self._join(over, which, rows, state)
            side = over
        return None

    def _join(self, node: JoinNode, which: str, rows: pa.Table, state: duckdb.DuckDBPyConnection) -> pa.Table:
        match node.kind:
            case JoinKind.STREAM_TABLE:
                if which == "R":
                    self._upsert(node, which, rows, state)
                    return _empty_side(node)
                return self._stream_table(node, rows, state)
            case JoinKind.TABLE_TABLE:
                out = self._table_table(node, which, rows, state)
                self._upsert(node, which, rows, state)
                return out
            case JoinKind.FOREIGN_KEY:
                out = self._foreign_key(node, which, rows, state)
                self._upsert(node, which, rows, state)
                return out
            case JoinKind.STREAM_STREAM:
                if node.stores is not None:
                    self.stored.append((node, which, rows))
                return self._windowed[id(node)].process(which, rows, state, _side_schema(node))
        raise PlanError(f"Joins of this kind are not supported yet: {node.kind.value} at {node.context}")

    def _query(self, state: duckdb.DuckDBPyConnection, sql: str, rows: pa.Table, node: JoinNode) -> pa.Table:
        state.register("__run", rows)
        try:
            result = state.sql(sql).to_arrow_table()
        finally:
            state.unregister("__run")
        return result.cast(_side_schema(node)) if result.schema != _side_schema(node) else result

    def _upsert(self, node: JoinNode, which: str, rows: pa.Table, state: duckdb.DuckDBPyConnection) -> None:
        """A table side's new values: the last change of each key in the run."""
        table = self.table(node, which)
        side = node.left if which == "L" else node.right
        cols = ", ".join(_q(c) for c in (*(f.name for f in _side_fields(side)), TS, SEQ))
        state.register("__run", rows)
        try:
            state.execute(f"DELETE FROM {table} WHERE {_q(KEY)} IN (SELECT {_q(KEY)} FROM __run)")
            state.execute(
                f"INSERT INTO {table} SELECT {cols} FROM (SELECT *, row_number() OVER "
                f"(PARTITION BY {_q(KEY)} ORDER BY {_q(SEQ)} DESC) AS __RN FROM __run "
                f"WHERE {_q(KEY)} IS NOT NULL) WHERE __RN = 1 AND NOT {_q(DELETE)}"
            )
        finally:
            state.unregister("__run")

    def _stream_table(self, node: JoinNode, rows: pa.Table, state: duckdb.DuckDBPyConnection) -> pa.Table:
        items = [f"l.{_q(KEY)}"]
        items += [f"l.{_q(v)}" for v in _values(node.left)]
        items += [f"r.{_q(v)}" for v in _values(node.right)]
        if node.synthetic is not None:
            items.append(f"l.{_q(KEY)} AS {_q(node.synthetic)}")
        items += [f"l.{_q(TS)}", f"FALSE AS {_q(DELETE)}", f"l.{_q(SEQ)}", f"l.{_q(HEADERS)}"]
        how = "LEFT" if node.join_type == "LEFT" else "INNER"
        sql = (
            f"SELECT {', '.join(items)} FROM __run l {how} JOIN {self.table(node, 'R')} r "
            f"ON l.{_q(KEY)} = r.{_q(KEY)} WHERE NOT l.{_q(DELETE)} AND l.{_q(KEY)} IS NOT NULL "
            f"ORDER BY l.{_q(SEQ)}"
        )
        return self._query(state, sql, rows, node)

    def _table_table(
        self, node: JoinNode, which: str, rows: pa.Table, state: duckdb.DuckDBPyConnection
    ) -> pa.Table:
        """An update on side X against side Y's state (Kafka Streams' KTable-KTable joins):
        without a Y row, only an outer X emits (unless X had no row before either); with one,
        the joined row, or a tombstone when X is gone and Y is not an outer side."""
        other = "R" if which == "L" else "L"
        preserved = _PRESERVED.get(node.join_type, ())
        x_outer = "TRUE" if which in preserved else "FALSE"
        y_outer = "TRUE" if other in preserved else "FALSE"
        this_side, other_side = (node.left, node.right) if which == "L" else (node.right, node.left)
        k, d, ts, seq = _q(KEY), _q(DELETE), _q(TS), _q(SEQ)
        x_values = {v: f"CASE WHEN NOT {d} THEN {_q(v)} END" for v in _values(this_side)}
        y_values = {v: _q(v) for v in _values(other_side)}
        values = {**x_values, **y_values}
        ordered = [*_values(node.left), *_values(node.right)]
        items = [k] + [f"{values[v]} AS {_q(v)}" for v in ordered]
        if node.synthetic is not None:
            items.append(f"{k} AS {_q(node.synthetic)}")
        items += [
            f"CASE WHEN __YP THEN greatest({ts}, __YTS) ELSE {ts} END AS {ts}",
            f"NOT (NOT {d} OR (__YP AND {y_outer})) AS {d}",
            seq,
            _q(HEADERS),
        ]
        y_cols = "".join(f", y.{_q(v)}" for v in _values(other_side))
        sql = f"""
            WITH run AS (
                SELECT x.*, COALESCE(
                    lag(NOT x.{d}) OVER (PARTITION BY x.{k} ORDER BY x.{seq}),
                    EXISTS (SELECT 1 FROM {self.table(node, which)} s WHERE s.{k} = x.{k})
                ) AS __OLD
                FROM __run x WHERE x.{k} IS NOT NULL
            ), j AS (
                SELECT run.*, y.{k} IS NOT NULL AS __YP, y.{ts} AS __YTS{y_cols}
                FROM run LEFT JOIN {self.table(node, other)} y ON run.{k} = y.{k}
            )
            SELECT {", ".join(items)} FROM j
            WHERE __YP OR ({x_outer} AND (NOT {d} OR __OLD))
            ORDER BY {seq}
        """
        return self._query(state, sql, rows, node)

    def _foreign_key(
        self, node: JoinNode, which: str, rows: pa.Table, state: duckdb.DuckDBPyConnection
    ) -> pa.Table:
        """A foreign-key join keyed by the left table's key. A left row joins the right row its
        foreign key names (LEFT: padded with nulls when there is none; INNER: nothing); a left
        delete is a tombstone when the row existed. A right update re-joins every left row
        naming it; a right delete makes them tombstones (INNER) or padded rows (LEFT)."""
        k, d, ts, seq, fk = _q(KEY), _q(DELETE), _q(TS), _q(SEQ), _q(FOREIGN_KEY)
        outer = "TRUE" if node.join_type == "LEFT" else "FALSE"
        left_values, right_values = _values(node.left), _values(node.right)
        if which == "L":
            items = [f"x.{k}"]
            items += [f"CASE WHEN NOT x.{d} THEN x.{_q(v)} END AS {_q(v)}" for v in left_values]
            items += [f"y.{_q(v)}" for v in right_values]
            items += [
                f"CASE WHEN y.{k} IS NOT NULL THEN greatest(x.{ts}, y.{ts}) ELSE x.{ts} END AS {ts}",
                f"x.{d}",
                f"x.{seq}",
                f"x.{_q(HEADERS)}",
            ]
            sql = f"""
                WITH x AS (
                    SELECT r.*, COALESCE(
                        lag(NOT r.{d}) OVER (PARTITION BY r.{k} ORDER BY r.{seq}),
                        EXISTS (SELECT 1 FROM {self.table(node, "L")} s WHERE s.{k} = r.{k})
                    ) AS __OLD
                    FROM __run r WHERE r.{k} IS NOT NULL
                )
                SELECT {", ".join(items)}
                FROM x LEFT JOIN {self.table(node, "R")} y ON NOT x.{d} AND x.{fk} = y.{k}
                WHERE (x.{d} AND x.__OLD) OR (NOT x.{d} AND (y.{k} IS NOT NULL OR {outer}))
                ORDER BY x.{seq}
            """
        else:
            items = [f"l.{k}"]
            items += [f"l.{_q(v)}" for v in left_values]
            items += [f"CASE WHEN NOT r.{d} THEN r.{_q(v)} END AS {_q(v)}" for v in right_values]
            items += [
                f"CASE WHEN r.{d} THEN r.{ts} ELSE greatest(l.{ts}, r.{ts}) END AS {ts}",
                f"(r.{d} AND NOT {outer}) AS {d}",
                f"r.{seq}",
                f"r.{_q(HEADERS)}",
            ]
            sql = f"""
                SELECT {", ".join(items)}
                FROM __run r JOIN {self.table(node, "L")} l ON l.{fk} = r.{k}
                WHERE r.{k} IS NOT NULL
                ORDER BY r.{seq}, l.{k}
            """
        return self._query(state, sql, rows, node)


# ---------------------------------------------------------------------------- batch shapes


def _values(side: JoinSide) -> tuple[str, ...]:
    return side.value_names


def _side_fields(side: JoinSide) -> list[pa.Field]:
    """A side's key and value columns as Arrow fields."""
    if isinstance(side, JoinNode):
        return [pa.field(c.name, sqltypes.to_arrow(c.type)) for c in side.output.columns]
    return [pa.field(c.name, sqltypes.to_arrow(c.type)) for c in side.select.columns]


def _side_schema(node: JoinNode) -> pa.Schema:
    """What a join emits: its output columns, then TS, DELETE, SEQ and the headers of the
    record that triggered each result (Kafka Streams forwards the record's context)."""
    return pa.schema(
        [
            *_side_fields(node),
            pa.field(TS, pa.int64()),
            pa.field(DELETE, pa.bool_()),
            pa.field(SEQ, pa.int64()),
            pa.field(HEADERS, HEADER_TYPE),
        ]
    )


def _empty_side(side: JoinSide) -> pa.Table:
    fields = [
        *_side_fields(side),
        pa.field(TS, pa.int64()),
        pa.field(DELETE, pa.bool_()),
        pa.field(SEQ, pa.int64()),
        pa.field(HEADERS, HEADER_TYPE),
    ]
    return pa.schema(fields).empty_table()


def _side_rows(side: JoinInput | Rekeyed, rows: pa.Table) -> pa.Table:
    """A select's evaluated rows as a side's run: key, values, TS, DELETE, SEQ, headers."""
    cols: dict[str, Any] = {c.name: rows.column(c.name) for c in side.select.columns}
    cols[TS] = rows.column(EVAL_TS)
    if EVAL_DELETE in rows.column_names:
        cols[DELETE] = pc.fill_null(rows.column(EVAL_DELETE), True)
    else:
        cols[DELETE] = pa.array(np.zeros(rows.num_rows, dtype=bool))
    cols[SEQ] = rows.column(SEQ)
    cols[HEADERS] = rows.column(HEADERS)
    table = pa.table(cols)
    return table.sort_by(SEQ) if table.num_rows > 1 else table


def _runs(sides: list[pa.Table]) -> list[tuple[int, pa.Table]]:
    """The inputs' rows as runs in ``__SEQ`` order: (input index, consecutive rows)."""
    seqs = [s.column(SEQ).to_numpy() if s.num_rows else np.zeros(0, dtype=np.int64) for s in sides]
    if not any(len(s) for s in seqs):
        return []
    seq = np.concatenate(seqs)
    which = np.concatenate([np.full(len(s), i, dtype=np.int64) for i, s in enumerate(seqs)])
    order = np.lexsort((which, seq))  # a record read by two inputs (a self-join): left first
    which = which[order]
    starts: list[int] = [0, *(int(i) + 1 for i in np.flatnonzero(np.diff(which)))]
    taken = [0] * len(sides)
    out: list[tuple[int, pa.Table]] = []
    for a, b in zip(starts, [*starts[1:], len(which)], strict=True):
        i = int(which[a])
        out.append((i, sides[i].slice(taken[i], b - a)))
        taken[i] += b - a
    return out


def _decoded_schema(node: JoinNode) -> pa.Schema:
    """A join's output as a decoded batch of its output source."""
    fields = [pa.field(c.name, sqltypes.to_arrow(c.type)) for c in node.output.columns]
    fields += [
        pa.field(HEADERS, HEADER_TYPE),
        pa.field("ROWTIME", pa.int64()),
        pa.field("ROWPARTITION", pa.int32()),
        pa.field("ROWOFFSET", pa.int64()),
        pa.field(TOMBSTONE, pa.bool_()),
        pa.field(SEQ, pa.int64()),
    ]
    return pa.schema(fields)


def _as_decoded(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    n = rows.num_rows
    cols: list[Any] = []
    for f in schema:
        match f.name:
            case "ROWTIME":
                cols.append(rows.column(TS))
            case "ROWPARTITION":
                cols.append(pa.array(np.zeros(n, dtype=np.int32)))
            case "ROWOFFSET":
                cols.append(rows.column(SEQ))
            case _ if f.name == HEADERS:
                cols.append(rows.column(HEADERS))
            case _ if f.name == TOMBSTONE:
                cols.append(rows.column(DELETE))
            case _:
                cols.append(rows.column(f.name))
    return pa.Table.from_arrays(cols, schema=schema)


__all__ = ["SEQ", "JoinProcessor"]
