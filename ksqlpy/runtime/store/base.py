"""The topic store contract: what the runtime needs from a log of records.

Two implementations stand behind it and swap freely: ``embedded.py`` (a durable log in DuckDB,
the default, no Kafka needed) and ``kafka.py`` (a real Kafka cluster via confluent-kafka).

Records travel as Arrow tables with :data:`RECORD_SCHEMA` columns, a batch at a time, never one
Python object per record on the hot path.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import duckdb
import pyarrow as pa

from ksqlpy.errors import TopicError

HEADER_TYPE = pa.list_(pa.struct([pa.field("key", pa.string()), pa.field("value", pa.binary())]))

#: Columns of a batch read from a store. ``timestamp`` is epoch milliseconds.
RECORD_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", HEADER_TYPE),
    ]
)

#: Columns of a batch given to :meth:`TopicStore.produce`. ``partition`` may be absent or null:
#: the store then picks one with Kafka's default partitioner (murmur2 of the key bytes; records
#: without a key are spread).
PRODUCE_SCHEMA = pa.schema(
    [
        pa.field("partition", pa.int32()),
        pa.field("timestamp", pa.int64(), nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", HEADER_TYPE),
    ]
)

StartPosition = Literal["earliest", "latest"]


class BatchAborted(TopicError):
    """A batch's transaction could not commit because this member no longer owns (all of) its
    partitions: a rebalance moved them, or the group fenced this member. The batch's outputs
    and state changes are discarded; whoever owns the partitions now reads its records again."""


class RebalanceListener(Protocol):
    """Told when a group reader's partitions move (on the reading thread, between polls)."""

    def partitions_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        """``partitions``: the reader's whole assignment from now on."""

    def partitions_revoked(self, partitions: Sequence[TopicPartition]) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicSpec:
    """A topic's shape. ``config`` holds Kafka topic configs such as ``cleanup.policy`` and
    ``retention.ms`` as strings."""

    name: str
    partitions: int = 1
    replicas: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicPartition:
    topic: str
    partition: int


