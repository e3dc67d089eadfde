"""GROUP BY through ksqlDB's repartition topic: a persistent aggregation on Kafka, in two stages.

ksqlDB groups by anything but the source's key (``streamGroupByV2``, ``tableGroupBy``) by
writing the grouped records through the internal topic
``<application id>-Aggregate-GroupBy-repartition`` — keyed by the group key, with as many
partitions as the source topic — and aggregates what it reads back, so that each group lives in
exactly one partition, the one its serialized key hashes to (Kafka's default partitioner). On the
Kafka store a persistent ksqlpy query does the same, with one reader over both topics:

1. the source's records go through WHERE and the grouping
   (:meth:`~ksqlpy.runtime.aggregate.AggregateProcessor.prepare`) and are produced to the
   repartition topic: key the group key in the GROUP BY step's internal key format, value the
   aggregate arguments (``KSQL_INTERNAL_COL_<n>``) in its internal value format (JSON where that
   format cannot hold them as a record), timestamp and headers the input record's. A table's
   change goes as its retraction and its addition, each marked by a trailing byte as Kafka
   Streams marks the old and new value of a change (:data:`NEW`, :data:`OLD`,
   :data:`OLD_THEN_NEW` for a retraction whose addition follows to the same group). The old
   value comes from the source rows stage one keeps (``Aggregate-Source``, Kafka Streams'
   materialized KTable before ``groupBy``): each row in the store of the input partition it was
   read from, logged to that partition of the store's changelog, so that whichever server owns
   the partition (after a rebalance too) holds every previous value its updates retract;
   a tombstone, or a row whose group key becomes null, retracts only;
2. the records read back from the repartition topic (read_committed) are aggregated
   (:meth:`~ksqlpy.runtime.aggregate.AggregateProcessor.process_grouped`) with stream time kept
   per repartition partition; results go to the sink, state changes to the changelogs.

A batch's repartition records, sink records, state changes and consumed positions (of both
topics) commit in one store transaction, so each stage happens exactly once per record. The
embedded store and push queries aggregate in place (the aggregation emulates the partitioning).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.errors import KsqlpyError
from ksqlpy.parser.ast import SourceKind
from ksqlpy.planner.catalog import Column, ColumnNamespace, FormatInfo, Source
from ksqlpy.planner.physical import AggregateStep, group_key_name
from ksqlpy.runtime.aggregate import PART, SIGN, SKIP, AggregateProcessor
from ksqlpy.runtime.codec import HEADERS, SinkEncoder, SourceDecoder, fields_of, serde_spec
from ksqlpy.runtime.evaluate import TS
from ksqlpy.runtime.query import BATCH_SIZE, PersistentQuery, encode_windowed, new_connection
from ksqlpy.runtime.serde.format import validate_format
from ksqlpy.runtime.serde.registry import registry_for
from ksqlpy.runtime.stats import record_bytes
from ksqlpy.runtime.store.base import BatchAborted, TopicSpec

#: the trailing byte of a table GROUP BY's repartition record: an addition (the new value)
NEW = b"\x00"
#: a retraction (the old value) of a row leaving its group
OLD = b"\x01"
#: a retraction whose addition to the same group follows: one change, emitted once
OLD_THEN_NEW = b"\x02"

#: formats that write a single value bare (a null argument would make a null record value)
_UNWRAPPED = frozenset({"KAFKA", "NONE"})


def internal_column(n: int) -> str:
    """The repartition topic's value column for the n-th aggregate argument."""
    return f"KSQL_INTERNAL_COL_{n}"


def grouped_source(step: AggregateStep, application_id: str, partitions: int) -> Source:
    """The repartition topic of ``step`` (which must re-key), as a source: the GROUP BY step's
    key columns, then the aggregate arguments."""
    spec = step.repartition
    assert spec is not None
    keys = tuple(
        Column(name=name, type=k.type, namespace=ColumnNamespace.KEY)
        for name, k in zip(spec.key_names, step.group_keys, strict=True)
    )
    types = [t for call in step.calls for t in call.arg_types]
    values = tuple(Column(name=internal_column(n), type=t) for n, t in enumerate(types))
    topic = f"{application_id}-{spec.topic}"
    return Source(
        name=topic,
        kind=SourceKind.STREAM,
        topic=topic,
        columns=(*keys, *values),
        key_format=_key_format(spec.key_format, keys),
        value_format=_value_format(spec.value_format, values),
        partitions=max(1, partitions),
    )


