"""A transient push query over a join: ``SELECT ... FROM a JOIN b ... EMIT CHANGES``.

The join tree runs as a persistent join's does (:class:`~ksqlpy.runtime.join.operator.JoinProcessor`
over batches put in processing order by :func:`~ksqlpy.runtime.join.runner.decode_inputs`), but
its state lives in a private in-memory database that lives as long as the query: closing the
query drops it, and nothing is written to the store. The join's result then goes through the
query's own analyzed step (a select, or an aggregation) into the client's buffer, as for a push
query over one source.
"""

from __future__ import annotations

import contextlib
import time

import duckdb
import pyarrow as pa

from ksqlpy.runtime.codec import SourceDecoder
from ksqlpy.runtime.join.operator import JoinProcessor
from ksqlpy.runtime.join.plan import KEY, JoinNode
from ksqlpy.runtime.join.runner import decode_inputs
from ksqlpy.runtime.query import BATCH_SIZE, PushQuery
from ksqlpy.runtime.serde.registry import registry_for
from ksqlpy.runtime.stats import record_bytes


class PushJoinQuery(PushQuery):
    """A push query whose plan joins two or more inputs (``plan.join``); ``plan.step`` reads
    the join's result as the planner describes it (``plan.step.source``)."""

    _state: duckdb.DuckDBPyConnection | None = None

    @property
    def join(self) -> JoinNode:
        node = self.plan.join
        assert isinstance(node, JoinNode)
        return node

    @property
    def topics(self) -> list[str]:
        return sorted({i.source.topic for i in self.join.inputs()})

    def caught_up(self) -> bool:
        reader = self._reader
        if reader is None or self.state.value != "RUNNING":
            return True
        positions = {(tp.topic, tp.partition): off for tp, off in reader.positions().items()}
        for topic in self.topics:
            for p, end in self.store.end_offsets(topic).items():
                if end > 0 and positions.get((topic, p), 0) < end:
                    return False
        return True

    def _run(self) -> None:
        try:
            registry = registry_for(self.store)
            self._state = duckdb.connect()
            processor = JoinProcessor(self.join, self.query_id, self.function_connection())
            decoders = [SourceDecoder(i.source, registry) for i in processor.inputs]
            evaluator = self._evaluator(None)
            self._reader = self.store.open_reader(self.topics, group=None, start=self.start_position)
            # Pin the start positions now (see QueryRunner._run): rows inserted once the query
            # has started are rows it sees.
            self._reader.assignment()
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
            self._ready.set()
            self._close_state()
            self.finished()
            return
        self._ready.set()
        reader = self._reader
        try:
            while not self._stop.is_set():
                records = reader.poll(BATCH_SIZE, timeout=0.2)
                if records.num_rows == 0:
                    self._idle.set()
                    continue
                self._idle.clear()
                started = time.monotonic()
                self.records_in += records.num_rows
                self.bytes_in += record_bytes(records)
                decoded = decode_inputs(records, processor, decoders, self.plog, self.query_id)
                joined = processor.process(decoded, self._state)
                self.plog.write(self.query_id, joined.errors)
                batch = self._post_input(joined.rows)
                if self._processor is not None:
                    self.emit_stateful(batch, None, reader)
                else:
                    assert evaluator is not None  # None only for a step with a processor
                    result = evaluator.evaluate(batch, self.query_id)
                    self.plog.write(self.query_id, result.errors)
                    self.emit(result.rows, None, reader)
                self.batch_latency.observe(time.monotonic() - started)
                if self.done():
                    break
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
        finally:
            self._idle.set()
            with contextlib.suppress(Exception):  # closing is best effort
                reader.close()
            self._close_state()
            self.finished()

    def _post_input(self, rows: pa.Table) -> pa.Table:
        """The join's result under the planner's names: the runtime names the join key
        :data:`KEY`, the planner by its column (often also a value column, holding the same)."""
        keys = self.plan.step.source.key_columns
        at = rows.schema.get_field_index(KEY)
        if at < 0 or not keys:
            return rows
        name = keys[0].name
        if name in rows.column_names:
            return rows.remove_column(at)
        return rows.rename_columns([name if i == at else n for i, n in enumerate(rows.column_names)])

    def _close_state(self) -> None:
        """Drop the query's join and aggregation state: it lives only as long as the query."""
        for con in (self._state, self._private_state):
            if con is not None:
                with contextlib.suppress(Exception):
                    con.close()
        self._state = None
        self._private_state = None


__all__ = ["PushJoinQuery"]
