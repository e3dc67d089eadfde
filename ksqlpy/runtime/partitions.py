"""State follows partitions: a persistent query's local state holds the partitions this server owns.

Servers with the same service id on one Kafka cluster each run every persistent query as one member
of its consumer group, which splits the input's partitions between them (ksqlDB's scale-out). An
aggregation's changelog topics have as many partitions as its input (its repartition topic, for a
GROUP BY that re-keys), and each state change goes to the changelog partition of the input
partition it came from (:mod:`ksqlpy.runtime.changelog`), as a Kafka Streams task logs to its own.
A join's stores, whose rows name no partition, keep one-partition changelogs and are restored
whole (rows of partitions owned elsewhere are never looked up). :class:`PartitionedState` listens
to the group:

* **assigned**: a partition whose local state is behind the group's committed offset (another
  server processed it since, or this one never had it) is restored from its changelog partitions
  alone, before any of its input is read; state that is up to date (a restart of the server that
  owned it) is kept as it is. The local positions say which: they commit with the state.
* **revoked**: no batch is in flight (callbacks run between polls), and a join forgets the
  records it held back; the next assignment drops the state of every partition this server no
  longer owns, with its positions, so a later assignment restores it afresh.
* **standbys** (``ksql.streams.num.standby.replicas`` = n > 0): the changelog partitions of
  this server's standby partitions are tailed between batches into a local copy (the last
  changelog record per key, ``ksqlpy.standby``). When such a partition is assigned, only the
  changelog's tail past the copy is read. Which partitions a server keeps is its
  :data:`StandbyPlacement`'s answer, as Kafka Streams' assignor places at most n standbys per
  partition, at most one per server, never on the active: the cluster's servers all derive the
  same placement from what they share (``server.cluster``: the live hosts running the query and
  each partition's active host), so no coordinator is needed. The placement is asked again every
  :data:`PLACEMENT_INTERVAL` and on every assignment: a partition newly placed here is tailed
  from where its copy stopped (from the start, without one), one no longer placed here has its
  copy dropped. A partition whose active host is not known yet keeps its standing. Without a
  placement (no heartbeats: no peers known) this server keeps a copy of every partition it does
  not own.

A batch whose transaction the group refuses (its partitions moved while it ran) is aborted and
dropped by the query (:class:`~ksqlpy.runtime.store.base.BatchAborted`), so a revoked partition's
uncommitted work counts once, at its new owner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import duckdb
import pyarrow as pa

from ksqlpy.runtime.changelog import TableLog, latest_rows
from ksqlpy.runtime.store.base import TopicPartition, TopicReader, TopicStore

log = logging.getLogger("ksqlpy.partitions")

_STANDBY_DDL = """
CREATE SCHEMA IF NOT EXISTS ksqlpy;
CREATE TABLE IF NOT EXISTS ksqlpy.standby (
    topic VARCHAR, partition INTEGER, key BLOB, "offset" BIGINT, value BLOB,
    headers STRUCT("key" VARCHAR, "value" BLOB)[],
    PRIMARY KEY (topic, partition, key)
);
CREATE TABLE IF NOT EXISTS ksqlpy.standby_positions (
    topic VARCHAR, partition INTEGER, next_offset BIGINT, PRIMARY KEY (topic, partition)
);
"""

#: changelog records a standby applies per call, so that a batch of input is not held up long
_STANDBY_BATCH = 20_000
#: how often (seconds) a query asks its placement again between assignments: membership and
#: the other servers' assignments are announced every ``ksql.heartbeat.discover.interval.ms``
PLACEMENT_INTERVAL = 0.5

#: Where a query's standbys go: ``(query id, its partition count, the partitions this server
#: owns)`` -> for each partition whose active host is known, whether this server keeps a standby
#: copy of it; None when the cluster's membership is not known.
StandbyPlacement = Callable[[str, int, frozenset[int]], Mapping[int, bool] | None]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PartitionedState:
    """Keeps one query's logged state to the partitions of its input its reader owns."""

    def __init__(
        self,
        store: TopicStore,
        *,
        group: str,
        query_id: str,
        topics: Sequence[str],
        logs: Sequence[TableLog],
        co_partitioned: bool = True,
        placement: StandbyPlacement | None = None,
    ) -> None:
        """``topics``: the query's co-partitioned inputs (partition p of each makes task p); a
        state row's partition is one of the first's. ``co_partitioned``: whether a state row's
        partition is the input partition its records came from. When not (an aggregation
        grouping by other than the key without a repartition topic), any input partition may
        change any row, so a restore restores them all. ``placement``: which partitions this
        server keeps standby copies of (see the module docstring)."""
        self.store = store
        self.co_partitioned = co_partitioned
        self.group = group
        self.query_id = query_id
        self.topics = tuple(topics)
        self.topic = self.topics[0]
        self.logs = tuple(logs)
        self.standby = store.standby_replicas > 0
        self.placement = placement
        self._owned: set[int] | None = None
        #: the partitions this server keeps standby copies of now (never one it owns)
        self.standbys: frozenset[int] = frozenset()
        self._placed_at = 0.0
        self._partition_count: int | None = None
        self._standby_reader: _StandbyReader | None = None
        if self.standby:
            cursor = store.state_cursor()
            try:
                cursor.execute(_STANDBY_DDL)
            finally:
                cursor.close()

    # -- the group's decisions ---------------------------------------------------------------------

    def partitions_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        owned = {tp.partition for tp in partitions if tp.topic in self.topics}
        local = self.store.state_positions(self.group)
        held = {tp.partition for tp in local if tp.topic in self.topics}
        gone = sorted(held - owned)
        if gone:
            self._drop(gone)
        committed = {
            TopicPartition(t, p): o
            for t in (self.topics if owned else ())
            for p, o in self.store.committed(self.group, t).items()
        }
        behind = []
        for p in sorted(owned):
            mine = {tp: o for tp, o in committed.items() if tp.partition == p}
            # nothing committed: nothing to restore; local positions as far as the group's
            # commits: this server's state is up to date (it owned the partition last)
            if any(local.get(tp, -1) < o for tp, o in mine.items()):
                behind.append(p)
        if behind and not self.co_partitioned:
            behind = sorted({tp.partition for tp in committed if tp.partition in owned})
        if behind:
            split = [c for c in self.logs if _split(c)]
            whole = [c for c in self.logs if not _split(c)]
            at = {p: {tp: o for tp, o in committed.items() if tp.partition == p} for p in behind}
            if whole:
                # Stores whose rows name no partition are one changelog partition, read whole:
                # rows of partitions owned elsewhere are kept too (never looked up here).
                every = {tp: o for p in behind for tp, o in at[p].items()}
                self._restore_whole(whole, {} if split else every)
            if split:
                for p in behind:
                    self._restore(split, p, at[p])
        self._owned = owned
        if self.standby:
            self._place_standbys(force=True)

    def partitions_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        # State is dropped at the next assignment, if that does not give the partitions back
        # (an eager rebalance revokes everything first).
        if self.on_revoke is not None:
            self.on_revoke(partitions)

    #: told when partitions are revoked (a join forgets the records it holds back)
    on_revoke: Callable[[Sequence[TopicPartition]], None] | None = None

    # -- drop and restore --------------------------------------------------------------------------

    def _drop(self, partitions: Sequence[int]) -> None:
        listed = ", ".join(str(p) for p in partitions)

        def rebuild(con: duckdb.DuckDBPyConnection) -> None:
            for changes in self.logs:
                column = changes.table.partition
                if _split(changes) and column is not None:
                    con.execute(f"DELETE FROM {changes.table.table} WHERE {_q(column)} IN ({listed})")

        forget = [TopicPartition(t, p) for t in self.topics for p in partitions]
        self.store.restore_state(self.group, {}, rebuild, forget=forget)
        dropped = ": their local state is dropped" if any(_split(c) for c in self.logs) else ""
        log.info("Query %s no longer owns partition(s) %s%s.", self.query_id, listed, dropped)

    def _restore_whole(self, logs: Sequence[TableLog], positions: dict[TopicPartition, int]) -> None:
        started = time.monotonic()
        contents: dict[str, pa.Table] = {}
        read = 0
        for changes in logs:
            records = self._records(changes.table.topic, 0, 0)
            read += 0 if records is None else records.num_rows
            contents[changes.table.table] = _rows(records, changes)
        self.store.restore_state(self.group, positions, lambda con: _replace(con, logs, contents, None))
        log.info(
            "Restored %s changelog records of query %s's %d store(s) without partitions in %.1f s.",
            f"{read:,}",
            self.query_id,
            len(logs),
            time.monotonic() - started,
        )

    def _restore(self, logs: Sequence[TableLog], partition: int, positions: dict[TopicPartition, int]) -> None:
        started = time.monotonic()
        warm = self._warm_positions(partition)
        contents: dict[str, pa.Table] = {}
        read = held = 0
        for changes in logs:
            topic = changes.table.topic
            start = warm.get(topic, 0) if warm is not None else 0
            records = self._records(topic, partition, start)
            read += 0 if records is None else records.num_rows
            last = None if records is None or records.num_rows == 0 else records.column("offset")[-1].as_py()
            held += start if last is None else int(last) + 1
            if warm is not None:
                kept = self._standby_records(topic, partition)
                records = kept if records is None else pa.concat_tables([kept, records.cast(kept.schema)])
            contents[changes.table.table] = _rows(records, changes)

        def rebuild(con: duckdb.DuckDBPyConnection) -> None:
            _replace(con, logs, contents, partition)
            if warm is not None:
                topics = [c.table.topic for c in logs]
                for name in ("standby", "standby_positions"):
                    con.execute(
                        f"DELETE FROM ksqlpy.{name} WHERE partition = ? AND list_contains(?, topic)",
                        [partition, topics],
                    )

        self.store.restore_state(self.group, positions, rebuild)
        log.info(
            "Restored %s of %s changelog records for partition %d of query %s%s in %.1f s.",
            f"{read:,}",
            f"{held:,}",
            partition,
            self.query_id,
            " (standby copy was warm)" if warm is not None else "",
            time.monotonic() - started,
        )

    def _records(self, topic: str, partition: int, start: int) -> pa.Table | None:
        """The changelog partition's records from ``start`` (offset, key, value, headers)."""
        batches = [b.select(["offset", "key", "value", "headers"]) for b in self._read(topic, partition, start)]
        return pa.concat_tables(batches) if batches else None

    def _read(self, topic: str, partition: int, start: int) -> list[pa.Table]:
        # (the query created its changelog topics before it started reading)
        return list(self.store.read_partition(topic, partition, start))

    # -- standby copies ----------------------------------------------------------------------------

    def _warm_positions(self, partition: int) -> dict[str, int] | None:
        """How far this server's standby copy of ``partition`` has read each changelog, when it
        keeps one for all of them."""
        if not self.standby:
            return None
        cursor = self.store.state_cursor()
        try:
            rows = cursor.execute(
                "SELECT topic, next_offset FROM ksqlpy.standby_positions WHERE partition = ?", [partition]
            ).fetchall()
        finally:
            cursor.close()
        found = {str(t): int(o) for t, o in rows}
        topics = [c.table.topic for c in self.logs if _split(c)]
        return found if topics and all(t in found for t in topics) else None

    def _standby_records(self, topic: str, partition: int) -> pa.Table:
        cursor = self.store.state_cursor()
        try:
            return cursor.execute(
                'SELECT "offset", key, value, headers FROM ksqlpy.standby WHERE topic = ? AND partition = ? '
                'ORDER BY "offset"',
                [topic, partition],
            ).to_arrow_table()
        finally:
            cursor.close()

    def _place_standbys(self, *, force: bool = False) -> None:
        """Tail the changelogs of the partitions placed here, and drop the copies of those no
        longer placed here; unless ``force``, at most every :data:`PLACEMENT_INTERVAL`."""
        now = time.monotonic()
        if self._owned is None or (not force and now - self._placed_at < PLACEMENT_INTERVAL):
            return
        self._placed_at = now
        topics = [c.table.topic for c in self.logs if _split(c)]
        if self._partition_count is None:  # an input's partitions never change under a query
            spec = self.store.describe_topic(self.topic)
            self._partition_count = spec.partitions if spec is not None else None
        count = self._partition_count
        if count is None:
            return
        owned = frozenset(self._owned)
        others = frozenset(range(count)) - owned
        decided = self.placement(self.query_id, count, owned) if self.placement is not None else None
        if decided is None:
            wanted = others
        else:
            wanted = frozenset(p for p in others if decided.get(p, p in self.standbys))
        # (stores whose changelogs are not split by partition are whole here: no copy to tail,
        # but the partitions placed here are still this server's standbys, whose rows its
        # materialization of the query's sink holds)
        if wanted == self.standbys and (self._standby_reader is not None or not topics):
            return
        dropped = sorted(self.standbys - wanted - owned)
        if dropped and topics:
            self._drop_copies(topics, dropped)
        gained = sorted(wanted - self.standbys)
        if dropped or gained:
            log.info(
                "Query %s keeps standby copies of partition(s) %s%s.",
                self.query_id,
                sorted(wanted) or "none",
                f" (dropped {dropped})" if dropped else "",
            )
        self.standbys = wanted
        if not topics:
            return
        if self._standby_reader is None:
            self._standby_reader = _StandbyReader(self.store)
        self._standby_reader.follow([TopicPartition(t, p) for t in topics for p in sorted(wanted)])

    def _drop_copies(self, topics: list[str], partitions: list[int]) -> None:
        """Forget the standby copies of ``partitions`` (of this query's changelogs)."""
        cursor = self.store.state_cursor()
        try:
            for name in ("standby", "standby_positions"):
                cursor.execute(
                    f"DELETE FROM ksqlpy.{name} WHERE list_contains(?, partition) AND list_contains(?, topic)",
                    [partitions, topics],
                )
        finally:
            cursor.close()

    def keep_warm(self) -> int:
        """Follow the placement, and apply what the changelogs of the partitions placed here
        gained (between batches, on the query's thread); returns the records applied."""
        if self.standby:
            self._place_standbys()
        if self._standby_reader is None:
            return 0
        return int(self._standby_reader.apply())

    def close(self) -> None:
        if self._standby_reader is not None:
            self._standby_reader.close()
            self._standby_reader = None


