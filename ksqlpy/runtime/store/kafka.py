"""The Kafka topic store: topics on a real Kafka cluster through confluent-kafka (librdkafka).

* Topics are managed with the AdminClient.
* :meth:`KafkaStore.produce` picks partitions itself with Kafka's default partitioner (the same
  vectorized murmur2 as the embedded store, so both place keys where Java clients and ksqlDB do),
  then waits until every record is acknowledged (``acks=all``).
* Readers are Consumers with ``enable.auto.commit=false``. A reader with a group subscribes, so
  several servers share a query's partitions through the group; a reader without one assigns itself
  every partition. Positions are committed only by :meth:`KafkaReader.commit` or a transaction.
* :meth:`KafkaStore.transaction` is a Kafka transaction (``transactional.id``,
  ``send_offsets_to_transaction``) when the store was opened with ``exactly_once=True``; readers then
  read committed records only, and once idle commit as the member any positions a transaction
  committed that the group does not show (a broker may hold them back behind another producer's
  open transaction, see :meth:`KafkaReader._confirm_commits`). Otherwise it is at-least-once: on
  exit the records are flushed and acknowledged first, and only then are the positions committed,
  so a crash in between replays input rather than losing output; an exception skips the position
  commit, but records already sent stay in the log.
* A group reader asked to :meth:`~KafkaReader.read_ahead` reads while its consumer joins the group
  (a join takes seconds): a group-less consumer from the group's committed positions, its batches
  in one open transaction on a producer of its own, committed or aborted as a whole when the
  assignment arrives (:class:`_ReadAhead`). The batches' state changes go into its open state
  transaction, committed with the positions reached before the assignment's listener looks at the
  state, or rolled back; a query with state reads ahead on its first start only (``fresh_state``).
  Each read-ahead batch has a transaction context of its own (:meth:`KafkaReader.ahead_transaction`),
  so a stateless query sends batch N's outputs while it prepares N+1, as it does after the
  assignment; the positions committed at the assignment are those of the batches sent by then.

Settings for a local test broker live in ``client_config`` (see /work/shared/KAFKA-NOTES.md): readers
default to ``fetch.queue.backoff.ms=10`` so a consumer that keeps up is never paused for a second, and
prefetch about one micro-batch (``queued.min.messages``, ``queued.max.messages.kbytes``).
"""

from __future__ import annotations

import itertools
import logging
import operator
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, unlisted in __all__
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewTopic,
)

from ksqlpy.errors import TopicError
from ksqlpy.runtime.store import _records
from ksqlpy.runtime.store.base import (
    RECORD_SCHEMA,
    BatchAborted,
    StartPosition,
    TopicPartition,
    TopicReader,
    TopicSpec,
    TopicStore,
    Transaction,
    TransactionContext,
)

#: Settings only consumers understand (librdkafka warns when other clients get them).
_CONSUMER_ONLY = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "fetch.",
    "auto.offset.reset",
    "enable.auto.",
    "isolation.level",
    "group.",
    "max.poll.interval.ms",
    "queued.",
    "partition.assignment.strategy",
    "auto.commit.",
    "enable.partition.eof",
    "check.crcs",
)
#: Settings only producers understand.
_PRODUCER_ONLY = (
    "linger.ms",
    "acks",
    "batch.",
    "queue.buffering.",
    "compression.",
    "enable.idempotence",
    "transactional.id",
    "transaction.timeout.ms",
    "partitioner",
    "message.timeout.ms",
    "request.required.acks",
    "retries",
    "delivery.timeout.ms",
    "sticky.",
)
#: Topic configs reported by describe_topic even when they hold the broker's default.
_REPORTED_CONFIGS = frozenset({"cleanup.policy", "retention.ms", "retention.bytes", "delete.retention.ms"})
#: Commit errors meaning the member's partitions moved (a rebalance) or it left the group.
_MOVED = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError._ASSIGNMENT_LOST,
    }
)
log = logging.getLogger("ksqlpy.store.kafka")
_client_log = logging.getLogger("ksqlpy.store.kafka.client")
_TIMEOUT = 30.0
#: Records and KiB a consumer prefetches (librdkafka's ``queued.min.messages`` and
#: ``queued.max.messages.kbytes``) unless the settings say otherwise: one stateless micro-batch,
#: fetched while the previous one is processed. A queued record costs far more than its bytes
#: (librdkafka's ~300-byte op per message, the fetch buffers its messages pin, and the heap they
#: fragment between a query's batches): two micro-batches (40,000 records) put a server's peak
#: ~15 MiB higher on a 1 M-record Q1 over Kafka (~297 vs ~281 MiB) and Q2 (~390 vs ~375 MiB).
_PREFETCH_RECORDS = 20_000
_PREFETCH_KBYTES = 8_192
#: Longest an empty poll waits to learn a group's committed offsets (see KafkaReader._confirm_commits).
_CONFIRM_TIMEOUT = 5.0
#: Longest a query reads ahead of its group's first assignment: its open transaction must end
#: well within the producer's ``transaction.timeout.ms`` (60 s by default); past this it waits.
_AHEAD_SECONDS = 30.0
#: Output rows a read-ahead holds while its transactional producer starts (~0.5 s on the test
#: broker): the batches are processed meanwhile rather than after; past this a batch waits.
_AHEAD_HELD_ROWS = 200_000
#: Records a poll turns into Arrow at a time, and a produce turns into the client's Python
#: objects at a time. The client hands out a Message object per record, with its key and value
#: as bytes objects (~400 bytes of Python objects for a ~100-byte JSON record), and takes the
#: same bytes objects for each record produced: converted a slice at a time, a 50,000-record
#: batch keeps one slice's objects alive rather than ~20 MiB of them, for ~10 more (cheap)
#: conversions per batch.
_CONVERT_RECORDS = 5_000


ClientConfig = dict[str, str | int | float | bool]

#: Settings of the producers that write records (not the command topic's, which reads each
#: command's offset from its delivery report): only failed deliveries are reported, so a
#: record costs no Python callback nor Message object once it is acknowledged. (The client
#: frees each record's delivery state all the same.)
_RECORD_PRODUCER: dict[str, Any] = {"delivery.report.only.error": True}


def _only(config: Mapping[str, str | int | float | bool], excluded: tuple[str, ...]) -> ClientConfig:
    return {k: v for k, v in config.items() if not k.startswith(excluded)}


def _abort_transaction(producer: Producer) -> None:
    """End ``producer``'s open transaction, discarding what it wrote."""
    producer.abort_transaction(_TIMEOUT)


def init_transactions(producer: Producer, timeout: float = _TIMEOUT) -> None:
    """``producer.init_transactions`` once the client knows the cluster's brokers: asked before
    its first metadata answer, librdkafka finds no broker for the producer id and tries again only
    ~0.5 s later (a quarter of the starts on a local broker); a metadata request first costs
    one round trip."""
    try:
        producer.list_topics(timeout=min(timeout, 5.0))
    except KafkaException:
        pass  # init_transactions says what is wrong, in its own words
    producer.init_transactions(timeout)


def transactions_unsupported(error: KafkaError) -> bool:
    """Whether ``error`` (from ``init_transactions``) means the cluster has no transactions, as
    opposed to being unreachable or refusing this client."""
    return error.code() in (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION)


def _kafka_error(exc: KafkaException) -> KafkaError:
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else KafkaError(KafkaError._FAIL)