def _own_schema(fmt: FormatInfo) -> FormatInfo:
    """An internal topic writes with a schema of its own columns, not a source's registered one."""
    properties = {k: v for k, v in fmt.properties.items() if k not in ("schemaId", "fullSchemaName")}
    return FormatInfo(format=fmt.format, properties=properties, wrap_single_value=fmt.wrap_single_value)


def _holds(fmt: FormatInfo, columns: tuple[Column, ...], *, is_key: bool) -> bool:
    try:
        validate_format(serde_spec(fmt), fields_of(columns), is_key=is_key)
    except KsqlpyError:
        return False
    return True


def _key_format(fmt: FormatInfo, keys: tuple[Column, ...]) -> FormatInfo:
    """The repartition key's format: the plan's, or JSON where it cannot hold the group key (a
    plan may key the topic as ksqlDB keys the sink, in a format the planner left as the source's)."""
    own = _own_schema(fmt)
    return own if _holds(own, keys, is_key=True) else FormatInfo(format="JSON")


def _value_format(fmt: FormatInfo, values: tuple[Column, ...]) -> FormatInfo:
    """The repartition value's format: the plan's, always wrapped, so that a row whose arguments
    are all null is still a record (a null value would be dropped as a stream tombstone); JSON
    where the plan's cannot hold the arguments as one record."""
    own = _own_schema(fmt)
    own = FormatInfo(format=own.format, properties=own.properties, wrap_single_value=None)
    if not values or own.format.upper() in _UNWRAPPED or not _holds(own, values, is_key=False):
        return FormatInfo(format="JSON")
    return own


