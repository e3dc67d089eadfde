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

from ksqlpy.planner.catalog import Source
from ksqlpy.planner.physical import AggregateStep
from ksqlpy.runtime.codec import SinkEncoder, SourceDecoder
from ksqlpy.runtime.evaluate import TS, StepEvaluator, deletes_of
from ksqlpy.runtime.join.align import InputAligner, processing_order
from ksqlpy.runtime.join.operator import SEQ, JoinProcessor
from ksqlpy.runtime.join.plan import KEY, WINDOWED_KEY_FIELDS
from ksqlpy.runtime.join.plan import TS as JOIN_TS
from ksqlpy.runtime.join.repartition import (
    JoinWriter,
    Repartitioned,
    repartitioned,
    rows_to_write,
    stored_rows,
    window_store_logs,
    with_window_columns,
)
from ksqlpy.runtime.processing_log import ProcessingLog
from ksqlpy.runtime.query import BATCH_SIZE, PersistentQuery, encode_windowed, new_connection
from ksqlpy.runtime.serde.registry import registry_for
from ksqlpy.runtime.stats import OperatorCounts, record_bytes
from ksqlpy.runtime.store.base import BatchAborted, TopicSpec

#: ksqlDB's property for how long a task waits for an input with nothing buffered (Kafka Streams'
#: default, 0: only while that input is behind its end)
MAX_TASK_IDLE_MS = "ksql.streams.max.task.idle.ms"
#: the consumer setting bounding the records one poll returns
MAX_POLL_RECORDS = "ksql.streams.max.poll.records"


