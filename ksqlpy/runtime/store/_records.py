"""Arrow helpers both topic stores share: shaping produced batches, choosing partitions, and
labelling read batches with their topic and partition. All of it works on whole columns."""

from __future__ import annotations

import time
from collections.abc import Iterator

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
