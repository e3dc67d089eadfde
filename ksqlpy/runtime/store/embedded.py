"""The embedded topic store: a durable, partitioned log inside a DuckDB database.

This is ksqlpy's default store; it needs no Kafka. Materialized table state lives in the same DuckDB
database, so a query's consumed positions, state changes and produced records commit in ONE DuckDB
transaction: exactly-once processing on the embedded store. :meth:`EmbeddedStore.transaction` is a
real DuckDB transaction and :attr:`EmbeddedTransaction.connection` is the DuckDB connection inside
it, for the runtime's own state writes.

Layout (all in the ``topic_log`` schema, so state tables elsewhere never collide with it):

* ``topics(id, name, partitions, replicas, config)`` - one row per topic; ``config`` is JSON.
* ``partitions(topic_id, partition, start_offset, end_offset)`` - the log start (after retention)
  and a floor for the next offset to write, saved when maintenance deletes records so offsets never
  go back; otherwise the end is the last record's offset + 1.
* ``group_offsets(grp, topic, partition, next_offset)`` - committed consumer-group positions.
* ``t<id>_p<partition>`` - one table per topic-partition, records appended in ascending offset
  order. A read of ``offset >= x`` is a range scan that DuckDB's zone maps (min/max per row group)
  prune to the few row groups holding it; an append is one ``INSERT ... SELECT`` of an Arrow batch.

Concurrency: every reader owns a DuckDB cursor; all writes (produce, transactions, commits,
maintenance) take one store-wide lock, so offsets are handed out in commit order and concurrent
DuckDB transactions never conflict. Readers learn of new records from an in-memory copy of the
committed end offsets and wait on a :class:`threading.Condition` that every commit notifies. The
records of the latest small appends outside a transaction (``/inserts-stream``, ``INSERT
VALUES``) are kept in memory as well, published with the end offsets: a reader that keeps up
with such a writer (a push query) reads them from there rather than with a statement.

Retention and compaction run in :meth:`EmbeddedStore.run_maintenance`, which a background thread
calls every ``maintenance_interval`` seconds. Like a database (and unlike Kafka's 7-day default),
records are kept forever unless ``retention.ms`` or ``retention.bytes`` is set on the topic.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from ksqlpy.errors import TopicError
from ksqlpy.runtime.store import _records
from ksqlpy.runtime.store.base import (
    RECORD_SCHEMA,
    StartPosition,
    TopicPartition,
    TopicReader,
    TopicSpec,
    TopicStore,
    Transaction,
    TransactionContext,
)

_SCHEMA = "topic_log"
_DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {_SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {_SCHEMA}.topics (
        id INTEGER, name VARCHAR, partitions INTEGER, replicas INTEGER, config VARCHAR)""",
    f"""CREATE TABLE IF NOT EXISTS {_SCHEMA}.partitions (
        topic_id INTEGER, partition INTEGER, start_offset BIGINT, end_offset BIGINT)""",
    f"""CREATE TABLE IF NOT EXISTS {_SCHEMA}.group_offsets (
        grp VARCHAR, topic VARCHAR, partition INTEGER, next_offset BIGINT)""",
)
_LOG_COLUMNS = """(off BIGINT, ts BIGINT, key BLOB, value BLOB,
    headers STRUCT(key VARCHAR, value BLOB)[], appended BIGINT)"""
_SELECT_RECORDS = 'SELECT off AS "offset", ts AS "timestamp", key, value, headers FROM {table}'

#: Kafka's rule for topic names.
_LEGAL_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")
#: How long a tombstone outlives compaction (Kafka's ``delete.retention.ms`` default: one day).
_DEFAULT_DELETE_RETENTION_MS = 86_400_000


@dataclass(slots=True)
class _Topic:
    """In-memory metadata of one topic (mirrors ``topic_log.topics``)."""

    id: int
    spec: TopicSpec
    next_null_partition: int = 0

    def table(self, partition: int) -> str:
        return f"{_SCHEMA}.t{self.id}_p{partition}"

    @property
    def compacted(self) -> bool:
        return "compact" in self.spec.config.get("cleanup.policy", "delete")


@dataclass(slots=True)
class _Bounds:
    """Committed log start and end of one partition."""

    start: int = 0
    end: int = 0
    #: The records of the latest small appends, (first offset, records, their bytes) contiguous up
    #: to ``end`` (see :func:`_recent_records`); replaced whole, never changed in place.
    recent: tuple[tuple[int, pa.Table, int], ...] = ()


