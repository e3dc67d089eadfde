"""Counters a running query keeps about its own work, for the server's ``/metrics``.

A query's loop adds to them as it goes (:func:`record_bytes` of what it read and wrote, the
time of each batch into a :class:`LatencyHistogram`); readers on other threads take snapshots.
Nothing here knows about Prometheus: ``ksqlpy/server/metrics.py`` turns the snapshots into its
text format, so the runtime keeps no server dependency.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Upper bounds (seconds) of the batch latency buckets: a micro-batch takes from about a
#: millisecond (a few rows, stateless) to seconds (50,000 rows through an aggregation).
BATCH_LATENCY_BOUNDS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def record_bytes(records: pa.Table) -> int:
    """Bytes of the keys and values of a batch of records (null key or value: 0 bytes), the
    figure Kafka clients count as bytes consumed or produced, without headers and framing."""
    total = 0
    for name in ("key", "value"):
        if name not in records.column_names or records.num_rows == 0:
            continue
        total += _binary_bytes(records.column(name))
    return total


def _binary_bytes(column: pa.ChunkedArray | pa.Array) -> int:
    """Total length of a binary or string column's values: where no value is null, the span of
    each chunk's offsets (one subtraction, not a length per value)."""
    total = 0
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        t = chunk.type
        if not len(chunk) or pa.types.is_null(t):
            continue
        width = 4 if pa.types.is_binary(t) or pa.types.is_string(t) else 8 if pa.types.is_large_binary(t) else 0
        if width and not chunk.null_count:
            ends = np.frombuffer(chunk.buffers()[1], dtype=np.int32 if width == 4 else np.int64)
            total += int(ends[chunk.offset + len(chunk)] - ends[chunk.offset])
        else:  # a null value counts 0 bytes, whatever span its slot has
            total += int(pc.sum(pc.binary_length(chunk)).as_py() or 0)
    return total


@dataclass(frozen=True, slots=True, kw_only=True)
class HistogramSnapshot:
    """Cumulative counts per upper bound (the last one is ``+Inf``), the sum and the count."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    total: float
    count: int


class LatencyHistogram:
    """A thread-safe histogram of durations in seconds over fixed bucket bounds."""

    def __init__(self, bounds: tuple[float, ...] = BATCH_LATENCY_BOUNDS) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        index = len(self.bounds)
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                index = i
                break
        with self._lock:
            self._counts[index] += 1
            self._sum += seconds

    def snapshot(self) -> HistogramSnapshot:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative: list[int] = []
        running = 0
        for c in counts:
            running += c
            cumulative.append(running)
        return HistogramSnapshot(bounds=self.bounds, cumulative=tuple(cumulative), total=total, count=running)


class OperatorCounts:
    """Rows through a running query's fused operators since it started, by point.

    A point names where in the fused operators rows are counted (see
    :mod:`ksqlpy.runtime.step_counts`, which attributes them to the plan's steps): ``source/<i>``
    (records read for input ``i``), ``<op>/in`` and ``<op>/out`` (rows into and out of a fused
    operator: ``main``, a join side ``side/<i>``, a re-keyed join ``rekey/<join context>``),
    ``main/where`` and ``main/grouped`` (an aggregation's rows past its WHERE, and those with a
    group), ``join/<context>`` (rows a join emitted) and ``sink`` (records written). The query's
    thread adds a batch's row counts; readers on other threads take snapshots.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, point: str, rows: int) -> None:
        with self._lock:
            self._counts[point] = self._counts.get(point, 0) + rows

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
