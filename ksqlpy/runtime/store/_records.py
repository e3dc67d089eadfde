"""Arrow helpers both topic stores share: shaping produced batches, choosing partitions, and
labelling read batches with their topic and partition. All of it works on whole columns."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.errors import TopicError
from ksqlpy.runtime.store.base import HEADER_TYPE, PRODUCE_SCHEMA, RECORD_SCHEMA
from ksqlpy.runtime.store.partitioner import partitions_for_keys

#: Columns of a normalized produce batch, in order (``partition`` kept aside).
_PRODUCED = pa.schema(
    [PRODUCE_SCHEMA.field(n) for n in ("partition", "timestamp", "key", "value", "headers")]
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def constant_strings(value: str, n: int) -> pa.StringArray:
    """``n`` copies of ``value`` as an Arrow string array, built from buffers (no per-row work)."""
    raw = value.encode()
    offsets = np.arange(0, (n + 1) * len(raw), len(raw) or 1, dtype=np.int32)[: n + 1]
    if not raw:
        offsets = np.zeros(n + 1, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(raw * n))


def normalize(records: pa.Table) -> pa.Table:
    """``records`` with every :data:`PRODUCE_SCHEMA` column present and typed: missing
    ``partition``/``key``/``value``/``headers`` become nulls, a missing ``timestamp`` is now."""
    n = records.num_rows
    names = set(records.column_names)
    columns: list[pa.ChunkedArray | pa.Array] = []
    for f in _PRODUCED:
        if f.name in names:
            column = records.column(f.name)
            if f.name == "timestamp" and column.null_count:
                column = pc.fill_null(column.cast(pa.int64()), _now_ms())
            columns.append(column.cast(f.type))
        elif f.name == "timestamp":
            columns.append(pa.array(np.full(n, _now_ms(), dtype=np.int64)))
        else:
            columns.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(columns, schema=_PRODUCED).combine_chunks()


def choose_partitions(batch: pa.Table, num_partitions: int, null_start: int) -> npt.NDArray[np.int32]:
    """Each record's partition: the given one where set, else Kafka's default partitioner."""
    given = batch.column("partition").combine_chunks()
    if num_partitions == 1 and given.null_count == len(given):
        return np.zeros(len(given), dtype=np.int32)  # no key hashing when there is one choice
    if given.null_count == 0:
        parts = np.asarray(given, dtype=np.int32)
    else:
        keys = batch.column("key").combine_chunks()
        chosen = np.asarray(partitions_for_keys(keys, num_partitions, null_start))
        parts = np.where(np.asarray(given.is_valid()), np.asarray(given.fill_null(0)), chosen).astype(
            np.int32
        )
    if len(parts) and (parts.min() < 0 or parts.max() >= num_partitions):
        bad = int(parts[(parts < 0) | (parts >= num_partitions)][0])
        raise TopicError(f"Invalid partition {bad}: the topic has {num_partitions} partition(s)")
    return parts


def split_by_partition(batch: pa.Table, parts: npt.NDArray[np.int32]) -> Iterator[tuple[int, pa.Table]]:
    """``(partition, rows)`` per partition present, rows keeping their order (the columns are
    ``timestamp, key, value, headers``)."""
    body = batch.select(["timestamp", "key", "value", "headers"])
    if len(parts) == 0:
        return
    first = int(parts[0])
    if (parts == first).all():
        yield first, body
        return
    order = np.argsort(parts, kind="stable")
    counts = np.bincount(parts)
    body = body.take(pa.array(order))
    at = 0
    for p, count in enumerate(counts.tolist()):
        if count:
            yield p, body.slice(at, count)
            at += count


def with_source(table: pa.Table, topic: str, partition: int) -> pa.Table:
    """A read batch (``offset, timestamp, key, value, headers``) as :data:`RECORD_SCHEMA`."""
    n = table.num_rows
    return pa.Table.from_arrays(
        [
            constant_strings(topic, n),
            pa.array(np.full(n, partition, dtype=np.int32)),
            table.column("offset"),
            table.column("timestamp"),
            table.column("key"),
            table.column("value"),
            table.column("headers").cast(HEADER_TYPE),
        ],
        schema=RECORD_SCHEMA,
    )


class ConsumedMessage(Protocol):
    """What :func:`from_messages` reads of a consumed record (confluent-kafka's ``Message``)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes | None]] | None: ...


def from_messages(
    messages: Sequence[ConsumedMessage], *, topic: str | None = None, partition: int | None = None
) -> tuple[pa.Table, dict[tuple[str, int], int]]:
    """Consumed records as a :data:`RECORD_SCHEMA` batch, plus the next offset per
    ``(topic, partition)`` they reach. ``topic``, ``partition``: what every message is known to
    come from (a reader of one topic, of one partition), so neither is asked of each message.

    The client hands out one object per record, so some per-record work is unavoidable; it is
    kept to one C-level accessor call per field and column (list comprehensions, no per-record
    dict or tuple building), and the columns that are usually constant (topic, headers) are
    built from buffers."""
    n = len(messages)
    if n == 0:
        return RECORD_SCHEMA.empty_table(), {}
    if topic is not None and partition is not None:
        return _from_one_partition(messages, topic, partition)
    topics: list[str | None] = [topic] * n if topic is not None else [m.topic() for m in messages]
    partitions: list[int | None] = (
        [partition] * n if partition is not None else [m.partition() for m in messages]
    )
    offsets = [m.offset() for m in messages]
    timestamps = [m.timestamp()[1] for m in messages]
    keys = [m.key() for m in messages]
    values = [m.value() for m in messages]
    raw_headers = [m.headers() for m in messages]
    first_topic = topics[0] or ""
    if topics.count(first_topic) == n:
        topic_column: pa.Array = constant_strings(first_topic, n)
    else:
        topic_column = pa.array(topics, pa.string())
    header_column = _header_column(raw_headers)
    partition_column = pa.array(partitions, pa.int32()).fill_null(0)
    offset_column = pa.array(offsets, pa.int64()).fill_null(0)
    table = pa.Table.from_arrays(
        [
            topic_column,
            partition_column,
            offset_column,
            pa.array(timestamps, pa.int64()),
            pa.array(keys, pa.binary()),
            pa.array(values, pa.binary()),
            header_column,
        ],
        schema=RECORD_SCHEMA,
    )
    return table, _next_offsets(topics, partitions, offsets)


def _from_one_partition(
    messages: Sequence[ConsumedMessage], topic: str, partition: int
) -> tuple[pa.Table, dict[tuple[str, int], int]]:
    """:func:`from_messages` for records known to come from one partition, the usual poll of a
    query: the topic and partition columns are built from buffers, and so are the offsets when
    they run without gaps (a partition's records come in rising offset order, so the first and
    last offsets tell), leaving four accessor calls per record."""
    n = len(messages)
    first, last = messages[0].offset(), messages[-1].offset()
    offset_column: pa.Array
    if first is not None and last is not None and last - first == n - 1:
        offset_column = pa.array(np.arange(first, last + 1, dtype=np.int64))
    else:  # gaps (transaction markers, compaction): each record's own
        offset_column = pa.array([m.offset() for m in messages], pa.int64()).fill_null(0)
        last = offset_column[-1].as_py()
    timestamps = [m.timestamp()[1] for m in messages]
    keys = [m.key() for m in messages]
    values = [m.value() for m in messages]
    raw_headers = [m.headers() for m in messages]
    table = pa.Table.from_arrays(
        [
            constant_strings(topic, n),
            pa.array(np.full(n, partition, dtype=np.int32)),
            offset_column,
            pa.array(timestamps, pa.int64()),
            pa.array(keys, pa.binary()),
            pa.array(values, pa.binary()),
            _header_column(raw_headers),
        ],
        schema=RECORD_SCHEMA,
    )
    return table, {(topic, partition): (last or 0) + 1}


def _header_column(raw_headers: list[list[tuple[str, bytes | None]] | None]) -> pa.Array:
    if raw_headers.count(None) == len(raw_headers):
        return pa.nulls(len(raw_headers), HEADER_TYPE)
    return pa.array(
        [None if h is None else [{"key": k, "value": v} for k, v in h] for h in raw_headers], HEADER_TYPE
    )


def _next_offsets(
    topics: list[str | None], partitions: list[int | None], offsets: list[int | None]
) -> dict[tuple[str, int], int]:
    """The offset after the last record of each (topic, partition); records of one partition
    arrive in offset order, so the last one seen is the highest."""
    if topics.count(topics[0]) == len(topics) and partitions.count(partitions[0]) == len(partitions):
        return {(topics[0] or "", partitions[0] or 0): (offsets[-1] or 0) + 1}
    return {(t or "", p or 0): (o or 0) + 1 for t, p, o in zip(topics, partitions, offsets)}
