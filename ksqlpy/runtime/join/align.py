"""Time alignment of a join's inputs: which polled records a join may process now.

A Kafka Streams task buffers each input partition's records and always processes next the
record at the head of the partition whose head has the lowest timestamp. When one of its
partitions has nothing buffered, a record that partition has yet to deliver may be earlier than
every buffered one (a table row a stream record needs), so the task waits, as
``max.task.idle.ms`` (ksqlDB: ``ksql.streams.max.task.idle.ms``) says:

- ``-1``: never; process what is buffered.
- ``0`` (the default): while the partition is behind its end (its records are written, not yet
  read); a partition read to its end holds nothing back.
- ``n > 0``: also for up to ``n`` ms after the partition ran dry at its end, for new records.

:class:`InputAligner` does this for a whole poll at a time. Records are buffered per input
partition; tasks are partition groups (partition ``p`` of every input topic, as the topics are
co-partitioned). Within a group, the order the task would process the buffered records in is a
stable sort by each record's *running maximum* timestamp in its partition, ties going to the
partition buffered first: a record behind an earlier one of its partition only becomes a head
once that one is processed, and is then the lowest head. What is released is the prefix of
that order up to the point where a partition that must be waited for runs dry. A partition
behind its end is waited for at most :data:`BEHIND_WAIT_S` (longer than ``max.task.idle.ms``
if that is set higher): a reader that has not delivered its records by then is not going to
soon (reassigned, or stopped at a transaction marker), and the query must not stall.

Positions are committed only up to what is released: a held record is read again after a
restart, never lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ksqlpy.runtime.store.base import RECORD_SCHEMA, TopicPartition

#: how long a partition behind its end is waited for, at most, when ``max.task.idle.ms`` is lower
BEHIND_WAIT_S = 10.0


@dataclass(slots=True)
class _Buffer:
    """One input partition's records not yet released, in offset order."""

    index: int  # when it was first buffered: breaks timestamp ties between partitions
    table: pa.Table = field(default_factory=RECORD_SCHEMA.empty_table)
    times: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    #: when others were first found waiting on it, dry (at its end) and behind its end
    dry_since: float | None = None
    behind_since: float | None = None


