"""Table materialization: every table's topic, kept as a keyed DuckDB table for pull queries.

A :class:`Materializer` reads one table's topic and keeps ``mat."<NAME>"`` in the state
database equal to the topic read as a changelog: the last record per key wins, a tombstone
deletes the key. Each micro-batch is applied with an ``INSERT OR REPLACE`` of its last
non-tombstone values per key (and a DELETE of its tombstones' keys, when it has any; a table
without its primary key deletes all the batch's keys, then inserts), inside the same store
transaction that commits the read positions, so a crash never leaves state and positions apart
(exactly once on the embedded store). On Kafka the state is rebuilt from the topic (read
committed) at every start and the positions stay in memory, so a batch commits in DuckDB alone,
beside the queries' transactions rather than queued behind them on the store's transaction lock
(it produces nothing to Kafka).

Layout of ``mat."<NAME>"`` (see STATEFUL.md): key columns, then ``WINDOWSTART`` and ``WINDOWEND``
for windowed tables, then value columns (and header columns), then ``ROWTIME``; primary key =
key columns plus the window bounds. Two hidden columns follow, used only to order table scans
as ksqlDB's state stores iterate them (per partition, by serialized key): ``__PARTITION`` and
``__KEY`` (the record's key bytes without the window suffix). :data:`HIDDEN_COLUMNS` lists them.
Columns go by their DuckDB names (:func:`quote_column`), so `` `pageid` `` and ``PAGEID`` can
both be columns, as in ksqlDB.

``mat."__materialized"`` records which generation (the consumer group, named after the command
that created the table) built each table, so a table re-created under the same name starts
from an empty state instead of inheriting the old one.

On a cluster (the Kafka store with ``owned`` given), each server reads every partition of the
table's topic in no consumer group and keeps the rows of the partitions it holds, as a Kafka
Streams instance holds the stores of its active and standby tasks: ``owned()`` names them (the
partitions the query writing the table processes here, plus those it keeps standby copies of;
None: all). When a partition is gained, its records up to the read position are read again
from the topic into the state; when one is lost, its rows are deleted. Pull queries are routed
to the servers holding a key's partition (``ksqlpy.server.pullroute``). The state is rebuilt
from the topic when such a server starts (what it holds then is decided afresh).

Fed partitions (one copy of the rows, as ksqlDB's pull queries read the aggregation's own
store): the query writing a table may put the rows it produces into ``mat."<NAME>"`` itself, in
the transaction that produces them (:meth:`Materializer.feed`, called by ``PersistentQuery``), so
the materializer need not decode and upsert them again when it reads them back. The rule, kept
where it is provably right and reading the topic everywhere else:

- only a table of one partition written by an aggregation running here: on Kafka under
  exactly-once a windowed one (INSERT VALUES cannot write it), whose partition's only writer is
  the one active task, here; on the embedded store any (a GROUP BY without WINDOW too), where
  another writer is seen as it writes: transactions run one at a time, so a fed transaction
  that finds the partition's end past where the last fed one left it (:meth:`Materializer.feed_from`),
  or a pull query that finds it so between fed transactions (:meth:`Materializer.wait_for`),
  knows someone else wrote there (INSERT VALUES into the table, a stream or table declared
  over its topic) and stops the feeding, so the partition is read on from the last fed
  position, those records included. An aborted batch rolls back its fed rows with the rest of
  its state; a record whose value is null deletes its key, as when read back;
- on the embedded store, where the table's read positions are kept with its state, the query's
  transaction also moves the fed partition's position past the records it produced
  (:meth:`Materializer.commit_fed`): rows, records and position commit in one DuckDB
  transaction, and while every partition is fed the materializer does not poll at all. When
  feeding stops it reads on from that position, and a restart resumes there too;
- the hand-over: between two of its batches (nothing written to the partition meanwhile), the
  query waits until the materializer holds the partition and has committed it up to its end
  offset ``E`` (:meth:`Materializer.start_feeding`; only when it holds the partition already and
  is at most a batch behind, else the query goes on and asks again after its next batch); from
  then on the materializer skips the partition's records at ``E`` and after (they are in the
  state already), so no older record read from the topic can overwrite a fed one, and soon stops
  reading the partition at all (``_sync_reader``). Read-your-writes holds: a fed partition
  counts as caught up once the query's transaction under way, if any, has committed its state
  too (the state commits just after Kafka's transaction; ``feed_lock``) and, on the embedded
  store, while the partition ends where the last fed transaction left it; a position past
  records skipped while reading stopped is published only then too;
- the read-ahead: a new aggregation on Kafka processes its input while its consumer joins the
  group (``TopicReader.read_ahead``), and what it produces then is committed at the assignment.
  When the table's topic is still empty and nothing was read, the query takes the partition from
  offset 0 before its first output (:meth:`Materializer.feed_ahead`): it keeps the rows it
  produces, one per key, and hands them over once the read-ahead is kept (:meth:`end_ahead`),
  pull queries waiting for the partition until then; a read-ahead aborted, or rows past their
  limit, leave the partition to be read from the topic, as at the end of feeding;
- the end: when the query loses the partition, stops or fails, the partition is dropped and read
  again from the topic up to the reader's position (:meth:`Materializer.stop_feeding`, then
  ``_follow``), which also covers records another server wrote meanwhile; pull queries wait for it.
  Every start rebuilds the state from the topic, and a table re-created under the same name gets a
  new materializer, handed over afresh.

Watchers: something kept equal to the table's rows in memory (a pull query's live snapshot,
``ksqlpy.runtime.pulllive``) registers a :class:`RowWatcher`. Every upsert on the embedded store
tells it, inside the transaction that writes the rows, which keys changed; its statements may
read them from :data:`CHANGED_ROWS` and the table as that transaction left it, and what it
answers runs when the transaction commits, while the store publishes it. A change of rows that
is not an upsert (partitions dropped, windows expired) drops every watcher instead.

Window retention: a windowed aggregation's table (``WindowInfo.retention_ms`` set) keeps windows
as Kafka Streams' segmented window and session stores do. The store tracks, per partition, the
*observed stream time*: the largest segment timestamp ever put into it (tombstones included),
where the segment timestamp is a window's start (``WindowKeySchema.segmentTimestamp``) and a
session's end (``SessionKeySchema.segmentTimestamp``). Every fetch starts at
``max(from, observedStreamTime - retentionPeriod + 1)`` (``AbstractRocksDBSegmentedBytesStore.
getActualFrom``, also in ``AbstractDualSchemaRocksDBSegmentedBytesStore``), so a window is
visible while ``segment timestamp > observed stream time - retention`` and never again after.
Here the observed stream time lives in ``mat."<NAME>_stream_time"`` (partition, observed) and
advances in the same transaction as the upserts; records for expired windows are not inserted
and windows that fell out of retention are deleted, so no pull query sees them. Tables declared
over a windowed topic have no retention and keep every window.
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.planner.catalog import Source, WindowType
from ksqlpy.planner.expressions import duckdb_name
from ksqlpy.runtime.arrow_plans import aggregate_by
from ksqlpy.runtime.codec import TOMBSTONE, SourceDecoder
from ksqlpy.runtime.processing_log import DESERIALIZATION_ERROR, ProcessingError, ProcessingLog
from ksqlpy.runtime.relations import to_duckdb
from ksqlpy.runtime.serde import WindowKind, split_windowed_keys
from ksqlpy.runtime.serde.base import combine
from ksqlpy.runtime.serde.registry import registry_for
from ksqlpy.runtime.store.base import TopicPartition, TopicReader, TopicStore, Transaction
from ksqlpy.runtime.store.embedded import EmbeddedReader, EmbeddedStore, EmbeddedTransaction

log = logging.getLogger("ksqlpy.materialize")

SCHEMA = "mat"
REGISTRY = f'{SCHEMA}."__materialized"'
PARTITION_COLUMN = "__PARTITION"
KEY_BYTES_COLUMN = "__KEY"
HIDDEN_COLUMNS = (PARTITION_COLUMN, KEY_BYTES_COLUMN)
WINDOW_COLUMNS = ("WINDOWSTART", "WINDOWEND")
#: Suffix of the table holding a windowed table's observed stream time, per partition.
STREAM_TIME_SUFFIX = "_stream_time"
#: Kafka's ``ConsumerRecord.NO_TIMESTAMP``: a window store's observed stream time before any put.
NO_TIMESTAMP = -1
#: Records per micro-batch at most; a batch holds what is available, so light traffic is not delayed.
BATCH_SIZE = 50_000
#: How often the materializer looks whether the query writing its table has its partitions yet.
OWNERS_POLL_SECONDS = 0.02
#: The relation holding a batch's rows while they are upserted (columns by their DuckDB names):
#: a watcher's statements read the changed keys from it.
CHANGED_ROWS = "__mat_latest"


class RowWatcher(Protocol):
    """Something kept equal to a table's rows (see "Watchers" in the module docstring)."""

    def changed(self, con: duckdb.DuckDBPyConnection, keys: Sequence[object]) -> Callable[[], object] | None:
        """Inside the transaction upserting the rows of ``keys`` (values of the table's key
        column): what to do once it commits, or None to stop watching."""

    def dropped(self) -> None:
        """The table changed in a way not told: the watcher is out of date from now on."""