#: Records of one partition kept in memory after their append at most (see ``_Bounds.recent``).
RECENT_ROWS = 2_000
#: Bytes of records kept so at most per partition.
RECENT_BYTES = 1 << 20


#: How many of a partition's latest record keys the store keeps for key lookups (see
#: EmbeddedStore.last_offsets_of).
RECENT_KEYS = 4096


@dataclass(slots=True)
class _RecentKeys:
    """The keys of a partition's latest records, from offset ``first`` on."""

    first: int
    keys: list[bytes | None]

    def covers(self, start: int, end: int) -> bool:
        return self.first <= start and end <= self.first + len(self.keys)

    def last_of(self, start: int, end: int, wanted: set[bytes]) -> int | None:
        keys = self.keys
        for off in range(end - 1, start - 1, -1):
            if keys[off - self.first] in wanted:
                return off
        return None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class EmbeddedStore(TopicStore):
    """A durable log of partitioned topics in a DuckDB database file (or ``":memory:"``).

    The DuckDB database is shared: :meth:`cursor` gives the runtime a connection of its own for
    state tables, and :attr:`database` is the underlying connection they are cursors of.
    """

    kind = "embedded"
    #: Every transaction (records, state, positions) is one DuckDB transaction: processing is
    #: always exactly once.
    exactly_once = True

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        maintenance_interval: float | None = 30.0,
        checkpoint_threshold: str = "256MB",
    ) -> None:
        self.path = str(path)
        #: The DuckDB connection every cursor of this store derives from.
        self.database = duckdb.connect(self.path)
        # Commits are durable once in the write-ahead log; folding the log into the database file
        # less often (DuckDB's default is every 16 MB) more than doubles append throughput, at the
        # cost of a longer log replay when the file is opened after a crash.
        self.database.execute(f"SET checkpoint_threshold = '{checkpoint_threshold}'")
        self._write_lock = threading.RLock()
        self._writer = self.database.cursor()
        self._changed = threading.Condition(threading.Lock())
        self._version = 0  # bumped on every commit that adds records or changes topics
        self._topology = 0  # bumped when topics are created or deleted
        self._topics: dict[str, _Topic] = {}
        self._bounds: dict[tuple[int, int], _Bounds] = {}
        #: Committed group positions, ``(group, topic) -> {partition: next offset}``: a copy of
        #: ``topic_log.group_offsets`` (this process is the database's only writer), so reading
        #: them (every pull query's catch-up, every reader's start) needs no query.
        self._committed: dict[tuple[str, str], dict[int, int]] = {}
        self._committed_lock = threading.Lock()  # its own: readers ask while holding _changed
        #: The keys of the latest records of the topics key lookups asked about (see
        #: last_offsets_of), by partition: a lookup's question is then answered without a query.
        self._recent: dict[tuple[int, int], _RecentKeys] = {}
        self._watched: set[int] = set()
        self._local = threading.local()
        self._closed = threading.Event()
        for statement in _DDL:
            self._writer.execute(statement)
        self._load()
        self._maintainer: threading.Thread | None = None
        if maintenance_interval:
            self._maintainer = threading.Thread(
                target=self._maintain_forever,
                args=(maintenance_interval,),
                name="topic-log-maintenance",
                daemon=True,
            )
            self._maintainer.start()

    # -- DuckDB access for the runtime -------------------------------------------------------------

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection to this store's database, for one thread or one operation.

        Writes through it that must be atomic with produced records belong inside
        :meth:`transaction` instead (use :attr:`EmbeddedTransaction.connection`)."""
        return self.database.cursor()

    def state_cursor(self) -> duckdb.DuckDBPyConnection:
        """State lives in the log's own database, so state and records commit together."""
        return self.database.cursor()

    # -- topics ------------------------------------------------------------------------------------

    def _load(self) -> None:
        rows = self._writer.execute(
            f"SELECT id, name, partitions, replicas, config FROM {_SCHEMA}.topics"
        ).fetchall()
        for topic_id, name, partitions, replicas, config in rows:
            spec = TopicSpec(name=name, partitions=partitions, replicas=replicas, config=json.loads(config))
            self._topics[name] = _Topic(topic_id, spec)
        for topic_id, partition, start, end in self._writer.execute(
            f"SELECT topic_id, partition, start_offset, end_offset FROM {_SCHEMA}.partitions"
        ).fetchall():
            # ``end_offset`` is only a floor (written by maintenance, which may empty a partition);
            # appends do not update it, the last record's offset tells.
            table = f"{_SCHEMA}.t{topic_id}_p{partition}"
            row = self._writer.execute(f"SELECT max(off) + 1 FROM {table}").fetchone()
            last = int(row[0]) if row and row[0] is not None else 0
            self._bounds[(topic_id, partition)] = _Bounds(start, max(end, last))
        for group, topic_name, partition, offset in self._writer.execute(
            f"SELECT grp, topic, partition, next_offset FROM {_SCHEMA}.group_offsets"
        ).fetchall():
            self._committed.setdefault((group, topic_name), {})[int(partition)] = int(offset)

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            raise TopicError(f"Kafka topic does not exist: {name}")
        return topic

    def create_topic(self, spec: TopicSpec, *, exist_ok: bool = False) -> None:
        if not _LEGAL_NAME.fullmatch(spec.name) or spec.name in (".", ".."):
            raise TopicError(
                f"Invalid topic name '{spec.name}'",
                hint="Topic names use letters, digits, '.', '_' and '-', at most 249 characters.",
            )
        if spec.partitions < 1:
            raise TopicError(f"Invalid partition count {spec.partitions} for topic '{spec.name}'")
        with self._write_lock:
            if spec.name in self._topics:
                if exist_ok:
                    return
                raise TopicError(f"Topic '{spec.name}' already exists.")
            spec = TopicSpec(
                name=spec.name,
                partitions=spec.partitions,
                replicas=spec.replicas,
                config={str(k): str(v) for k, v in spec.config.items()},
            )
            with self.transaction() as tx:
                cur = tx.connection
                row = cur.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {_SCHEMA}.topics").fetchone()
                topic = _Topic(int(row[0]) if row else 1, spec)
                cur.execute(
                    f"INSERT INTO {_SCHEMA}.topics VALUES (?, ?, ?, ?, ?)",
                    [topic.id, spec.name, spec.partitions, spec.replicas, json.dumps(dict(spec.config))],
                )
                for p in range(spec.partitions):
                    cur.execute(f"CREATE TABLE {topic.table(p)} {_LOG_COLUMNS}")
                    cur.execute(f"INSERT INTO {_SCHEMA}.partitions VALUES (?, ?, 0, 0)", [topic.id, p])
                tx._on_commit.append(lambda: self._install(topic))

    def _install(self, topic: _Topic) -> None:
        self._topics[topic.spec.name] = topic
        for p in range(topic.spec.partitions):
            self._bounds[(topic.id, p)] = _Bounds()
        self._topology += 1

    def delete_topic(self, name: str) -> None:
        with self._write_lock:
            topic = self._topic(name)
            with self.transaction() as tx:
                cur = tx.connection
                for p in range(topic.spec.partitions):
                    cur.execute(f"DROP TABLE IF EXISTS {topic.table(p)}")
                cur.execute(f"DELETE FROM {_SCHEMA}.partitions WHERE topic_id = ?", [topic.id])
                cur.execute(f"DELETE FROM {_SCHEMA}.topics WHERE id = ?", [topic.id])
                cur.execute(f"DELETE FROM {_SCHEMA}.group_offsets WHERE topic = ?", [name])
                tx._on_commit.append(lambda: self._uninstall(topic))

    def _uninstall(self, topic: _Topic) -> None:
        del self._topics[topic.spec.name]
        with self._committed_lock:
            for key in [k for k in self._committed if k[1] == topic.spec.name]:
                del self._committed[key]
        for p in range(topic.spec.partitions):
            self._bounds.pop((topic.id, p), None)
            self._recent.pop((topic.id, p), None)
        self._watched.discard(topic.id)
        self._topology += 1

    def describe_topic(self, name: str) -> TopicSpec | None:
        topic = self._topics.get(name)
        return topic.spec if topic is not None else None

    def ping(self, topic: str) -> None:
        """The store is open and its database answers a query."""
        if self._closed.is_set():
            raise TopicError("The topic store is closed")
        cursor = self.database.cursor()
        try:
            cursor.execute("SELECT 1").fetchall()
        finally:
            cursor.close()

    def list_topics(self) -> list[TopicSpec]:
        return sorted((t.spec for t in list(self._topics.values())), key=lambda s: s.name)

    # -- records -----------------------------------------------------------------------------------

    def produce(self, topic: str, records: pa.Table) -> None:
        found = self._topics.get(topic)
        if found is None or found.spec.partitions != 1 or getattr(self._local, "tx", None) is not None:
            with self.transaction() as tx:
                tx.produce(topic, records)
            return
        # Records for a topic of one partition are one INSERT: committed by DuckDB on its own,
        # without the BEGIN and COMMIT statements around it (a third of a small batch's cost).
        with self._write_lock:
            if self._closed.is_set():
                raise TopicError("The topic store is closed")
            ends: dict[tuple[int, int], int] = {}
            recent: dict[tuple[int, int], pa.Table] = {}
            self._append(self._writer, topic, records, ends, recent)
            self._publish(ends, (), recent)

    def _append(
        self,
        cur: duckdb.DuckDBPyConnection,
        name: str,
        records: pa.Table,
        ends: dict[tuple[int, int], int],
        recent: dict[tuple[int, int], pa.Table] | None = None,
    ) -> None:
        """Append ``records`` to ``name`` inside the caller's DuckDB transaction; ``ends`` holds the
        transaction's view of next offsets and is advanced. ``recent`` takes each partition's
        records as readers read them, when few enough to keep (see :func:`_recent_records`).

        One ``insert_into`` of an Arrow slice per partition and nothing else: the partition's end
        offset is not written here but recovered from ``max(off)`` when the store is opened."""
        topic = self._topic(name)
        if records.num_rows == 0:
            return
        batch = _records.normalize(records)
        partitions = _records.choose_partitions(batch, topic.spec.partitions, topic.next_null_partition)
        topic.next_null_partition += batch.num_rows
        appended = _now_ms()
        for p, rows in _records.split_by_partition(batch, partitions):
            first = ends.get((topic.id, p), self._bounds[(topic.id, p)].end)
            n = rows.num_rows
            # Column order of the partition table: off, ts, key, value, headers, appended.
            columns = [pa.array(np.arange(first, first + n, dtype=np.int64)), *rows.columns]
            columns.append(pa.array(np.full(n, appended, dtype=np.int64)))
            table = pa.Table.from_arrays(columns, names=["off", "ts", "key", "value", "headers", "appended"])
            cur.from_arrow(table).insert_into(topic.table(p))
            ends[(topic.id, p)] = first + n
            if recent is not None and n <= RECENT_ROWS and not topic.compacted:
                recent[(topic.id, p)] = pa.Table.from_arrays(
                    columns[:5], names=["offset", "timestamp", "key", "value", "headers"]
                )
            if topic.id in self._watched:
                self._remember_keys((topic.id, p), first, rows.column("key"))

    def open_reader(
        self,
        topics: Sequence[str],
        *,
        group: str | None = None,
        start: StartPosition = "earliest",
    ) -> EmbeddedReader:
        return EmbeddedReader(self, tuple(topics), group, start)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        with self._committed_lock:
            return dict(self._committed.get((group, topic), {}))

    def _set_committed(self, group: str, positions: Mapping[TopicPartition, int]) -> None:
        """Record positions a transaction committed (called while publishing it)."""
        with self._committed_lock:
            for tp, offset in positions.items():
                self._committed.setdefault((group, tp.topic), {})[tp.partition] = offset

    def end_offsets(self, topic: str) -> dict[int, int]:
        t = self._topic(topic)
        return {p: self._bounds[(t.id, p)].end for p in range(t.spec.partitions)}

    def start_offsets(self, topic: str) -> dict[int, int]:
        """The first offset still stored, per partition (advanced by retention)."""
        t = self._topic(topic)
        return {p: self._bounds[(t.id, p)].start for p in range(t.spec.partitions)}

    def current_transaction(self) -> EmbeddedTransaction | None:
        """The transaction this thread has open, if any: what runs inside it may ask for
        something to run once it commits (:meth:`EmbeddedTransaction.after_commit`)."""
        active: EmbeddedTransaction | None = getattr(self._local, "tx", None)
        return active

    def transaction(self) -> EmbeddedTransactionContext:
        return EmbeddedTransactionContext(self)

    def last_offsets_of(
        self, topic: str, ranges: Mapping[int, tuple[int, int]], keys: Sequence[bytes], *, read_log: bool = True
    ) -> dict[int, int] | None:
        """Per partition of ``topic``, the offset of the last record in its range ``(start, end)``
        (``start`` included, ``end`` at most the committed end) whose key is one of ``keys``;
        partitions without one are left out. A key lookup waits for a table's writer to commit
        these records, not all of them.

        Asked about a topic once, the store keeps the keys of its latest records in memory as
        they are appended (:data:`RECENT_KEYS` per partition), so the ranges of records a writer
        has still to commit, a few batches long, are looked at without a query. Keys kept by
        offset are never wrong below the committed end: a rolled-back transaction's records lie
        past it, and the records that later take their offsets overwrite them. Without
        ``read_log``, None when that memory does not hold a range (nothing is read then)."""
        t = self._topic(topic)
        self._watched.add(t.id)
        wanted = set(keys)
        found: dict[int, int] = {}
        for p, (start, end) in ranges.items():
            if start >= end or not wanted:
                continue
            recent = self._recent.get((t.id, p))
            if recent is not None and recent.covers(start, end):
                last = recent.last_of(start, end, wanted)
            elif not read_log:
                return None
            else:
                last = self._last_offset_read(t, p, start, end, keys)
            if last is not None:
                found[p] = last
        return found

    def _last_offset_read(self, t: _Topic, p: int, start: int, end: int, keys: Sequence[bytes]) -> int | None:
        marks = ", ".join("?" for _ in keys)
        cursor = self.database.cursor()
        try:
            row = cursor.execute(
                f"SELECT max(off) FROM {t.table(p)} WHERE off >= ? AND off < ? AND key IN ({marks})",
                [start, end, *keys],
            ).fetchone()
        finally:
            cursor.close()
        return None if row is None or row[0] is None else int(row[0])

    def _remember_keys(self, partition: tuple[int, int], first: int, keys: pa.ChunkedArray | pa.Array) -> None:
        """Keep the keys of records appended from offset ``first`` (under the write lock)."""
        if len(keys) > RECENT_KEYS:
            first += len(keys) - RECENT_KEYS
            keys = keys.slice(len(keys) - RECENT_KEYS)
        values: list[bytes | None] = keys.to_pylist()
        recent = self._recent.get(partition)
        if recent is None or not recent.first <= first <= recent.first + len(recent.keys):
            self._recent[partition] = _RecentKeys(first, values)
            return
        # a rolled-back transaction's keys past ``first`` are replaced
        recent.keys[first - recent.first :] = values
        if len(recent.keys) > 2 * RECENT_KEYS:
            recent = _RecentKeys(recent.first + len(recent.keys) - RECENT_KEYS, recent.keys[-RECENT_KEYS:])
            self._recent[partition] = recent

    # -- retention and compaction ------------------------------------------------------------------

    def run_maintenance(self, now_ms: int | None = None) -> None:
        """Apply every topic's retention (``retention.ms``, ``retention.bytes``) and compaction
        (``cleanup.policy=compact``: keep the latest record per key; tombstones go once older than
        ``delete.retention.ms``, measured from when they were appended)."""
        now = _now_ms() if now_ms is None else now_ms
        for topic in list(self._topics.values()):
            with self._write_lock:
                if self._topics.get(topic.spec.name) is not topic:
                    continue  # deleted meanwhile
                with self.transaction() as tx:
                    for p in range(topic.spec.partitions):
                        self._clean_partition(tx, topic, p, now)

    def _clean_partition(self, tx: EmbeddedTransaction, topic: _Topic, p: int, now: int) -> None:
        cur, table, config = tx.connection, topic.table(p), topic.spec.config
        bounds = self._bounds[(topic.id, p)]
        # Retention deletes by timestamp, wherever in the log: the records kept in memory may be
        # among them (read as a reader's snapshot from before the delete would, until it commits).
        tx._on_commit.append(lambda: setattr(bounds, "recent", ()))
        policy = config.get("cleanup.policy", "delete")
        if "compact" in policy:
            cur.execute(
                f"""DELETE FROM {table} USING (
                        SELECT key AS k, max(off) AS last FROM {table} WHERE key IS NOT NULL GROUP BY key
                    ) latest WHERE {table}.key = latest.k AND {table}.off < latest.last"""
            )
            keep_ms = int(config.get("delete.retention.ms", _DEFAULT_DELETE_RETENTION_MS))
            cur.execute(f"DELETE FROM {table} WHERE value IS NULL AND appended < ?", [now - keep_ms])
        if "delete" in policy:
            retention_ms = int(config.get("retention.ms", -1))
            if retention_ms >= 0:
                cur.execute(f"DELETE FROM {table} WHERE ts < ?", [now - retention_ms])
            retention_bytes = int(config.get("retention.bytes", -1))
            if retention_bytes >= 0:
                cur.execute(
                    f"""DELETE FROM {table} WHERE off <= (
                        SELECT max(off) FROM (
                            SELECT off, sum(coalesce(octet_length(key), 0) + coalesce(octet_length(value), 0))
                                OVER (ORDER BY off DESC) AS newer_bytes FROM {table}
                        ) WHERE newer_bytes > ?)""",
                    [retention_bytes],
                )
        row = cur.execute(f"SELECT min(off) FROM {table}").fetchone()
        bounds = self._bounds[(topic.id, p)]
        start = bounds.end if row is None or row[0] is None else int(row[0])
        if start != bounds.start:
            cur.execute(
                f"""UPDATE {_SCHEMA}.partitions SET start_offset = ?, end_offset = ?
                    WHERE topic_id = ? AND partition = ?""",
                [start, bounds.end, topic.id, p],
            )
            tx._on_commit.append(lambda: setattr(bounds, "start", start))

    def _maintain_forever(self, interval: float) -> None:
        while not self._closed.wait(interval):
            with suppress(duckdb.Error, TopicError):  # a failed round is retried next interval
                self.run_maintenance()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._maintainer is not None:
            self._maintainer.join()
        with self._changed:
            self._version += 1
            self._changed.notify_all()
        with self._write_lock:
            self._writer.close()
            self.database.close()

    # -- notification ------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Bumped by every commit that adds records, commits positions or changes topics."""
        return self._version

    def published(self) -> None:
        """Return once the publication under way, if any, is over: a commit whose positions
        (or any of its effects) were seen is then visible whole, its end offsets included."""
        with self._changed:
            pass

    def wait_changed(self, version: int, timeout: float) -> None:
        """Wait until a commit after ``version`` has been published (at most ``timeout`` seconds):
        a waiter for a group's positions wakes as soon as they commit, rather than polling."""
        with self._changed:
            if self._version == version and not self._closed.is_set():
                self._changed.wait(timeout)

    def _publish(
        self,
        ends: Mapping[tuple[int, int], int],
        actions: Sequence[Callable[[], object]],
        recent: Mapping[tuple[int, int], pa.Table] | None = None,
    ) -> None:
        """Make a committed transaction visible to readers and wake them; ``recent``: records
        it appended to keep in memory for them."""
        with self._changed:
            for action in actions:
                action()
            for key, end in ends.items():
                bounds = self._bounds.get(key)
                if bounds is not None:
                    bounds.end = end
                    records = recent.get(key) if recent else None
                    bounds.recent = _kept_recent(bounds.recent, end, records) if records is not None else ()
            self._version += 1
            self._changed.notify_all()


