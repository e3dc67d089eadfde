"""Push queries over one source share the reading, decoding and evaluation of its batches.

A push query run on its own reads, decodes and evaluates every batch of its source by itself:
with a hundred queries open on one stream, each new record is decoded a hundred times. On the
embedded store, stateless push queries (filters and projections over one stream or table, no
join, no aggregation) join a :class:`SourceHub` instead: one thread per source (topic and
schema) that reads each range of records once for every query standing at the same position,
decodes it once, evaluates it once per distinct plan (the same SQL over the same columns) and
turns the result into client rows once, then appends those rows to each query's own buffer.

Each query keeps its own position, so queries that start at different offsets (``earliest``,
``latest``, at different times) are read separately until they stand at the same offsets, and
from then on share every read. A query whose client is behind (its buffer holds
``max_buffered`` rows) keeps its last batch of rows aside and is left out of the reads until it
drains, as a query reading alone waits with its last batch: its next rows wait in the topic,
and neither the other queries nor the writers wait for it. Writers never see the hub at all:
an insert is acknowledged once it is stored; the hub reads it after.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.planner.expressions import duckdb_name
from ksqlpy.planner.physical import StepKind
from ksqlpy.runtime.codec import HEADERS, NULL_KEY, SourceDecoder
from ksqlpy.runtime.evaluate import TS, Evaluated, StepEvaluator
from ksqlpy.runtime.rows import Row
from ksqlpy.runtime.serde.registry import registry_for
from ksqlpy.runtime.stats import record_bytes
from ksqlpy.runtime.store.base import TopicPartition, TopicStore

if TYPE_CHECKING:
    from ksqlpy.runtime.query import PushQuery

log = logging.getLogger("ksqlpy.query")

#: Records per shared read at most (as a query reading alone, see ``query.BATCH_SIZE``).
BATCH_SIZE = 20_000
#: How long the hub waits for new records before looking at its members again.
IDLE_WAIT_SECONDS = 0.2

Positions = tuple[tuple[TopicPartition, int], ...]


@dataclass(eq=False, slots=True)
class _Plan:
    """One distinct plan among the hub's queries: its evaluator, shared by those queries."""

    evaluator: StepEvaluator
    users: int = 0
    #: the plan in Arrow alone when it only picks columns (see :func:`column_picker`)
    pick: Callable[[pa.Table], pa.Table | None] | None = None


@dataclass(eq=False, slots=True)
class _Member:
    query: PushQuery
    plan_key: tuple[Any, ...]
    positions: Positions
    #: rows read for the query while its buffer was full, buffered once it has room
    held: list[Row] | None = None
    #: waiting for room in its buffer for ``held`` (a drain wakes the hub)
    blocked: bool = False
    gone: bool = False