class Handover(enum.Enum):
    """The answer to a query asking to feed a partition (:meth:`Materializer.start_feeding`)."""

    FED = "fed"  # from now on the query feeds it
    NOT_YET = "not yet"  # the materializer is still reading it in or catching up: ask next batch
    TIMED_OUT = "timed out"  # it did not catch up while the query waited: ask again later


_WINDOW_KINDS = {
    WindowType.TUMBLING: WindowKind.TUMBLING,
    WindowType.HOPPING: WindowKind.HOPPING,
    WindowType.SESSION: WindowKind.SESSION,
}


def _last_of_each_key(records: pa.Table) -> pa.Table:
    """The batch's last record of each key (its bytes, window included), in batch order, and
    every record without a key: only the last one of a key can stay in the table, so the
    others need not be decoded (a query without caching writes one record per input record)."""
    n = records.num_rows
    if n < 2:
        return records
    keys = combine(records.column("key"))
    codes = np.asarray(pc.fill_null(pc.dictionary_encode(keys).indices, -1).to_numpy(zero_copy_only=False))
    # each code's first position in the reversed batch is its key's last record
    _, first = np.unique(codes[::-1], return_index=True)
    keep = np.zeros(n, dtype=bool)
    keep[n - 1 - first] = True
    keep[codes == -1] = True
    if keep.all():
        return records
    return records.filter(pa.array(keep))


def quote(name: str) -> str:
    """A DuckDB identifier for ``name``, quoted (ksqlDB names are case-sensitive as stored)."""
    return '"' + name.replace('"', '""') + '"'


def quote_column(name: str) -> str:
    """The quoted DuckDB column of the ksqlDB column ``name``: materialized tables name their
    columns by :func:`~ksqlpy.planner.expressions.duckdb_name`, as compiled expressions do."""
    return quote(duckdb_name(name))


def table_ref(name: str) -> str:
    """The materialized table of the ksqlDB table ``name``: ``mat."NAME"``."""
    return f"{SCHEMA}.{quote(name)}"


def stream_time_ref(name: str) -> str:
    """The observed stream time of the windowed table ``name``: ``mat."NAME_stream_time"``."""
    return table_ref(name + STREAM_TIME_SUFFIX)


def observed_stream_time(con: duckdb.DuckDBPyConnection, name: str) -> dict[int, int]:
    """The observed stream time per partition of table ``name`` (empty when it has none yet or
    keeps every window)."""
    try:
        rows = con.execute(f"SELECT part, observed FROM {stream_time_ref(name)}").fetchall()
    except duckdb.CatalogException:
        return {}
    return {int(p): int(t) for p, t in rows}


@dataclass(frozen=True, slots=True, kw_only=True)
class MatLayout:
    """Where and how one table is materialized."""

    source: Source

    @property
    def ref(self) -> str:
        return table_ref(self.source.name)

    @property
    def windowed(self) -> bool:
        return self.source.window is not None

    @property
    def retention_ms(self) -> int | None:
        """How long windows stay past the observed stream time; None keeps them all."""
        window = self.source.window
        return window.retention_ms if window is not None else None

    @property
    def segment_column(self) -> str:
        """The window bound Kafka Streams segments (and expires) a window by: a time window's
        start, a session's end."""
        window = self.source.window
        return "WINDOWEND" if window is not None and window.type is WindowType.SESSION else "WINDOWSTART"

    @property
    def stream_time_ref(self) -> str:
        return stream_time_ref(self.source.name)

    def create_stream_time_sql(self) -> str:
        return f"CREATE TABLE IF NOT EXISTS {self.stream_time_ref} (part INTEGER PRIMARY KEY, observed BIGINT NOT NULL)"

    @property
    def key_names(self) -> tuple[str, ...]:
        """The primary key: key columns, then the window bounds of a windowed table."""
        keys = tuple(c.name for c in self.source.key_columns)
        return keys + WINDOW_COLUMNS if self.windowed else keys

    @property
    def key_types(self) -> tuple[sqltypes.SqlType, ...]:
        keys = tuple(c.type for c in self.source.key_columns)
        return keys + (sqltypes.BIGINT, sqltypes.BIGINT) if self.windowed else keys

    @property
    def visible(self) -> tuple[tuple[str, sqltypes.SqlType], ...]:
        """Columns a query sees, in table order."""
        s = self.source
        cols = [(c.name, c.type) for c in s.key_columns]
        if self.windowed:
            cols += [(w, sqltypes.BIGINT) for w in WINDOW_COLUMNS]
        cols += [(c.name, c.type) for c in s.value_columns + s.header_columns]
        cols.append(("ROWTIME", sqltypes.BIGINT))
        return tuple(cols)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.visible) + HIDDEN_COLUMNS

    def create_sql(self) -> str:
        cols = [f"{quote_column(n)} {sqltypes.to_duckdb(t)}" for n, t in self.visible]
        cols += [f"{quote_column(PARTITION_COLUMN)} INTEGER", f"{quote_column(KEY_BYTES_COLUMN)} BLOB"]
        # DuckDB indexes only primitive columns; STRUCT/ARRAY/MAP keys go without the constraint
        # (upserts delete a batch's keys before inserting, so a key still has one row).
        if self.key_names and all(isinstance(t, sqltypes.Primitive | sqltypes.Decimal) for t in self.key_types):
            cols.append(f"PRIMARY KEY ({', '.join(quote_column(k) for k in self.key_names)})")
        return f"CREATE TABLE IF NOT EXISTS {self.ref} ({', '.join(cols)})"

    def scan_order(self) -> str:
        """ORDER BY of a table scan, as ksqlDB's stores iterate: partition, key bytes, window."""
        order = [quote_column(PARTITION_COLUMN), quote_column(KEY_BYTES_COLUMN)]
        if self.windowed:
            order += [quote_column(w) for w in WINDOW_COLUMNS]
        return ", ".join(order)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {REGISTRY} (name VARCHAR PRIMARY KEY, generation VARCHAR)")