class EmbeddedTransaction(Transaction):
    """Records and positions written inside one DuckDB transaction.

    :attr:`connection` is the DuckDB connection the transaction runs on: statements executed on it
    (e.g. materialized state updates) commit or roll back together with the records and positions.
    Use it only from the thread that opened the transaction."""

    def __init__(self, store: EmbeddedStore, connection: duckdb.DuckDBPyConnection) -> None:
        self.store = store
        self.connection = connection
        self.state = connection
        self._ends: dict[tuple[int, int], int] = {}
        self._on_commit: list[Callable[[], object]] = []

    def produce(self, topic: str, records: pa.Table) -> None:
        self.store._append(self.connection, topic, records, self._ends)

    def end_offset(self, topic: str, partition: int) -> int:
        """The partition's next offset as this transaction sees it (its own records included)."""
        t = self.store._topic(topic)
        return self._ends.get((t.id, partition), self.store._bounds[(t.id, partition)].end)

    def after_commit(self, action: Callable[[], object]) -> None:
        """Run ``action`` once the transaction has committed, while it is published (before
        readers and waiters see it); never when it rolls back."""
        self._on_commit.append(action)

    def commit_positions(self, group: str, positions: Mapping[TopicPartition, int]) -> None:
        # One UPDATE per partition in the steady state (half the cost of DELETE + INSERT); the
        # first commit of a group's partition inserts its row.
        for tp, offset in positions.items():
            updated = self.connection.execute(
                f"""UPDATE {_SCHEMA}.group_offsets SET next_offset = ?
                    WHERE grp = ? AND topic = ? AND partition = ?""",
                [offset, group, tp.topic, tp.partition],
            ).fetchone()
            if not updated or not updated[0]:
                self.connection.execute(
                    f"INSERT INTO {_SCHEMA}.group_offsets VALUES (?, ?, ?, ?)",
                    [group, tp.topic, tp.partition, offset],
                )
        committed = dict(positions)
        self._on_commit.append(lambda: self.store._set_committed(group, committed))


