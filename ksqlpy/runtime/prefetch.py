"""Decoding a query's next batch while its current one is processed.

An aggregation on the embedded store spends about a third of each batch decoding its records
(Arrow's JSON reader) and most of the rest in DuckDB, and both release the GIL: so the next
batch is read and decoded on a second thread while the query's thread aggregates and commits
the current one, and a machine's second core works too. The log is read there as well (a DuckDB
scan of the batch's records, beside the current batch's transaction): the scan was ~11-16 % of
the query's thread, which limits a batch, and is ~4 % of it now (waiting included). With a core
to spare, Q2 on one million events went from ~0.28-0.44 M to ~0.39-0.57 M events/s in runs back
to back; on a machine whose cores were all busy (load 5-6 on two) the two were level.

:class:`DecodeAhead` stands in for the query's reader. ``poll`` hands out the batch read ahead
(reading it on the spot when none is, or when the read ahead found nothing: records may have
come since), then has the next read and decoded;
:meth:`DecodeAhead.decoded` is the batch handed out, decoded. ``positions`` are the reader's
right after the batch handed out last, not after the one read ahead: each transaction commits
exactly the positions of the records it processed, so exactly-once holds as without reading
ahead (a query that fails or stops leaves the batch read ahead uncommitted; the next start reads
it again). Only a reader whose positions move by nothing but its own polls fits (no group
rebalances, no read-ahead transactions): the embedded store's.

A batch that was not read ahead (the query's first, or its first after it was idle) is read at
most ``first_records`` long: decoded on the query's thread with no batch beside it, and the first
batch of a query also pays for its warm-up (the decoder learning how the records spell their
fields, the aggregation's first statements); a short one hands the next, full-size batch to the
decoding thread that much sooner, so both cores work from the start.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from ksqlpy.runtime.codec import Decoded, SourceDecoder
from ksqlpy.runtime.store.base import TopicPartition, TopicReader


@dataclass(frozen=True, slots=True)
class _Batch:
    records: pa.Table
    decoded: Decoded | None  # None for an empty poll
    positions: dict[TopicPartition, int]  # the reader's, right after the poll


class DecodeAhead(TopicReader):
    """A reader that reads one batch ahead of its caller and decodes it on a thread of its own."""

    def __init__(
        self, reader: TopicReader, decoder: SourceDecoder, name: str, *, first_records: int | None = None
    ) -> None:
        self.reader = reader
        self.decoder = decoder
        self.first_records = first_records
        self._positions = reader.positions()
        self._ahead: Future[_Batch] | None = None
        self._current: _Batch | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"decode-{name}")

    def _read(self, max_records: int, timeout: float) -> _Batch:
        records = self.reader.poll(max_records, timeout)
        decoded = self.decoder.decode(records) if records.num_rows else None
        return _Batch(records, decoded, self.reader.positions())

    def poll(self, max_records: int = 10_000, timeout: float = 0.1) -> pa.Table:
        ahead, self._ahead = self._ahead, None
        batch = ahead.result() if ahead is not None else None
        if batch is None or batch.decoded is None:
            # Nothing was there when the batch ahead was read: read now, waiting up to `timeout`
            # (an empty read ahead is never handed out, as records may have come since).
            first = max_records if self.first_records is None else min(max_records, self.first_records)
            batch = self._read(first, timeout)
        self._current = batch
        self._positions = batch.positions
        if batch.decoded is not None:
            # Only while records come: an idle query reads nothing ahead (its poll waits instead).
            self._ahead = self._worker.submit(self._read, max_records, 0.0)
        return batch.records

    def decoded(self, records: pa.Table) -> Decoded:
        """``records`` (the batch :meth:`poll` returned last) decoded."""
        batch = self._current
        if batch is not None and batch.records is records and batch.decoded is not None:
            return batch.decoded
        return self.decoder.decode(records)

    def positions(self) -> dict[TopicPartition, int]:
        return dict(self._positions)

    def commit(self, positions: Mapping[TopicPartition, int] | None = None) -> None:
        self.reader.commit(self.positions() if positions is None else positions)

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._positions, key=lambda tp: (tp.topic, tp.partition))

    def wakeup(self) -> None:
        self.reader.wakeup()

    def close(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
        self._worker.shutdown(wait=True)
        self.reader.close()
