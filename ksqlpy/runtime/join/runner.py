"""The runner of a join query: one reader over all of the query's topics.

Polled records go through an :class:`~ksqlpy.runtime.join.align.InputAligner`, which releases
them in processing order — each partition's records in offset order, and across partitions the
one whose next record has the lowest timestamp first, as a Kafka Streams task picks its next
record — holding records back while an input that may still deliver earlier ones has none
buffered (``ksql.streams.max.task.idle.ms``). Each release is numbered
(``__SEQ``), split by topic and decoded with each input's decoder, joined
(:class:`~ksqlpy.runtime.join.operator.JoinProcessor`), and the join's output goes through the
post-join operator (a fused select, or an aggregation) to the sink. The join state, the
aggregation state, the produced records and the consumed positions commit in one store
transaction, so a restarted query resumes after the last committed batch with its state as
that batch left it; positions are committed only up to the first record still held.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.planner.physical import AggregateStep
from ksqlpy.runtime.codec import SinkEncoder, SourceDecoder
from ksqlpy.runtime.evaluate import StepEvaluator
from ksqlpy.runtime.join.align import InputAligner, processing_order
from ksqlpy.runtime.join.operator import SEQ, JoinProcessor
from ksqlpy.runtime.processing_log import ProcessingLog
from ksqlpy.runtime.query import BATCH_SIZE, PersistentQuery, encode_windowed, new_connection
from ksqlpy.runtime.serde.registry import registry_for
from ksqlpy.runtime.stats import OperatorCounts, record_bytes

#: ksqlDB's property for how long a task waits for an input with nothing buffered (Kafka Streams'
#: default, 0: only while that input is behind its end)
MAX_TASK_IDLE_MS = "ksql.streams.max.task.idle.ms"
#: the consumer setting bounding the records one poll returns
MAX_POLL_RECORDS = "ksql.streams.max.poll.records"


class JoinQuery(PersistentQuery):
    """A persistent query whose plan joins two or more inputs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._aligner = InputAligner()
        self._poll_records = BATCH_SIZE

    def configure(self, settings: Mapping[str, str]) -> None:
        """Apply the query's settings (the server's, overridden by its statement's)."""
        self._aligner = InputAligner(_setting(settings, MAX_TASK_IDLE_MS, 0))
        self._poll_records = max(1, _setting(settings, MAX_POLL_RECORDS, BATCH_SIZE))

    @property
    def topics(self) -> list[str]:
        return sorted({i.source.topic for i in self.plan.join.inputs()})

    def caught_up(self) -> bool:
        reader = self._reader
        if reader is None or self.state.value != "RUNNING":
            return True
        if self._aligner.held:
            return False
        positions = {(tp.topic, tp.partition): off for tp, off in reader.positions().items()}
        for topic in self.topics:
            for p, end in self.store.end_offsets(topic).items():
                if end > 0 and positions.get((topic, p), 0) < end:
                    return False
        return True

    def _run(self) -> None:
        try:
            registry = registry_for(self.store)
            con = new_connection()
            self._join = JoinProcessor(self.plan.join, self.query_id, con)
            self._join.counts = self.operator_counts
            self._decoders = [SourceDecoder(i.source, registry) for i in self._join.inputs]
            assert self.plan.sink is not None
            encoder = SinkEncoder(self.plan.sink, registry)
            step = self.plan.step
            if isinstance(step, AggregateStep):
                from ksqlpy.runtime.aggregate import AggregateProcessor

                self._processor = AggregateProcessor(step, self.query_id, con)
                self._processor.counts = self.operator_counts
                self._post: StepEvaluator | None = None
            else:
                # a windowed join's results keep their window in a windowed sink's key
                bounds = self.plan.join.windowed and self.plan.sink.window is not None
                self._post = StepEvaluator(step, con, window_bounds=bounds)
            self._prepare_state()
            self._reader = self.store.open_reader(self.topics, group=self.group, start=self.start_position)
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
            self._ready.set()
            return
        self._ready.set()
        reader = self._reader
        aligner = self._aligner
        try:
            while not self._stop.is_set():
                wait = aligner.next_deadline()
                records = reader.poll(self._poll_records, timeout=0.2 if wait is None else min(0.2, wait))
                if records.num_rows:
                    self._idle.clear()
                    self.records_in += records.num_rows
                    self.bytes_in += record_bytes(records)
                    aligner.add(records)
                released = (
                    aligner.release(reader.positions(), self.store.end_offsets, everything=reader.replaying)
                    if aligner.held
                    else records
                )
                if released.num_rows == 0:
                    if records.num_rows == 0 and not aligner.held:
                        self._idle.set()
                    continue
                started = time.monotonic()
                self._batch(released, encoder, reader)
                self.batch_latency.observe(time.monotonic() - started)
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
        finally:
            self._idle.set()
            with contextlib.suppress(Exception):  # closing is best effort
                reader.close()

    def _decode(self, records: pa.Table) -> list[pa.Table | None]:
        # the aligner has released the batch's records in processing order already
        return decode_inputs(
            records, self._join, self._decoders, self.plog, self.query_id, self.operator_counts, ordered=True
        )

    def _batch(self, records: pa.Table, encoder: SinkEncoder, reader: Any) -> None:
        decoded = self._decode(records)
        assert self.plan.sink is not None and self.group is not None
        with self.store.transaction() as tx:
            joined = self._join.process(decoded, tx.state)
            self.plog.write(self.query_id, joined.errors)
            self.operator_counts.add("main/in", joined.rows.num_rows)
            if self._post is not None:
                result = self._post.evaluate(joined.rows, self.query_id)
                out, errors = encode_windowed(encoder, self.plan.sink, result.rows)
            else:
                result = self._processor.process(joined.rows, tx.state)
                out, errors = encode_windowed(encoder, self.plan.sink, result.rows)
            self.operator_counts.add("main/out", result.rows.num_rows)
            self.plog.write(self.query_id, result.errors)
            self.plog.write(self.query_id, errors)
            if out.num_rows:
                tx.produce(self.plan.sink.topic, out)
            self._produce_changes(tx)
            tx.commit_positions(self.group, self._aligner.committable(reader.positions()))
        self.records_out += out.num_rows
        self.bytes_out += record_bytes(out)
        self.operator_counts.add("sink", out.num_rows)

    def drop_state(self) -> None:
        join = getattr(self, "_join", None)
        if join is not None:
            with self.store.transaction() as tx:
                join.drop_state(tx.state)
        super().drop_state()

    # the join's stores are logged, and restored, with the aggregation's after it
    def _log_changes(self, prefix: str, state: Any) -> list[Any]:
        return [*self._join.log_changes(prefix, state), *super()._log_changes(prefix, state)]

    def _changelog_topics(self, prefix: str) -> list[str]:
        join = getattr(self, "_join", None)
        topics = [] if join is None else join.changelog_topics(prefix)
        return [*topics, *super()._changelog_topics(prefix)]

    def _source_topics(self) -> list[str]:
        return self.topics