class EmbeddedTransactionContext(TransactionContext):
    """``with store.transaction() as tx:`` - one DuckDB transaction holding the store's write lock.

    A transaction opened while the same thread already has one open joins it (commits with the
    outer one), so ``store.produce`` may be called from inside a transaction."""

    def __init__(self, store: EmbeddedStore) -> None:
        self._store = store
        self._tx: EmbeddedTransaction | None = None
        self._outer = False

    def __enter__(self) -> EmbeddedTransaction:
        store = self._store
        if store._closed.is_set():
            raise TopicError("The topic store is closed")
        store._write_lock.acquire()
        active: EmbeddedTransaction | None = getattr(store._local, "tx", None)
        if active is not None:
            self._outer, self._tx = True, active
            return active
        try:
            store._writer.execute("BEGIN TRANSACTION")
        except BaseException:
            store._write_lock.release()
            raise
        self._tx = EmbeddedTransaction(store, store._writer)
        store._local.tx = self._tx
        return self._tx

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        store, tx = self._store, self._tx
        assert tx is not None
        try:
            if self._outer:
                return
            store._local.tx = None
            if exc_type is not None:
                store._writer.execute("ROLLBACK")
                return
            try:
                store._writer.execute("COMMIT")
            except BaseException:
                with suppress(duckdb.Error):
                    store._writer.execute("ROLLBACK")
                raise
            store._publish(tx._ends, tx._on_commit)
        finally:
            store._write_lock.release()