class TopicReader(abc.ABC):
    """Reads batches from one or more topics, for one consumer group (or none).

    A reader with a group resumes from the group's committed positions; where none are committed
    it starts at ``start``. Positions advance as batches are returned and are committed only by
    :meth:`commit` (or by :meth:`TopicStore.transaction`).
    """

    @abc.abstractmethod
    def poll(self, max_records: int = 10_000, timeout: float = 0.1) -> pa.Table:
        """Up to ``max_records`` records (:data:`RECORD_SCHEMA`), waiting at most ``timeout``
        seconds for the first; an empty table when none arrived. Within a partition records come
        in offset order."""

    @abc.abstractmethod
    def positions(self) -> dict[TopicPartition, int]:
        """The next offset this reader will return, per assigned partition."""

    @abc.abstractmethod
    def commit(self, positions: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit positions for the group (default: the current :meth:`positions`)."""

    @abc.abstractmethod
    def assignment(self) -> list[TopicPartition]:
        """The partitions this reader currently reads (all of them on the embedded store)."""

    @abc.abstractmethod
    def wakeup(self) -> None:
        """Make a blocked :meth:`poll` return now (used to stop a query promptly)."""

    #: told when partitions move between the members of the reader's group (Kafka only)
    listener: RebalanceListener | None = None

    def rewind(self) -> None:
        """Go back to the last committed positions (after a :class:`BatchAborted`), so the
        batch's records are read again if this reader still owns their partitions."""

    def read_ahead(
        self, *, fresh_state: bool = False, on_finish: Callable[[bool], None] | None = None
    ) -> None:
        """Until the group first assigns partitions, read every partition of the topics from the
        group's committed positions, so the query starts at once; the batches read so are
        committed in one transaction when the assignment arrives, if this reader was given the
        partitions they came from, else aborted (Kafka only; a no-op elsewhere).

        For a query without local state the speculative batches change nothing but their
        outputs. ``fresh_state``: the query keeps local state, empty as yet, which the batches
        change inside the read-ahead's state transaction (:meth:`ahead_transaction`); it reads
        ahead only when the group has committed nothing for any partition and transactions hold,
        so that an abort (a rollback of that transaction) leaves the state empty again.
        ``on_finish``: told, once the read-ahead has ended (its state transaction with it), whether
        what it read was kept (committed) or not; never told when there was no read-ahead."""

    def ahead_transaction(self) -> TransactionContext | None:
        """The transaction of the batch just polled when it was read ahead of the group's
        assignment (see :meth:`read_ahead`), else None (use the store's)."""
        return None

    @property
    def replaying(self) -> bool:
        """Whether the last poll's records are read again to rebuild lost local state (their
        results were committed before): they must be processed as they come."""
        return False

    def overlappable(self) -> bool:
        """Whether the batch just polled may commit while this reader polls the next one (a
        stateless query overlaps the two): not a batch read again to rebuild state, nor one read
        ahead unless its transaction is its own (the Kafka reader's are), as what the next poll
        finds decides what becomes of them."""
        return self.ahead_transaction() is None and not self.replaying

    @property
    def rebalances(self) -> int:
        """How often the group assigned or revoked this reader's partitions since it opened."""
        return 0

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Transaction(abc.ABC):
    """Produce records and commit a reader's positions atomically: after a crash either all of a
    transaction's records and positions are visible or none are."""

    @abc.abstractmethod
    def produce(self, topic: str, records: pa.Table) -> None: ...

    @abc.abstractmethod
    def commit_positions(self, group: str, positions: Mapping[TopicPartition, int]) -> None: ...

    #: The DuckDB connection for state (aggregates, materialized tables) written as part of this
    #: transaction: it commits when the transaction commits and rolls back when it aborts. Use it
    #: only on the thread that opened the transaction.
    state: duckdb.DuckDBPyConnection


class TopicStore(abc.ABC):
    """A log of partitioned topics."""

    #: "embedded" or "kafka"
    kind: str

    def ready(self) -> None:
        """Wait until the store can run queries (a Kafka store sets up transactions in the
        background while the server starts listening); raise what failed."""

    @abc.abstractmethod
    def create_topic(self, spec: TopicSpec, *, exist_ok: bool = False) -> None:
        """Create a topic; raises :class:`~ksqlpy.errors.TopicError` if it exists (unless
        ``exist_ok``) or cannot be created."""

    @abc.abstractmethod
    def delete_topic(self, name: str) -> None: ...

    @abc.abstractmethod
    def describe_topic(self, name: str) -> TopicSpec | None:
        """The topic's spec, or None when there is no such topic."""

    @abc.abstractmethod
    def list_topics(self) -> list[TopicSpec]:
        """All topics, sorted by name (internal ones included; callers filter)."""

    def ping(self, topic: str) -> None:
        """Raise if the store cannot serve now; used by the server's health check. The default
        describes ``topic`` (a round trip to the brokers for the Kafka store)."""
        self.describe_topic(topic)

    @abc.abstractmethod
    def produce(self, topic: str, records: pa.Table) -> None:
        """Append records (:data:`PRODUCE_SCHEMA`; ``partition``/``headers`` columns optional).
        Returns once they are durable (embedded: committed to disk; Kafka: acknowledged)."""

    @abc.abstractmethod
    def open_reader(
        self,
        topics: Sequence[str],
        *,
        group: str | None = None,
        start: StartPosition = "earliest",
    ) -> TopicReader: ...

    @abc.abstractmethod
    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed next-offset per partition of ``topic`` (missing: none)."""

    @abc.abstractmethod
    def end_offsets(self, topic: str) -> dict[int, int]:
        """The next offset to be written, per partition."""

    @abc.abstractmethod
    def transaction(self) -> TransactionContext: ...

    #: Whether state lives apart from the log, so that stateful queries write their state changes
    #: to changelog topics and restore from them (the Kafka store, whose state is a local file).
    #: The embedded store commits state with the log: it never falls behind.
    changelogged: bool = False

    def state_positions(self, group: str) -> dict[TopicPartition, int]:
        """The positions the local state reflects for ``group`` (none where state is not apart)."""
        return {}

    def state_behind(self, group: str, topics: Sequence[str]) -> dict[TopicPartition, int] | None:
        """The group's committed positions on ``topics`` when the local state does not reflect
        them (lost, fresh, or left behind by a crash after the log committed); else None."""
        return None

    def restore_state(
        self,
        group: str,
        positions: Mapping[TopicPartition, int],
        rebuild: Callable[[duckdb.DuckDBPyConnection], None],
        forget: Sequence[TopicPartition] = (),
    ) -> None:
        """Run ``rebuild`` on the state database and record that the state now reflects the
        group's ``positions`` (and no longer any position on ``forget``), in one local transaction."""
        raise NotImplementedError(f"the {self.kind} store keeps no separate state")

    #: how many warm copies of each partition's state other servers keep
    #: (``ksql.streams.num.standby.replicas``)
    standby_replicas: int = 0

    def open_partition_reader(self, starts: Mapping[TopicPartition, int]) -> TopicReader:
        """A reader of just these partitions, each from its given offset, in no group."""
        raise NotImplementedError(f"the {self.kind} store reads no single partitions")

    def read_partition(self, topic: str, partition: int, start: int = 0) -> Iterator[pa.Table]:
        """The records (:data:`RECORD_SCHEMA`) of one partition from offset ``start`` to its end
        as of now, in batches (committed records only where transactions are real)."""
        raise NotImplementedError(f"the {self.kind} store reads no single partitions")

    @abc.abstractmethod
    def state_cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the DuckDB database where state lives, for reading it (pull
        queries) from any one thread. Writes go through :attr:`Transaction.state`."""

    @abc.abstractmethod
    def close(self) -> None: ...


class TransactionContext(abc.ABC):
    """``with store.transaction() as tx:`` — commits on normal exit, aborts on an exception."""

    @abc.abstractmethod
    def __enter__(self) -> Transaction: ...

    @abc.abstractmethod
    def __exit__(self, exc_type: object, exc: object, tb: object) -> None: ...
