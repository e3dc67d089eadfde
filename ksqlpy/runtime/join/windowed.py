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
(both sides' rows with the run's keys, the held records that can expire in it, and the run's own
earlier records), and the changes are written back in a few statements.

A record costs the same however many records share its key or wait to expire: each key's rows
are kept in (timestamp, id) order, the order a window store's fetch gives them, and a record
looks only at those in its window (a binary search); held records wait in a heap by the stream
time at which they expire.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable
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


#: a key's buffered rows on one side, in (timestamp, id) order: (timestamp, id, ref)
_Buffer = list[tuple[int, int, int]]
#: held records by the stream time they expire after: (due, id, side, ref, timestamp)
_Held = list[tuple[int, int, str, int, int]]
#: a result: the left and right rows' refs (None: padded with nulls), its timestamp and the
#: position of the record that triggered it
_Output = tuple[int | None, int | None, int, int]


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
        # a held record of a key the run does not reach can only expire, and only once the
        # run's stream time passes its window end and grace
        run_time = max([stream_time, *known])
        state.register("__run_l", rows["L"].select([KEY]))
        state.register("__run_r", rows["R"].select([KEY]))
        try:
            stored = {
                w: state.sql(
                    f"SELECT {cols[w]}, {ID}, {HELD} FROM {self.tables[w]} "
                    f"WHERE ({_q(KEY)} IN (SELECT {_q(KEY)} FROM __run_l) "
                    f"OR {_q(KEY)} IN (SELECT {_q(KEY)} FROM __run_r)) AND {_q(TS)} BETWEEN {lo} AND {hi} "
                    f"OR {HELD} AND {_q(TS)} < {run_time - self._expiry(w)} ORDER BY {_q(TS)}, {ID}"
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
        # A row is a ref into its side's candidates (the run's records, then the stored rows);
        # ids are unique per join, whichever side holds them.
        n_run = {w: rows[w].num_rows for w in ("L", "R")}
        by_key: dict[str, dict[Any, _Buffer]] = {"L": {}, "R": {}}
        held: _Held = []
        holding: set[int] = set()  # ids of the rows held for an outer result
        for w in ("L", "R"):
            table, buffers, expiry = stored[w], by_key[w], self._expiry(w)
            fields = (table.column(c).to_pylist() for c in (KEY, TS, ID, HELD))
            for ref, (k, ts, ident, h) in enumerate(zip(*fields, strict=True), start=n_run[w]):
                hashed = _hashable(k)
                buffer = buffers.get(hashed)
                if buffer is None:
                    buffers[hashed] = [(ts, ident, ref)]  # fetched in (timestamp, id) order
                else:
                    buffer.append((ts, ident, ref))
                if h:
                    held.append((ts + expiry, ident, w, ref, ts))
                    holding.add(ident)
        heapq.heapify(held)
        outputs: list[_Output] = []
        added: dict[str, list[tuple[int, int]]] = {"L": [], "R": []}
        columns = {w: [rows[w].column(c).to_pylist() for c in (KEY, TS, DELETE)] for w in ("L", "R")}
        n_left = n_run["L"]
        grace = self.grace
        for which, i in _sequence(rows["L"].column(self.seq), rows["R"].column(self.seq)):
            keys, times, deleted = columns[which]
            key, ts = keys[i], times[i]
            stream_time = max(stream_time, ts)
            if key is None or deleted[i]:
                continue
            store_time[which] = max(store_time[which], ts)
            left = which == "L"
            other = "R" if left else "L"
            trigger = i if left else n_left + i
            if grace is not None and ts == stream_time and held and held[0][0] < stream_time:
                self._expire_held(held, holding, stream_time, outputs, trigger)
            ident = next_id
            next_id += 1
            before, after = (self.before, self.after) if left else (self.after, self.before)
            lo, hi = max(0, ts - before), max(0, ts + after)
            matched = False
            hashed = _hashable(key)
            buffer = by_key[other].get(hashed)
            if buffer:
                # the other side's rows in the window that its store still gives out
                j, end = bisect_left(buffer, (max(lo, store_time[other] - self.retention + 1),)), len(buffer)
                while j < end and buffer[j][0] <= hi:
                    o_ts, o_id, o_ref = buffer[j]
                    j += 1
                    matched = True
                    holding.discard(o_id)
                    at = max(o_ts, ts)
                    outputs.append((i, o_ref, at, trigger) if left else (o_ref, i, at, trigger))
            if not matched and which in self.preserved:
                if grace is None or hi < stream_time:
                    outputs.append((i, None, ts, trigger) if left else (None, i, ts, trigger))
                else:
                    holding.add(ident)
                    heapq.heappush(held, (ts + self._expiry(which), ident, which, i, ts))
            if self._live(ts, store_time[which]):
                added[which].append((i, ident))
                entry = (ts, ident, i)
                mine = by_key[which].get(hashed)
                if mine is None:
                    by_key[which][hashed] = [entry]
                elif mine[-1] < entry:  # in order: the usual case
                    mine.append(entry)
                else:
                    insort(mine, entry)
        self._write(rows, added, holding, stored, state)
        self._advance(state, stream_time, next_id, store_time)
        headers = pa.concat_arrays(
            [rows[w].column(HEADERS).combine_chunks().cast(HEADER_TYPE) for w in ("L", "R")]
        )
        return self._output(outputs, candidates, headers, out_schema)

    def _expiry(self, side: str) -> int:
        """How long after its timestamp a held record of ``side`` expires: the end of its
        window (the other side's look-ahead) plus the grace period."""
        return (self.after if side == "L" else self.before) + (self.grace or 0)

    def _expire_held(
        self, held: _Held, holding: set[int], stream_time: int, outputs: list[_Output], trigger: int
    ) -> None:
        """Held records whose window and grace have passed, oldest first, padded with nulls.
        Records matched since they were held are dropped from the heap as they come up."""
        due = []
        while held and held[0][0] < stream_time:
            _, ident, side, ref, ts = heapq.heappop(held)
            if ident in holding:
                holding.discard(ident)
                due.append((ts, side != "R", ident, side, ref))
        due.sort()
        for ts, _, _, side, ref in due:
            outputs.append((ref, None, ts, trigger) if side == "L" else (None, ref, ts, trigger))

    def _write(
        self,
        rows: dict[str, pa.Table],
        added: dict[str, list[tuple[int, int]]],
        holding: set[int],
        stored: dict[str, pa.Table],
        state: duckdb.DuckDBPyConnection,
    ) -> None:
        released = [
            ident
            for table in stored.values()
            for ident, h in zip(table.column(ID).to_pylist(), table.column(HELD).to_pylist(), strict=True)
            if h and ident not in holding
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
            index, ids = zip(*added[which], strict=True)
            new = rows[which].select([KEY, *self._names(which), TS, self.seq]).take(pa.array(index, pa.int64()))
            new = new.append_column(ID, pa.array(ids, pa.int64()))
            new = new.append_column(HELD, pa.array([ident in holding for ident in ids], pa.bool_()))
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
        outputs: list[_Output],
        candidates: dict[str, list[pa.Table]],
        headers: pa.Array,
        schema: pa.Schema,
    ) -> pa.Table:
        if not outputs:
            return schema.empty_table()
        parts: dict[str, pa.Table] = {}
        for side, position in (("L", 0), ("R", 1)):
            tables = candidates[side]
            whole = pa.concat_tables([t.cast(tables[0].schema) for t in tables])
            parts[side] = whole.take(pa.array([o[position] for o in outputs], pa.int64()))
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