def decode_inputs(
    records: pa.Table,
    join: JoinProcessor,
    decoders: list[SourceDecoder],
    plog: ProcessingLog,
    query_id: str,
    counts: OperatorCounts | None = None,
    *,
    ordered: bool = False,
) -> list[pa.Table | None]:
    """Each input's records of the batch, decoded, with their place in processing order (put in
    that order first unless ``ordered``); records that do not decode go to the processing log.
    ``counts`` gets each input's records read (``source/<input>``)."""
    if not ordered:
        records = records.take(pa.array(processing_order(records)))
    records = records.append_column(SEQ, pa.array(np.arange(records.num_rows, dtype=np.int64)))
    out: list[pa.Table | None] = []
    for i, (side, decoder) in enumerate(zip(join.inputs, decoders, strict=True)):
        part = records.filter(pc.equal(records.column("topic"), side.source.topic))
        if counts is not None:
            counts.add(f"source/{i}", part.num_rows)
        if part.num_rows == 0:
            out.append(None)
            continue
        decoded = decoder.decode(part)
        plog.write(query_id, decoded.errors)
        out.append(decoded.table.append_column(SEQ, _sequence(part, decoded.table)))
    return out


def _setting(settings: Mapping[str, str], name: str, default: int) -> int:
    value = settings.get(name, settings.get(name.removeprefix("ksql.streams."), ""))
    try:
        return int(str(value).strip()) if str(value).strip() else default
    except ValueError:
        return default


#: the processing order of a batch, as the aligner releases records (kept for tests)
_processing_order = processing_order


def _sequence(part: pa.Table, decoded: pa.Table) -> pa.Array:
    """The ``__SEQ`` of each decoded record: decoding drops records but keeps their order, and
    a (partition, offset) names one record of a topic."""

    def place(p: Any, o: Any) -> Any:
        return (np.asarray(p, dtype=np.int64) << 40) | np.asarray(o, dtype=np.int64)

    keys = place(part.column("partition").to_numpy(), part.column("offset").to_numpy())
    wanted = place(decoded.column("ROWPARTITION").to_numpy(), decoded.column("ROWOFFSET").to_numpy())
    order = np.argsort(keys, kind="stable")
    at = order[np.searchsorted(keys[order], wanted)]
    return pa.array(part.column(SEQ).to_numpy()[at])


__all__ = ["JoinQuery", "decode_inputs"]