@dataclass(slots=True)
class _Assigned:
    """One partition a reader reads: where its table is and where the reader stands."""

    topic: _Topic
    partition: int
    position: int
    bounds: _Bounds = field(repr=False, default_factory=_Bounds)


class EmbeddedReader(TopicReader):
    """Reads every partition of its topics; picks up topics created after it was opened."""

    def __init__(
        self, store: EmbeddedStore, topics: tuple[str, ...], group: str | None, start: StartPosition
    ) -> None:
        self._store = store
        self._topics = topics
        self._group = group
        self._start = start
        self._cursor = store.cursor()
        self._assigned: dict[TopicPartition, _Assigned] = {}
        self._topology_seen = -1
        self._woken = False
        self._next_first = 0  # rotates which partition is read first, so none starves

    def _refresh(self) -> None:
        """Match the assignment to the topics that exist now (called under the store's condition)."""
        store = self._store
        if store._topology == self._topology_seen:
            return
        self._topology_seen = store._topology
        live = {name: store._topics[name] for name in self._topics if name in store._topics}
        for tp in [tp for tp, a in self._assigned.items() if live.get(tp.topic) is not a.topic]:
            del self._assigned[tp]
        for name, topic in live.items():
            committed = store.committed(self._group, name) if self._group is not None else {}
            for p in range(topic.spec.partitions):
                tp = TopicPartition(name, p)
                if tp in self._assigned:
                    continue
                bounds = store._bounds[(topic.id, p)]
                first = bounds.start if self._start == "earliest" else bounds.end
                self._assigned[tp] = _Assigned(topic, p, committed.get(p, first), bounds)

    def poll(self, max_records: int = 10_000, timeout: float = 0.1) -> pa.Table:
        store = self._store
        deadline = time.monotonic() + timeout
        while True:
            with store._changed:
                if store._closed.is_set():
                    return RECORD_SCHEMA.empty_table()
                self._refresh()
                if self._woken:
                    self._woken = False
                    return RECORD_SCHEMA.empty_table()
                version = store._version
                ready = [
                    (a, a.bounds.start, a.bounds.end)
                    for a in self._assigned.values()
                    if a.position < a.bounds.end
                ]
            if ready:
                batch = self._read(ready, max_records)
                if batch.num_rows:
                    return batch
                continue  # only gaps (compaction) were read; positions moved on
            with store._changed:
                while store._version == version and not self._woken:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return RECORD_SCHEMA.empty_table()
                    store._changed.wait(remaining)

    def _read(self, ready: list[tuple[_Assigned, int, int]], max_records: int) -> pa.Table:
        pieces: list[pa.Table] = []
        remaining = max_records
        first = self._next_first % len(ready)
        self._next_first += 1
        for a, start, end in ready[first:] + ready[:first]:
            if remaining <= 0:
                break
            position = max(a.position, start)
            try:
                if a.topic.compacted:
                    # Compaction leaves gaps: take the next ``remaining`` records that exist.
                    table = self._fetch(
                        f"{_SELECT_RECORDS.format(table=a.topic.table(a.partition))} "
                        "WHERE off >= ? AND off < ? ORDER BY off LIMIT ?",
                        [position, end, remaining],
                    )
                    upto = end if table.num_rows < remaining else int(table["offset"][-1].as_py()) + 1
                else:
                    # Dense offsets: a range of ``remaining`` offsets holds at most that many records.
                    upto = min(position + remaining, end)
                    found = _recent_records(a.bounds.recent, position, upto)
                    table = (
                        found
                        if found is not None
                        else _in_offset_order(
                            self._fetch(
                                f"{_SELECT_RECORDS.format(table=a.topic.table(a.partition))} "
                                "WHERE off >= ? AND off < ?",
                                [position, upto],
                            )
                        )
                    )
            except duckdb.CatalogException:
                continue  # the topic was deleted under us; the next refresh drops it
            a.position = upto
            if table.num_rows:
                pieces.append(_records.with_source(table, a.topic.spec.name, a.partition))
                remaining -= table.num_rows
        if not pieces:
            return RECORD_SCHEMA.empty_table()
        return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]

    def _fetch(self, sql: str, params: list[int]) -> pa.Table:
        return self._cursor.sql(sql, params=params).to_arrow_table()

    def positions(self) -> dict[TopicPartition, int]:
        with self._store._changed:
            self._refresh()
            return {tp: a.position for tp, a in self._assigned.items()}

    def seek(self, positions: Mapping[TopicPartition, int]) -> None:
        """Read on from ``positions`` (partitions of other topics, or not yet known, are left
        out); a reader shared by several readers' worth of positions moves between them."""
        with self._store._changed:
            self._refresh()
            for tp, offset in positions.items():
                assigned = self._assigned.get(tp)
                if assigned is not None:
                    assigned.position = offset

    def commit(self, positions: Mapping[TopicPartition, int] | None = None) -> None:
        if self._group is None:
            raise TopicError("Cannot commit positions of a reader without a consumer group")
        with self._store.transaction() as tx:
            tx.commit_positions(self._group, self.positions() if positions is None else positions)

    def assignment(self) -> list[TopicPartition]:
        return sorted(self.positions(), key=lambda tp: (tp.topic, tp.partition))

    def wakeup(self) -> None:
        with self._store._changed:
            self._woken = True
            self._store._changed.notify_all()

    def close(self) -> None:
        with suppress(duckdb.Error):
            self._cursor.close()


