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

Stream records with a null key or without a value never join. State lives in state stores
(:mod:`ksqlpy.runtime.state`) named as ksqlDB names them: a table side in its source's store
(``KafkaTopic_Right-Reduce``), a stream–stream join's sides in window stores. Their tables (schema
``joins``) are on the store transaction's connection, so they commit with outputs and positions,
and on the Kafka store their changes also go to the stores' changelog topics.
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
from ksqlpy.runtime.changelog import TableLog
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
    windowed_key_type,
)
from ksqlpy.runtime.join.windowed import StreamStreamJoin, window_stores
from ksqlpy.runtime.processing_log import ProcessingError
from ksqlpy.runtime.state import StateStore
from ksqlpy.runtime.stats import OperatorCounts
from ksqlpy.runtime.store.base import HEADER_TYPE

#: a record's place in the batch (the order runs are processed in)
SEQ = "__SEQ"

_PRESERVED = {"LEFT": ("L",), "RIGHT": ("R",), "OUTER": ("L", "R"), "INNER": ()}
#: joins of tables whose interleaved runs of both inputs are joined as one sequence
_SEQUENCED = (JoinKind.STREAM_TABLE, JoinKind.TABLE_TABLE)


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
        self._con = con
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
        self._stores: dict[tuple[int, str], StateStore] = {}
        self._windowed: dict[int, StreamStreamJoin] = {}
        for node in self.nodes:
            if node.kind is JoinKind.STREAM_STREAM:
                stores = window_stores(node, query_id, SEQ, _side_fields)
                self._windowed[id(node)] = StreamStreamJoin(node, stores, SEQ)
                self._stores.update({(id(node), w): store for w, store in stores.items()})
                continue
            sides = ("R",) if node.kind is JoinKind.STREAM_TABLE else ("L", "R")
            for which in sides:
                self._stores[(id(node), which)] = _table_store(node, which, query_id)
        _unique_names(list(self._stores.values()))
        #: the join, when the tree is one join of two inputs whose runs form one sequence
        #: (a stream-stream, stream-table or table-table join): its batches need no runs
        self._one_sequence: JoinNode | None = None
        if len(self.nodes) == 1:
            (only,) = self.nodes
            direct = not isinstance(only.left, Rekeyed) and not isinstance(only.right, Rekeyed)
            if direct and len(self.inputs) == 2 and (id(only) in self._windowed or only.kind in _SEQUENCED):
                self._one_sequence = only
        self._ensured = False
        #: where each side's, join's and re-keying's rows are counted (see ``step_counts``)
        self.counts: OperatorCounts | None = None
        #: an input's number in the whole join tree, where this processor runs part of it
        #: (an n-way join re-keyed through a repartition topic); else its place in ``inputs``
        self.input_index: dict[int, int] = {}

    def _count(self, operator: str, rows_in: int, rows_out: int) -> None:
        if self.counts is not None:
            self.counts.add(f"{operator}/in", rows_in)
            self.counts.add(f"{operator}/out", rows_out)
        #: the runs of the last batch that went into a stream-stream join's window stores
        #: (join, side L or R, rows), for the runner to log to the stores' changelogs
        self.stored: list[tuple[JoinNode, str, pa.Table]] = []

    def _keep_stored(self, node: JoinNode, both: dict[str, pa.Table]) -> None:
        if node.stores is not None:
            self.stored.extend((node, w, rows) for w, rows in both.items() if rows.num_rows)

    def _rekeyed(self) -> list[Rekeyed]:
        return [side for node in self.nodes for side in (node.left, node.right) if isinstance(side, Rekeyed)]

    # ------------------------------------------------------------------------ state stores

    def table(self, node: JoinNode, which: str) -> str:
        """The table of ``node``'s side ``which`` (L or R)."""
        return self._stores[(id(node), which)].table

    @property
    def stores(self) -> list[StateStore]:
        """The join's state stores, named as ksqlDB names them."""
        return list(self._stores.values())

    def _ensure_tables(self, state: duckdb.DuckDBPyConnection) -> None:
        if self._ensured:
            return
        for store in self._stores.values():
            store.create(state)
        self._ensured = True

    def log_changes(self, prefix: str, state: duckdb.DuckDBPyConnection) -> list[TableLog]:
        """From now on record every state change for the stores' changelog topics (named
        after ``prefix``, the query's application id); returns their logs."""
        self._ensure_tables(state)
        return [store.log_to(prefix, self._con, state) for store in self._stores.values()]

    def changelog_topics(self, prefix: str) -> list[str]:
        return [store.changelog_topic(prefix) for store in self._stores.values()]

    def drop_state(self, state: duckdb.DuckDBPyConnection) -> None:
        for store in self._stores.values():
            store.drop(state)
        for node in self.nodes:
            # a stream-table join's stream side had a (never written) table before stores
            state.execute(f"DROP TABLE IF EXISTS joins.{_q(f'{self.query_id}/{node.context}/L')}")
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
        for i, (side, batch) in enumerate(zip(self.inputs, decoded, strict=True)):
            if batch is None or batch.num_rows == 0:
                sides.append(_empty_side(side))
                continue
            result = self._evaluators[id(side)].evaluate(batch, self.query_id)
            errors += result.errors
            self._count(f"side/{self.input_index.get(id(side), i)}", batch.num_rows, result.rows.num_rows)
            sides.append(_side_rows(side, result.rows))
        outputs: list[pa.Table] = []
        segments: list[tuple[JoinNode | None, list[tuple[int, pa.Table]]]]
        if self._one_sequence is not None:  # every run goes to one join: one segment of both sides
            segments = [(self._one_sequence, [(i, side) for i, side in enumerate(sides) if side.num_rows])]
        else:
            segments = self._segments(_runs(sides))
        for node, runs in segments:
            if node is not None and not runs:
                continue
            if node is None:
                index, rows = runs[0]
                out = self._push(self.inputs[index], rows, state)
            else:
                parts: dict[str, list[pa.Table]] = {"L": [], "R": []}
                for i, r in runs:
                    parts[self._parent[id(self.inputs[i])][1]].append(r)
                # one chunk per side: interleaved runs are often a record or two each, and a
                # table of thousands of chunks is slow to scan
                both = {
                    w: pa.concat_tables(parts[w]).combine_chunks()
                    if parts[w]
                    else _empty_side(node.left if w == "L" else node.right)
                    for w in ("L", "R")
                }
                if id(node) in self._windowed:
                    self._keep_stored(node, both)
                    rows = self._windowed[id(node)].process(both, state, _side_schema(node))
                elif len(runs) == 1:  # one side's run alone: as it comes
                    index, run = runs[0]
                    rows = self._join(node, self._parent[id(self.inputs[index])][1], run, state)
                else:
                    rows = self._sequence(node, both, state)
                if self.counts is not None:
                    self.counts.add(f"join/{node.context}", rows.num_rows)
                out = self._push(node, rows, state)
            if out is not None and out.num_rows:
                outputs.append(out)
        schema = _decoded_schema(self.root)
        if not outputs:
            return Evaluated(schema.empty_table(), errors)
        return Evaluated(pa.concat_tables([_as_decoded(o, schema) for o in outputs]), errors)

    def _segments(
        self, runs: list[tuple[int, pa.Table]]
    ) -> list[tuple[JoinNode | None, list[tuple[int, pa.Table]]]]:
        """Runs grouped for processing: consecutive runs of the two inputs of one stream–stream,
        stream–table or table–table join go to it together, as one sequence (interleaved by
        timestamp, runs are short, and each run costs a few queries); every other run goes alone
        (``None``)."""
        out: list[tuple[JoinNode | None, list[tuple[int, pa.Table]]]] = []
        for index, rows in runs:
            node, _ = self._parent[id(self.inputs[index])]
            if not (isinstance(node, JoinNode) and (id(node) in self._windowed or node.kind in _SEQUENCED)):
                out.append((None, [(index, rows)]))
            elif out and out[-1][0] is node:
                out[-1][1].append((index, rows))
            else:
                out.append((node, [(index, rows)]))
        return out

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
                self._count(f"rekey/{over.base.context}", decoded.num_rows, result.rows.num_rows)
                rows = _side_rows(over, result.rows)
            else:
                rows = self._join(over, which, rows, state)
                if self.counts is not None:
                    self.counts.add(f"join/{over.context}", rows.num_rows)
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
                other = _empty_side(node.right if which == "L" else node.left)
                both = {which: rows, ("R" if which == "L" else "L"): other}
                self._keep_stored(node, both)
                return self._windowed[id(node)].process(both, state, _side_schema(node))
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
        store = self._stores[(id(node), which)]
        state.register("__run", rows)
        try:
            last = state.sql(
                f"SELECT * EXCLUDE (__RN) FROM (SELECT *, row_number() OVER "
                f"(PARTITION BY {_q(KEY)} ORDER BY {_q(SEQ)} DESC) AS __RN FROM __run "
                f"WHERE {_q(KEY)} IS NOT NULL) WHERE __RN = 1"
            ).to_arrow_table()
        finally:
            state.unregister("__run")
        deleted = pc.fill_null(last.column(DELETE), True)
        store.delete(state, last.filter(deleted))
        store.upsert(state, last.filter(pc.invert(deleted)))

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

    def _sequence(self, node: JoinNode, both: dict[str, pa.Table], state: duckdb.DuckDBPyConnection) -> pa.Table:
        """Interleaved runs of a stream–table or table–table join's two inputs, in one pass: each
        record meets the other side as the records before it left it (an as-of join on
        ``__SEQ``: the other side's last change of the key earlier in the sequence, else its
        stored row; a record both inputs read goes left first), as if the runs were joined
        one by one. Then each table side keeps its last change of each key."""
        if node.kind is JoinKind.STREAM_TABLE:
            out = self._sequence_query(node, "L", both, state, outer=node.join_type == "LEFT")
        else:
            parts = []
            for which in ("L", "R"):
                part = self._sequence_query(node, which, both, state, outer=which in _PRESERVED.get(node.join_type, ()))
                parts.append(part.append_column("__SIDE", pa.array(np.full(part.num_rows, which == "R"))))
            merged = pa.concat_tables(parts).sort_by([(SEQ, "ascending"), ("__SIDE", "ascending")])
            out = merged.drop_columns(["__SIDE"])
            self._upsert(node, "L", both["L"], state)
        self._upsert(node, "R", both["R"], state)
        return out

    def _sequence_query(
        self, node: JoinNode, which: str, both: dict[str, pa.Table], state: duckdb.DuckDBPyConnection, *, outer: bool
    ) -> pa.Table:
        """The results of side ``which``'s records of a sequence (see :meth:`_sequence`)."""
        other = "R" if which == "L" else "L"
        this_side, other_side = (node.left, node.right) if which == "L" else (node.right, node.left)
        k, d, ts, seq = _q(KEY), _q(DELETE), _q(TS), _q(SEQ)
        # the other side's changes earlier in the sequence: strictly earlier for the left
        before = ">" if which == "L" else ">="
        y_names = _values(other_side)
        changes = ", ".join([f"{k}", f"{seq} AS __USEQ", f"{d} AS __UDEL", f"{ts} AS __UTS"] + [
            f"{_q(v)} AS __U{i}" for i, v in enumerate(y_names)
        ])
        # the other side as of each record: its change in the sequence, else its stored row
        y_present = "CASE WHEN a.__USEQ IS NULL THEN y.{k} IS NOT NULL ELSE NOT a.__UDEL END"
        y_values = [
            f"CASE WHEN a.__USEQ IS NULL THEN y.{_q(v)} WHEN NOT a.__UDEL THEN a.__U{i} END AS {_q(v)}"
            for i, v in enumerate(y_names)
        ]
        stored_y = self.table(node, other)
        if node.kind is JoinKind.STREAM_TABLE:
            items = [k, *(_q(v) for v in _values(node.left)), *(_q(v) for v in y_names)]
            if node.synthetic is not None:
                items.append(f"{k} AS {_q(node.synthetic)}")
            items += [ts, f"FALSE AS {d}", seq, _q(HEADERS)]
            sql = f"""
                WITH u AS (SELECT {changes} FROM __other WHERE {k} IS NOT NULL),
                x AS (SELECT * FROM __this WHERE NOT {d} AND {k} IS NOT NULL),
                a AS (SELECT x.*, u.* EXCLUDE ({k}) FROM x ASOF LEFT JOIN u ON x.{k} = u.{k} AND x.{seq} {before} u.__USEQ),
                j AS (
                    SELECT a.*, {y_present.format(k=k)} AS __YP, {", ".join(y_values)}
                    FROM a LEFT JOIN {stored_y} y ON a.{k} = y.{k}
                )
                SELECT {", ".join(items)} FROM j WHERE {"TRUE" if outer else "__YP"} ORDER BY {seq}
            """
        else:
            y_outer = "TRUE" if other in _PRESERVED.get(node.join_type, ()) else "FALSE"
            x_values = {v: f"CASE WHEN NOT {d} THEN {_q(v)} END" for v in _values(this_side)}
            values = {**x_values, **{v: _q(v) for v in y_names}}
            items = [k] + [f"{values[v]} AS {_q(v)}" for v in (*_values(node.left), *_values(node.right))]
            if node.synthetic is not None:
                items.append(f"{k} AS {_q(node.synthetic)}")
            items += [
                f"CASE WHEN __YP THEN greatest({ts}, __YTS) ELSE {ts} END AS {ts}",
                f"NOT (NOT {d} OR (__YP AND {y_outer})) AS {d}",
                seq,
                _q(HEADERS),
            ]
            sql = f"""
                WITH u AS (SELECT {changes} FROM __other WHERE {k} IS NOT NULL),
                x AS (
                    SELECT x.*, COALESCE(
                        lag(NOT x.{d}) OVER (PARTITION BY x.{k} ORDER BY x.{seq}), s.{k} IS NOT NULL
                    ) AS __OLD
                    FROM __this x LEFT JOIN {self.table(node, which)} s ON s.{k} = x.{k}
                    WHERE x.{k} IS NOT NULL
                ),
                a AS (SELECT x.*, u.* EXCLUDE ({k}) FROM x ASOF LEFT JOIN u ON x.{k} = u.{k} AND x.{seq} {before} u.__USEQ),
                j AS (
                    SELECT a.*, {y_present.format(k=k)} AS __YP,
                        CASE WHEN a.__USEQ IS NULL THEN y.{ts} ELSE a.__UTS END AS __YTS, {", ".join(y_values)}
                    FROM a LEFT JOIN {stored_y} y ON a.{k} = y.{k}
                )
                SELECT {", ".join(items)} FROM j
                WHERE __YP OR ({"TRUE" if outer else "FALSE"} AND (NOT {d} OR __OLD))
                ORDER BY {seq}
            """
        state.register("__this", both[which])
        state.register("__other", both[other])
        try:
            result = state.sql(sql).to_arrow_table()
        finally:
            state.unregister("__this")
            state.unregister("__other")
        schema = _side_schema(node)
        return result.cast(schema) if result.schema != schema else result

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