class InputAligner:
    """Buffers a join's polled records and releases them in timestamp order across inputs."""

    def __init__(self, idle_ms: int = 0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_ms = idle_ms
        self._clock = clock
        self._buffers: dict[TopicPartition, _Buffer] = {}
        self._buffered = 0  # partitions buffered so far (each buffer's index)
        #: end offsets last read per partition (they only grow, so a position below one is behind)
        self._ends: dict[TopicPartition, int] = {}

    @property
    def held(self) -> int:
        """Records buffered and not yet released."""
        return sum(b.table.num_rows for b in self._buffers.values())

    def add(self, records: pa.Table) -> None:
        """Buffer a polled batch (:data:`RECORD_SCHEMA`; each partition's records in offset order)."""
        if records.num_rows == 0:
            return
        topics = records.column("topic").combine_chunks().dictionary_encode()
        names = topics.dictionary.to_pylist()
        codes = (topics.indices.to_numpy().astype(np.int64) << 32) | records.column("partition").to_numpy()
        unique, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(unique)))])
        grouped = records.take(pa.array(order))
        times = grouped.column("timestamp").to_numpy()
        for u in np.argsort(first, kind="stable"):
            code = int(unique[u])
            tp = TopicPartition(names[code >> 32], code & 0xFFFFFFFF)
            lo, hi = int(bounds[u]), int(bounds[u + 1])
            buffer = self._buffer(tp)
            buffer.table = pa.concat_tables([buffer.table, grouped.slice(lo, hi - lo)])
            buffer.times = np.concatenate([buffer.times, times[lo:hi]])
            buffer.dry_since = buffer.behind_since = None

    def forget(self) -> None:
        """Drop every held record (its partition moved to another server, or its batch was
        aborted): its reader reads it again from the last committed position."""
        self._buffers.clear()

    def _buffer(self, tp: TopicPartition) -> _Buffer:
        buffer = self._buffers.get(tp)
        if buffer is None:
            buffer = self._buffers[tp] = _Buffer(self._buffered)
            self._buffered += 1
        return buffer

    def release(
        self,
        positions: Mapping[TopicPartition, int],
        end_offsets: Callable[[str], dict[int, int]],
        *,
        everything: bool = False,
    ) -> pa.Table:
        """The buffered records that may be processed now, in processing order (see
        :func:`processing_order`); ``positions`` are the reader's (the next offset to read per
        assigned partition), ``end_offsets`` the store's. ``everything``: release all, waiting
        for nothing (records read again to rebuild state, processed once before)."""
        for tp in [tp for tp in self._buffers if tp not in positions]:
            del self._buffers[tp]  # no longer this reader's to process
        groups: dict[int, list[TopicPartition]] = {}
        for tp in positions:
            groups.setdefault(tp.partition, []).append(tp)
        now = self._clock()
        pieces: list[tuple[int, pa.Table]] = []
        for members in groups.values():
            counts = self._releasable(members, positions, end_offsets, now, everything)
            for tp, n in counts.items():
                buffer = self._buffers[tp]
                pieces.append((buffer.index, buffer.table.slice(0, n)))
                buffer.table = buffer.table.slice(n)
                buffer.times = buffer.times[n:]
        if not pieces:
            return RECORD_SCHEMA.empty_table()
        pieces.sort(key=lambda piece: piece[0])
        released = pa.concat_tables([t for _, t in pieces])
        return released.take(pa.array(processing_order(released)))

    def _releasable(
        self,
        members: list[TopicPartition],
        positions: Mapping[TopicPartition, int],
        end_offsets: Callable[[str], dict[int, int]],
        now: float,
        everything: bool,
    ) -> dict[TopicPartition, int]:
        """How many records of each buffered partition of one group may be released."""
        full = sorted(
            (tp for tp in members if tp in self._buffers and self._buffers[tp].table.num_rows),
            key=lambda tp: self._buffers[tp].index,
        )
        if not full or everything:
            return {tp: self._buffers[tp].table.num_rows for tp in full}
        for tp in members:
            if tp not in full and self._waits_for(tp, self._buffer(tp), positions[tp], end_offsets, now):
                return {}
        # the group's processing order, and where each partition runs dry in it
        times = [self._buffers[tp].times for tp in full]
        order = _merge_order(times)
        owner = np.repeat(np.arange(len(full)), [len(t) for t in times])[order]
        cut = len(order)
        for i, tp in enumerate(full):
            # a partition that runs dry while it must be waited for stops the group there
            if self._waits_for(tp, None, positions[tp], end_offsets, now):
                last = int(np.flatnonzero(owner == i)[-1])
                cut = min(cut, last + 1)
        taken = np.bincount(owner[:cut], minlength=len(full))
        return {tp: int(taken[i]) for i, tp in enumerate(full) if taken[i]}

    def _waits_for(
        self,
        tp: TopicPartition,
        dry: _Buffer | None,
        position: int,
        end_offsets: Callable[[str], dict[int, int]],
        now: float,
    ) -> bool:
        """Whether records must wait for partition ``tp``, dry (its buffer ``dry``, whose wait
        times this starts), or about to run dry (``dry`` None: it has just been waited for)."""
        if self.idle_ms < 0:
            return False
        behind = self._behind(tp, position, end_offsets)
        if dry is None:
            return behind or self.idle_ms > 0
        if behind:
            if dry.behind_since is None:
                dry.behind_since = now
            return now - dry.behind_since < max(BEHIND_WAIT_S, self.idle_ms / 1000)
        dry.behind_since = None
        if dry.dry_since is None:
            dry.dry_since = now
        return now - dry.dry_since < self.idle_ms / 1000

    def _behind(
        self, tp: TopicPartition, position: int, end_offsets: Callable[[str], dict[int, int]]
    ) -> bool:
        if position < self._ends.get(tp, 0):
            return True
        for p, end in end_offsets(tp.topic).items():
            self._ends[TopicPartition(tp.topic, p)] = end
        return position < self._ends.get(tp, 0)

    def committable(self, positions: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The positions to commit: the reader's, except before the first held record."""
        out = dict(positions)
        for tp, buffer in self._buffers.items():
            if buffer.table.num_rows and tp in out:
                out[tp] = int(buffer.table.column("offset")[0].as_py())
        return out

    def next_deadline(self) -> float | None:
        """Seconds until a wait on a dry partition ends, if records are held and one will."""
        if not self.held or self.idle_ms < 0:
            return None
        now = self._clock()
        waits: list[float] = []
        for b in self._buffers.values():
            if b.table.num_rows:
                continue
            if b.behind_since is not None:
                waits.append(b.behind_since + max(BEHIND_WAIT_S, self.idle_ms / 1000) - now)
            if b.dry_since is not None:
                waits.append(b.dry_since + self.idle_ms / 1000 - now)
        ahead = [w for w in waits if w > 0]
        return min(ahead) if ahead else None


def _merge_order(times: list[np.ndarray]) -> np.ndarray:
    """The order of the records of several partitions (``times[i]``: partition i's timestamps
    in offset order) when the partition with the lowest head always goes next, ties to the
    lower ``i``: a stable sort by running maximum, then partition."""
    keys = np.concatenate([np.maximum.accumulate(t) if len(t) else t for t in times])
    which = np.repeat(np.arange(len(times)), [len(t) for t in times])
    return np.lexsort((which, keys))


def processing_order(records: pa.Table) -> np.ndarray:
    """The order Kafka Streams would process a batch in: each partition's records in offset
    order, and next always the partition whose next record has the lowest timestamp (ties: the
    partition read first)."""
    if records.num_rows == 0:
        return np.empty(0, dtype=np.int64)
    topics = records.column("topic").combine_chunks().dictionary_encode()
    codes = (topics.indices.to_numpy().astype(np.int64) << 32) | records.column("partition").to_numpy()
    unique, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    if len(unique) == 1:
        return np.arange(records.num_rows)
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(unique))
    queue = rank[inverse]
    grouped = np.argsort(queue, kind="stable")
    times = records.column("timestamp").to_numpy()[grouped]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(queue, minlength=len(unique)))])
    order = _merge_order([times[bounds[i] : bounds[i + 1]] for i in range(len(unique))])
    out: np.ndarray = grouped[order]
    return out


__all__ = ["BEHIND_WAIT_S", "InputAligner", "processing_order"]