def _split(changes: TableLog) -> bool:
    """Whether a store's changelog is split by partition (its rows name theirs)."""
    return changes.table.partition is not None and changes.partitions > 1


def _rows(records: pa.Table | None, changes: TableLog) -> pa.Table:
    return changes.shape.schema.empty_table() if records is None else latest_rows(records, changes.shape)


def _replace(
    con: duckdb.DuckDBPyConnection,
    logs: Sequence[TableLog],
    contents: dict[str, pa.Table],
    partition: int | None,
) -> None:
    """Put the restored rows in place of the stores' rows (of ``partition``, or all)."""
    for changes in logs:
        table = changes.table
        column = table.partition
        where = "TRUE" if partition is None or column is None else f"{_q(column)} = {partition}"
        con.execute(f"DELETE FROM {table.table} WHERE {where}")
        rows = contents[table.table]
        if rows.num_rows:
            con.register("__restored", rows)
            try:
                con.execute(f"INSERT INTO {table.table} SELECT * FROM __restored")
            finally:
                con.unregister("__restored")


class _StandbyReader:
    """Tails changelog partitions into ``ksqlpy.standby``: the last record per key."""

    def __init__(self, store: TopicStore) -> None:
        self.store = store
        self._reader: TopicReader | None = None
        self._partitions: list[TopicPartition] = []

    def follow(self, partitions: list[TopicPartition]) -> None:
        cursor = self.store.state_cursor()
        try:
            known = {
                TopicPartition(str(t), int(p)): int(o)
                for t, p, o in cursor.execute(
                    "SELECT topic, partition, next_offset FROM ksqlpy.standby_positions"
                ).fetchall()
            }
        finally:
            cursor.close()
        self.close()
        self._partitions = partitions
        if partitions:
            starts = {tp: known.get(tp, 0) for tp in partitions}
            self._reader = self.store.open_partition_reader(starts)

    def apply(self) -> int:
        reader = self._reader
        if reader is None:
            return 0
        batch = reader.poll(_STANDBY_BATCH, timeout=0)
        if batch.num_rows == 0:
            return 0
        records = batch.select(["topic", "partition", "offset", "key", "value", "headers"])
        cursor = self.store.state_cursor()
        try:
            cursor.execute("BEGIN TRANSACTION")
            cursor.register("__tail", records)
            last = (
                "SELECT * FROM __tail QUALIFY row_number() OVER "
                '(PARTITION BY topic, partition, key ORDER BY "offset" DESC) = 1'
            )
            cursor.execute(
                f"DELETE FROM ksqlpy.standby s USING ({last}) t "
                "WHERE s.topic = t.topic AND s.partition = t.partition AND s.key = t.key"
            )
            cursor.execute(
                f'INSERT INTO ksqlpy.standby SELECT topic, partition, key, "offset", value, headers '
                f"FROM ({last}) WHERE value IS NOT NULL"
            )
            cursor.execute(
                "INSERT OR REPLACE INTO ksqlpy.standby_positions "
                'SELECT topic, partition, max("offset") + 1 FROM __tail GROUP BY topic, partition'
            )
            cursor.unregister("__tail")
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()
        return int(records.num_rows)

    def close(self) -> None:
        reader = self._reader
        self._reader = None
        if reader is not None:
            reader.close()


__all__ = ["PLACEMENT_INTERVAL", "PartitionedState", "StandbyPlacement"]