def _kept_recent(
    kept: tuple[tuple[int, pa.Table, int], ...], end: int, records: pa.Table
) -> tuple[tuple[int, pa.Table, int], ...]:
    """The records kept in memory after ``records`` were appended, ending at offset ``end``: the
    ones kept before, when they end where ``records`` start, and ``records``, less the oldest
    over :data:`RECENT_ROWS` or :data:`RECENT_BYTES`."""
    first = end - records.num_rows
    if kept and kept[-1][0] + kept[-1][1].num_rows != first:
        kept = ()  # something appended meanwhile was not kept (a transaction's records)
    pieces = [*kept, (first, records, records.nbytes)]
    rows = end - pieces[0][0]
    size = sum(piece[2] for piece in pieces)
    while pieces and (rows > RECENT_ROWS or size > RECENT_BYTES):
        rows -= pieces[0][1].num_rows
        size -= pieces[0][2]
        pieces.pop(0)
    return tuple(pieces)


def _recent_records(kept: tuple[tuple[int, pa.Table, int], ...], start: int, end: int) -> pa.Table | None:
    """Records ``start`` to ``end - 1`` of a partition from those kept in memory after their append
    (``_Bounds.recent``), or None when they are not all there. A reader that keeps up with a
    writer of small batches reads each batch just after its append: reading it from memory
    spares a statement whose fixed cost is most of such a read."""
    if not kept or start < kept[0][0] or end > kept[-1][0] + kept[-1][1].num_rows:
        return None
    pieces = [
        table.slice(max(start, first) - first, min(end, first + table.num_rows) - max(start, first))
        for first, table, _ in kept
        if first < end and start < first + table.num_rows
    ]
    if not pieces:
        return None
    return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]


def _in_offset_order(table: pa.Table) -> pa.Table:
    """``table`` sorted by offset. Records are appended in offset order and DuckDB returns a
    scan in insertion order (``preserve_insertion_order``, on by default), so a read without
    ORDER BY (half the cost of one) is already sorted; checking that is one pass in C."""
    offsets = np.asarray(table.column("offset"))
    if len(offsets) < 2 or bool((offsets[1:] > offsets[:-1]).all()):
        return table
    return table.sort_by("offset")
