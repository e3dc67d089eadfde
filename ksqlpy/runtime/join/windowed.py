"""Stream–stream joins: both sides buffered in window stores, as Kafka Streams'
``KStreamKStreamJoin`` keeps them.

A record on one side joins the other side's buffered records with the same key whose
timestamps fall in its window (``[ts - before, ts + after]`` seen from the left,
``[ts - after, ts + before]`` from the right), each result timestamped with the later of the
two. A record of an outer side (LEFT: left; RIGHT: right; OUTER: both) that matches nothing:

- without GRACE (``grace_ms`` None, ksqlDB's old plans) is emitted at once padded with nulls,
  and again joined when a match arrives later (the "spurious" results of KAFKA-10847);
- with GRACE is held, and emitted padded with nulls only once stream time passes its window end
  plus the grace period without a match (checked when an in-order record arrives).

Buffered records expire after before + after + grace (at least 24 h without GRACE), each side
by the newest record put into it, as a window store's fetch no longer gives them out. Stream time,
which releases held records, is shared by both sides. The buffers are window stores
(:mod:`ksqlpy.runtime.state`). A run holds records of both sides in processing order (inputs
aligned by timestamp interleave record by record, so one run per side would mean a few queries
per record); its records are processed one by one in Python against the rows the run can reach
(both sides' rows with the run's keys, the held records, and the run's own earlier records), and
the changes are written back in a few statements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.runtime.codec import HEADERS
from ksqlpy.runtime.join.plan import DELETE, KEY, TS, JoinNode, JoinSide
from ksqlpy.runtime.state import StateStore, StoreKind
from ksqlpy.runtime.store.base import HEADER_TYPE

#: a buffered record's id (unique per join) and whether it is held for an outer result
ID = "__ID"
HELD = "__HELD"
#: the grace of plans without GRACE, as Kafka Streams' JoinWindows.of gives it
DEFAULT_RETENTION_MS = 24 * 60 * 60 * 1000


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


@dataclass(slots=True)
class _Row:
    side: str  # L or R
    table: int  # which of the side's candidate tables
    index: int
    key: Any
    ts: int
    id: int
    held: bool = False


def window_stores(
    node: JoinNode, query_id: str, seq: str, side_fields: Callable[[JoinSide], list[pa.Field]]
) -> dict[str, StateStore]:
    """A stream-stream join's stores: its sides' window stores (L, R), named as Kafka Streams
    names a join's stores after the step (``Join-this-join-store``, ``Join-other-join-store``),
    each buffered record keyed by its id; and its times (T), one row."""
    stores: dict[str, StateStore] = {}
    for which, role in (("L", "this"), ("R", "other")):
        side = node.left if which == "L" else node.right
        schema = pa.schema(
            [
                *side_fields(side),
                pa.field(TS, pa.int64()),
                pa.field(seq, pa.int64()),
                pa.field(ID, pa.int64()),
                pa.field(HELD, pa.bool_()),
            ]
        )
        # Kafka Streams numbers a join's stores (KSTREAM-JOINTHIS-0000000008-store); where that
        # numbering is known the store takes its name, else the name of an explicitly named join.
        named = node.stores[0 if which == "L" else 1].topic.removesuffix("-changelog") if node.stores else None
        stores[which] = StateStore(
            name=named or f"{node.context}-{role}-join-store",
            namespace="joins",
            owner=query_id,
            schema=schema,
            keys=(ID,),
            kind=StoreKind.WINDOW,
            time=TS,
            previous=f"{query_id}/{node.context}/{which}",
        )
    times = pa.schema([(name, pa.int64()) for name in ("stream_time", "next_id", "left_time", "right_time")])
    stores["T"] = StateStore(
        name=f"{node.context}-StreamTime",
        namespace="joins",
        owner=query_id,
        schema=times,
        keys=(),
        previous=f"{query_id}/{node.context}/T",
    )
    return stores


class StreamStreamJoin:
    """One stream-stream join step; ``stores`` holds its buffers (L, R) and times (T)."""

    def __init__(self, node: JoinNode, stores: dict[str, StateStore], seq: str) -> None:
        self.node = node
        self.stores = stores
        self.tables = {w: store.table for w, store in stores.items()}
        self.seq = seq
        self.before, self.after = node.before_ms, node.after_ms
        self.grace = node.grace_ms
        grace = (
            node.grace_ms
            if node.grace_ms is not None
            else max(0, DEFAULT_RETENTION_MS - self.before - self.after)
        )
        self.retention = self.before + self.after + grace
        self.preserved = {"LEFT": ("L",), "RIGHT": ("R",), "OUTER": ("L", "R")}.get(node.join_type, ())

    def _live(self, ts: int, store_time: int) -> bool:
        """Whether a window store whose newest record is at ``store_time`` still holds a
        record at ``ts`` (Kafka Streams' fetch skips what is past retention, even before its
        segment is dropped)."""
        return ts > store_time - self.retention

    def _side_columns(self, side: JoinSide) -> list[str]:
        return [KEY, *side.value_names, TS, self.seq]

    def process(
        self, rows: dict[str, pa.Table], state: duckdb.DuckDBPyConnection, out_schema: pa.Schema
    ) -> pa.Table:
        """Join a run of records of both sides (``rows["L"]``, ``rows["R"]``, each in ``seq``
        order, either may be empty), taken in ``seq`` order as one sequence: a record meets
        the other side's buffered records and those of the run before it."""
        sides = {"L": self.node.left, "R": self.node.right}
        meta = state.execute(
            f"SELECT stream_time, next_id, left_time, right_time FROM {self.tables['T']}"
        ).fetchall()
        never = -(2**62)
        stream_time, next_id, left_time, right_time = (
            (int(v) for v in meta[0]) if meta else (never, 0, never, never)
        )
        # each side's store keeps time by the records put into it; stream time is shared
        store_time = {"L": left_time, "R": right_time}
        cols = {w: ", ".join(_q(c) for c in self._side_columns(sides[w])) for w in ("L", "R")}
        # what the run can reach: each side's rows with the run's keys and timestamps within a
        # window of the run's, and every held record
        times = [t for w in ("L", "R") if rows[w].num_rows for t in pc.min_max(rows[w].column(TS)).values()]
        known = [int(t.as_py()) for t in times if t.is_valid]
        reach = max(self.before, self.after)
        lo, hi = (min(known) - reach, max(known) + reach) if known else (0, -1)
        state.register("__run_l", rows["L"].select([KEY]))
        state.register("__run_r", rows["R"].select([KEY]))
        try:
            stored = {
                w: state.sql(
                    f"SELECT {cols[w]}, {ID}, {HELD} FROM {self.tables[w]} "
                    f"WHERE ({_q(KEY)} IN (SELECT {_q(KEY)} FROM __run_l) "
                    f"OR {_q(KEY)} IN (SELECT {_q(KEY)} FROM __run_r)) AND {_q(TS)} BETWEEN {lo} AND {hi} "
                    f"OR {HELD} ORDER BY {_q(TS)}, {ID}"
                ).to_arrow_table()
                for w in ("L", "R")
            }
        finally:
            state.unregister("__run_l")
            state.unregister("__run_r")
        # candidate tables per side: 0 = the run's records, 1 = the stored rows
        candidates: dict[str, list[pa.Table]] = {
            w: [rows[w].select(self._side_columns(sides[w])), stored[w].select(self._side_columns(sides[w]))]
            for w in ("L", "R")
        }
        by_key: dict[str, dict[Any, list[_Row]]] = {"L": {}, "R": {}}
        held: list[_Row] = []
        for w in ("L", "R"):
            table = stored[w]
            for i, (k, ts, ident, h) in enumerate(
                zip(*(table.column(c).to_pylist() for c in (KEY, TS, ID, HELD)), strict=True)
            ):
                row = _Row(w, 1, i, k, ts, ident, h)
                by_key[w].setdefault(_hashable(k), []).append(row)
                if h:
                    held.append(row)
        outputs: list[tuple[_Row | None, _Row | None, int, int]] = []
        added: dict[str, list[_Row]] = {"L": [], "R": []}
        columns = {w: [rows[w].column(c).to_pylist() for c in (KEY, TS, DELETE)] for w in ("L", "R")}
        n_left = rows["L"].num_rows
        for which, i in _sequence(rows["L"].column(self.seq), rows["R"].column(self.seq)):
            other = "R" if which == "L" else "L"
            keys, times, deleted = columns[which]
            trigger = i if which == "L" else n_left + i
            ts = times[i]
            stream_time = max(stream_time, ts)
            if keys[i] is not None and not deleted[i]:
                store_time[which] = max(store_time[which], ts)
            if keys[i] is None or deleted[i]:
                continue
            if self.grace is not None and ts == stream_time:
                self._expire_held(held, stream_time, outputs, trigger)
            row = _Row(which, 0, i, keys[i], ts, next_id)
            next_id += 1
            before, after = (self.before, self.after) if which == "L" else (self.after, self.before)
            lo, hi = max(0, ts - before), max(0, ts + after)
            matched = False
            hashed = _hashable(keys[i])
            for o in by_key[other].get(hashed, ()):
                if lo <= o.ts <= hi and self._live(o.ts, store_time[other]):
                    matched = True
                    o.held = False
                    pair = (row, o) if which == "L" else (o, row)
                    outputs.append((pair[0], pair[1], max(ts, o.ts), trigger))
            if which in self.preserved and not matched:
                if self.grace is None or hi < stream_time:
                    outputs.append((row, None, ts, trigger) if which == "L" else (None, row, ts, trigger))
                else:
                    row.held = True
                    held.append(row)
            if self._live(ts, store_time[which]):
                added[which].append(row)
                by_key[which].setdefault(hashed, []).append(row)
        self._write(rows, added, held, stored, state)
        self._advance(state, stream_time, next_id, store_time)
        headers = pa.concat_arrays(
            [rows[w].column(HEADERS).combine_chunks().cast(HEADER_TYPE) for w in ("L", "R")]
        )
        return self._output(outputs, candidates, headers, out_schema)

    def _expire_held(
        self,
        held: list[_Row],
        stream_time: int,
        outputs: list[tuple[_Row | None, _Row | None, int, int]],
        trigger: int,
    ) -> None:
        """Held records whose window and grace have passed, oldest first, padded with nulls."""
        assert self.grace is not None
        due = []
        for r in held:
            look_back = self.after if r.side == "L" else self.before
            if r.held and r.ts + look_back + self.grace < stream_time:
                due.append(r)
        due.sort(key=lambda r: (r.ts, r.side != "R", r.id))
        for r in due:
            r.held = False
            outputs.append((r, None, r.ts, trigger) if r.side == "L" else (None, r, r.ts, trigger))
        held[:] = [r for r in held if r.held]

    def _write(
        self,
        rows: dict[str, pa.Table],
        added: dict[str, list[_Row]],
        held: list[_Row],
        stored: dict[str, pa.Table],
        state: duckdb.DuckDBPyConnection,
    ) -> None:
        still = {(r.side, r.id) for r in held if r.held}
        released = [
            ident
            for side, table in stored.items()
            for ident, h in zip(table.column(ID).to_pylist(), table.column(HELD).to_pylist(), strict=True)
            if h and (side, ident) not in still
        ]
        # ids are unique per join, whichever side holds them
        if released:
            for side in ("L", "R"):
                self.stores[side].update_where(
                    state, f"{HELD} = FALSE", f"{ID} IN ({', '.join(map(str, released))})"
                )
        for which in ("L", "R"):
            if not added[which]:
                continue
            index = pa.array([r.index for r in added[which]])
            new = rows[which].select([KEY, *self._names(which), TS, self.seq]).take(index)
            new = new.append_column(ID, pa.array([r.id for r in added[which]], pa.int64()))
            new = new.append_column(
                HELD, pa.array([(which, r.id) in still for r in added[which]], pa.bool_())
            )
            self.stores[which].insert(state, new)

    def _advance(
        self, state: duckdb.DuckDBPyConnection, stream_time: int, next_id: int, store_time: dict[str, int]
    ) -> None:
        """Expire what the window stores no longer hold and record the times."""
        for side in ("L", "R"):
            self.stores[side].expire(state, store_time[side] - self.retention, f"NOT {HELD}")
        times = {"stream_time": stream_time, "next_id": next_id, "left_time": store_time["L"]}
        times["right_time"] = store_time["R"]
        self.stores["T"].replace_all(
            state, pa.table({k: pa.array([v], pa.int64()) for k, v in times.items()})
        )

    def _names(self, which: str) -> tuple[str, ...]:
        return (self.node.left if which == "L" else self.node.right).value_names

    def _output(
        self,
        outputs: list[tuple[_Row | None, _Row | None, int, int]],
        candidates: dict[str, list[pa.Table]],
        headers: pa.Array,
        schema: pa.Schema,
    ) -> pa.Table:
        if not outputs:
            return schema.empty_table()
        parts: dict[str, pa.Table] = {}
        for side, position in (("L", 0), ("R", 1)):
            tables = candidates[side]
            offsets = [0]
            for t in tables[:-1]:
                offsets.append(offsets[-1] + t.num_rows)
            whole = pa.concat_tables([t.cast(tables[0].schema) for t in tables])
            index = [
                None if pair[position] is None else offsets[pair[position].table] + pair[position].index  # type: ignore[union-attr]
                for pair in outputs
            ]
            parts[side] = whole.take(pa.array(index, pa.int64()))
        left, right = parts["L"], parts["R"]
        # the first non-null join value: the left's, or the right's for a right-only result
        lk, rk = left.column(KEY), right.column(KEY)
        key = pc.if_else(pc.is_null(lk), rk, lk)
        cols: dict[str, Any] = {KEY: key}
        for name in self.node.left.value_names:
            cols[name] = left.column(name)
        for name in self.node.right.value_names:
            cols[name] = right.column(name)
        if self.node.synthetic is not None:
            cols[self.node.synthetic] = key
        cols[TS] = pa.array([o[2] for o in outputs], pa.int64())
        cols[DELETE] = pa.array([False] * len(outputs))
        cols[self.seq] = pa.array(range(len(outputs)), pa.int64())
        # each result carries the headers of the record that triggered it
        cols[HEADERS] = headers.take(pa.array([o[3] for o in outputs], pa.int64()))
        return pa.table(cols).cast(schema)


def _sequence(left: pa.ChunkedArray, right: pa.ChunkedArray) -> list[tuple[str, int]]:
    """Both sides' records in ``seq`` order, as (side, index); a record both sides read (a
    self-join) goes left first."""
    seq = np.concatenate([left.to_numpy(), right.to_numpy()]) if len(left) + len(right) else np.zeros(0)
    side = np.concatenate([np.zeros(len(left), dtype=np.int64), np.ones(len(right), dtype=np.int64)])
    order = np.lexsort((side, seq))
    n_left = len(left)
    return [("L", int(j)) if j < n_left else ("R", int(j) - n_left) for j in order]


__all__ = ["StreamStreamJoin"]