class KafkaStore(TopicStore):
    """Topics on a Kafka cluster. ``client_config`` adds librdkafka settings to every client."""

    kind = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        exactly_once: bool = False,
        client_config: Mapping[str, str] | None = None,
        transactional_id: str | None = None,
        state_path: str = ":memory:",
        state_memory_limit: str | None = None,
        standby_replicas: int = 0,
    ) -> None:
        #: Local DuckDB database for state (aggregates, materialized tables); Kafka holds records.
        #: A state file that did not exist before is rebuilt (see :class:`KafkaReader`).
        self.state_is_fresh = state_path != ":memory:" and not Path(state_path).exists()
        try:
            self.state_database = duckdb.connect(
                state_path, config={} if state_memory_limit is None else {"memory_limit": state_memory_limit}
            )
        except duckdb.Error as e:
            raise TopicError(
                f"Cannot open the state database {state_path} (memory limit {state_memory_limit}, "
                f"ksqlpy.state.memory.limit): {e}"
            ) from e
        self.state_database.execute(_POSITIONS_DDL)
        #: group -> partitions being replayed into state, with the Kafka-committed offset the
        #: replay ends at (outputs up to there were committed before and are not produced again)
        self._replay: dict[str, dict[TopicPartition, int]] = {}
        #: group -> whether its reader's last batch was a replay batch
        self._replay_batch: dict[str, bool] = {}
        #: group -> positions its transactions committed that its group may not show yet (see
        #: KafkaReader._confirm_commits)
        self._unconfirmed: dict[str, dict[TopicPartition, int]] = {}
        config = {
            "bootstrap.servers": bootstrap_servers,
            # librdkafka keeps latency histograms for client-metrics push (KIP-714) on every
            # connection of every client, pushed or not: ~0.4 MiB per client, of which a server
            # has a dozen (command topic, queries, read-aheads, admin). kafka.enable.metrics.push
            # turns it back on.
            "enable.metrics.push": "false",
            **(client_config or {}),
        }
        self._exactly_once = exactly_once
        self.standby_replicas = standby_replicas
        self._transactional_id = (
            transactional_id or config.pop("transactional.id", None) or (f"ksqlpy-{uuid.uuid4()}")
        )
        self._common: dict[str, Any] = _only(_only(config, _CONSUMER_ONLY), _PRODUCER_ONLY)
        self._consumer_config: dict[str, Any] = {
            "fetch.queue.backoff.ms": "10",
            # librdkafka prefetches up to 100,000 records / 64 MiB per consumer by default; a
            # query takes at most a micro-batch at a time, so a batch's worth keeps it busy
            # without holding tens of MiB per query (peak memory of a 1 M-record query: -60 MiB).
            "queued.min.messages": str(_PREFETCH_RECORDS),
            "queued.max.messages.kbytes": str(_PREFETCH_KBYTES),
            **_only(config, _PRODUCER_ONLY),
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "isolation.level": "read_committed" if exactly_once else "read_uncommitted",
        }
        self._producer_config: dict[str, Any] = {
            # ksqlpy creates every topic it writes with its partitions and configs; a producer
            # that still knows a deleted topic must not bring it back with the broker's defaults
            # when it refreshes its metadata (librdkafka's producers allow that by default).
            "allow.auto.create.topics": "false",
            "linger.ms": "5",
            "acks": "all",
            **_only(config, _CONSUMER_ONLY),
            "partitioner": "murmur2_random",
        }
        # librdkafka's own messages (a broker that went away, a retried connection) go through
        # Python logging like the server's, not straight to stderr.
        clients: tuple[dict[str, Any], ...] = (self._common, self._consumer_config, self._producer_config)
        for client in clients:
            client["logger"] = _client_log
        self._admin = AdminClient(self._common)
        self._producer = Producer({**self._producer_config, **_RECORD_PRODUCER})
        self._tx_producer: Producer | None = None
        self._tx_lock = threading.Lock()
        self._lock = threading.Lock()
        self._partition_counts: dict[str, int] = {}
        self._null_counters: dict[str, int] = {}
        self._group_consumers: dict[str, list[Consumer]] = {}  # readers' consumers, by group
        self._helpers: dict[str, Consumer] = {}  # non-member consumers for metadata and commits
        self._tx_error: BaseException | None = None
        self._tx_starter: threading.Thread | None = None
        if exactly_once:
            # init_transactions takes broker round trips (~0.5 s on a local broker): the server
            # listens meanwhile; whatever needs to know the outcome waits in ready().
            self._tx_starter = threading.Thread(
                target=self._start_transactions_in_background, name="ksqlpy-kafka-transactions", daemon=True
            )
            self._tx_starter.start()

    def ready(self) -> None:
        """Wait until transactions are set up (or known to be unsupported); raise what failed."""
        starter = self._tx_starter
        if starter is not None:
            starter.join()
        if self._tx_error is not None:
            raise self._tx_error

    @property
    def exactly_once(self) -> bool:
        """Whether transactions hold (False on a cluster without them, once that is known)."""
        self.ready()
        return self._exactly_once

    def _start_transactions_in_background(self) -> None:
        try:
            self._start_transactions()
        except BaseException as e:  # noqa: BLE001 - raised by ready() on the threads that wait
            self._tx_error = e

    def client_settings(self, kind: str) -> dict[str, Any]:
        """A copy of the librdkafka settings this store gives its ``"consumer"`` or ``"producer"``
        clients, for clients of its own kind elsewhere (the command topic's)."""
        return dict(self._consumer_config if kind == "consumer" else self._producer_config)

    def _start_transactions(self) -> None:
        """Set up the transactional producer before anything runs, so a cluster without
        transactions is known first: processing is then at-least-once, and the log says so."""
        try:
            self._transactional_producer()
        except KafkaException as exc:
            error = _kafka_error(exc)
            if not transactions_unsupported(error):
                raise TopicError(f"Could not start Kafka transactions: {error.str()}") from exc
            log.warning(
                "The Kafka cluster does not support transactions (%s): processing.guarantee=exactly_once_v2 "
                "cannot hold, processing is at-least-once.",
                error.str(),
            )
            self._exactly_once = False
            self._consumer_config["isolation.level"] = "read_uncommitted"

    # -- topics ------------------------------------------------------------------------------------

    def create_topic(self, spec: TopicSpec, *, exist_ok: bool = False) -> None:
        topic = NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=spec.replicas,
            config={str(k): str(v) for k, v in spec.config.items()},
        )
        try:
            self._admin.create_topics([topic], operation_timeout=_TIMEOUT)[spec.name].result()
        except KafkaException as exc:
            error = _kafka_error(exc)
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                if exist_ok:
                    return
                raise TopicError(f"Topic '{spec.name}' already exists.") from exc
            raise TopicError(f"Could not create topic '{spec.name}': {error.str()}") from exc
        self._partition_counts[spec.name] = spec.partitions

    def delete_topic(self, name: str) -> None:
        try:
            self._admin.delete_topics([name], operation_timeout=_TIMEOUT)[name].result()
        except KafkaException as exc:
            error = _kafka_error(exc)
            if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise TopicError(f"Kafka topic does not exist: {name}") from exc
            raise TopicError(f"Could not delete topic '{name}': {error.str()}") from exc
        self._partition_counts.pop(name, None)

    def _metadata_topics(self) -> dict[str, Any]:
        try:
            return dict(self._admin.list_topics(timeout=_TIMEOUT).topics)
        except KafkaException as exc:
            raise TopicError(f"Could not list topics: {_kafka_error(exc).str()}") from exc

    def _configs(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """Explicitly set topic configs (plus the few in :data:`_REPORTED_CONFIGS`) per topic."""
        if not names:
            return {}
        futures = self._admin.describe_configs([ConfigResource("TOPIC", n) for n in names])
        configs: dict[str, dict[str, str]] = {}
        for resource, future in futures.items():
            try:
                entries = future.result()
            except KafkaException:
                configs[resource.name] = {}
                continue
            configs[resource.name] = {
                k: e.value
                for k, e in entries.items()
                if e.value is not None
                and (e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value or k in _REPORTED_CONFIGS)
            }
        return configs

    def _spec(self, name: str, meta: Any, config: Mapping[str, str]) -> TopicSpec:
        partitions = meta.partitions
        replicas = len(partitions[0].replicas) if partitions else 0
        self._partition_counts[name] = len(partitions)
        return TopicSpec(name=name, partitions=len(partitions), replicas=replicas, config=dict(config))

    def describe_topic(self, name: str) -> TopicSpec | None:
        meta = self._metadata_topics().get(name)
        if meta is None or meta.error is not None:
            return None
        return self._spec(name, meta, self._configs([name]).get(name, {}))

    def list_topics(self) -> list[TopicSpec]:
        topics = {n: m for n, m in self._metadata_topics().items() if m.error is None}
        configs = self._configs(sorted(topics))
        return [self._spec(n, topics[n], configs.get(n, {})) for n in sorted(topics)]

    def _partitions(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            meta = self._metadata_topics().get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise TopicError(f"Kafka topic does not exist: {topic}")
            count = self._partition_counts[topic] = len(meta.partitions)
        return count

    # -- records -----------------------------------------------------------------------------------

    def _send(self, producer: Producer, topic: str, records: pa.Table, errors: list[KafkaError]) -> None:
        """Hand ``records`` to ``producer``; delivery failures land in ``errors``.

        The client takes each record as Python objects (its key and value as bytes, ~300 bytes
        of objects for a ~100-byte JSON record): they are made a slice at a time (see
        :data:`_CONVERT_RECORDS`), so a batch of 50,000 results keeps one slice's objects alive
        rather than ~15 MiB of them."""
        if records.num_rows == 0:
            return
        count = self._partitions(topic)
        with self._lock:
            start = self._null_counters.get(topic, 0)
            self._null_counters[topic] = start + records.num_rows
        null_keys = 0  # records without a key in the slices sent so far (round-robin's count)
        for offset in range(0, records.num_rows, _CONVERT_RECORDS):
            batch = _records.normalize(records.slice(offset, _CONVERT_RECORDS))
            partitions = _records.choose_partitions(batch, count, start + null_keys).tolist()
            self._send_slice(producer, topic, batch, partitions, errors)
            null_keys += batch.column("key").null_count
        producer.poll(0)

    @staticmethod
    def _send_slice(
        producer: Producer, topic: str, batch: pa.Table, partitions: list[int], errors: list[KafkaError]
    ) -> None:
        """Hand the normalized records of ``batch`` to ``producer``, each to its partition."""

        def delivered(error: KafkaError | None, _message: Message) -> None:
            # The store's producers report failed deliveries only (delivery.report.only.error):
            # a successful record costs no callback, nor a Message object.
            if error is not None:
                errors.append(error)

        header_column = batch.column("headers")
        headers: Iterable[list[tuple[str, str | bytes | None]] | None]
        if header_column.null_count == batch.num_rows:
            headers = itertools.repeat(None, batch.num_rows)
        else:
            headers = [
                [(h["key"], h["value"]) for h in record] if record else None
                for record in header_column.to_pylist()
            ]
        records_in_order = zip(
            batch.column("value").to_pylist(),
            batch.column("key").to_pylist(),
            partitions,
            batch.column("timestamp").to_pylist(),
            headers,
            strict=True,
        )
        send = producer.produce
        for value, key, partition, timestamp, kafka_headers in records_in_order:
            # Positional arguments (topic, value, key, partition, callback, on_delivery, timestamp,
            # headers): the client parses keywords per call, a cost paid per record.
            try:
                send(topic, value, key, partition, delivered, None, timestamp, kafka_headers)
            except BufferError:
                while True:
                    producer.poll(0.05)  # the local queue is full: let deliveries drain it
                    try:
                        send(topic, value, key, partition, delivered, None, timestamp, kafka_headers)
                        break
                    except BufferError:
                        continue

    @staticmethod
    def _await(producer: Producer, errors: list[KafkaError], topic: str) -> None:
        remaining = producer.flush(_TIMEOUT)
        if remaining:
            raise TopicError(f"Timed out waiting for {remaining} record(s) to be acknowledged")
        if errors:
            raise TopicError(f"Could not produce to topic '{topic}': {errors[0].str()}")

    def produce(self, topic: str, records: pa.Table) -> None:
        errors: list[KafkaError] = []
        self._send(self._producer, topic, records, errors)
        self._await(self._producer, errors, topic)

    def open_reader(
        self,
        topics: Sequence[str],
        *,
        group: str | None = None,
        start: StartPosition = "earliest",
    ) -> KafkaReader:
        self.ready()  # the isolation level follows whether transactions hold
        return KafkaReader(self, tuple(topics), group, start)

    def open_partition_reader(self, starts: Mapping[TopicPartition, int]) -> KafkaReader:
        return KafkaReader(self, tuple(sorted({tp.topic for tp in starts})), None, "earliest", starts)

    def _helper(self, group: str) -> Consumer:
        """A consumer that never joins ``group``: for committed offsets, watermarks, group metadata."""
        self.ready()
        with self._lock:
            helper = self._helpers.get(group)
            if helper is None:
                helper = self._helpers[group] = Consumer({**self._consumer_config, "group.id": group})
            return helper

    def _member(self, group: str) -> Consumer:
        """An open reader's consumer in ``group`` (commits from a member are accepted while the
        group is active), else a non-member helper."""
        with self._lock:
            members = self._group_consumers.get(group)
            if members:
                return members[0]
        return self._helper(group)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        asked = [KafkaTopicPartition(topic, p) for p in range(self._partitions(topic))]
        try:
            answer = self._helper(group).committed(asked, timeout=_TIMEOUT)
        except KafkaException as exc:
            raise TopicError(f"Could not read committed offsets: {_kafka_error(exc).str()}") from exc
        return {tp.partition: tp.offset for tp in answer if tp.offset >= 0}

    def end_offsets(self, topic: str) -> dict[int, int]:
        helper = self._helper("ksqlpy-metadata")
        return {
            p: helper.get_watermark_offsets(KafkaTopicPartition(topic, p), timeout=_TIMEOUT)[1]
            for p in range(self._partitions(topic))
        }

    def _commit(self, group: str, positions: Mapping[TopicPartition, int]) -> None:
        self._commit_with(self._member(group), group, positions)

    @staticmethod
    def _commit_with(consumer: Consumer, group: str, positions: Mapping[TopicPartition, int]) -> None:
        offsets = [KafkaTopicPartition(tp.topic, tp.partition, o) for tp, o in positions.items()]
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if _kafka_error(exc).code() in _MOVED:
                raise BatchAborted(
                    f"Positions of group '{group}' not committed: {_kafka_error(exc).str()}"
                ) from exc
            raise TopicError(
                f"Could not commit positions of group '{group}': {_kafka_error(exc).str()}"
            ) from exc

    def transaction(self) -> KafkaTransactionContext:
        return KafkaTransactionContext(self)

    def _committed_in_transaction(self, group: str, positions: Mapping[TopicPartition, int]) -> None:
        """Note positions a committed transaction gave ``group``, for its reader to confirm."""
        with self._lock:
            self._unconfirmed.setdefault(group, {}).update(positions)

    def state_positions(self, group: str) -> dict[TopicPartition, int]:
        """The positions the local state reflects for ``group`` (written with the state)."""
        cur = self.state_database.cursor()
        try:
            rows = cur.execute(
                "SELECT topic, partition, next_offset FROM ksqlpy.positions WHERE grp = ?", [group]
            ).fetchall()
        finally:
            cur.close()
        return {TopicPartition(t, p): o for t, p, o in rows}

    changelogged = True

    def state_behind(self, group: str, topics: Sequence[str]) -> dict[TopicPartition, int] | None:
        local = self.state_positions(group)
        committed = {
            TopicPartition(topic, p): offset
            for topic in topics
            for p, offset in self.committed(group, topic).items()
            if offset >= 0
        }
        behind = any(local.get(tp, -1) < offset for tp, offset in committed.items())
        return committed if behind else None

    def restore_state(
        self,
        group: str,
        positions: Mapping[TopicPartition, int],
        rebuild: Callable[[duckdb.DuckDBPyConnection], None],
        forget: Sequence[TopicPartition] = (),
    ) -> None:
        with self._tx_lock:
            cur = self.state_database.cursor()
            try:
                cur.execute("BEGIN TRANSACTION")
                rebuild(cur)
                for tp in forget:
                    cur.execute(
                        "DELETE FROM ksqlpy.positions WHERE grp = ? AND topic = ? AND partition = ?",
                        [group, tp.topic, tp.partition],
                    )
                for tp, offset in positions.items():
                    cur.execute(
                        "INSERT OR REPLACE INTO ksqlpy.positions VALUES (?, ?, ?, ?)",
                        [group, tp.topic, tp.partition, offset],
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def read_partition(self, topic: str, partition: int, start: int = 0) -> Iterator[pa.Table]:
        # The end is the end-of-partition event (the high watermark reads low on some brokers;
        # under read_committed the event comes at the last stable offset).
        consumer = Consumer(
            {
                **self._consumer_config,
                "group.id": "ksqlpy-partition-reader",
                "enable.partition.eof": "true",
                "auto.offset.reset": "earliest",
            }
        )
        try:
            # An offset, not OFFSET_BEGINNING: resolving that costs a round of offset lookups
            # (~0.4 s); below the log start, auto.offset.reset=earliest moves it up.
            consumer.assign([KafkaTopicPartition(topic, partition, max(start, 0))])
            last_progress = time.monotonic()
            while True:
                messages = consumer.consume(50_000, timeout=0.2)
                usable: list[Message] = []
                at_end = False
                for m in messages:
                    error = m.error()
                    if error is None:
                        usable.append(m)
                    elif error.code() == KafkaError._PARTITION_EOF:
                        at_end = True
                    elif error.fatal():
                        raise TopicError(f"Reading {topic}[{partition}] failed: {error.str()}")
                if usable:
                    table, _ = _records.from_messages(cast(list[_records.ConsumedMessage], usable))
                    last_progress = time.monotonic()
                    yield table
                if at_end:
                    return
                if time.monotonic() - last_progress > 60:
                    raise TopicError(f"Reading {topic}[{partition}] stalled at offset {start}")
        finally:
            consumer.close()

    def state_cursor(self) -> duckdb.DuckDBPyConnection:
        """State lives in a local DuckDB database; its transaction commits right after the Kafka
        transaction does (a crash between the two leaves state behind the outputs)."""
        return self.state_database.cursor()

    def _transactional_producer(self) -> Producer:
        if self._tx_producer is None:
            producer = Producer(
                {**self._producer_config, **_RECORD_PRODUCER, "transactional.id": self._transactional_id}
            )
            producer.init_transactions(_TIMEOUT)
            self._tx_producer = producer
        return self._tx_producer

    def _renew_transactional_producer(self) -> None:
        """Replace the transactional producer with a new one of the same transactional id (see
        ``KafkaTransactionContext._abort``); raise :class:`TopicError` if it cannot register."""
        old, self._tx_producer = self._tx_producer, None
        if old is not None:
            old.purge()  # what it still holds belongs to the transaction given up
        try:
            self._transactional_producer()
        except KafkaException as e:
            raise TopicError(f"Transaction could not be aborted: {_kafka_error(e).str()}") from e

    def close(self) -> None:
        if self._tx_starter is not None:
            self._tx_starter.join()
        self._producer.flush(_TIMEOUT)
        if self._tx_producer is not None:
            self._tx_producer.flush(_TIMEOUT)
        with self._lock:
            helpers, self._helpers = list(self._helpers.values()), {}
        for helper in helpers:
            helper.close()
        self.state_database.close()


_POSITIONS_DDL = """
CREATE SCHEMA IF NOT EXISTS ksqlpy;
CREATE TABLE IF NOT EXISTS ksqlpy.positions (
    grp VARCHAR, topic VARCHAR, partition INTEGER, next_offset BIGINT,
    PRIMARY KEY (grp, topic, partition)
);
"""


class KafkaTransaction(Transaction):
    """Records and positions of one transaction (Kafka transaction or at-least-once, see module)."""

    def __init__(self, store: KafkaStore, producer: Producer, state: duckdb.DuckDBPyConnection) -> None:
        self.store = store
        self.producer = producer
        self.state = state
        self.pending: list[tuple[str, pa.Table]] = []
        self.errors: list[KafkaError] = []
        self.topics: list[str] = []
        self.positions: dict[str, dict[TopicPartition, int]] = {}
        #: each group's member metadata for the Kafka transaction, asked when its positions are
        #: given: on the thread that polls the member, as the transaction may end on another
        self.metadata: dict[str, Any] = {}

    def produce(self, topic: str, records: pa.Table) -> None:
        # Sent when the transaction ends, unless the batch turns out to be a replay.
        self.pending.append((topic, records))

    def commit_positions(self, group: str, positions: Mapping[TopicPartition, int]) -> None:
        self.positions.setdefault(group, {}).update(positions)
        if self.store.exactly_once and group not in self.metadata:
            self.metadata[group] = self.store._member(group).consumer_group_metadata()
        for tp, offset in positions.items():
            self.state.execute(
                "INSERT OR REPLACE INTO ksqlpy.positions VALUES (?, ?, ?, ?)",
                [group, tp.topic, tp.partition, offset],
            )

    @property
    def is_replay(self) -> bool:
        """Whether this transaction commits a batch that re-reads records whose outputs Kafka
        already holds (the local state was behind): then only the state changes are kept."""
        return bool(self.positions) and all(self.store._replay_batch.get(g, False) for g in self.positions)

    def send(self) -> None:
        """Produce the buffered records and add the positions to the Kafka transaction."""
        for topic, records in self.pending:
            self.store._send(self.producer, topic, records, self.errors)
            self.topics.append(topic)
        if self.store.exactly_once:
            for group, positions in self.positions.items():
                offsets = [KafkaTopicPartition(tp.topic, tp.partition, o) for tp, o in positions.items()]
                if log.isEnabledFor(logging.DEBUG):  # (each batch commits: no listing unless asked)
                    log.debug("group %s: committing %s in a transaction", group, _listed(offsets))
                metadata = self.metadata.get(group) or self.store._member(group).consumer_group_metadata()
                self.producer.send_offsets_to_transaction(offsets, metadata, _TIMEOUT)


class KafkaTransactionContext(TransactionContext):
    """One transaction at a time per store (Kafka allows one per transactional producer)."""

    def __init__(self, store: KafkaStore) -> None:
        self._store = store
        self._tx: KafkaTransaction | None = None

    def __enter__(self) -> KafkaTransaction:
        store = self._store
        store._tx_lock.acquire()
        try:
            if store.exactly_once:
                producer = store._transactional_producer()
                producer.begin_transaction()
            else:
                producer = store._producer
        except BaseException:
            store._tx_lock.release()
            raise
        try:
            state = store.state_cursor()
            state.execute("BEGIN TRANSACTION")
        except BaseException:
            store._tx_lock.release()
            raise
        self._tx = KafkaTransaction(store, producer, state)
        return self._tx

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        store, tx = self._store, self._tx
        assert tx is not None
        committed = False
        try:
            if exc_type is None and tx.is_replay:
                self._finish_replay()
            else:
                if exc_type is None:
                    try:
                        tx.send()
                    except KafkaException as error:
                        self._abort(error)
                self._finish_kafka(exc_type)
            committed = exc_type is None
        finally:
            try:
                tx.state.execute("COMMIT" if committed else "ROLLBACK")
            finally:
                tx.state.close()
                store._tx_lock.release()

    def _finish_replay(self) -> None:
        """A replayed batch: its outputs and positions are in Kafka already; keep only state."""
        store, tx = self._store, self._tx
        assert tx is not None
        if store.exactly_once:
            tx.producer.abort_transaction(_TIMEOUT)
        for group, positions in tx.positions.items():
            replay = store._replay.get(group, {})
            for tp, offset in positions.items():
                if tp in replay and offset >= replay[tp]:
                    del replay[tp]
            if not replay:
                store._replay.pop(group, None)
                log.info("Consumer group %s: local state rebuilt up to its committed positions.", group)

    def _abort(self, exc: KafkaException) -> None:
        """Abort the transaction after ``exc``. The batch is lost to this member (the group moved
        its partitions or fenced it: its offsets were refused), unless the producer itself is
        fenced for good (another process took its transactional id), which stops the query."""
        error = _kafka_error(exc)
        tx = self._tx
        assert tx is not None
        if error.fatal() or not self._store.exactly_once:
            raise TopicError(f"Transaction failed: {error.str()}") from exc
        try:
            _abort_transaction(tx.producer)
        except KafkaException as again:
            failure = _kafka_error(again)
            if failure.fatal():
                raise TopicError(f"Transaction could not be aborted: {failure.str()}") from again
            # The producer could not end its transaction itself (a broker that cannot bump its
            # epoch after an out-of-order sequence, say): a new producer with the same
            # transactional id ends it, as registering fences the old epoch and aborts its
            # open transaction. The batch is read again, as after any abort.
            log.warning(
                "A transaction could not be aborted (%s): starting a new transactional producer, "
                "which aborts it; the batch is read again.",
                failure.str(),
            )
            self._store._renew_transactional_producer()
        raise BatchAborted(f"Transaction aborted: {error.str()}") from exc

    def _finish_kafka(self, exc_type: object) -> None:
        store, tx = self._store, self._tx
        assert tx is not None
        if store.exactly_once:
            if exc_type is not None:
                tx.producer.abort_transaction(_TIMEOUT)
                return
            try:
                tx.producer.commit_transaction(_TIMEOUT)
            except KafkaException as error:
                self._abort(error)
            if tx.errors:
                raise TopicError(f"Transaction failed: {tx.errors[0].str()}")
            for group, positions in tx.positions.items():
                store._committed_in_transaction(group, positions)
            return
        # At-least-once: output acknowledged before input positions move.
        if exc_type is None:
            KafkaStore._await(tx.producer, tx.errors, ", ".join(dict.fromkeys(tx.topics)))
            for group, positions in tx.positions.items():
                store._commit(group, positions)


def _listed(partitions: Sequence[KafkaTopicPartition]) -> str:
    """Partitions (with their offsets, where set) for the debug log."""
    listed = (f"{p.topic}[{p.partition}]" + (f"@{p.offset}" if p.offset >= 0 else "") for p in partitions)
    return ", ".join(listed) or "nothing"


class _NoReadAhead(Exception):
    """Reading ahead does not apply (no partitions yet, or local state to rebuild first)."""


class _AheadBatch:
    """One batch read ahead: its place in the read-ahead's order and the next offset per
    partition it reaches (counted as reached once its outputs are sent)."""

    __slots__ = ("ends", "records", "seq")

    def __init__(self, seq: int, ends: Mapping[tuple[str, int], int], records: int) -> None:
        self.seq = seq
        self.ends = ends
        self.records = records


class _ReadAhead:
    """A group reader's input read while its consumer joins the group (see
    :meth:`KafkaReader.read_ahead`): a group-less consumer assigned every partition from the
    group's committed positions (none: ``auto.offset.reset``), and one open transaction for every
    batch read so, on a transactional producer of its own (the store's serves other queries
    meanwhile). Outputs are sent as they are produced; only positions are held, until
    :meth:`finish` commits or aborts the lot.

    Batches are sent in the order they were read (a stateless query sends one while it prepares
    the next), and the positions :meth:`finish` commits are those of the batches sent by then:
    a batch read but not yet sent is left to the group's member, which reads it again. The
    producer starts on a thread of its own while the first batches are read and processed;
    their outputs are held (up to :data:`_AHEAD_HELD_ROWS`) until it has."""

    def __init__(
        self,
        store: KafkaStore,
        group: str,
        topics: tuple[str, ...],
        start: StartPosition,
        fresh_state: bool = False,
        on_finish: Callable[[bool], None] | None = None,
    ) -> None:
        """``fresh_state``: the batches change the query's local state (empty so far) in the
        read-ahead's state transaction, which is all kept or all rolled back (see
        :meth:`KafkaReader.read_ahead`); ``on_finish`` is told which, once it is."""
        if fresh_state and not store.exactly_once:
            # At-least-once keeps what was read of the partitions this member got and drops the
            # rest: state changed by the dropped partitions' records could not be taken back.
            raise _NoReadAhead("state is kept at least once")
        self.store = store
        self.group = group
        self.started = time.monotonic()
        #: records read ahead, and of those the ones whose batches were sent
        self.records = 0
        self.sent_records = 0
        self.output = 0
        self.errors: list[KafkaError] = []
        self.topics: list[str] = []
        #: batches read ahead, and of those the ones whose outputs are sent (see :meth:`sent`)
        self.polled = 0
        self.sent_batches = 0
        #: end-of-partition offsets, each with the number of batches read when it was seen
        self._eof_after: dict[TopicPartition, tuple[int, int]] = {}
        #: outputs produced before the producer had started, sent once it has
        self._held: list[tuple[str, pa.Table]] = []
        self._held_rows = 0
        #: orders sending with finishing (commit or abort): nothing is sent into a finished one
        self._lock = threading.Lock()
        self._finished = False
        self._start_error: KafkaException | None = None
        #: the group's committed offset per partition when reading began (-1: none)
        self.origin: dict[TopicPartition, int] = {}
        #: the next offset per partition records were read from (the positions to commit)
        self.reached: dict[TopicPartition, int] = {}
        self._eof: dict[TopicPartition, int] = {}
        existing = store._metadata_topics()
        asked = [
            KafkaTopicPartition(t, p)
            for t in topics
            if t in existing and existing[t].error is None
            for p in sorted(existing[t].partitions)
        ]
        if not asked:
            raise _NoReadAhead("no partitions yet")
        committed = store._helper(group).committed(asked, timeout=_TIMEOUT)
        local = store.state_positions(group)
        starts: list[KafkaTopicPartition] = []
        for c in committed:
            tp = TopicPartition(c.topic, c.partition)
            offset = c.offset if c.offset >= 0 else -1
            if fresh_state and offset >= 0:
                # Only a first start: local state and changelogs then start empty, and the
                # assignment finds nothing to restore whichever way the read-ahead ends.
                raise _NoReadAhead(f"the group has committed {tp.topic}[{tp.partition}]")
            # Local state behind the committed positions is rebuilt first (see _seek_to_state).
            if offset >= 0 and (local.get(tp, -1 if store.state_is_fresh else offset) < offset):
                raise _NoReadAhead(f"the local state of {tp.topic}[{tp.partition}] is behind")
            self.origin[tp] = offset
            if offset >= 0:
                where = offset
            elif start == "earliest":
                # An offset, not OFFSET_BEGINNING: a fresh consumer asked for a logical offset
                # before it knows the partition's leader looks it up only ~0.5 s later; below the
                # log start, auto.offset.reset=earliest moves it up.
                where = 0
            else:  # pinned now, as a group-less reader's start is (see KafkaReader._start_offset)
                where = int(store._helper("ksqlpy-metadata").get_watermark_offsets(c, timeout=_TIMEOUT)[1])
            starts.append(KafkaTopicPartition(tp.topic, tp.partition, where))
        self.consumer = Consumer(
            {
                **store._consumer_config,
                "group.id": f"ksqlpy-ahead-{uuid.uuid4()}",
                "auto.offset.reset": start,
                "enable.partition.eof": "true",
            }
        )
        self.consumer.assign(starts)
        # Fetching has begun; the transactional producer's set-up (~0.5 s: broker round trips,
        # the GIL released) runs on a thread of its own while the first batches are processed.
        self.producer: Producer
        self._starter: threading.Thread | None = None
        if store.exactly_once:
            self.producer = Producer(
                {**store._producer_config, "transactional.id": f"{store._transactional_id}-ahead-{group}"}
            )
            self._starter = threading.Thread(
                target=self._start_producer, name=f"ksqlpy-ahead-{group}", daemon=True
            )
            self._starter.start()
        else:
            self.producer = store._producer
        self.on_finish = on_finish
        self.state = store.state_cursor()
        self.state.execute("BEGIN TRANSACTION")

    def _ended(self, kept: bool) -> None:
        """The state transaction has ended (committed when ``kept``): tell ``on_finish``, once."""
        told, self.on_finish = self.on_finish, None
        if told is not None:
            told(kept)

    def _start_producer(self) -> None:
        try:
            init_transactions(self.producer)
            self.producer.begin_transaction()
        except KafkaException as exc:
            self._start_error = exc

    def _started(self) -> bool:
        return self._starter is None or not self._starter.is_alive()

    def _await_producer(self) -> None:
        """Wait until the producer's transaction has begun; raise why it could not."""
        if self._starter is not None:
            self._starter.join(_TIMEOUT)
            if self._starter.is_alive():
                self._start_error = KafkaException(KafkaError(KafkaError._TIMED_OUT, "init_transactions"))
        if self._start_error is not None:
            raise self._start_error

    def send(self, topic: str, records: pa.Table) -> None:
        """Produce a batch's outputs in the read-ahead's transaction (held while the producer
        starts). Raises :class:`BatchAborted` once the read-ahead has finished or its producer
        could not start."""
        with self._lock:
            if self._finished:
                raise BatchAborted("the read-ahead ended before this batch was sent")
            if not self._started() and self._held_rows + records.num_rows <= _AHEAD_HELD_ROWS:
                self._held.append((topic, records))
                self._held_rows += records.num_rows
            else:
                try:
                    self._send_held()
                except KafkaException as exc:
                    raise BatchAborted(
                        f"the read-ahead's producer could not start ({_kafka_error(exc).str()})"
                    ) from exc
                self.store._send(self.producer, topic, records, self.errors)
            self.output += records.num_rows
            self.topics.append(topic)

    def _send_held(self) -> None:
        """Once the producer has started, what was held for it (call under the lock)."""
        self._await_producer()
        held, self._held, self._held_rows = self._held, [], 0
        for topic, records in held:
            self.store._send(self.producer, topic, records, self.errors)

    def batch_read(self, ends: Mapping[tuple[str, int], int], records: int) -> _AheadBatch | None:
        """A poll's ``records`` (their next offsets per partition, none when it read nothing):
        the batch to hand to :meth:`sent` once its outputs are sent."""
        self.records += records
        with self._lock:
            if ends:
                self.polled += 1
            # An end-of-partition offset counts once every batch read before it is sent.
            for tp, offset in self._eof.items():
                self._eof_after[tp] = (offset, self.polled)
            self._eof.clear()
            if not ends:
                self._reach_eofs()
                return None
            return _AheadBatch(self.polled, ends, records)

    def sent(self, batch: _AheadBatch) -> None:
        """A batch's outputs are sent: its positions are the read-ahead's now. Batches count in
        the order they were read; one out of order (one before it was dropped) ends the
        read-ahead, as its positions would cover records whose outputs were never sent."""
        with self._lock:
            if self._finished:
                raise BatchAborted("the read-ahead ended before this batch was sent")
            if batch.seq != self.sent_batches + 1:
                raise BatchAborted(
                    f"batch {batch.seq} read ahead was sent after batch {self.sent_batches} "
                    "(one in between was dropped)"
                )
            self.sent_batches = batch.seq
            self.sent_records += batch.records
            for (topic, partition), offset in batch.ends.items():
                self.reached[TopicPartition(topic, partition)] = offset
            self._reach_eofs()

    def _reach_eofs(self) -> None:
        """Move the positions past transaction markers at partition ends seen before the last
        batch sent (call under the lock)."""
        for tp, (offset, after) in list(self._eof_after.items()):
            if after > self.sent_batches:
                continue
            if tp in self.reached and offset > self.reached[tp]:
                self.reached[tp] = offset
            del self._eof_after[tp]

    def poll(self, max_records: int, timeout: float) -> list[Message]:
        """Up to ``max_records`` records read ahead (none once it has gone on too long)."""
        if time.monotonic() - self.started > _AHEAD_SECONDS:
            time.sleep(timeout)
            return []
        messages = self.consumer.consume(max_records, timeout=timeout)
        # Usually every message is a record: one C-level pass says so (see KafkaReader._usable).
        if not any(map(operator.is_not, map(Message.error, messages), itertools.repeat(None))):
            return messages
        usable: list[Message] = []
        for m in messages:
            error = m.error()
            if error is None:
                usable.append(m)
            elif error.code() == KafkaError._PARTITION_EOF:
                offset = m.offset()
                if offset is not None:
                    self._eof[TopicPartition(str(m.topic()), int(m.partition() or 0))] = offset
            elif error.fatal():
                raise TopicError(f"Reading failed: {error.str()}")
        return usable

    def finish(self, member: Consumer, assigned: set[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's assignment arrived: commit what was read ahead if every partition records
        came from was assigned to this member and still stands where reading began (no other
        member committed it meanwhile); else abort it all. Returns the positions committed, from
        which the member reads on."""
        with self._lock:
            self._finished = True
        self.consumer.close()
        read = dict(self.reached)
        lost = sorted(set(read) - assigned, key=lambda tp: (tp.topic, tp.partition))
        mine = [KafkaTopicPartition(tp.topic, tp.partition) for tp in read if tp in assigned]
        moved: list[TopicPartition] = []
        if mine:
            try:
                now = member.committed(mine, timeout=_TIMEOUT)
            except KafkaException:
                now = []
                moved = [TopicPartition(k.topic, k.partition) for k in mine]
            for k in now:
                tp = TopicPartition(k.topic, k.partition)
                if (k.offset if k.offset >= 0 else -1) != self.origin.get(tp, -1):
                    moved.append(tp)
        keep = {tp: o for tp, o in read.items() if tp in assigned and tp not in moved}
        reason = ""
        if lost:
            reason = f"{_named(lost)} went to other members"
        elif moved:
            reason = f"{_named(moved)} moved on meanwhile"
        if self.store.exactly_once:
            # One transaction: all of it is kept or none of it.
            if reason:
                keep = {}
                self._abort_kafka()
            else:
                offsets = [KafkaTopicPartition(tp.topic, tp.partition, o) for tp, o in keep.items()]
                try:
                    self._send_held()
                    if offsets:
                        self.producer.send_offsets_to_transaction(
                            offsets, member.consumer_group_metadata(), _TIMEOUT
                        )
                    self.producer.commit_transaction(_TIMEOUT)
                except KafkaException as exc:
                    reason = f"its transaction failed ({_kafka_error(exc).str()})"
                    keep = {}
                    self._abort_kafka()
                if self.errors and not reason:
                    try:
                        self.state.execute("ROLLBACK")
                        self.state.close()
                    finally:
                        self._ended(False)
                    raise TopicError(f"Transaction failed: {self.errors[0].str()}")
                if keep:
                    self.store._committed_in_transaction(self.group, keep)
        else:
            # At-least-once: every output is acknowledged; positions move only for the
            # partitions this member owns (the others' records are read again by their owners).
            KafkaStore._await(self.producer, self.errors, ", ".join(dict.fromkeys(self.topics)))
            if keep:
                self.store._commit_with(member, self.group, keep)
        committed = ended = False
        try:
            if self.store.exactly_once and reason:
                self.state.execute("ROLLBACK")  # as an aborted batch's state changes are
            else:
                for tp, offset in keep.items():
                    self.state.execute(
                        "INSERT OR REPLACE INTO ksqlpy.positions VALUES (?, ?, ?, ?)",
                        [self.group, tp.topic, tp.partition, offset],
                    )
                self.state.execute("COMMIT")
                committed = True
            ended = True
        finally:
            self.state.close()
            if not ended:
                self._ended(False)
        if not reason:
            outcome = "kept"
        elif self.store.exactly_once:
            outcome = f"aborted, {reason}"
        else:
            outcome = f"kept for {len(keep)}, {reason}"
        unsent = self.records - self.sent_records
        log.info(
            "Consumer group %s: read ahead %s records of %d partition(s) in %.1f s while joining the group; %s%s.",
            self.group,
            f"{self.sent_records:,}",
            len(read),
            time.monotonic() - self.started,
            outcome,
            f" ({unsent:,} more read, not yet sent: read again)" if unsent else "",
        )
        self._ended(committed and not reason)
        return keep

    def _abort_kafka(self) -> None:
        # The producer is the read-ahead's alone: when it cannot abort (fenced, or its transaction
        # timed out), the broker aborts the transaction itself, and the query goes on without it.
        self._held, self._held_rows = [], 0
        try:
            self._await_producer()
        except KafkaException:
            return  # it never began a transaction: there is nothing to abort
        try:
            self.producer.abort_transaction(_TIMEOUT)
        except KafkaException as exc:
            log.warning(
                "Consumer group %s: the transaction of what was read ahead could not be aborted (%s); "
                "the broker aborts it when it times out.",
                self.group,
                _kafka_error(exc).str(),
            )

    def abandon(self, why: str) -> None:
        """Abort everything read ahead (the query stops or a batch failed)."""
        with self._lock:
            self._finished = True
            self._held, self._held_rows = [], 0
        try:
            self.consumer.close()
        except RuntimeError:
            pass  # closed already
        try:
            if self.store.exactly_once:
                self._await_producer()
                self.producer.abort_transaction(_TIMEOUT)
        except KafkaException:
            log.debug("aborting the read-ahead of %s failed", self.group, exc_info=True)
        finally:
            try:
                self.state.execute("ROLLBACK")
                self.state.close()
            finally:
                self._ended(False)
            log.info(
                "Consumer group %s: read ahead %s records while joining the group; aborted, %s.",
                self.group,
                f"{self.sent_records:,}",
                why,
            )


class _ReadAheadTransaction(Transaction):
    """A read-ahead batch: outputs are sent at once in the open transaction; its positions are
    the read-ahead's own (committed, or not, when the group's assignment arrives)."""

    def __init__(self, ahead: _ReadAhead) -> None:
        self.ahead = ahead
        self.state = ahead.state

    def produce(self, topic: str, records: pa.Table) -> None:
        self.ahead.send(topic, records)

    def commit_positions(self, group: str, positions: Mapping[TopicPartition, int]) -> None:
        pass  # the reader has none yet: the read-ahead tracks where it stands


class _ReadAheadContext(TransactionContext):
    """The transaction of one batch read ahead: it may be entered after the next batch was read
    (on another thread), and fails with :class:`BatchAborted` when the read-ahead ended before."""

    def __init__(self, reader: KafkaReader, ahead: _ReadAhead, batch: _AheadBatch) -> None:
        self._reader = reader
        self._ahead = ahead
        self._batch = batch

    def __enter__(self) -> _ReadAheadTransaction:
        if self._ahead._finished:
            raise BatchAborted("the read-ahead ended before this batch was sent")
        return _ReadAheadTransaction(self._ahead)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        ahead = self._ahead
        if exc_type is None and ahead.errors:
            self._reader._drop_ahead(ahead, f"producing failed ({ahead.errors[0].str()})")
            raise TopicError(f"Transaction failed: {ahead.errors[0].str()}")
        if exc_type is None:
            try:
                ahead.sent(self._batch)
            except BatchAborted as aborted:
                self._reader._drop_ahead(ahead, str(aborted))
                raise
        elif exc_type is not BatchAborted or not ahead._finished:
            self._reader._drop_ahead(ahead, "a batch failed" if exc is None else f"a batch failed ({exc})")


def _joined(parts: list[pa.Table]) -> pa.Table:
    """A poll's slices as one batch of one chunk per column (what readers hand out)."""
    if not parts:
        return RECORD_SCHEMA.empty_table()
    if len(parts) == 1:
        return parts[0]
    return pa.concat_tables(parts).combine_chunks()


def _named(partitions: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions)


class KafkaReader(TopicReader):
    """A Consumer: subscribed through ``group`` when there is one, else assigned every partition."""

    def __init__(
        self,
        store: KafkaStore,
        topics: tuple[str, ...],
        group: str | None,
        start: StartPosition,
        partitions: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """``partitions``: read just these, each from its offset (no group)."""
        self._store = store
        self._topics = topics
        self._group = group
        self._start = start
        self._woken = threading.Event()
        self._opened = time.monotonic()
        self._next: dict[TopicPartition, int] = {}
        self._eof: dict[TopicPartition, int] = {}
        self._assigned: set[TopicPartition] = set()
        #: rebalances that took partitions away (a poll during one drops what it fetched before)
        self._revokes = 0
        #: assignments and revocations since the reader opened (see ``rebalances``)
        self._moves = 0
        self._unassigned_topics = set(topics)
        self._last_refresh = 0.0
        #: reading ahead of the group's first assignment: wanted (True), under way, or neither
        self._ahead: _ReadAhead | bool | None = None
        #: the last poll's batch when it was read ahead (see ahead_transaction)
        self._ahead_batch: _AheadBatch | None = None
        #: whether the read-ahead changes the query's (empty) local state
        self._ahead_fresh_state = False
        self._ahead_on_finish: Callable[[bool], None] | None = None
        #: records the group consumer returned while the read-ahead ended (read first)
        self._carried: list[Message] = []
        config = {
            **store._consumer_config,
            "group.id": group or f"ksqlpy-reader-{uuid.uuid4()}",
            "auto.offset.reset": start,
            # The end-of-partition event carries the offset past the last transaction marker;
            # without it a reader that has read everything looks one offset short per commit.
            "enable.partition.eof": "true",
        }
        self._consumer = Consumer(config)
        if group is not None:
            self._consumer.subscribe(
                list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
            with store._lock:
                store._group_consumers.setdefault(group, []).append(self._consumer)
        elif partitions is not None:
            self._unassigned_topics = set()
            chosen = [
                KafkaTopicPartition(tp.topic, tp.partition, max(o, 0)) for tp, o in partitions.items()
            ]
            if chosen:
                self._consumer.incremental_assign(chosen)
                self._assigned.update(partitions)
        else:
            self._assign_new_topics()

    # -- assignment --------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        log.debug("group %s: assigned %s", self._group, _listed(partitions))
        self._moves += 1
        ahead, self._ahead = self._ahead, None
        if isinstance(ahead, _ReadAhead):
            kept = ahead.finish(consumer, {TopicPartition(p.topic, p.partition) for p in partitions})
            if kept:
                for p in partitions:
                    offset = kept.get(TopicPartition(p.topic, p.partition))
                    if offset is not None:
                        p.offset = offset
                        self._next[TopicPartition(p.topic, p.partition)] = offset
                consumer.assign(partitions)
        self._assigned.update(TopicPartition(p.topic, p.partition) for p in partitions)
        if self.listener is not None:
            # State follows the partitions: restored (or dropped) before any input is read.
            self.listener.partitions_assigned(self.assignment())
        if self._group is not None and partitions:
            self._seek_to_state(consumer, partitions)

    def _seek_to_state(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        """Start where the local state stands when it is behind the group's Kafka commits.

        State commits right after the Kafka transaction, so a crash between the two leaves it
        one batch behind; a lost (freshly created) state file is behind by everything. The
        records in between are read again to rebuild the state, and their outputs, already in
        Kafka, are not produced again (see :meth:`KafkaTransaction.is_replay`). This is how a
        materialized table catches up (its topic is its changelog); aggregations restore from
        their changelog topics before they open a reader (``ksqlpy.runtime.changelog``), so they
        are no longer behind here."""
        store, group = self._store, self._group
        assert group is not None
        state = store.state_positions(group)
        try:
            committed = consumer.committed(partitions, timeout=_TIMEOUT)
        except KafkaException:
            return
        replay: dict[TopicPartition, int] = {}
        for p, c in zip(partitions, committed):
            tp = TopicPartition(p.topic, p.partition)
            if c.offset < 0:
                continue
            local = state.get(tp)
            if local is None:
                if not store.state_is_fresh:
                    continue
                local = OFFSET_BEGINNING
            elif local >= c.offset:
                continue
            p.offset = local
            replay[tp] = c.offset
        if replay:
            store._replay.setdefault(group, {}).update(replay)
            log.info(
                "Consumer group %s: local state is behind its committed positions; re-reading %s to rebuild it.",
                group, ", ".join(f"{tp.topic}[{tp.partition}] up to {o}" for tp, o in sorted(replay.items(), key=lambda item: (item[0].topic, item[0].partition))),
            )
            consumer.assign(partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        revoked = [TopicPartition(p.topic, p.partition) for p in partitions]
        log.debug("group %s: revoked %s", self._group, _listed(partitions))
        self._revokes += 1
        self._moves += 1
        # A partition that was being read again to rebuild state is no longer this member's to
        # rebuild: left in the replay set, it would never reach its end here, and until it did
        # every batch would be held to replayed records only (the partitions kept would stop).
        replay = self._store._replay.get(self._group, {}) if self._group is not None else {}
        for tp in revoked:
            self._assigned.discard(tp)
            self._next.pop(tp, None)
            self._eof.pop(tp, None)
            replay.pop(tp, None)
        if self._group is not None and not replay:
            self._store._replay.pop(self._group, None)
        if self.listener is not None:
            self.listener.partitions_revoked(revoked)

    def rewind(self) -> None:
        """Seek every assigned partition back to the position the local state (committed with
        the last batch) stands at, else the group's committed offset."""
        if self._group is None:
            return
        local = self._store.state_positions(self._group)
        owned = [KafkaTopicPartition(tp.topic, tp.partition) for tp in self._assigned]
        try:
            committed = {
                TopicPartition(k.topic, k.partition): k.offset
                for k in self._consumer.committed(owned, timeout=_TIMEOUT)
            }
        except KafkaException:
            committed = {}
        for ktp in owned:
            tp = TopicPartition(ktp.topic, ktp.partition)
            offset = local.get(tp, committed.get(tp, -1))
            self._next.pop(tp, None)
            self._eof.pop(tp, None)
            target = offset if offset >= 0 else (OFFSET_BEGINNING if self._start == "earliest" else OFFSET_END)
            log.debug("group %s: rewinding %s[%d] to %d", self._group, tp.topic, tp.partition, target)
            try:
                self._consumer.seek(KafkaTopicPartition(tp.topic, tp.partition, target))
            except KafkaException:
                log.debug("rewinding %s[%d] failed (no longer assigned)", tp.topic, tp.partition)

    def _assign_new_topics(self) -> None:
        """Without a group: assign every partition of topics that exist (checked once a second)."""
        now = time.monotonic()
        if not self._unassigned_topics or now - self._last_refresh < 1.0:
            return
        self._last_refresh = now
        existing = self._store._metadata_topics()
        names = [n for n in sorted(self._unassigned_topics) if n in existing and existing[n].error is None]
        fresh = [
            KafkaTopicPartition(name, p, self._start_offset(name, p))
            for name in names
            for p in sorted(existing[name].partitions)
        ]
        if fresh:
            self._unassigned_topics -= {tp.topic for tp in fresh}
            self._consumer.incremental_assign(fresh)
            self._assigned.update(TopicPartition(tp.topic, tp.partition) for tp in fresh)

    def _start_offset(self, topic: str, partition: int) -> int:
        """Where a group-less reader starts. ``latest`` is pinned to the end offset now, when the
        reader opens: left to the client it is resolved at the first fetch, and records written
        in between would be missed. ``earliest`` is the log's start offset, looked up here too: a
        fresh consumer given OFFSET_BEGINNING resolves it only ~0.5 s later (it does not know the
        partition's leader yet), which a push query or a table's materializer would wait."""
        try:
            helper = self._store._helper("ksqlpy-metadata")
            low, high = helper.get_watermark_offsets(KafkaTopicPartition(topic, partition), timeout=_TIMEOUT)
        except KafkaException:
            return OFFSET_BEGINNING if self._start == "earliest" else OFFSET_END
        return int(low) if self._start == "earliest" else int(high)

    # -- reading ahead -----------------------------------------------------------------------------

    def read_ahead(
        self, *, fresh_state: bool = False, on_finish: Callable[[bool], None] | None = None
    ) -> None:
        if self._group is not None and not self._assigned:
            self._ahead = True
            self._ahead_fresh_state = fresh_state
            self._ahead_on_finish = on_finish

    def ahead_transaction(self) -> TransactionContext | None:
        ahead = self._ahead
        if self._ahead_batch is not None and isinstance(ahead, _ReadAhead):
            return _ReadAheadContext(self, ahead, self._ahead_batch)
        return None

    def _drop_ahead(self, only: _ReadAhead | None = None, why: str = "") -> None:
        """Abort the read-ahead (``only``: if it is still that one)."""
        ahead = self._ahead
        if only is not None and ahead is not only:
            return
        self._ahead = None
        self._ahead_batch = None
        if isinstance(ahead, _ReadAhead):
            ahead.abandon(why)

    def _poll_ahead(self, max_records: int, timeout: float) -> pa.Table | None:
        """A batch read ahead, or None once the group's assignment has ended the read-ahead."""
        assert self._group is not None
        if self._ahead is True:
            try:
                self._ahead = _ReadAhead(
                    self._store,
                    self._group,
                    self._topics,
                    self._start,
                    self._ahead_fresh_state,
                    self._ahead_on_finish,
                )
            except (_NoReadAhead, KafkaException) as e:
                log.debug("group %s: not reading ahead: %s", self._group, e)
                self._ahead = None
                return None
        deadline = time.monotonic() + timeout
        while True:
            # The group consumer's own poll hands over the assignment (see _on_assign).
            self._carried.extend(self._consumer.consume(max_records, timeout=0))
            ahead = self._ahead
            if not isinstance(ahead, _ReadAhead):
                return None
            if self._woken.is_set():
                self._woken.clear()
                return RECORD_SCHEMA.empty_table()
            wait = min(max(deadline - time.monotonic(), 0.0), 0.05)
            # The read-ahead's consumer reads the partitions it was assigned when it began.
            only = next(iter(ahead.origin)) if len(ahead.origin) == 1 else None
            parts: list[pa.Table] = []
            ends: dict[tuple[str, int], int] = {}
            # a slice at a time, as in poll (see _CONVERT_RECORDS)
            want = min(max_records, _CONVERT_RECORDS)
            messages = ahead.poll(want, wait)
            while messages:
                part, part_ends = _records.from_messages(
                    cast(list[_records.ConsumedMessage], messages),
                    topic=only.topic if only is not None else None,
                    partition=only.partition if only is not None else None,
                )
                full = len(messages) == want
                del messages
                parts.append(part)
                ends.update(part_ends)
                left = max_records - sum(p.num_rows for p in parts)
                if not full or left <= 0:
                    break
                want = min(left, _CONVERT_RECORDS)
                messages = ahead.poll(want, 0)
            if parts or time.monotonic() >= deadline:
                table = _joined(parts)
                del parts
                if table.num_rows and not ahead.records:
                    log.info(
                        "Consumer group %s: reading ahead while joining the group, first records %.2f s after "
                        "the query started.",
                        self._group,
                        time.monotonic() - self._opened,
                    )
                self._ahead_batch = ahead.batch_read(ends, table.num_rows)
                return table

    # -- reading -----------------------------------------------------------------------------------

    def poll(self, max_records: int = 10_000, timeout: float = 0.1) -> pa.Table:
        self._ahead_batch = None
        if self._ahead is not None:
            ahead_table = self._poll_ahead(max_records, timeout)
            if ahead_table is not None:
                return ahead_table
        deadline = time.monotonic() + timeout
        # The records go into Arrow a slice at a time (see _CONVERT_RECORDS): only one slice's
        # Message objects are alive at once, not a whole batch's.
        parts: list[pa.Table] = []
        ends: dict[tuple[str, int], int] = {}
        count = 0
        # Whether every message comes from the one partition assigned: none carried over from a
        # read-ahead, and no assignment changing during the poll (asked of each slice).
        moves = self._moves
        only_topic = self._topics[0] if len(self._topics) == 1 else None
        while True:
            if self._woken.is_set():
                self._woken.clear()
                break
            if self._group is None:
                self._assign_new_topics()
            # Drain what is queued; else block briefly for one record (short slices keep wakeup()
            # prompt, as librdkafka's consume cannot be interrupted).
            revokes = self._revokes
            got, self._carried = self._carried, []
            carried = bool(got)
            room = min(max_records - count, _CONVERT_RECORDS)
            if len(got) < room:
                got += self._consumer.consume(room - len(got), timeout=0)
            if not got and not count:
                wait = min(max(deadline - time.monotonic(), 0.0), 0.05)
                got = self._consumer.consume(1, timeout=wait)
                if got and room > 1:
                    got += self._consumer.consume(room - 1, timeout=0)
            drained = len(got) < room
            usable = self._usable(got)
            del got
            if self._revokes != revokes:
                # The group moved partitions during this poll: records fetched before that
                # belong to the old assignment (another member may own them now). Drop them all
                # and read the partitions kept from where their committed state stands.
                parts, ends, count, usable = [], {}, 0, []
                self.rewind()
            if usable:
                # confluent-kafka types headers for produced and consumed messages alike (a dict
                # or a list, str or bytes values); what the consumer hands out is always a list of
                # (str, bytes | None). Records (not errors, see _usable) come from the reader's
                # topics only.
                single = not carried and moves == self._moves and len(self._assigned) == 1
                part, part_ends = _records.from_messages(
                    cast(list[_records.ConsumedMessage], usable),
                    topic=only_topic,
                    partition=next(iter(self._assigned)).partition if single else None,
                )
                del usable
                parts.append(part)
                ends.update(part_ends)  # a later slice reaches further
                count += part.num_rows
                if not drained and count < max_records:
                    continue
            if count or time.monotonic() >= deadline:
                break
        table = self._to_table(parts, ends)
        if not count and self._store.exactly_once:
            self._past_markers()
            self._confirm_commits()
        if self._group is not None and self._group in self._store._replay:
            table = self._cap_replay(table)
        elif self._group is not None:
            self._store._replay_batch[self._group] = False
        return table

    def _past_markers(self) -> None:
        """After an empty poll: the client's own position moves past transaction markers once
        it has fetched them, even when no end-of-partition event follows, and everything before
        it was handed out. (Asked here, on the polling thread: asking while another thread
        polls the same client can block for seconds.)"""
        known = [KafkaTopicPartition(tp.topic, tp.partition) for tp in self._assigned if tp in self._next]
        if not known:
            return
        for ktp in self._consumer.position(known):
            tp = TopicPartition(ktp.topic, ktp.partition)
            if ktp.offset > self._next.get(tp, ktp.offset):
                self._next[tp] = ktp.offset

    def _confirm_commits(self) -> None:
        """After an empty poll: make sure the group shows the positions this member's transactions
        committed, and commit them as the member where it does not.

        Kafka applies a transaction's offsets when it commits. The test broker (Tansu) holds them
        back while an earlier transaction on the same partitions is open (another server's
        read-ahead, say), and may keep them back for good; the member would look done while its
        group showed none of its positions, and a restart would read its input again. Their
        outputs are committed already, so the member's own commit of the same positions is what
        the transaction meant. Looked at once per run of commits, when no transaction is ending
        (one under way is looked at after it, at a later empty poll)."""
        store, group = self._store, self._group
        if group is None or group not in store._unconfirmed or not store._tx_lock.acquire(blocking=False):
            return
        try:
            with store._lock:
                committed = store._unconfirmed.pop(group, {})
            try:
                self._commit_held_back(group, committed)
            except KafkaException as exc:
                log.debug(
                    "group %s: positions not confirmed (%s); looked at again", group, _kafka_error(exc).str()
                )
                with store._lock:
                    store._unconfirmed[group] = {**committed, **store._unconfirmed.get(group, {})}
        finally:
            store._tx_lock.release()

    def _commit_held_back(self, group: str, committed: Mapping[TopicPartition, int]) -> None:
        """Commit, as the member, those of the ``committed`` positions on partitions it still owns
        that the group shows behind."""
        mine = [KafkaTopicPartition(tp.topic, tp.partition) for tp in committed if tp in self._assigned]
        if not mine:
            return
        held_back = []
        for shown in self._consumer.committed(mine, timeout=_CONFIRM_TIMEOUT):
            offset = committed[TopicPartition(shown.topic, shown.partition)]
            if shown.offset < offset:
                held_back.append(KafkaTopicPartition(shown.topic, shown.partition, offset))
        if held_back:
            log.debug(
                "group %s: committing %s, held back after its transaction committed",
                group,
                _listed(held_back),
            )
            self._consumer.commit(offsets=held_back, asynchronous=False)

    def _cap_replay(self, table: pa.Table) -> pa.Table:
        """While partitions are replayed, a batch holds only replayed records (those below the
        committed offsets); anything else is read again afterwards."""
        assert self._group is not None
        replay = self._store._replay.get(self._group, {})
        keep: list[bool] = []
        first_dropped: dict[TopicPartition, int] = {}
        for topic, partition, offset in zip(
            table.column("topic").to_pylist(), table.column("partition").to_pylist(), table.column("offset").to_pylist()
        ):
            tp = TopicPartition(topic, partition)
            until = replay.get(tp)
            ok = until is not None and offset < until
            keep.append(ok)
            if not ok and tp not in first_dropped:
                first_dropped[tp] = offset
        for tp, until in replay.items():
            if self._next.get(tp, 0) > until:
                first_dropped.setdefault(tp, until)
        for tp, offset in first_dropped.items():
            log.debug("group %s: %s[%d] read on from %d", self._group, tp.topic, tp.partition, offset)
            self._next[tp] = offset
            self._consumer.seek(KafkaTopicPartition(tp.topic, tp.partition, offset))
        kept = table.filter(pa.array(keep, pa.bool_())) if not all(keep) else table
        self._store._replay_batch[self._group] = kept.num_rows > 0
        # A partition read up to where its outputs were committed is rebuilt; its next records
        # are new. (Its committed offset may lie past a transaction marker, hence >=.)
        for tp, until in list(replay.items()):
            if self._next.get(tp, 0) >= until:
                del replay[tp]
        if not replay:
            self._store._replay.pop(self._group, None)
        return kept

    def _usable(self, messages: list[Message]) -> list[Message]:
        # Usually every message is a record: C-level passes over them say so. (By identity:
        # comparing a KafkaError with None leaves a TypeError pending in the client.)
        if not any(map(operator.is_not, map(Message.error, messages), itertools.repeat(None))):
            return messages
        usable = []
        for m in messages:
            error = m.error()
            if error is None:
                usable.append(m)
            elif error.code() == KafkaError._PARTITION_EOF:
                tp = TopicPartition(str(m.topic()), int(m.partition() or 0))
                offset = m.offset()
                if offset is not None and offset >= self._next.get(tp, 0):
                    self._eof[tp] = offset
            elif error.fatal():
                raise TopicError(f"Reading failed: {error.str()}")
            # Others (a topic not created yet) are informational.
        return usable

    def _to_table(self, parts: list[pa.Table], ends: Mapping[tuple[str, int], int]) -> pa.Table:
        """The slices of a poll as one batch (one chunk per column); ``ends``: the next offset
        per ``(topic, partition)`` they reach."""
        for (topic, partition), offset in ends.items():
            tp = TopicPartition(topic, partition)
            self._next[tp] = offset
            self._eof.pop(tp, None)
        # A partition read to its end stands past the transaction markers that follow its records.
        for tp, offset in list(self._eof.items()):
            if offset >= self._next.get(tp, 0):
                self._next[tp] = offset
            del self._eof[tp]
        return _joined(parts)

    def positions(self) -> dict[TopicPartition, int]:
        result = {tp: self._next[tp] for tp in self._assigned if tp in self._next}
        missing = [KafkaTopicPartition(tp.topic, tp.partition) for tp in self._assigned if tp not in result]
        if not missing:
            return result
        unresolved = []
        for ktp in self._consumer.position(missing):
            if ktp.offset >= 0:
                result[TopicPartition(ktp.topic, ktp.partition)] = ktp.offset
            else:
                unresolved.append(KafkaTopicPartition(ktp.topic, ktp.partition))
        if unresolved and self._group is not None:
            for ktp in self._consumer.committed(unresolved, timeout=_TIMEOUT):
                if ktp.offset >= 0:
                    result[TopicPartition(ktp.topic, ktp.partition)] = ktp.offset
        for ktp in unresolved:
            tp = TopicPartition(ktp.topic, ktp.partition)
            if tp not in result:
                low, high = self._consumer.get_watermark_offsets(ktp, timeout=_TIMEOUT)
                result[tp] = low if self._start == "earliest" else high
        return result

    def commit(self, positions: Mapping[TopicPartition, int] | None = None) -> None:
        if self._group is None:
            raise TopicError("Cannot commit positions of a reader without a consumer group")
        offsets = [
            KafkaTopicPartition(tp.topic, tp.partition, o)
            for tp, o in (self.positions() if positions is None else positions).items()
        ]
        if offsets:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("group %s: committing %s", self._group, _listed(offsets))
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                raise TopicError(f"Could not commit positions: {_kafka_error(exc).str()}") from exc

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._assigned, key=lambda tp: (tp.topic, tp.partition))

    @property
    def replaying(self) -> bool:
        return self._group is not None and self._store._replay_batch.get(self._group, False)

    def overlappable(self) -> bool:
        # A batch read ahead has a transaction of its own, sent into the read-ahead's or, when
        # the next poll ended that, aborted (the member reads its records again). Replaying,
        # the next poll decides whether the batch's outputs are kept.
        return self._group is None or (
            self._group not in self._store._replay and not self._store._replay_batch.get(self._group, False)
        )

    @property
    def rebalances(self) -> int:
        return self._moves

    def wakeup(self) -> None:
        self._woken.set()

    def close(self) -> None:
        self._drop_ahead(why="the query stopped")
        if self._group is not None:
            with self._store._lock:
                members = self._store._group_consumers.get(self._group, [])
                if self._consumer in members:
                    members.remove(self._consumer)
        self._consumer.close()
