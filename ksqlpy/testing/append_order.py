"""The embedded store that conformance cases run on: it also numbers every record it appends.

ksqlDB's harness compares a sink's records in the order its queries produced them: its test
driver keeps one list per topic, whatever the partition. A topic store keeps order within a
partition only, so a sink of several partitions read back partition by partition loses how the
records of different keys interleaved. :class:`AppendOrderStore` numbers each record as it is
appended, keyed by topic, partition and offset, and :meth:`AppendOrderStore.in_append_order`
sorts a read batch back into that order.

A transaction that rolls back leaves its numbers behind, but the offsets it used are appended
again by the retry, which numbers them afresh: the last number of an offset is the one kept.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from ksqlpy.runtime.store import _records
from ksqlpy.runtime.store.embedded import EmbeddedStore


class AppendOrderStore(EmbeddedStore):
    """An :class:`EmbeddedStore` that remembers the order of its appends across partitions."""

    def __init__(self, path: str = ":memory:", *, maintenance_interval: float | None = 30.0) -> None:
        super().__init__(path, maintenance_interval=maintenance_interval)
        self._rank: dict[tuple[str, int, int], int] = {}
        self._ranked = 0  # records numbered so far: the next record's number

    def _append(
        self,
        cur: duckdb.DuckDBPyConnection,
        name: str,
        records: pa.Table,
        ends: dict[tuple[int, int], int],
        recent: dict[tuple[int, int], pa.Table] | None = None,
    ) -> None:
        if records.num_rows == 0:
            super()._append(cur, name, records, ends, recent)
            return
        # The partitions and first offsets the append is about to use, worked out the same way
        # before it moves them on.
        topic = self._topic(name)
        partitions = _records.choose_partitions(
            _records.normalize(records), topic.spec.partitions, topic.next_null_partition
        )
        offsets = {
            int(p): ends.get((topic.id, int(p)), self._bounds[(topic.id, int(p))].end) for p in np.unique(partitions)
        }
        super()._append(cur, name, records, ends, recent)
        for p in partitions.tolist():
            self._rank[(name, p, offsets[p])] = self._ranked
            self._ranked += 1
            offsets[p] += 1

    def in_append_order(self, batch: pa.Table) -> pa.Table:
        """``batch`` (read records: ``topic``, ``partition``, ``offset``, ...) sorted into the
        order its records were appended in; records of unknown rank keep their place at the end."""
        ranks = [
            self._rank.get((t, p, o), self._ranked + i)
            for i, (t, p, o) in enumerate(
                zip(
                    batch.column("topic").to_pylist(),
                    batch.column("partition").to_pylist(),
                    batch.column("offset").to_pylist(),
                    strict=True,
                )
            )
        ]
        return batch.take(pa.array(np.argsort(np.asarray(ranks, dtype=np.int64), kind="stable")))