class GroupByQuery(PersistentQuery):
    """A persistent GROUP BY that re-keys, on the Kafka store: stage one writes the repartition
    topic, stage two aggregates it."""

    _target: Source | None = None

    @property
    def target(self) -> Source:
        """The repartition topic, as a source (its partition count is the source topic's)."""
        if self._target is None:
            step = self.plan.step
            assert isinstance(step, AggregateStep) and self.group is not None
            spec = self.store.describe_topic(self.plan.source.topic)
            self._target = grouped_source(step, self.group, spec.partitions if spec is not None else 1)
        return self._target

    @property
    def topics(self) -> list[str]:
        """The topics the query reads: its source and its repartition topic."""
        return [self.plan.source.topic, self.target.topic]

    @property
    def internal_topics(self) -> list[str]:
        """The topics the query writes and reads back, which TERMINATE deletes."""
        return [self.target.topic]

    def caught_up(self) -> bool:
        """Whether everything written to the source and the repartition topic so far is read
        and its results committed: by the positions settled after the last empty poll (a batch
        just polled is not, until it has committed and the next poll found nothing)."""
        if self._reader is None or self.state.value != "RUNNING":
            return True
        source, target = self.topics
        for topic, done in ((source, self._settled), (target, self._internal or {})):
            for p, end in self.store.end_offsets(topic).items():
                if end > 0 and done.get(p, 0) < end:
                    return False
        return True

    def _run(self) -> None:
        try:
            step = self.plan.step
            assert isinstance(step, AggregateStep) and self.plan.sink is not None
            registry = registry_for(self.store)
            target = self.target
            # a repartition topic keeps records for a while, never by key (Kafka Streams' config)
            self.store.create_topic(
                TopicSpec(
                    name=target.topic, partitions=target.partitions, config={"cleanup.policy": "delete"}
                ),
                exist_ok=True,
            )
            self._decoder = SourceDecoder(
                self.plan.source, registry, throw_on_invalid_timestamp=self.plan.throw_on_invalid_timestamp
            )
            self._grouped_decoder = SourceDecoder(target, registry)
            self._grouped_encoder = SinkEncoder(target, registry)
            encoder = SinkEncoder(self.plan.sink, registry)
            self._processor = AggregateProcessor(step, self.query_id, new_connection())
            self._processor.counts = self.operator_counts
            self._prepare_state()
            self._reader = self._open_reader(self.topics)
            self._reader.assignment()
            self._settle()
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
            self._ready.set()
            return
        self._ready.set()
        reader = self._reader
        try:
            waited = True
            while not self._stop.is_set():
                # after a batch, look without waiting, so idleness shows at once (see QueryRunner)
                records = reader.poll(BATCH_SIZE, timeout=0.2 if waited else 0.0)
                self._polled()
                waited = records.num_rows == 0
                if records.num_rows == 0:
                    self._settle()
                    self._idle.set()
                    continue
                self._idle.clear()
                started = time.monotonic()
                try:
                    self._batch(records, encoder, reader)
                except BatchAborted as aborted:
                    self._aborted(records.num_rows, aborted)
                self.batch_latency.observe(time.monotonic() - started)
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
        finally:
            self._idle.set()
            with contextlib.suppress(Exception):  # closing is best effort
                reader.close()
            self.finished()

    def _batch(self, records: pa.Table, encoder: SinkEncoder, reader: Any) -> None:
        assert self.plan.sink is not None and self.group is not None
        from_source = pc.equal(records.column("topic"), self.plan.source.topic)
        incoming = records.filter(from_source)
        grouped = records.filter(pc.invert(from_source))
        # the query's input is its source's records: what it reads back is its own
        self.records_in += incoming.num_rows
        self.bytes_in += record_bytes(incoming)
        out = None
        with self.store.transaction() as tx:
            if incoming.num_rows:
                written = self._stage_one(incoming, tx.state)
                if written.num_rows:
                    tx.produce(self.target.topic, written)
            if grouped.num_rows:
                rows, headers = self._read_back(grouped)
                result = self._processor.process_grouped(rows, headers, tx.state)
                self.plog.write(self.query_id, result.errors)
                self.operator_counts.add("main/out", result.rows.num_rows)
                out, errors = encode_windowed(encoder, self.plan.sink, result.rows)
                self.plog.write(self.query_id, errors)
                if out.num_rows:
                    tx.produce(self.plan.sink.topic, out)
            self._produce_changes(tx)
            tx.commit_positions(self.group, reader.positions())
        if out is not None:
            self.records_out += out.num_rows
            self.bytes_out += record_bytes(out)
            self.operator_counts.add("sink", out.num_rows)

    def _settle(self) -> None:
        """The source's positions as the base query settles them, and the repartition topic's:
        after an empty poll every batch read from it is committed (its position then stands past
        the transaction marker that ends the last one, which the group's commits do not reach)."""
        super()._settle()
        if self.group is None:
            return
        topic = self.target.topic
        positions = self._reader.positions()
        self._internal = {tp.partition: off for tp, off in positions.items() if tp.topic == topic}

    _internal: dict[int, int] | None = None

    def settled_internal(self, topic: str) -> dict[int, int]:
        """Per partition of the repartition topic, the offset up to which everything read is
        aggregated and committed (see :meth:`settled`)."""
        return dict(self._internal or {}) if topic == self.target.topic else {}

    def _stage_one(self, records: pa.Table, state: Any) -> pa.Table:
        """The source's records, grouped and encoded for the repartition topic."""
        decoded = self._decoder.decode(records)
        self.plog.write(self.query_id, decoded.errors)
        self.operator_counts.add("source/0", records.num_rows)
        self.operator_counts.add("main/in", decoded.table.num_rows)
        prepared = self._processor.prepare(decoded.table, state)
        self.plog.write(self.query_id, prepared.errors)
        rows = prepared.rows
        target = self.target
        cols: dict[str, Any] = {}
        keys = target.key_columns
        for i, c in enumerate(keys):
            cols[c.name] = rows.column(group_key_name(i))
        args = [a for per_call in self._processor.args for a in per_call]
        for c, a in zip(target.value_columns, args, strict=True):
            cols[c.name] = rows.column(a)
        if HEADERS in rows.column_names:
            cols[HEADERS] = rows.column(HEADERS)
        written, errors = self._grouped_encoder.encode(pa.table(cols), rows.column(TS))
        self.plog.write(self.query_id, errors)
        if self._processor.is_table and written.num_rows:
            flags = pc.if_else(
                pc.greater(rows.column(SIGN), 0),
                pa.scalar(NEW),
                pc.if_else(rows.column(SKIP), pa.scalar(OLD_THEN_NEW), pa.scalar(OLD)),
            )
            values = pc.binary_join_element_wise(written.column("value"), flags, pa.scalar(b""))
            written = written.set_column(written.schema.get_field_index("value"), "value", values)
        return written

    def _read_back(self, records: pa.Table) -> tuple[pa.Table, pa.ChunkedArray]:
        """Records read from the repartition topic as the aggregation's prepared rows (its
        column names, ``__TS``, the partition ``__P``), and their headers."""
        flags = None
        if self._processor.is_table:
            value = records.column("value")
            flags = pc.binary_slice(value, -1)
            stripped = pc.binary_slice(value, 0, -1)
            records = records.set_column(records.schema.get_field_index("value"), "value", stripped)
        decoded = self._grouped_decoder.decode(records)
        self.plog.write(self.query_id, decoded.errors)
        table = decoded.table
        cols: dict[str, Any] = {TS: table.column("ROWTIME")}
        for i, c in enumerate(self.target.key_columns):
            cols[group_key_name(i)] = table.column(c.name)
        args = [a for per_call in self._processor.args for a in per_call]
        for c, a in zip(self.target.value_columns, args, strict=True):
            cols[a] = table.column(c.name)
        cols[PART] = pc.cast(table.column("ROWPARTITION"), pa.int32())
        if flags is not None:
            if table.num_rows != records.num_rows:  # records that did not decode were dropped
                flags = _aligned(flags, records, table)
            cols[SIGN] = pc.if_else(pc.equal(flags, pa.scalar(NEW)), 1, -1).cast(pa.int32())
            cols[SKIP] = pc.fill_null(pc.equal(flags, pa.scalar(OLD_THEN_NEW)), False)
        return pa.table(cols), table.column(HEADERS)

    def drop_state(self) -> None:
        # ksqlDB deletes a terminated query's internal topics with its state
        for topic in self.internal_topics:
            if self.store.describe_topic(topic) is not None:
                self.store.delete_topic(topic)
        super().drop_state()

    def _source_topics(self) -> list[str]:
        return self.topics

    def _state_partitions(self) -> tuple[list[str], bool]:
        # Task p reads partition p of both topics (they have as many partitions). Groups belong
        # to the repartition partition they were aggregated from, a table's source rows to the
        # source partition they were read from: either way to the task that changes them.
        return [self.target.topic, self.plan.source.topic], True