def drop_state(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Remove a table's materialized state (DROP TABLE)."""
    ensure_schema(con)
    con.execute(f"DROP TABLE IF EXISTS {table_ref(name)}")
    con.execute(f"DROP TABLE IF EXISTS {stream_time_ref(name)}")
    con.execute(f"DELETE FROM {REGISTRY} WHERE name = ?", [name])


class Materializer:
    """Keeps ``mat."<NAME>"`` up to date with one table's topic, on its own thread."""

    def __init__(
        self,
        source: Source,
        store: TopicStore,
        plog: ProcessingLog,
        *,
        group: str,
        owned: Callable[[], frozenset[int] | None] | None = None,
        owners_known: Callable[[], bool] | None = None,
    ) -> None:
        self.layout = MatLayout(source=source)
        #: the partitions this server keeps (None: all); see the module docstring
        self.owned = owned
        #: whether ``owned`` is settled (False while the query writing the table awaits its
        #: first assignment: it then names no partitions, yet will hold some)
        self.owners_known = owners_known
        #: the partitions the state holds now (None: all of them)
        self.held: frozenset[int] | None = None
        self.source = source
        self.store = store
        self.plog = plog
        self.group = group
        self.records_in = 0
        self.error: BaseException | None = None
        self._committed: dict[int, int] = {}
        #: partitions the query writing the table feeds (see "Fed partitions" in the module
        #: docstring), each with the offset from which its records are in the state already
        self._fed: dict[int, int] = {}
        #: fed partitions the query stopped feeding: to be read again from the topic
        self._unfed: set[int] = set()
        #: (the embedded store) per fed partition, its end offset after the last fed transaction
        #: committed: every record from the hand-over up to there is in the state, and a record
        #: past it that no fed transaction wrote came from another writer (see feed_from)
        self._fed_end: dict[int, int] = {}
        #: fed partitions taken while the query reads ahead of its group's first assignment,
        #: until it has handed over the rows it produced meanwhile (see feed_ahead)
        self._ahead_pending: set[int] = set()
        #: held by the feeding query through each batch's transaction (see _commit)
        self.feed_lock = threading.Lock()
        #: fed partitions, left out of the reader, with the offset reading stopped at
        self._paused: dict[int, int] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: TopicReader | None = None
        #: whether the table has its primary key (see MatLayout.create_sql), asked once
        self._keyed: bool | None = None
        #: told of every upsert (see "Watchers" in the module docstring); replaced, never changed
        self._watchers: tuple[RowWatcher, ...] = ()

    @property
    def name(self) -> str:
        return self.source.name

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"materialize-{self.name}", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        reader = self._reader
        if reader is not None:
            reader.wakeup()
        with self._cond:
            self._cond.notify_all()  # out of a wait while every partition is fed
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._cond:
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---------------------------------------------------------------- progress

    def is_idle(self) -> bool:
        return self._idle.is_set() or not self.running

    def caught_up(self) -> bool:
        """Whether the state includes the whole topic (a failed materializer never will)."""
        return self.error is not None or self.covers(self.store.end_offsets(self.source.topic))

    def covers(self, ends: Mapping[int, int]) -> bool:
        """Whether the state committed so far includes every record before ``ends`` (a fed
        partition's records are in it as soon as the query's transactions commit)."""
        with self._cond:
            return self._covered(ends, frozenset(self._fed))

    def _covered(self, ends: Mapping[int, int], fed: frozenset[int]) -> bool:
        """(Under ``_cond``.) ``fed``: fed partitions whose committed transactions are known to
        have committed their rows too."""
        return self._holds_owned(ends) and all(
            self._committed.get(p, 0) >= end or (p in fed and self._fed_covers(p, end))
            for p, end in ends.items()
            if end > 0
        )

    def _fed_covers(self, partition: int, end: int) -> bool:
        """(Under ``_cond``.) Whether fed partition ``partition``'s records before ``end`` are in
        the state: still fed, and (on the embedded store) none past what the fed transactions wrote."""
        if partition not in self._fed or partition in self._unfed or partition in self._ahead_pending:
            return False
        fed_end = self._fed_end.get(partition)
        return fed_end is None or end <= fed_end

    def _holds_owned(self, ends: Mapping[int, int]) -> bool:
        """Whether the state holds every partition of ``ends`` this server should hold now: the
        positions advance over partitions held elsewhere too, so a partition assigned here a
        moment ago counts only once it has been read again into the state (see :meth:`_follow`)."""
        if self.owned is None or self.held is None:
            return True
        if self.owners_known is not None and not self.owners_known():
            return False
        if self._unfed:
            return False
        wanted = self.owned()
        parts = frozenset(p for p, end in ends.items() if end > 0)
        return (parts if wanted is None else wanted & parts) <= self.held

    def wait_for(self, ends: Mapping[int, int], timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until the state covers ``ends``; read-your-writes
        for pull queries. False when it did not catch up in time or the materializer stopped."""
        deadline = time.monotonic() + timeout
        fed = self.fed()
        waits = fed & {p for p, end in ends.items() if end > 0}
        if waits and not self._fed_ends_cover(ends, waits):
            # The records of a fed partition are not read: they are in the state once the
            # query's transaction that wrote them has committed its state too, which it does
            # holding feed_lock (taken outside _cond, which the query's thread takes under it).
            if not self.feed_lock.acquire(timeout=max(timeout, 0.0)):
                return False
            self.feed_lock.release()
            # records another writer added past the fed ones are read from the topic first
            self._stop_foreign()
        with self._cond:
            while not self._covered(ends, fed):
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set() or self.error is not None:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def _fed_ends_cover(self, ends: Mapping[int, int], partitions: frozenset[int]) -> bool:
        """(The embedded store.) Whether the fed transactions committed so far wrote every record
        of ``partitions`` before ``ends``: their state committed with them in one DuckDB
        transaction, published before the records were (see commit_fed), so a pull query need
        not wait for the one under way, a later batch's."""
        with self._cond:
            return all(
                p in self._fed_end and p not in self._unfed and ends[p] <= self._fed_end[p]
                for p in partitions
            )

    # ---------------------------------------------------------------- watchers

    def watch(self, watcher: RowWatcher) -> bool:
        """Tell ``watcher`` of every upsert from now on; the caller holds the store's write
        lock, so that no transaction under way misses it. False where changes cannot be told:
        a table without exactly one key column, or not on the embedded store."""
        if not isinstance(self.store, EmbeddedStore) or len(self.source.key_columns) != 1 or self.error is not None:
            return False
        self._watchers = (*self._watchers, watcher)
        return True

    def _drop_watchers(self) -> None:
        watchers, self._watchers = self._watchers, ()
        for watcher in watchers:
            watcher.dropped()

    def _tell_watchers(self, con: duckdb.DuckDBPyConnection, latest: pa.Table) -> None:
        """(In an upsert, with :data:`CHANGED_ROWS` registered.) Each watcher's answer runs
        when the transaction under way commits; without one on this thread (running ``con``),
        every watcher is dropped."""
        store = self.store
        assert isinstance(store, EmbeddedStore)
        tx = store.current_transaction()
        if tx is None or tx.state is not con:
            self._drop_watchers()
            return
        column = latest.column(duckdb_name(self.source.key_columns[0].name))
        keys = [key for key in column.to_pylist() if key is not None]
        kept: list[RowWatcher] = []
        for watcher in self._watchers:
            action = watcher.changed(con, keys)
            if action is None:
                watcher.dropped()
                continue
            tx.after_commit(action)
            kept.append(watcher)
        self._watchers = tuple(kept)

    # ---------------------------------------------------------------- the loop

    def _run(self) -> None:
        try:
            self._prepare()
            decoder = SourceDecoder(self.source, registry_for(self.store), split_windows=False)
            if self.owned is not None:
                reader = self._reader = self._open_partitions()
            else:
                reader = self._reader = self.store.open_reader(
                    [self.source.topic], group=self.group, start="earliest"
                )
                self._publish(self.store.committed(self.group, self.source.topic))
            # Where the reader starts, the state is complete: records before it are applied, or
            # gone from the topic for good (retention), so a pull query has nothing to wait for.
            self._publish({tp.partition: off for tp, off in reader.positions().items()})
        except Exception as e:  # noqa: BLE001 - kept as the materializer's error
            self._fail(e)
            self._ready.set()
            return
        self._ready.set()
        try:
            waited = True
            while not self._stop.is_set():
                if self.owners_known is not None and not self.owners_known():
                    # The query writing the table awaits its first assignment, so no partition
                    # is held yet: what is read now would be dropped and, once the query has its
                    # partitions, read again (its first outputs become readable just before).
                    self._idle.set()
                    self._stop.wait(OWNERS_POLL_SECONDS)
                    continue
                if self.owned is not None:
                    self._follow(decoder, {**reader.positions(), **self._paused_positions()})
                    reader = self._sync_reader(reader)
                elif self._resume_unfed(reader):
                    # every partition is fed: nothing to read until the query stops feeding, or
                    # someone else writes the topic (woken by the store's commits to see it)
                    self._idle.set()
                    store = self.store
                    assert isinstance(store, EmbeddedStore)  # only the embedded store feeds without `owned`
                    version = store.version
                    if not self._stop_foreign():
                        with self._cond:
                            pending = bool(self._unfed) or self._stop.is_set()
                        if not pending:
                            store.wait_changed(version, 0.2)
                    continue
                # after a batch, look without waiting, so idleness shows at once (see QueryRunner)
                records = reader.poll(BATCH_SIZE, timeout=0.2 if waited else 0.0)
                waited = records.num_rows == 0
                positions = reader.positions()
                if records.num_rows == 0:
                    if self._advanced(positions):
                        self._commit(None, decoder, positions)
                    self._idle.set()
                    continue
                self._idle.clear()
                self.records_in += records.num_rows
                self._commit(records, decoder, positions)
        except Exception as e:  # noqa: BLE001
            self._fail(e)
        finally:
            self._idle.set()
            try:
                reader.close()
            except Exception:
                log.debug("closing the reader of %s failed", self.name, exc_info=True)

    def _resume_unfed(self, reader: TopicReader) -> bool:
        """(The embedded store, where the query feeding a partition commits this table's read
        position of it with the rows it feeds.) Read on the partitions no longer fed from the
        position their last fed batch committed. True when every partition is fed."""
        with self._cond:
            unfed, fed = frozenset(self._unfed), frozenset(self._fed)
        if not fed:
            return False
        if unfed:
            committed = self.store.committed(self.group, self.source.topic)
            resumed = {p: committed.get(p, self._fed[p]) for p in unfed}
            assert isinstance(reader, EmbeddedReader)  # only the embedded store feeds without `owned`
            reader.seek({TopicPartition(self.source.topic, p): off for p, off in resumed.items()})
            with self._cond:
                for p in unfed:
                    self._fed.pop(p, None)
                    self._fed_end.pop(p, None)
                self._unfed -= unfed
                fed = frozenset(self._fed)
            self._publish(resumed)
        return bool(fed) and {tp.partition for tp in reader.positions()} <= fed

    def _stop_foreign(self) -> bool:
        """(The embedded store.) Stop feeding the partitions someone else wrote since the last
        fed transaction: their end is past where it left them. True when there were any.

        The end is read before the fed ends: a fed transaction's commit moves its fed end
        before the store publishes its records, so only another writer's records show here."""
        if self.owned is not None or not self._fed_end:
            return False
        ends = self.store.end_offsets(self.source.topic)
        with self._cond:
            foreign = frozenset(
                p
                for p, end in ends.items()
                if p in self._fed and p not in self._unfed and end > self._fed_end.get(p, end)
            )
        if foreign:
            self.stop_feeding(foreign)
        return bool(foreign)

    def _paused_positions(self) -> dict[TopicPartition, int]:
        return {TopicPartition(self.source.topic, p): off for p, off in self._paused.items()}

    def _sync_reader(self, reader: TopicReader) -> TopicReader:
        """Read no fed partition: the query puts their rows into the state, and reading them
        back would cost as much as the rest of the materializer. A partition fed from now on
        is left where reading stands; one no longer fed (read again into the state up to
        there by _follow) is read on from there. Reopens the reader when that changes."""
        with self._cond:
            fed = frozenset(self._fed)
        if fed == frozenset(self._paused):
            return reader
        positions = {tp.partition: off for tp, off in {**reader.positions(), **self._paused_positions()}.items()}
        self._paused = {p: positions.get(p, 0) for p in fed}
        reader.close()
        starts = {TopicPartition(self.source.topic, p): off for p, off in positions.items() if p not in fed}
        reader = self._reader = self.store.open_partition_reader(starts)
        if self._stop.is_set():
            reader.wakeup()
        return reader

    def _open_partitions(self) -> TopicReader:
        """Every partition of the topic, from the start: the state was rebuilt empty."""
        spec = self.store.describe_topic(self.source.topic)
        count = spec.partitions if spec is not None else 1
        self.held = frozenset()
        return self.store.open_partition_reader({TopicPartition(self.source.topic, p): 0 for p in range(count)})

    def _follow(self, decoder: SourceDecoder, positions: Mapping[TopicPartition, int]) -> None:
        """Keep the state to the partitions this server holds now (cluster mode)."""
        assert self.owned is not None
        wanted = self.owned()
        everything = frozenset(tp.partition for tp in positions)
        now = everything if wanted is None else wanted & everything
        held = everything if self.held is None else self.held
        with self._cond:
            unfed = frozenset(self._unfed)
        if now == held and not unfed:
            return
        # A partition the query no longer feeds is dropped and read again from the topic: its
        # records past the feed's start were skipped, and some may be another writer's now.
        lost, gained = sorted((held - now) | (unfed & held)), sorted((now - held) | (unfed & now))
        again: list[pa.Table] = []
        for p in gained:  # read before the transaction, which holds up every other writer
            end = positions.get(TopicPartition(self.source.topic, p), 0)
            if end > 0:
                for batch in self.store.read_partition(self.source.topic, p, 0):
                    batch = batch.filter(pc.less(batch.column("offset"), end))
                    if batch.num_rows:
                        again.append(batch)
        self._drop_watchers()
        with self._state_transaction() as con:
            if lost:
                listed = ", ".join(str(p) for p in lost)
                con.execute(f"DELETE FROM {self.layout.ref} WHERE {quote_column(PARTITION_COLUMN)} IN ({listed})")
                if self.layout.retention_ms is not None:
                    con.execute(f"DELETE FROM {self.layout.stream_time_ref} WHERE part IN ({listed})")
            for batch in again:
                self._apply(con, batch, decoder)
        self.held = now
        with self._cond:
            for p in unfed:
                self._fed.pop(p, None)
                self._fed_end.pop(p, None)
            self._unfed -= unfed
        self._publish({})  # wakes pull queries waiting for these partitions (wait_for)
        log.info("Table %s now holds partition(s) %s (dropped %s, read again %s)", self.name, sorted(now), lost, gained)

    def _fail(self, e: BaseException) -> None:
        self.error = e
        log.error("Materializing table %s failed and stopped: %s", self.name, e, exc_info=e)
        with self._cond:
            self._cond.notify_all()

    def _prepare(self) -> None:
        """Create the state table; start over when it was built by another generation."""
        with self.store.transaction() as tx:
            con = tx.state
            ensure_schema(con)
            row = con.execute(f"SELECT generation FROM {REGISTRY} WHERE name = ?", [self.name]).fetchone()
            if row is None or row[0] != self.group or self.owned is not None:
                con.execute(f"DROP TABLE IF EXISTS {self.layout.ref}")
                con.execute(f"DROP TABLE IF EXISTS {self.layout.stream_time_ref}")
                con.execute(f"DELETE FROM {REGISTRY} WHERE name = ?", [self.name])
                con.execute(f"INSERT INTO {REGISTRY} VALUES (?, ?)", [self.name, self.group])
            else:
                self._rename_columns(con)
            con.execute(self.layout.create_sql())
            self._keyed = None
            if self.layout.retention_ms is not None:
                con.execute(self.layout.create_stream_time_sql())

    def _rename_columns(self, con: duckdb.DuckDBPyConnection) -> None:
        """Give a table kept from before DuckDB names existing columns under their ksqlDB names
        (no two of which then differed only in case); its rows and read positions stay."""
        existing = [
            str(n)
            for (n,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? ORDER BY column_index",
                [SCHEMA, self.name],
            ).fetchall()
        ]
        if existing != list(self.layout.column_names):
            return
        for name in existing:
            if duckdb_name(name) != name:
                con.execute(f"ALTER TABLE {self.layout.ref} RENAME COLUMN {quote(name)} TO {quote_column(name)}")

    def _advanced(self, positions: Mapping[TopicPartition, int]) -> bool:
        with self._cond:
            return any(self._committed.get(tp.partition, 0) != off for tp, off in positions.items())

    def _commit(
        self, records: pa.Table | None, decoder: SourceDecoder, positions: Mapping[TopicPartition, int]
    ) -> None:
        if records is not None and self.held is not None:
            # cluster mode: the records of partitions held elsewhere only advance the position
            parts = pa.array(sorted(self.held), pa.int32())
            records = records.filter(pc.is_in(pc.cast(records.column("partition"), pa.int32()), value_set=parts))
        with self._cond:
            fed = dict(self._fed)
        if records is not None and fed and records.num_rows:
            # the records the query fed into the state in its own transactions only advance it
            partition, offset = records.column("partition"), records.column("offset")
            skip = None
            for p, start in fed.items():
                mine = pc.and_(pc.equal(partition, p), pc.greater_equal(offset, start))
                skip = mine if skip is None else pc.or_(skip, mine)
            assert skip is not None
            skip = pc.fill_null(skip, False)
            if pc.any(skip).as_py():
                records = records.filter(pc.invert(skip))
                # Kafka's transaction commits before the query's state does: the position may
                # pass the records it fed once their rows are committed (read-your-writes).
                with self.feed_lock:
                    pass
        if self.owned is not None:
            # On Kafka the state is rebuilt from the topic at every start: the positions need
            # not be kept, and the batch commits in DuckDB alone (see _state_transaction).
            if records is not None and records.num_rows:
                with self._state_transaction() as con:
                    self._apply(con, records, decoder)
        else:
            with self.store.transaction() as tx:
                if records is not None and records.num_rows:
                    self._apply(tx.state, records, decoder)
                # a fed partition's position is the feeding query's to commit (commit_fed)
                kept = {tp: off for tp, off in positions.items() if tp.partition not in fed}
                if kept:
                    tx.commit_positions(self.group, kept)
        self._publish({tp.partition: off for tp, off in positions.items()})

    @contextmanager
    def _state_transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A transaction on the state database for one batch or one change of the partitions held.

        On Kafka (``owned`` given) it is a DuckDB transaction alone: the materializer produces
        nothing and its positions live only in memory (the state is rebuilt from the topic at
        every start), so it needs neither a Kafka transaction nor the store's transaction lock,
        which would hold up the queries' transactions (DuckDB runs it beside theirs: no other
        writer touches ``mat."<NAME>"``). On the embedded store the positions commit with the
        state in the store's transaction (see :meth:`_commit`)."""
        if self.owned is None:
            with self.store.transaction() as tx:
                yield tx.state
            return
        con = self.store.state_cursor()
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def _publish(self, committed: Mapping[int, int]) -> None:
        with self._cond:
            self._committed.update(committed)
            self._cond.notify_all()

    # ---------------------------------------------------------------- fed partitions

    def feedable(self, partitions: int) -> bool:
        """Whether the query writing this table may feed its rows here (see the module
        docstring): a table of one partition, windowed on Kafka (nothing else writes it), any
        on the embedded store (where another writer is seen by the offsets, see feed_from)."""
        s = self.source
        embedded = self.owned is None and self.store.kind == "embedded"
        return (
            (embedded or (self.owned is not None and s.window is not None))
            and partitions == 1
            and not s.header_columns
            and self.running
            and self.error is None
        )

    def fed(self) -> frozenset[int]:
        """The partitions the query feeds (not those it stopped feeding, to be read again)."""
        with self._cond:
            return frozenset(self._fed) - self._unfed

    def start_feeding(self, partition: int, timeout: float) -> Handover:
        """Take partition ``partition``'s rows from the query writing it from now on, the
        query's thread asking between its batches, while nothing is written to the partition:
        once the state holds every record the partition has (waiting ``timeout`` at most, when
        it holds the partition and is at most a batch behind), records from its end on are
        skipped when read."""
        if self.owned is not None and partition not in (self.held or frozenset()):
            # Still reading the partition in (a consumer of its own reads all of it again, see
            # _follow): the query need not wait for that, it asks again after its next batch.
            # (On the embedded store the materializer reads every partition: ``owned`` is None.)
            return Handover.NOT_YET
        end = self.store.end_offsets(self.source.topic).get(partition, 0)
        with self._cond:
            if partition in self._unfed or end - self._committed.get(partition, 0) > BATCH_SIZE:
                return Handover.NOT_YET  # far behind (rebuilding, say): the query is not held up meanwhile
        if not self.wait_for({partition: end}, timeout):
            return Handover.TIMED_OUT
        if self.owned is not None and partition not in (self.held or frozenset()):
            return Handover.TIMED_OUT  # moved elsewhere meanwhile
        with self._cond:
            if partition in self._unfed or self.error is not None:
                return Handover.NOT_YET
            self._fed[partition] = end
            if self.owned is None:
                self._fed_end[partition] = end
        log.info("Table %s: the query writing it feeds partition %d from offset %d", self.name, partition, end)
        return Handover.FED

    def feed_ahead(self, partitions: int) -> frozenset[int]:
        """Take every partition's rows from the query writing the table while it reads ahead of
        its group's first assignment, before it has produced anything: it keeps the rows it
        produces for the table meanwhile and hands them over at once when the read-ahead is
        kept (:meth:`end_ahead`), so the records it committed are never read back. Otherwise a
        new aggregation over a backlog has the materializer read back, decode and upsert
        everything its read-ahead produced (one record per input record without a cache), on
        the other core, while the query goes on; the hand-over (:meth:`start_feeding`) waits
        for that.

        Only on Kafka, for a table :meth:`feedable` there whose topic is empty, with nothing
        read or fed yet; pull queries wait for the partitions until the rows are in. Returns
        the partitions taken (none: not so)."""
        if self.owned is None or not self.feedable(partitions) or self.records_in:
            return frozenset()
        if any(self.store.end_offsets(self.source.topic).values()):
            return frozenset()
        taken = frozenset(range(partitions))
        with self._cond:
            if self._fed or self._unfed or self._ahead_pending or any(self._committed.values()):
                return frozenset()
            for p in taken:
                self._fed[p] = 0
            self._ahead_pending |= taken
        log.info(
            "Table %s: the query writing it reads ahead of its group's join and keeps the rows of "
            "partition(s) %s for it",
            self.name,
            sorted(taken),
        )
        return taken

    def end_ahead(self, partitions: frozenset[int], rows: pa.Table | None) -> None:
        """The read-ahead that took ``partitions`` (:meth:`feed_ahead`) has ended: ``rows`` (as
        for :meth:`feed`, one per key at most) are what it committed to them, now upserted; None
        when it was not kept, or the query gave the rows up, and the partitions are read from
        the topic instead (its records up to the query's later hand-over)."""
        if self._stop.is_set() or self.error is not None:
            rows = None  # (a materializer stopped or failed keeps no more rows)
        try:
            if rows is not None:
                with self._state_transaction() as con:
                    latest = self.latest_rows(con, rows)
                    self._upsert(con, latest)
                log.info(
                    "Table %s: took %s rows the query wrote while reading ahead, none read back",
                    self.name,
                    f"{latest.num_rows:,}",
                )
        finally:
            with self._cond:
                self._ahead_pending -= partitions
                self._cond.notify_all()
            if rows is None:
                self.stop_feeding(partitions)

    def stop_feeding(self, partitions: frozenset[int]) -> None:
        """The query no longer feeds ``partitions`` (it lost them, or stopped): they are read
        again from the topic (see :meth:`_follow`); pull queries wait for that."""
        with self._cond:
            stopped = {p for p in partitions if p in self._fed}
            self._unfed |= stopped
            if stopped:
                self._idle.clear()  # the partitions are to be read again (or on)
            self._cond.notify_all()
        if stopped:
            log.info("Table %s: partition(s) %s no longer fed, read again from the topic", self.name, sorted(stopped))

    def feed(self, con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
        """Upsert rows the query writes to fed partitions, in the query's transaction: columns
        as in the table (by ksqlDB name, hidden ones included) and ``__tomb``, in record order."""
        if rows.num_rows:
            self._upsert(con, self.latest_rows(con, rows))

    def compact(self, con: duckdb.DuckDBPyConnection, rows: pa.Table) -> pa.Table:
        """Rows as :meth:`feed` takes them, cut to the last of each key (see :meth:`latest_rows`)."""
        return self.latest_rows(con, rows).rename_columns([*self.layout.column_names, "__tomb"])

    def latest_rows(self, con: duckdb.DuckDBPyConnection, rows: pa.Table) -> pa.Table:
        """Of rows as :meth:`feed` takes them, the last of each key whose key columns are all
        set, columns by their DuckDB names (and ``__tomb``); ``con`` runs the query that picks
        them where one is needed."""
        layout = self.layout
        names = [*layout.column_names, "__tomb"]
        table = pa.table(
            [rows.column(n) for n in names], names=[duckdb_name(n) for n in layout.column_names] + ["__tomb"]
        )
        if self._one_row_per_key(table):
            # no SQL needed to keep a key's last row (a dedupe query cost ~20 % of feeding a batch)
            stored = [table.column(duckdb_name(c.name)).is_valid() for c in self.source.key_columns]
            mask = functools.reduce(pc.and_, stored) if stored else None
            return table.filter(mask) if mask is not None else table
        table = table.append_column("__seq", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        keys = [quote_column(c.name) for c in self.source.key_columns]
        not_null = " AND ".join(f"{k} IS NOT NULL" for k in keys) or "TRUE"
        pk = ", ".join(quote_column(k) for k in layout.key_names)
        picks = ", ".join(quote_column(n) for n in layout.column_names)
        con.register("__mat_fed", table)
        try:
            latest = con.sql(
                f"SELECT {picks}, __tomb FROM __mat_fed WHERE {not_null} "
                f"QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY __seq DESC) = 1"
            ).to_arrow_table()
        finally:
            con.unregister("__mat_fed")
        return latest

    def _one_row_per_key(self, table: pa.Table) -> bool:
        """Whether fed rows hold one row per key of the table: a single row, or distinct values
        of the primary key (key columns, and a windowed table's bounds) when its columns are
        strings or integers (which Arrow and DuckDB compare alike). An aggregation's batch
        holds one row per key and window, so its rows need no SQL to keep each key's last."""
        if table.num_rows == 1:
            return True
        if not self.source.key_columns:
            return False
        columns = [table.column(duckdb_name(name)) for name in self.layout.key_names]
        if not all(pa.types.is_string(c.type) or pa.types.is_integer(c.type) for c in columns):
            return False
        if len(columns) == 1:
            distinct: int = pc.count_distinct(columns[0], mode="all").as_py()
        else:
            keys = pa.table(columns, names=[f"k{i}" for i in range(len(columns))])
            # On the calling thread: Arrow's thread pool, shared with the decoding thread, made a
            # few batches' grouping of ~1 ms wait 30-130 ms for a free worker.
            distinct = aggregate_by(keys, keys.column_names, []).num_rows
        return distinct == int(table.num_rows)

    def feed_from(self, tx: Transaction, partitions: frozenset[int]) -> frozenset[int]:
        """In the query's transaction, before it produces: the partitions of ``partitions`` it
        may feed this batch. On the embedded store, where transactions run one at a time, a
        partition whose end is not where the last fed transaction left it was written by another
        writer meanwhile (INSERT VALUES into the table, a stream or table declared over its
        topic): it is no longer fed, and read again from the position the last fed transaction
        committed, which covers those records and this batch's."""
        if self.owned is not None or not isinstance(tx, EmbeddedTransaction):
            return partitions
        topic = self.source.topic
        with self._cond:
            written = frozenset(
                p
                for p in partitions
                if p not in self._fed or p in self._unfed or tx.end_offset(topic, p) != self._fed_end.get(p)
            )
        if written:
            self.stop_feeding(written)
        return partitions - written

    def commit_fed(self, tx: Transaction, partitions: frozenset[int]) -> None:
        """After :meth:`feed`, in the same transaction: on the embedded store, where this
        table's read positions are kept with its state, the fed partitions' positions move past
        the records the transaction produced, so that state and positions commit together and a
        restart reads on from there; once it has committed, the partitions' ends are the fed
        ones (see :meth:`feed_from`). (On Kafka the positions are not kept: the state is rebuilt
        from the topic at every start.)"""
        if self.owned is not None or not isinstance(tx, EmbeddedTransaction):
            return
        topic = self.source.topic
        ends = {p: tx.end_offset(topic, p) for p in sorted(partitions)}
        tx.commit_positions(self.group, {TopicPartition(topic, p): end for p, end in ends.items()})

        def fed_up_to() -> None:
            with self._cond:
                for p, end in ends.items():
                    if p in self._fed and p not in self._unfed:
                        self._fed_end[p] = end

        tx.after_commit(fed_up_to)

    # ---------------------------------------------------------------- one batch

    def _drop_short_keys(self, records: pa.Table, short: pa.ChunkedArray, kind: WindowKind) -> pa.Table:
        """Records whose key cannot hold a window go to the processing log, not into the table."""
        bad = records.filter(short)
        self.plog.write(
            f"materialize_{self.name}",
            [
                ProcessingError(
                    type=DESERIALIZATION_ERROR,
                    message=f"Windowed key is shorter than its {kind.value} window suffix",
                    topic=self.source.topic,
                    partition=p,
                    offset=o,
                    target="key",
                    record=k,
                )
                for p, o, k in zip(
                    bad.column("partition").to_pylist(),
                    bad.column("offset").to_pylist(),
                    bad.column("key").to_pylist(),
                    strict=True,
                )
            ],
        )
        return records.filter(pc.invert(short))

    def _apply(self, con: duckdb.DuckDBPyConnection, records: pa.Table, decoder: SourceDecoder) -> None:
        """Upsert one batch: the last record per key wins, tombstones delete."""
        keys = records.column("key")
        window = self.source.window
        extra: dict[str, pa.Array] = {}
        if window is not None:
            kind = _WINDOW_KINDS[window.type]
            short = pc.fill_null(pc.less(pc.binary_length(keys), kind.suffix_size), False)
            if pc.any(short).as_py():
                records = self._drop_short_keys(records, short, kind)
                keys = records.column("key")

        def split(records: pa.Table) -> tuple[pa.Table, pa.Array | pa.ChunkedArray, dict[str, pa.Array]]:
            """The records with their inner keys, those keys, and the window bounds."""
            if window is None:
                return records, records.column("key"), {}
            parts = split_windowed_keys(records.column("key"), kind, size_ms=window.size_ms)
            keyed = records.set_column(records.schema.get_field_index("key"), "key", parts.inner)
            return keyed, parts.inner, {"WINDOWSTART": parts.start, "WINDOWEND": parts.end}

        every = records
        records, keys, extra = split(_last_of_each_key(every))
        decoded = decoder.decode(records)
        if decoded.errors and records.num_rows < every.num_rows:
            # A record that cannot be read leaves its key to an earlier one of the batch: read
            # them all, as when nothing was left out.
            records, keys, extra = split(every)
            decoded = decoder.decode(records)
        self.plog.write(f"materialize_{self.name}", decoded.errors)
        if decoded.table.num_rows == 0:
            return
        meta = pa.table(
            {
                "p": records.column("partition"),
                "o": records.column("offset"),
                "kb": keys,
                "seq": pa.array(range(records.num_rows), pa.int64()),
                **extra,
            }
        )
        layout = self.layout
        s = self.source
        picks = [f"d.{quote_column(c.name)}" for c in s.key_columns]
        if window is not None:
            picks += [f"m.{quote_column(w)}" for w in WINDOW_COLUMNS]
        picks += [f"d.{quote_column(c.name)}" for c in s.value_columns + s.header_columns]
        picks += ['d."ROWTIME"', f"m.p AS {quote_column(PARTITION_COLUMN)}", f"m.kb AS {quote_column(KEY_BYTES_COLUMN)}"]
        not_null = " AND ".join(f"{k} IS NOT NULL" for k in (f"d.{quote_column(c.name)}" for c in s.key_columns)) or "TRUE"
        pk = ", ".join(quote_column(k) for k in layout.key_names)
        # Records with a null key cannot be stored in a table (ksqlDB drops them as well).
        latest_sql = (
            f"SELECT {', '.join(picks)}, d.{quote_column(TOMBSTONE)} AS __tomb "
            "FROM __mat_decoded d JOIN __mat_meta m ON d.\"ROWPARTITION\" = m.p AND d.\"ROWOFFSET\" = m.o "
            f"WHERE {not_null} "
            f"QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY m.seq DESC) = 1"
        )
        con.register("__mat_decoded", to_duckdb(decoded.table))
        con.register("__mat_meta", meta)
        try:
            latest = con.sql(latest_sql).to_arrow_table()
        finally:
            con.unregister("__mat_decoded")
            con.unregister("__mat_meta")
        self._upsert(con, latest)

    def _upsert(self, con: duckdb.DuckDBPyConnection, latest: pa.Table) -> None:
        """Write a batch's last record per key (columns by their DuckDB names, and ``__tomb``):
        tombstones delete, windows past retention are dropped and expire others."""
        if latest.num_rows == 0:
            return
        layout = self.layout
        retention = layout.retention_ms
        advanced = self._advance_stream_time(con, latest) if retention is not None else {}
        keyed = self._has_primary_key(con)
        con.register(CHANGED_ROWS, latest)
        try:
            match = " AND ".join(f"t.{quote_column(k)} = l.{quote_column(k)}" for k in layout.key_names) or "TRUE"
            # With the primary key, INSERT OR REPLACE finds each row's old version in the key's
            # index, at a cost of the batch's size; a DELETE joining the batch scans the whole
            # table (~100 ms a batch at a million rows). Only tombstones are deleted then: a
            # row for an expired window replaces nothing, its window's old row having expired
            # (see _expire) when the stream time passed it.
            if not keyed:
                con.execute(f"DELETE FROM {layout.ref} t USING __mat_latest l WHERE {match}")
            elif pc.any(pc.fill_null(latest.column("__tomb"), True)).as_py():
                con.execute(
                    f"DELETE FROM {layout.ref} t USING (SELECT * FROM __mat_latest WHERE __tomb IS NOT FALSE) l "
                    f"WHERE {match}"
                )
            names = ", ".join(quote_column(n) for n in layout.column_names)
            insert = "INSERT OR REPLACE INTO" if keyed else "INSERT INTO"
            if retention is None:
                con.execute(f"{insert} {layout.ref} ({names}) SELECT {names} FROM __mat_latest WHERE NOT __tomb")
            else:
                # A record for a window already past retention is dropped, as the segmented
                # store drops a put into an expired segment.
                picked = ", ".join(f"l.{quote_column(n)}" for n in layout.column_names)
                seg = quote_column(layout.segment_column)
                con.execute(
                    f"{insert} {layout.ref} ({names}) SELECT {picked} FROM __mat_latest l "
                    f"LEFT JOIN {layout.stream_time_ref} s ON s.part = l.{quote_column(PARTITION_COLUMN)} "
                    f"WHERE NOT l.__tomb AND l.{seg} > coalesce(s.observed, {NO_TIMESTAMP}) - {int(retention)}"
                )
            if self._watchers:
                self._tell_watchers(con, latest)
        finally:
            con.unregister(CHANGED_ROWS)
        for part, observed in advanced.items():
            self._expire(con, part, observed)

    def _has_primary_key(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Whether the table has its primary key: not when a key column is of a type DuckDB
        cannot index (see MatLayout.create_sql), nor in a table kept from before it had one."""
        if self._keyed is None:
            rows = con.execute(
                "SELECT count(*) FROM duckdb_constraints() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ? "
                "AND constraint_type = 'PRIMARY KEY'",
                [SCHEMA, self.name],
            ).fetchall()
            self._keyed = bool(rows[0][0])
        return self._keyed

    def _advance_stream_time(self, con: duckdb.DuckDBPyConnection, latest: pa.Table) -> dict[int, int]:
        """Raise the observed stream time of the batch's partitions to the largest segment
        timestamp put (a tombstone is a put too); the partitions whose time advanced, with it."""
        seg = self.layout.segment_column
        parts = latest.column(PARTITION_COLUMN)
        bounds = pc.min_max(parts)
        if parts.null_count == 0 and bounds["min"].as_py() == bounds["max"].as_py():
            # a batch of one partition (a fed one's always is): its maximum, without a grouping
            maxima = {bounds["min"].as_py(): pc.max(latest.column(seg)).as_py()}
        else:
            # (on the calling thread: see _one_row_per_key)
            grouped = aggregate_by(latest, PARTITION_COLUMN, [(seg, "max")])
            parts_of, maxima_of = grouped.column(PARTITION_COLUMN), grouped.column(f"{seg}_max")
            maxima = dict(zip(parts_of.to_pylist(), maxima_of.to_pylist(), strict=True))
        ref = self.layout.stream_time_ref
        before = dict(con.execute(f"SELECT part, observed FROM {ref}").fetchall())
        advanced = {
            int(p): int(t) for p, t in maxima.items() if t is not None and t > before.get(p, NO_TIMESTAMP)
        }
        # One statement for the partitions that have a row, one for those that have none: an
        # UPDATE costs a third of the INSERT ... ON CONFLICT it replaced (~1 ms against ~3 ms a
        # batch), and executemany costs ~3 ms more even for one row.
        known = {p: t for p, t in advanced.items() if p in before}
        if len(known) == 1:
            [(part, observed)] = known.items()
            con.execute(f"UPDATE {ref} SET observed = ? WHERE part = ?", [observed, part])
        elif known:
            values = ", ".join("(?, ?)" for _ in known)
            con.execute(
                f"UPDATE {ref} SET observed = v.observed FROM (VALUES {values}) v(part, observed) "
                f"WHERE {ref}.part = v.part",
                [v for p, t in known.items() for v in (p, t)],
            )
        fresh = {p: t for p, t in advanced.items() if p not in before}
        if fresh:
            values = ", ".join("(?, ?)" for _ in fresh)
            con.execute(f"INSERT INTO {ref} VALUES {values}", [v for p, t in fresh.items() for v in (p, t)])
        return advanced

    def _expire(self, con: duckdb.DuckDBPyConnection, part: int, observed: int) -> None:
        """Delete partition ``part``'s windows that fell out of retention at stream time ``observed``."""
        retention = self.layout.retention_ms
        assert retention is not None
        self._drop_watchers()
        con.execute(
            f"DELETE FROM {self.layout.ref} WHERE {quote_column(PARTITION_COLUMN)} = ? "
            f"AND {quote_column(self.layout.segment_column)} <= ?",
            [part, observed - retention],
        )



def describe_materialization(engine: object, source: Source) -> str:
    """DESCRIBE EXTENDED's line about a table's materialized state and how pull queries use it."""
    materializers: Mapping[str, Materializer] = getattr(engine, "materializers", {})
    m = materializers.get(source.name)
    if m is None:
        return ""
    store: TopicStore = getattr(engine, "store")  # noqa: B009 - the engine is typed loosely (layering)
    try:
        cursor = store.state_cursor()
        try:
            row = cursor.execute(f"SELECT count(*) FROM {m.layout.ref}").fetchone()
        finally:
            cursor.close()
        rows = f"{row[0] if row else 0} rows"
    except duckdb.Error:
        rows = "not created yet"
    progress = "failed: " + str(m.error) if m.error is not None else ("up to date" if m.caught_up() else "catching up")
    keys = ", ".join(m.layout.key_names)
    return (
        f"materialized: {m.layout.ref} ({rows}, {progress}; key {keys}{_retention_text(m.layout)}); "
        "pull queries: key lookups when WHERE "
        "gives every key column with = or IN, else a table scan in store order; WHERE, projection and LIMIT "
        "in DuckDB; other SELECTs over materialized tables (joins, aggregates, ORDER BY) as DuckDB SQL"
    )


def _retention_text(layout: MatLayout) -> str:
    """How long a windowed table keeps its windows, for DESCRIBE EXTENDED."""
    if not layout.windowed:
        return ""
    if layout.retention_ms is None:
        return "; every window kept (no retention on a windowed source table)"
    return (
        f"; windows retained {layout.retention_ms} ms: a window is kept while its {layout.segment_column} > "
        f"observed stream time - retention (per partition, in {layout.stream_time_ref})"
    )


__all__ = [
    "HIDDEN_COLUMNS",
    "MatLayout",
    "Materializer",
    "describe_materialization",
    "drop_state",
    "ensure_schema",
    "observed_stream_time",
    "stream_time_ref",
    "table_ref",
]
