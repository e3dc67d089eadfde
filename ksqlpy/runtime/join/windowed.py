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
by the newest record put into it, as a window store's fetch no longer gives them out. Stream time, which
releases held records, is shared by both sides. The buffers are window stores
(:mod:`ksqlpy.runtime.state`); a run's records are processed
one by one in Python against the rows the run can reach (the other side's rows with the run's
keys and the held records), and the changes are written back in a few statements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.runtime.codec import HEADERS
from ksqlpy.runtime.join.plan import DELETE, KEY, TS, JoinNode, JoinSide
from ksqlpy.runtime.state import StateStore, StoreKind

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
        stores[which] = StateStore(
            name=f"{node.context}-{role}-join-store",
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
        self, which: str, rows: pa.Table, state: duckdb.DuckDBPyConnection, out_schema: pa.Schema
    ) -> pa.Table:
        other = "R" if which == "L" else "L"
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
        # what the run can reach: the other side's rows with its keys, and every held record
        state.register("__run", rows)
        try:
            reach = state.sql(
                f"SELECT {cols[other]}, {ID}, {HELD} FROM {self.tables[other]} "
                f"WHERE {_q(KEY)} IN (SELECT {_q(KEY)} FROM __run) OR {HELD} ORDER BY {_q(TS)}, {ID}"
            ).to_arrow_table()
        finally:
            state.unregister("__run")
        held_here = self.stores[which].scan(state, HELD, order=f"{_q(TS)}, {ID}")
        held_here = held_here.select([*self._side_columns(sides[which]), ID, HELD])
        # candidate tables per side: 0 = the run (this side) / reached rows (other side), 1 = held rows
        candidates: dict[str, list[pa.Table]] = {
            which: [
                rows.select(self._side_columns(sides[which])),
                held_here.select(self._side_columns(sides[which])),
            ],
            other: [reach.select(self._side_columns(sides[other]))],
        }
        by_key: dict[Any, list[_Row]] = {}
        held: list[_Row] = []
        for i, (k, ts, ident, h) in enumerate(
            zip(*(reach.column(c).to_pylist() for c in (KEY, TS, ID, HELD)), strict=True)
        ):
            row = _Row(other, 0, i, k, ts, ident, h)
            by_key.setdefault(_hashable(k), []).append(row)
            if h:
                held.append(row)
        for i, (k, ts, ident) in enumerate(
            zip(*(held_here.column(c).to_pylist() for c in (KEY, TS, ID)), strict=True)
        ):
            held.append(_Row(which, 1, i, k, ts, ident, True))
        if which == "L":
            before, after = self.before, self.after
        else:
            before, after = self.after, self.before
        outputs: list[tuple[_Row | None, _Row | None, int, int]] = []
        added: list[_Row] = []
        this_outer = which in self.preserved
        keys = rows.column(KEY).to_pylist()
        times = rows.column(TS).to_pylist()
        deleted = rows.column(DELETE).to_pylist()
        for i in range(rows.num_rows):
            ts = times[i]
            stream_time = max(stream_time, ts)
            if keys[i] is not None and not deleted[i]:
                store_time[which] = max(store_time[which], ts)
            if keys[i] is None or deleted[i]:
                continue
            if self.grace is not None and ts == stream_time:
                self._expire_held(held, stream_time, outputs, i)
            row = _Row(which, 0, i, keys[i], ts, next_id)
            next_id += 1
            lo, hi = max(0, ts - before), max(0, ts + after)
            matched = False
            for o in by_key.get(_hashable(keys[i]), ()):
                if o.side == other and lo <= o.ts <= hi and self._live(o.ts, store_time[other]):
                    matched = True
                    o.held = False
                    pair = (row, o) if which == "L" else (o, row)
                    outputs.append((pair[0], pair[1], max(ts, o.ts), i))
            if this_outer and not matched:
                if self.grace is None or hi < stream_time:
                    outputs.append((row, None, ts, i) if which == "L" else (None, row, ts, i))
                else:
                    row.held = True
                    held.append(row)
            if self._live(ts, store_time[which]):
                added.append(row)
        self._write(which, other, rows, added, held, reach, held_here, next_id, state)
        self._advance(state, stream_time, next_id, store_time)
        return self._output(outputs, candidates, rows, out_schema)

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
        which: str,
        other: str,
        rows: pa.Table,
        added: list[_Row],
        held: list[_Row],
        reach: pa.Table,
        held_here: pa.Table,
        next_id: int,
        state: duckdb.DuckDBPyConnection,
    ) -> None:
        still = {(r.side, r.id) for r in held if r.held}
        released = [
            ident
            for side, table in ((other, reach), (which, held_here))
            for ident, h in zip(table.column(ID).to_pylist(), table.column(HELD).to_pylist(), strict=True)
            if h and (side, ident) not in still
        ]
        # ids are unique per join, whichever side holds them
        if released:
            for side in ("L", "R"):
                self.stores[side].update_where(
                    state, f"{HELD} = FALSE", f"{ID} IN ({', '.join(map(str, released))})"
                )
        if added:
            index = pa.array([r.index for r in added])
            new = rows.select([KEY, *self._names(which), TS, self.seq]).take(index)
            new = new.append_column(ID, pa.array([r.id for r in added], pa.int64()))
            new = new.append_column(HELD, pa.array([(which, r.id) in still for r in added], pa.bool_()))
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
        rows: pa.Table,
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
        cols[HEADERS] = rows.column(HEADERS).take(pa.array([o[3] for o in outputs], pa.int64()))
        return pa.table(cols).cast(schema)


__all__ = ["StreamStreamJoin"]