class JoinQuery(PersistentQuery):
    """A persistent query whose plan joins two or more inputs."""

    _layout: Repartitioned | None = None
    #: the join's stores keep one-partition changelogs (their rows name no partition), restored
    #: whole when the group gives this server a partition its state is behind on
    changelogs_follow_input = False
    #: the inner joins whose results are re-keyed through repartition topics: processor,
    #: input decoders, the re-keying select, writer
    _inner: list[tuple[JoinProcessor, list[SourceDecoder], StepEvaluator, JoinWriter]]

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
        return self.layout.topics

    @property
    def layout(self) -> Repartitioned:
        """The join tree as this query runs it: a persistent query's re-keyed sides go through
        their repartition topics (:mod:`ksqlpy.runtime.join.repartition`)."""
        if self._layout is None:
            if self.group is None:
                self._layout = Repartitioned(root=self.plan.join, writers=(), changelogs={})
            else:
                self._layout = repartitioned(self.plan.join, self.group, self._partitions)
        return self._layout

    def _partitions(self, topic: str) -> int:
        spec = self.store.describe_topic(topic)
        return spec.partitions if spec is not None else 1

    def _create_internal_topics(self) -> None:
        """The repartition topics (as many partitions as the side's topic) and the changelogs
        of re-keyed tables (compacted, as Kafka Streams creates them)."""
        layout = self.layout
        for target in layout.targets:
            self.store.create_topic(
                TopicSpec(
                    name=target.topic, partitions=target.partitions, config={"cleanup.policy": "delete"}
                ),
                exist_ok=True,
            )
            changelog = layout.changelogs.get(target.topic)
            if changelog is not None and not self.store.changelogged:
                self.store.create_topic(
                    TopicSpec(
                        name=changelog, partitions=target.partitions, config={"cleanup.policy": "compact"}
                    ),
                    exist_ok=True,
                )
        for log in self._store_logs.values():
            self.store.create_topic(
                TopicSpec(
                    name=log.topic, partitions=log.partitions, config={"cleanup.policy": "compact,delete"}
                ),
                exist_ok=True,
            )

    @property
    def _store_logs(self) -> dict[tuple[int, str], Source]:
        # Where state is kept apart from the log (Kafka), the join's state stores log themselves
        # (and are restored from) their changelogs; these record-as-stored logs are for the
        # embedded store, which has no state changelogs of its own.
        if self.group is None or self.store.changelogged:
            return {}
        if self._store_log_sources is None:
            self._store_log_sources = {}
            for root in (self.layout.root, *(w.root for w in self.layout.join_writers)):
                self._store_log_sources.update(window_store_logs(root, self.group, self._partitions))
        return self._store_log_sources

    _store_log_sources: dict[tuple[int, str], Source] | None = None

    def _window_store_changes(self) -> list[tuple[str, pa.Table]]:
        """What the last batch put into the join's window stores, as their changelog records."""
        out: list[tuple[str, pa.Table]] = []
        stored = [entry for p in (self._join, *(j for j, _, _, _ in self._inner)) for entry in p.stored]
        for node, which, rows in stored:
            log = self._store_logs.get((id(node), which))
            if log is None:
                continue
            kept = stored_rows(rows)
            if kept.num_rows == 0:
                continue
            if node.windowed:
                # between windowed sources the join key holds the record's window too (see
                # windowed_key_type); the changelog's key schema is the key's alone
                key = pc.struct_field(kept.column(KEY), WINDOWED_KEY_FIELDS[0])
                kept = kept.set_column(kept.schema.get_field_index(KEY), KEY, key)
            # the store keeps each record in the window starting at its timestamp
            start = kept.column(JOIN_TS)
            size = log.window.size_ms if log.window is not None and log.window.size_ms else 0
            kept = kept.append_column("__WINDOWSTART", start).append_column(
                "__WINDOWEND", pc.add(start, size)
            )
            records, errors = encode_windowed(self._store_encoders[(id(node), which)], log, kept)
            self.plog.write(self.query_id, errors)
            out.append((log.topic, records))
        return out

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
            self._create_internal_topics()
            self._join = JoinProcessor(self.layout.root, self.query_id, con)
            self._join.counts = self.operator_counts
            # counters are numbered by the inputs of the whole tree, as the plan has them
            tree_index = {id(i): n for n, i in enumerate(self.plan.join.inputs())}
            self._join.input_index = tree_index
            self._decoders = [SourceDecoder(i.source, registry) for i in self._join.inputs]
            self._inner = []
            for w in self.layout.join_writers:
                inner = JoinProcessor(w.root, self.query_id, con)
                decoders = [SourceDecoder(i.source, registry) for i in inner.inputs]
                inner.counts, inner.input_index = self.operator_counts, tree_index
                self._inner.append((inner, decoders, StepEvaluator(w.select, con), w))
            self._inner_encoders = {id(w): SinkEncoder(w.target, registry) for w in self.layout.join_writers}
            self._store_encoders = {at: SinkEncoder(log, registry) for at, log in self._store_logs.items()}
            self._writers = [
                (
                    w,
                    SourceDecoder(w.side.source, registry),
                    StepEvaluator(w.side.select, con),
                    SinkEncoder(w.target, registry),
                )
                for w in self.layout.writers
            ]
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
            if self._partitioned is not None:
                # records held back for a partition that moves are read again by its new owner
                self._partitioned.on_revoke = lambda _partitions: self._aligner.forget()
            self._reader = self._open_reader(self.topics)
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
            self._ready.set()
            return
        self._ready.set()
        reader = self._reader
        aligner = self._aligner
        try:
            waited = True
            while not self._stop.is_set():
                wait = aligner.next_deadline()
                # after a batch, look without waiting, so idleness shows at once (see QueryRunner)
                timeout = 0.2 if wait is None else min(0.2, wait)
                records = reader.poll(self._poll_records, timeout=timeout if waited else 0.0)
                waited = records.num_rows == 0
                self._polled()
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
                try:
                    self._batch(released, encoder, reader)
                except BatchAborted as aborted:
                    aligner.forget()
                    self._aborted(released.num_rows, aborted)
                    continue
                self.batch_latency.observe(time.monotonic() - started)
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
        finally:
            self._idle.set()
            with contextlib.suppress(Exception):  # closing is best effort
                reader.close()

    def _repartition(self, records: pa.Table) -> list[tuple[str, pa.Table]]:
        """Stage one of each re-keyed side: its topic's records of the batch, re-keyed and
        encoded for its repartition topic."""
        out: list[tuple[str, pa.Table]] = []
        for writer, decoder, evaluator, encoder in self._writers:
            part = records.filter(pc.equal(records.column("topic"), writer.side.source.topic))
            if part.num_rows == 0:
                continue
            decoded = decoder.decode(part)
            self.plog.write(self.query_id, decoded.errors)
            result = evaluator.evaluate(decoded.table, self.query_id)
            self.plog.write(self.query_id, result.errors)
            rows = with_window_columns(rows_to_write(result.rows, writer.target), writer.target)
            encoded, errors = encode_windowed(encoder, writer.target, rows)
            self.plog.write(self.query_id, errors)
            if encoded.num_rows:
                out.append((writer.target.topic, encoded))
        return out

    def _changelogs(self, records: pa.Table) -> list[tuple[str, pa.Table]]:
        """What the re-keyed tables' stores log: each record read from their repartition
        topics, as read, in the same partition."""
        out: list[tuple[str, pa.Table]] = []
        if self.store.changelogged:
            return out  # the re-keyed table's state store logs itself (see _store_logs)
        for topic, changelog in self.layout.changelogs.items():
            part = records.filter(pc.equal(records.column("topic"), topic))
            if part.num_rows:
                out.append((changelog, part.select(["partition", "timestamp", "key", "value", "headers"])))
        return out

    def _decode(
        self,
        records: pa.Table,
        join: JoinProcessor | None = None,
        decoders: list[SourceDecoder] | None = None,
    ) -> list[pa.Table | None]:
        # the aligner has released the batch's records in processing order already
        if join is None or decoders is None:
            return decode_inputs(records, self._join, self._decoders, self.plog, self.query_id, ordered=True)
        return decode_inputs(records, join, decoders, self.plog, self.query_id, ordered=True)

    def _batch(self, records: pa.Table, encoder: SinkEncoder, reader: Any) -> None:
        topics = records.column("topic")
        for n, source in enumerate(self.plan.join.inputs()):  # records read from each source topic
            read = pc.sum(pc.equal(topics, source.source.topic)).as_py() or 0
            self.operator_counts.add(f"source/{n}", read)
        decoded = self._decode(records)
        inner_decoded = [self._decode(records, inner, decoders) for inner, decoders, _, _ in self._inner]
        internal = [*self._repartition(records), *self._changelogs(records)]
        assert self.plan.sink is not None and self.group is not None
        with self.store.transaction() as tx:
            for topic, batch in internal:
                tx.produce(topic, batch)
            for (inner, _, select, writer), parts in zip(self._inner, inner_decoded, strict=True):
                # an inner join whose result is re-keyed through a repartition topic
                result = inner.process(parts, tx.state)
                self.plog.write(self.query_id, result.errors)
                if result.rows.num_rows == 0:
                    continue
                evaluated = select.evaluate(result.rows, self.query_id)
                self.operator_counts.add(f"rekey/{writer.root.context}/in", result.rows.num_rows)
                self.operator_counts.add(f"rekey/{writer.root.context}/out", evaluated.rows.num_rows)
                self.plog.write(self.query_id, evaluated.errors)
                rows = rows_to_write(evaluated.rows, writer.target)
                written, errors = self._inner_encoders[id(writer)].encode(
                    rows, rows.column(TS), deletes_of(rows)
                )
                self.plog.write(self.query_id, errors)
                if written.num_rows:
                    tx.produce(writer.target.topic, written)
            joined = self._join.process(decoded, tx.state)
            self.plog.write(self.query_id, joined.errors)
            self.operator_counts.add("main/in", joined.rows.num_rows)
            for topic, changes in self._window_store_changes():
                tx.produce(topic, changes)
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
        # ksqlDB deletes a terminated query's internal topics with its state
        layout = self.layout
        for inner, _, _, _ in getattr(self, "_inner", []):
            with self.store.transaction() as tx:
                inner.drop_state(tx.state)
        internal = [target.topic for target in layout.targets] + list(layout.changelogs.values())
        internal += [log.topic for log in self._store_logs.values()]
        for topic in internal:
            if self.store.describe_topic(topic) is not None:
                self.store.delete_topic(topic)
        super().drop_state()

    # the join's stores are logged, and restored, with the aggregation's after it
    def _log_changes(self, prefix: str, state: Any) -> list[Any]:
        inner = [log for processor, _, _, _ in self._inner for log in processor.log_changes(prefix, state)]
        return [*self._join.log_changes(prefix, state), *inner, *super()._log_changes(prefix, state)]

    def _changelog_topics(self, prefix: str) -> list[str]:
        join = getattr(self, "_join", None)
        topics = [] if join is None else join.changelog_topics(prefix)
        topics += [t for processor, _, _, _ in getattr(self, "_inner", []) for t in processor.changelog_topics(prefix)]
        return [*topics, *super()._changelog_topics(prefix)]

    def _source_topics(self) -> list[str]:
        return self.topics

    def _state_partitions(self) -> tuple[list[str], bool]:
        # The join's inputs are co-partitioned; its stores' rows name no partition.
        return self.topics, False


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