# ---------------------------------------------------------------------------- stores


def _table_store(node: JoinNode, which: str, query_id: str) -> StateStore:
    """A table side's key-value store: one row per join key, as the side last set it."""
    side = node.left if which == "L" else node.right
    match side:
        case JoinNode():
            name = f"{side.context}-Materialize"
        case _:
            name = side.store or f"{node.context}-{'Left' if which == 'L' else 'Right'}-Reduce"
    schema = pa.schema([*_side_fields(side), pa.field(TS, pa.int64()), pa.field(SEQ, pa.int64())])
    return StateStore(
        name=name,
        namespace="joins",
        owner=query_id,
        schema=schema,
        keys=(KEY,),
        previous=f"{query_id}/{node.context}/{which}",
    )


def _unique_names(stores: list[StateStore]) -> None:
    """A store name must be unique in its query (a table joined to itself twice)."""
    seen: set[str] = set()
    for store in stores:
        name, n = store.name, 1
        while name in seen:
            n += 1
            name = f"{store.name}-{n}"
        if name != store.name:
            store.rename(name)
        seen.add(name)


# ---------------------------------------------------------------------------- batch shapes


def _values(side: JoinSide) -> tuple[str, ...]:
    return side.value_names


def _side_fields(side: JoinSide) -> list[pa.Field]:
    """A side's key and value columns as Arrow fields."""
    if isinstance(side, JoinNode):
        return [
            pa.field(c.name, sqltypes.to_arrow(windowed_key_type(c.type) if c.name == KEY and side.windowed else c.type))
            for c in side.output.columns
        ]
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
    if node.windowed:  # the windowed key's window, for a windowed sink
        fields += [pa.field("WINDOWSTART", pa.int64()), pa.field("WINDOWEND", pa.int64())]
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
    key = rows.column(KEY)
    windowed = pa.types.is_struct(key.type) and not pa.types.is_struct(schema.field(KEY).type)
    for f in schema:
        match f.name:
            case _ if f.name == KEY and windowed:
                cols.append(pc.struct_field(key, [0]))
            case "WINDOWSTART" if windowed:
                cols.append(pc.struct_field(key, [1]))
            case "WINDOWEND" if windowed:
                cols.append(pc.struct_field(key, [2]))
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