def _aligned(flags: Any, records: pa.Table, decoded: pa.Table) -> pa.Array:
    """The flags of the records that decoded, by (partition, offset)."""
    place = {
        (p, o): i
        for i, (p, o) in enumerate(
            zip(records.column("partition").to_pylist(), records.column("offset").to_pylist(), strict=True)
        )
    }
    at = [
        place[(p, o)]
        for p, o in zip(
            decoded.column("ROWPARTITION").to_pylist(), decoded.column("ROWOFFSET").to_pylist(), strict=True
        )
    ]
    return pc.take(flags, pa.array(np.asarray(at, dtype=np.int64)))


def uses_repartition_topic(step: Any, store: Any) -> bool:
    """Whether a persistent query of ``step`` on ``store`` runs as a :class:`GroupByQuery`.

    A source of one partition is re-keyed in place: its repartition topic would have one
    partition too, read back by the same task in the order it was written, so going through it
    would change nothing but the cost (and the moment the output follows the input's commit)."""
    if not (isinstance(step, AggregateStep) and step.repartition is not None and store.kind == "kafka"):
        return False
    spec = store.describe_topic(step.source.topic)
    partitions = spec.partitions if spec is not None else step.source.partitions
    return max(1, partitions) > 1


__all__ = [
    "NEW",
    "OLD",
    "OLD_THEN_NEW",
    "GroupByQuery",
    "grouped_source",
    "internal_column",
    "uses_repartition_topic",
]