class SourceHub:
    """Reads one source's topic for every push query on it that can share (see module doc)."""

    def __init__(self, store: TopicStore, key: tuple[Any, ...], decoder: SourceDecoder) -> None:
        self.store = store
        self.key = key
        self.topic = decoder.source.topic
        self.decoder = decoder
        self._lock = threading.Lock()
        self._members: dict[int, _Member] = {}
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self._retired: list[StepEvaluator] = []  # evaluators of plans whose queries all left
        self._wake = threading.Event()
        self._closed = False
        self._reader: Any = store.open_reader([self.topic], group=None, start="earliest")
        self._thread = threading.Thread(target=self._run, name=f"push-hub-{self.topic}", daemon=True)
        self._thread.start()

    # -- membership (any thread) ----------------------------------------------------------------

    def _add(self, query: PushQuery, plan_key: tuple[Any, ...], evaluator: StepEvaluator) -> None:
        """Called under the registry's lock, so the hub cannot close meanwhile."""
        offsets = (
            cast(Any, self.store).start_offsets(self.topic)  # the embedded store's log starts
            if query.start_position == "earliest"
            else self.store.end_offsets(self.topic)
        )
        positions = _positions((TopicPartition(self.topic, p), off) for p, off in offsets.items())
        with self._lock:
            plan = self._plans.get(plan_key)
            if plan is None:
                plan = self._plans[plan_key] = _Plan(evaluator, pick=column_picker(evaluator))
            elif plan.evaluator is not evaluator:
                evaluator.con.close()  # the plan's first query's evaluator serves this one too
            plan.users += 1
            self._members[id(query)] = _Member(query, plan_key, positions)
        self.wake()

    def _remove(self, query: PushQuery) -> bool:
        """Whether the hub is left without members (then it closes; under the registry's lock)."""
        with self._lock:
            member = self._members.pop(id(query), None)
            if member is not None:
                member.gone = True
                plan = self._plans[member.plan_key]
                plan.users -= 1
                if plan.users == 0:
                    del self._plans[member.plan_key]
                    # Closed by the hub's thread, which may be evaluating with it right now.
                    self._retired.append(plan.evaluator)
            empty = not self._members
            if empty:
                self._closed = True
        self.wake()
        return empty

    def wake(self) -> None:
        """Look at the members again now (one joined, left, or drained a full buffer)."""
        self._wake.set()
        reader = self._reader
        if reader is not None:
            reader.wakeup()

    def drained(self, query: PushQuery) -> None:
        member = self._members.get(id(query))
        if member is not None and member.blocked:
            member.blocked = False
            self.wake()

    def positions_of(self, query: PushQuery) -> dict[int, int]:
        member = self._members.get(id(query))
        return {tp.partition: off for tp, off in member.positions} if member is not None else {}

    # -- the hub's thread -----------------------------------------------------------------------

    def _run(self) -> None:
        reader = self._reader
        try:
            while not self._closed:
                if getattr(self.store, "closed", False):
                    # The store closed under its queries (the engine closes them first): their
                    # reads can only come back empty, so they end rather than poll forever.
                    for member in list(self._members.values()):
                        member.query.store_closed()
                    break
                self._wake.clear()
                self._close_retired()
                groups = self._groups()
                if not groups:
                    self._wake.wait(IDLE_WAIT_SECONDS)
                    continue
                read = False
                for positions, members in groups.items():
                    read = self._serve(positions, members, 0.0) or read
                if not read and not self._wake.is_set():
                    # Every query ready to read stands at the end of the topic (so at the same
                    # offsets): wait for new records there.
                    positions, members = next(iter(groups.items()))
                    self._serve(positions, members, IDLE_WAIT_SECONDS)
        except Exception as e:  # every member fails with the hub
            log.error("Push query hub of %s failed", self.topic, exc_info=e)
            for member in list(self._members.values()):
                member.query.hub_failed(e)
        finally:
            reader.close()
            self._close_retired()

    def _close_retired(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for evaluator in retired:
            evaluator.con.close()

    def _groups(self) -> dict[Positions, list[_Member]]:
        """The members ready to read on, by position: those holding no rows back for want of
        room in their buffers (such rows go into the buffer first, once it has room)."""
        groups: dict[Positions, list[_Member]] = {}
        with self._lock:
            members = list(self._members.values())
        for member in members:
            if member.held is not None:
                if member.query.room() <= 0:
                    member.blocked = True
                    if member.query.room() <= 0:  # not drained in between (its drain sees blocked)
                        continue
                member.blocked = False
                held, member.held = member.held, None
                member.query.deliver(held)
            groups.setdefault(member.positions, []).append(member)
        return groups

    def _serve(self, positions: Positions, members: list[_Member], timeout: float) -> bool:
        """Read the next records after ``positions`` once for ``members`` and hand each its rows;
        whether there were any."""
        reader = self._reader
        reader.seek(dict(positions))
        records = reader.poll(BATCH_SIZE, timeout=timeout)
        if records.num_rows == 0:
            return False
        after = _positions((tp, off) for tp, off in reader.positions().items() if tp.topic == self.topic)
        for member in members:
            member.positions = after
        try:
            decoded = self.decoder.decode(records)
        except Exception as e:  # noqa: BLE001 - these queries fail; the others go on
            for member in members:
                member.query.hub_failed(e)
            return True
        size = record_bytes(records)
        by_plan: dict[tuple[Any, ...], list[_Member]] = {}
        for member in members:
            query = member.query
            query.records_in += records.num_rows
            query.bytes_in += size
            query.plog.write(query.query_id, decoded.errors)
            query.operator_counts.add("source/0", records.num_rows)
            query.operator_counts.add("main/in", decoded.table.num_rows)
            by_plan.setdefault(member.plan_key, []).append(member)
        # The clients are woken once every query has its rows: a wake-up is a write to the
        # event loop's self-pipe, after which the woken loop holds the GIL (for a switch
        # interval, 5 ms) while this thread waits to hand the next query its rows.
        woken: list[PushQuery] = []
        try:
            for plan_key, users in by_plan.items():
                try:
                    self._evaluate(plan_key, users, decoded.table, woken)
                except Exception as e:  # noqa: BLE001 - this plan's queries fail; the others go on
                    for member in users:
                        member.query.hub_failed(e)
        finally:
            for query in woken:
                query.wake_client()
        return True

    def _evaluate(
        self, plan_key: tuple[Any, ...], users: list[_Member], batch: pa.Table, woken: list[PushQuery]
    ) -> None:
        plan = self._plans.get(plan_key)
        if plan is None:
            return  # its queries all left meanwhile
        first = users[0].query
        picked = plan.pick(batch) if plan.pick is not None else None
        result = Evaluated(picked, []) if picked is not None else plan.evaluator.evaluate(batch, first.query_id)
        rows: list[Row] | None = None
        for member in users:
            query = member.query
            query.plog.write(query.query_id, result.errors)
            query.operator_counts.add("main/out", result.rows.num_rows)
            if rows is None:
                rows = query.client_rows(result.rows)
            if member.gone:
                continue
            if query.room() > 0:
                if query.deliver(rows, wake=False):
                    woken.append(query)
            else:
                # The client is behind: these rows wait here (as a query reading alone waits
                # with its last batch), and its next records wait in the topic.
                member.held = rows


_QUOTED = re.compile(r'"((?:[^"]|"")*)"')


def column_picker(evaluator: StepEvaluator) -> Callable[[pa.Table], pa.Table | None] | None:
    """The evaluator's query done in Arrow, when it only picks columns of a stream's records
    (``SELECT *`` or a list of columns, no WHERE, the records' own timestamps and keys), else
    None. Such a query costs DuckDB a registration, a statement and a conversion per batch, more
    than the few rows of a batch from a paced writer cost anywhere else. The picker answers
    None for a batch whose columns it cannot pass on as they are (then DuckDB evaluates it)."""
    step = evaluator.step
    if (
        step.kind is not StepKind.STREAM_SELECT
        or step.where_sql
        or step.timestamp_sql != '"ROWTIME"'
        or step.multiplies_rows
        or step.source.null_values
        or evaluator.window_bounds
    ):
        return None
    picked: list[tuple[str, str, pa.DataType]] = []  # (output name, DuckDB input name, type)
    for c in step.columns:
        m = _QUOTED.fullmatch(c.sql.strip())
        if m is None:
            return None
        picked.append((c.name, m.group(1).replace('""', '"'), sqltypes.to_arrow(c.type)))
    keys = [duckdb_name(k.name) for k in step.source.key_columns] if not step.rekeyed else []

    def pick(batch: pa.Table) -> pa.Table | None:
        by_name = {duckdb_name(n): i for i, n in enumerate(batch.column_names)}
        names: list[str] = []
        columns: list[pa.ChunkedArray] = []
        for name, source, arrow_type in picked:
            i = by_name.get(source)
            if i is None or batch.schema.field(i).type != arrow_type:
                return None
            names.append(name)
            columns.append(batch.column(i))
        for name, source in ((TS, "ROWTIME"), (HEADERS, HEADERS)):
            if source not in by_name:
                return None
            names.append(name)
            columns.append(batch.column(by_name[source]))
        if keys:
            if any(k not in by_name for k in keys):
                return None
            no_key = pc.is_null(batch.column(by_name[keys[0]]))
            for k in keys[1:]:
                no_key = pc.and_(no_key, pc.is_null(batch.column(by_name[k])))
            names.append(NULL_KEY)
            columns.append(no_key)
        return pa.Table.from_arrays(columns, names=names)

    return pick


def _positions(items: Iterable[tuple[TopicPartition, int]]) -> Positions:
    """Positions in partition order, so equal positions compare equal."""
    return tuple(sorted(items, key=lambda item: item[0].partition))


class _Registry:
    """The hubs of every store in the process, by store and source."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hubs: dict[tuple[int, tuple[Any, ...]], SourceHub] = {}

    def join(self, query: PushQuery, evaluator: StepEvaluator) -> SourceHub:
        store = query.store
        source = query.plan.source
        key = (repr(source), query.plan.throw_on_invalid_timestamp)
        plan_key = (
            evaluator.sql,
            evaluator.safe_sql,
            tuple((c.name, repr(c.type)) for c in query.plan.step.columns),
            query.skip_null_keys,
        )
        with self._lock:
            hub = self._hubs.get((id(store), key))
            if hub is None:
                decoder = SourceDecoder(
                    source,
                    registry_for(store),
                    throw_on_invalid_timestamp=query.plan.throw_on_invalid_timestamp,
                )
                hub = self._hubs[(id(store), key)] = SourceHub(store, key, decoder)
            hub._add(query, plan_key, evaluator)
            return hub

    def leave(self, query: PushQuery, hub: SourceHub) -> None:
        with self._lock:
            if hub._remove(query) and self._hubs.get((id(hub.store), hub.key)) is hub:
                del self._hubs[(id(hub.store), hub.key)]


HUBS = _Registry()


def shareable(query: PushQuery) -> bool:
    """Whether ``query`` can be served by a hub: a stateless push query over one source, reading
    without end on the embedded store."""
    from ksqlpy.planner.physical import AggregateStep

    return (
        query.store.kind == "embedded"
        and query.plan.join is None
        and query.stop_at is None
        and not isinstance(query.plan.step, AggregateStep)
    )
