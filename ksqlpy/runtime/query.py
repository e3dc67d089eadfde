"""Running queries: a persistent query writes to its sink; a transient push query to a client.

Each query runs on its own thread as a loop of micro-batches: poll a batch of records, decode it
into Arrow, evaluate the plan in DuckDB, encode and produce the results, then commit the
consumed positions in the same store transaction as the produced records (so a restarted
server resumes exactly where the last committed batch ended).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.errors import KsqlpyError
from ksqlpy.planner.physical import QueryPlan
from ksqlpy.runtime.codec import NULL_KEY, SinkEncoder, SourceDecoder
from ksqlpy.runtime.evaluate import DELETE, TS, WINDOW_END, WINDOW_START, StepEvaluator, deletes_of
from ksqlpy.runtime.materialize import Handover
from ksqlpy.runtime.prefetch import DecodeAhead
from ksqlpy.runtime.processing_log import ProcessingLog
from ksqlpy.runtime.rows import Row, table_to_rows
from ksqlpy.runtime.serde.base import combine
from ksqlpy.runtime.serde.registry import registry_for
from ksqlpy.runtime.stats import LatencyHistogram, OperatorCounts, record_bytes
from ksqlpy.runtime.store.base import BatchAborted, StartPosition, TopicPartition, TopicStore

if TYPE_CHECKING:
    from ksqlpy.runtime.partitions import StandbyPlacement

log = logging.getLogger("ksqlpy.query")

#: Records per micro-batch at most; a batch holds what is available, so light traffic is not delayed.
#: 20,000 records (~2 MB of JSON) keep the per-batch costs (a transaction, a DuckDB query) small
#: while a batch's decoded, evaluated and encoded copies stay a few tens of MiB.
BATCH_SIZE = 20_000
#: The same for a stateless query on the embedded store while its last batch waits to commit
#: (it is behind): each batch is a DuckDB scan of the log and a DuckDB transaction, whose costs
#: at 20,000 records were a fifth of the query's CPU (Q1 of the side-by-side benchmark: ~19 %
#: less CPU at 100,000). Its first batch after being idle stays small, as it is not overlapped.
BACKLOG_BATCH_SIZE = 100_000
#: The same for a query that keeps state: each of its batches runs a dozen DuckDB statements over
#: the state, so it takes larger batches (a windowed count spent ~12 % more CPU at 20,000).
STATEFUL_BATCH_SIZE = 50_000
#: The same for a stateful query that decodes ahead on the embedded store (see
#: ``ksqlpy.runtime.prefetch``), where a batch costs its dozen statements and a commit whatever
#: its size, and its groups' rows are written to the state and the table once: with caching a
#: batch emits one row per group and window it changed, so a larger one emits fewer
#: intermediate rows (as ksqlDB's record cache does). A windowed count over a backlog of one
#: million records spent ~16 % less CPU than at 50,000. A batch holds what is available, so
#: light traffic is not delayed; the decoding thread reads the next batch meanwhile, so two
#: batches of ~20 MB of JSON each are in memory at most.
DECODED_AHEAD_BATCH_SIZE = 200_000
#: Records at most in a stateful query's batch that was not read ahead (its first, or the first
#: after it was idle), when it decodes ahead (see ``ksqlpy.runtime.prefetch``).
FIRST_BATCH_SIZE = 5_000
#: How long a query waits for the materializer of the table it writes to read a partition to its
#: end before it feeds the partition's rows itself (a batch's worth of records, normally).
FEED_HANDOVER_SECONDS = 2.0
#: How long it goes on letting the materializer read the partition before it asks again, after it
#: waited in vain (a materializer still reading the partition in is asked again after the next batch).
FEED_RETRY_SECONDS = 1.0
#: Bytes of table rows (one per key) a query keeps while it reads ahead of its group's first
#: assignment, for the table's state (see _AheadRows); past them it leaves the materializer to
#: read its output back, as it reads any other.
AHEAD_ROWS_MAX_BYTES = 32 << 20
#: Rows kept while reading ahead before they are first cut to one per key.
AHEAD_ROWS_COMPACT = 50_000


@dataclass(slots=True)
class _Prepared:
    """A batch ready to commit: its evaluated rows and the positions it reaches."""

    records: int
    rows: pa.Table
    positions: dict[TopicPartition, int]
    #: the reader's rebalance count when it was polled
    rebalances: int
    started: float
    #: the transaction of a batch read ahead of the group's assignment (None: the store's)
    ahead: Any = None


class QueryState(enum.Enum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    ERROR = "ERROR"
    TERMINATED = "TERMINATED"


_evaluation_database: duckdb.DuckDBPyConnection | None = None
_evaluation_lock = threading.Lock()


def new_connection() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for evaluating plans, with ksqlpy's functions installed.

    Every connection is a cursor of one in-memory database per process, on which the functions
    are installed once: a database of its own per query cost each query ~15 ms of CPU to open,
    the installation of every function, and a buffer pool and thread pool of its own. A cursor's
    registered Arrow tables are its own, so queries sharing the database do not see each other's
    batches; they hold no tables there (state lives in the store's database)."""
    global _evaluation_database
    with _evaluation_lock:
        if _evaluation_database is None:
            _evaluation_database = duckdb.connect()
        try:
            from ksqlpy.planner.functions import register_udfs
        except ImportError:  # the function library is optional for the bare runtime
            pass
        else:
            register_udfs(_evaluation_database)  # only what was registered since the last call
        return _evaluation_database.cursor()


class QueryRunner:
    """The micro-batch loop shared by persistent and push queries."""

    def __init__(
        self,
        plan: QueryPlan,
        store: TopicStore,
        plog: ProcessingLog,
        *,
        group: str | None,
        start: StartPosition,
    ) -> None:
        self.plan = plan
        self.store = store
        self.plog = plog
        self.group = group
        self.start_position = start
        self.state = QueryState.CREATED
        self.error: KsqlpyError | None = None
        self.errors: list[str] = []
        self.records_in = 0
        self.records_out = 0
        #: key and value bytes read and written, and the time of each batch (for /metrics)
        self.bytes_in = 0
        self.bytes_out = 0
        self.batch_latency = LatencyHistogram()
        #: rows through the fused operators, for each plan step's count (see ``step_counts``)
        self.operator_counts = OperatorCounts()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: Any = None
        self._ready = threading.Event()
        #: Per source partition, the offset before which every record is read and its results
        #: committed, or skipped for good (a start at ``latest``): nothing there is still to come.
        self._settled: dict[int, int] = {}

    @property
    def query_id(self) -> str:
        return self.plan.query_id

    def start(self) -> None:
        """Start reading, with the start positions fixed before returning, so every record
        written after ``start`` returns is read."""
        self._thread = threading.Thread(target=self._run, name=f"query-{self.query_id}", daemon=True)
        self.state = QueryState.RUNNING
        self._thread.start()
        self._ready.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        reader = self._reader
        if reader is not None:
            reader.wakeup()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._partitioned is not None and (self._thread is None or not self._thread.is_alive()):
            self._partitioned.close()  # its standby reader, whichever runner's loop ran
        if self.state is not QueryState.ERROR:
            self.state = QueryState.TERMINATED

    def is_idle(self) -> bool:
        return self._idle.is_set() or self.state is not QueryState.RUNNING

    def settled(self) -> dict[int, int]:
        """Per source partition, the offset up to which this query owes nothing more: its
        results for earlier records are committed, or it will never read them (it started
        past them, at ``latest`` or at the group's committed positions). Read-your-writes waits
        on this rather than the group's commits alone: a query that started at ``latest`` and
        has read nothing has committed nothing, yet has nothing to catch up with."""
        return dict(self._settled)

    def caught_up(self) -> bool:
        """Whether this query has read everything written to its source topic so far."""
        reader = self._reader
        if reader is None or self.state is not QueryState.RUNNING:
            return True
        ends = self.store.end_offsets(self.plan.source.topic)
        positions = {tp.partition: off for tp, off in reader.positions().items()}
        return all(positions.get(p, 0) >= end for p, end in ends.items() if end > 0)

    def _run(self) -> None:
        try:
            source = self.plan.source
            decoder = SourceDecoder(
                source, registry_for(self.store), throw_on_invalid_timestamp=self.plan.throw_on_invalid_timestamp
            )
            encoder = SinkEncoder(self.plan.sink, registry_for(self.store)) if self.plan.sink is not None else None
            evaluator = self._evaluator(encoder)
            self._prepare_state()
            self._reader = self._open_reader([source.topic])
            # Pin the start positions now: a reader may resolve ``latest`` lazily, on its first
            # poll (the embedded store does), and skip what is written before it.
            self._reader.assignment()
            self._settle()
            if self._decodes_ahead():
                self._reader = DecodeAhead(self._reader, decoder, self.query_id, first_records=FIRST_BATCH_SIZE)
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
            self._ready.set()
            return
        self._ready.set()
        reader = self._reader
        if self._overlaps():
            assert evaluator is not None and encoder is not None
            self._run_overlapped(reader, decoder, evaluator, encoder)
            return
        if isinstance(reader, DecodeAhead):
            batch_size = DECODED_AHEAD_BATCH_SIZE
        else:
            batch_size = STATEFUL_BATCH_SIZE if self._processor is not None else BATCH_SIZE
        try:
            waited = True
            while not self._stop.is_set():
                moves = reader.rebalances if self._committing is not None else 0
                # Right after a batch, look without waiting: when nothing more is there the query
                # is idle now, not a poll timeout later (tests and the runner wait for idleness).
                records = reader.poll(batch_size, timeout=0.2 if waited else 0.0)
                decoded = None
                if self._committing is not None:
                    # decoded while the last batch's transaction ends (used only if it commits)
                    decoded = decoder.decode(records) if records.num_rows else None
                    if not self._committed(reader, moves, records):
                        waited = False
                        continue
                self._polled()
                waited = records.num_rows == 0
                if records.num_rows == 0:
                    # Nothing left to read: every earlier batch is committed (or handed out).
                    self._settle()
                    self._idle.set()
                    if self._idle_hook():
                        break
                    continue
                self._idle.clear()
                batch_started = time.monotonic()
                polled = records.num_rows
                self.records_in += polled
                self.bytes_in += record_bytes(records)
                if decoded is None:
                    decoded = reader.decoded(records) if isinstance(reader, DecodeAhead) else decoder.decode(records)
                # The raw keys and values are not needed past decoding: freed before the batch
                # is processed, and the decoded batch before the next poll (see below).
                del records
                batch, errors = decoded.table, decoded.errors
                del decoded
                self.plog.write(self.query_id, errors)
                self.operator_counts.add("source/0", polled)
                self.operator_counts.add("main/in", batch.num_rows)
                try:
                    if self._processor is not None:
                        self.emit_stateful(batch, encoder, reader)
                    else:
                        assert evaluator is not None  # None only for a step with a processor
                        result = evaluator.evaluate(batch, self.query_id)
                        self.plog.write(self.query_id, result.errors)
                        self.operator_counts.add("main/out", result.rows.num_rows)
                        self.emit(result.rows, encoder, reader)
                        del result
                except BatchAborted as aborted:
                    self._aborted(polled, aborted)
                del batch
                self.batch_latency.observe(time.monotonic() - batch_started)
                if self.done():
                    break
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
        finally:
            try:
                if self._committing is not None:  # stopped: what was read is committed, as without overlap
                    last = self._end_commit()
                    if last is not None:
                        log.info("Query %s: last batch aborted: %s", self.query_id, last)
            except Exception as e:  # noqa: BLE001 - reported as the query's error
                self._fail(e)
            if self._committer is not None:
                self._committer.shutdown(wait=True)
                self._committer = None
            self._idle.set()
            try:
                reader.close()
            except Exception:
                log.debug("closing reader of %s failed", self.query_id, exc_info=True)
            if self._partitioned is not None:
                self._partitioned.close()
            self.finished()

    #: the end of the last batch's transaction, under way on ``_committer`` (see
    #: PersistentQuery.emit_stateful)
    _committing: Future[None] | None = None
    _committer: ThreadPoolExecutor | None = None

    def _commit_later(self, ending: contextlib.ExitStack, out: pa.Table) -> None:
        """End a batch's transaction (produce, commit, then the state's commit) on the committer
        thread, while this one polls and decodes the next batch."""
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix=f"commit-{self.query_id}")

        def end() -> None:
            with ending:
                pass
            self.records_out += out.num_rows
            self.bytes_out += record_bytes(out)
            self.operator_counts.add("sink", out.num_rows)

        self._committing = self._committer.submit(end)

    def _await_commit(self) -> None:
        """Wait until the transaction under way, if any, has ended (its outcome is left for the
        loop): the group's partitions move, and state follows them, only after it."""
        committing = self._committing
        if committing is not None:
            wait([committing])

    def _end_commit(self) -> BatchAborted | None:
        """The outcome of the transaction under way: None once it committed, the abort when the
        group moved its partitions meanwhile (its state rolled back); other failures raise."""
        committing, self._committing = self._committing, None
        if committing is None:
            return None
        try:
            committing.result()
        except BatchAborted as aborted:
            return aborted
        return None

    def _committed(self, reader: Any, moves: int, records: pa.Table) -> bool:
        """After a poll made while the last batch's transaction was ending: whether that batch
        committed and the group kept its partitions during the poll. Else the records just
        polled are dropped and the reader goes back to the committed positions, so both batches
        (or the second) are read again, under the group's current assignment."""
        aborted = self._end_commit()
        if aborted is None and reader.rebalances == moves:
            return True
        if aborted is not None:
            log.info(
                "Query %s: batch aborted, and the %d record(s) read after it with it: %s",
                self.query_id,
                records.num_rows,
                aborted,
            )
        else:
            log.info("Query %s: partitions moved; %d record(s) read again", self.query_id, records.num_rows)
        reader.rewind()
        return False

    def _overlaps(self) -> bool:
        """Whether the loop overlaps each batch's commit with the next batch (see
        :meth:`_run_overlapped`): a persistent query without state does."""
        return False

    def _decodes_ahead(self) -> bool:
        """Whether the next batch is read and decoded while the current one is processed
        (:mod:`ksqlpy.runtime.prefetch`): an aggregation on the embedded store, whose reader's
        positions move by its polls alone."""
        return False

    def _run_overlapped(
        self, reader: Any, decoder: SourceDecoder, evaluator: StepEvaluator, encoder: SinkEncoder
    ) -> None:
        """The loop of a stateless persistent query, one batch ahead of its commits.

        Batch N's transaction (encoding and producing its records, committing its positions:
        mostly waiting for the broker, the GIL released) runs on a second thread while this one
        polls, decodes and evaluates batch N+1 (Arrow and DuckDB release the GIL too), so the
        query uses both of a machine's cores rather than one after the other. Exactly once still holds:
        batch N+1 is polled before N's commit begins (the reader is used by this thread alone),
        its records are produced only in its own transaction, begun after N's committed, and
        when N's commit fails N+1's work is dropped and the reader rewinds to the committed
        positions, so both batches are read again. At most one batch waits to commit.

        Batches read ahead of the group's assignment overlap the same way, each sent into the
        read-ahead's transaction (see ``TopicReader.read_ahead``); the assignment commits the
        batches sent before it, and the one still waiting is read again by the group's member."""
        committer: ThreadPoolExecutor | None = None
        ready: _Prepared | None = None  # prepared, its commit not begun
        backlog = BACKLOG_BATCH_SIZE if self.store.kind == "embedded" else BATCH_SIZE
        try:
            waited = True
            while not self._stop.is_set():
                limit = BATCH_SIZE if ready is None else backlog
                records = reader.poll(limit, timeout=0.2 if waited else 0.0)
                # Taken now, before the batch waiting to commit runs on the other thread.
                ahead = reader.ahead_transaction()
                waited = records.num_rows == 0
                if ready is not None and reader.rebalances != ready.rebalances:
                    if ready.ahead is not None:
                        # The assignment ended the read-ahead before this batch was sent: the
                        # member reads from the positions committed with the batches sent
                        # before it, so this poll's records (its own) follow on from there.
                        log.info("Query %s: the assignment came before a batch of %d record(s) read "
                                 "ahead was sent; it is read again", self.query_id, ready.records)
                        ready = None
                    else:
                        # The group moved partitions during this poll: the reader went back to
                        # the committed positions, before the batch that is still to commit.
                        # Both are read again, under the new assignment.
                        log.info("Query %s: partitions moved; batches of %d and %d record(s) read again",
                                 self.query_id, ready.records, records.num_rows)
                        ready = None
                        reader.rewind()
                        waited = False
                        continue
                if records.num_rows == 0:
                    if ready is not None:
                        prepared, ready = ready, None
                        try:
                            self._commit_prepared(prepared, encoder)
                        except BatchAborted as aborted:
                            log.info("Query %s: batch of %d record(s) aborted: %s",
                                     self.query_id, prepared.records, aborted)
                            reader.rewind()
                            continue
                    self._settle()
                    self._idle.set()
                    if self._idle_hook():
                        break
                    continue
                self._idle.clear()
                started = time.monotonic()
                committing: Future[None] | None = None
                if ready is not None:
                    if committer is None:
                        committer = ThreadPoolExecutor(1, thread_name_prefix=f"commit-{self.query_id}")
                    committing = committer.submit(self._commit_prepared, ready, encoder)
                try:
                    prepared = self._prepare(records, decoder, evaluator, reader, started, ahead)
                finally:
                    if committing is not None:
                        wait([committing])
                if committing is not None:
                    assert ready is not None
                    aborted_batch, ready = ready, None
                    try:
                        committing.result()
                    except BatchAborted as aborted:
                        log.info("Query %s: batch of %d record(s) aborted, and the next one with it: %s",
                                 self.query_id, aborted_batch.records, aborted)
                        reader.rewind()
                        continue
                    del aborted_batch
                polled = records.num_rows
                # This batch's records are freed before the next poll; its rows wait in ``ready``.
                del records
                if reader.overlappable():
                    ready = prepared
                else:
                    try:
                        self._commit_prepared(prepared, encoder)
                    except BatchAborted as aborted:
                        self._aborted(polled, aborted)
                del prepared
            if ready is not None:  # stopped: what was read is committed, as without overlap
                prepared, ready = ready, None
                try:
                    self._commit_prepared(prepared, encoder)
                except BatchAborted as aborted:
                    log.info("Query %s: last batch aborted: %s", self.query_id, aborted)
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
        finally:
            if committer is not None:
                committer.shutdown(wait=True)
            self._idle.set()
            try:
                reader.close()
            except Exception:
                log.debug("closing reader of %s failed", self.query_id, exc_info=True)
            self.finished()

    def _prepare(
        self,
        records: pa.Table,
        decoder: SourceDecoder,
        evaluator: StepEvaluator,
        reader: Any,
        started: float,
        ahead: Any = None,
    ) -> _Prepared:
        """A polled batch decoded and evaluated, with the positions it reaches (``ahead``: its
        transaction when it was read ahead of the group's assignment)."""
        self.records_in += records.num_rows
        self.bytes_in += record_bytes(records)
        decoded = decoder.decode(records)
        self.plog.write(self.query_id, decoded.errors)
        self.operator_counts.add("source/0", records.num_rows)
        self.operator_counts.add("main/in", decoded.table.num_rows)
        result = evaluator.evaluate(decoded.table, self.query_id)
        self.plog.write(self.query_id, result.errors)
        self.operator_counts.add("main/out", result.rows.num_rows)
        return _Prepared(records.num_rows, result.rows, reader.positions(), reader.rebalances, started, ahead)

    def _commit_prepared(self, prepared: _Prepared, encoder: SinkEncoder) -> None:
        """Encode a prepared batch's rows, produce them and commit its positions in one
        transaction. (Encoding here, on the committing thread, evens the two threads' work.)"""
        assert self.plan.sink is not None and self.group is not None
        out, errors = encode_windowed(encoder, self.plan.sink, prepared.rows)
        self.plog.write(self.query_id, errors)
        with prepared.ahead or self.store.transaction() as tx:
            if out.num_rows:
                tx.produce(self.plan.sink.topic, out)
            tx.commit_positions(self.group, prepared.positions)
        self.records_out += out.num_rows
        self.bytes_out += record_bytes(out)
        self.operator_counts.add("sink", out.num_rows)
        self.batch_latency.observe(time.monotonic() - prepared.started)

    def _open_reader(self, topics: list[str]) -> Any:
        """The query's reader of ``topics``; its state follows the partitions the group gives it."""
        reader = self.store.open_reader(topics, group=self.group, start=self.start_position)
        if self._partitioned is not None:
            reader.listener = _AfterCommit(self._partitioned, self._await_commit)
        if self.reads_ahead():
            reader.read_ahead(fresh_state=self._processor is not None, on_finish=self._ahead_ended)
        return reader

    def _ahead_ended(self, kept: bool) -> None:
        """The read-ahead has ended (see ``TopicReader.read_ahead``); ``kept``: committed."""

    def reads_ahead(self) -> bool:
        """Whether the query reads its input while its consumer joins the group, rather than
        after (see ``TopicReader.read_ahead``): a persistent query without state, whose
        read-ahead batches change nothing but their outputs."""
        return False

    def _polled(self) -> None:
        """After each poll, on the query's thread: standby copies catch up with their changelogs."""
        if self._partitioned is not None:
            self._partitioned.keep_warm()

    def _aborted(self, records: int, aborted: BatchAborted) -> None:
        """The group moved this batch of ``records`` records' partitions while it ran: its
        transaction was aborted (state changes rolled back), and whoever owns them now reads its
        records again."""
        log.info("Query %s: batch of %d record(s) aborted: %s", self.query_id, records, aborted)
        self._reader.rewind()

    def _settle(self) -> None:
        """Record the reader's positions as settled (called between batches, on the query's
        thread): at the start nothing before them is still to come, after an empty poll every
        earlier batch is committed. Only a query with a consumer group commits, and only such
        queries (persistent ones) are waited on."""
        if self.group is None:
            return
        topic = self.plan.source.topic
        positions = self._reader.positions()
        self._settled = {tp.partition: off for tp, off in positions.items() if tp.topic == topic}

    def _fail(self, e: BaseException) -> None:
        self.state = QueryState.ERROR
        self.error = e if isinstance(e, KsqlpyError) else KsqlpyError(str(e))
        self.errors.append(str(e))
        log.error("Query %s failed and stopped: %s", self.query_id, e, exc_info=not isinstance(e, KsqlpyError))

    def _evaluator(self, encoder: SinkEncoder | None) -> StepEvaluator | None:
        """The stateless evaluator, or None when the step keeps state (then ``_processor``
        processes batches inside the store transaction, see :meth:`emit_stateful`)."""
        from ksqlpy.planner.physical import AggregateStep

        step = self.plan.step
        if isinstance(step, AggregateStep):
            from ksqlpy.runtime.aggregate import AggregateProcessor

            partitioner = self._key_partitioner(encoder, len(step.group_keys))
            self._processor = AggregateProcessor(step, self.query_id, new_connection(), key_partitioner=partitioner)
            self._processor.counts = self.operator_counts
            return None
        return StepEvaluator(step, new_connection(), window_bounds=self._keeps_windows())

    def _keeps_windows(self) -> bool:
        """Whether a stateless query writes its windowed source's records to a windowed sink:
        each record keeps its window in the sink's key, as in ksqlDB (a new key too: ksqlDB's
        windowed key factory gives it the record's window)."""
        sink = self.plan.sink
        step = self.plan.step
        return (
            sink is not None
            and sink.window is not None
            and step.source.window is not None
            and self.plan.join is None
        )

    def _key_partitioner(
        self, encoder: SinkEncoder | None, group_keys: int
    ) -> Callable[[pa.Table], pa.Array] | None:
        """Where ksqlDB's repartition topic would put each group: the group key in the sink's
        key format, through Kafka's default partitioner, over the source's partitions."""
        if encoder is None or len(encoder.keys) != group_keys:
            return None
        from ksqlpy.runtime.store.partitioner import partitions_for_keys

        partitions = max(1, self.plan.source.partitions)
        key_ser = encoder.key_ser

        def partition(keys: pa.Table) -> pa.Array:
            return partitions_for_keys(key_ser.encode(keys), partitions)

        return partition

    _processor: Any = None

    @property
    def late_records(self) -> int:
        """Records a windowed aggregation dropped because their window had closed."""
        return int(getattr(self._processor, "late_records", 0))

    def _prepare_state(self) -> None:
        """A persistent query whose state lives apart from the log writes it to changelog
        topics too, and restores it from them first when the local copy is behind."""
        if self.group is None or not self.store.changelogged:
            return
        from ksqlpy.runtime import changelog

        topics, co_partitioned = self._state_partitions()
        if self.changelogs_follow_input:
            spec = self.store.describe_topic(topics[0])
            self._changelog_partitions = spec.partitions if spec is not None else max(1, self.plan.source.partitions)
        cursor = self.store.state_cursor()
        try:
            self._logs = tuple(self._log_changes(self.group, cursor))
        finally:
            cursor.close()
        if not self._logs:
            return
        new = [log for log in self._logs if self.store.describe_topic(log.topic) is None]
        self._changelogs_created = len(new) == len(self._logs)
        changelog.create_topics(self.store, [log.topic for log in self._logs], self._changelog_partitions)
        if new:
            changelog.seed(self.store, new)
        from ksqlpy.runtime.partitions import PartitionedState

        # Restored partition by partition as the group assigns them (see ``partitions``).
        self._partitioned = PartitionedState(
            self.store,
            group=self.group,
            query_id=self.query_id,
            topics=topics,
            logs=self._logs,
            co_partitioned=self._changelog_partitions == 1 or co_partitioned,
            placement=self.standby_placement,
        )

    def _state_partitions(self) -> tuple[list[str], bool]:
        """The input topics whose partitions the state follows (co-partitioned: partition p of
        each is task p; a state row's partition is one of the first's), and whether a row's
        partition is that of the records that change it (an aggregation by the source's key;
        one grouping by other columns places its rows where a repartition topic would, and a
        table aggregation keeps all its state in partition 0)."""
        processor = self._processor
        by_key = bool(getattr(processor, "by_source_key", False)) and not getattr(processor, "is_table", False)
        return [self.plan.source.topic], by_key

    #: whether the changelogs have as many partitions as the input, each state row logged to
    #: its own (a join's stores name no partition: one changelog partition, restored whole)
    changelogs_follow_input = True
    _changelog_partitions = 1
    #: which partitions this server keeps standby copies of (set by the engine before start)
    standby_placement: StandbyPlacement | None = None
    #: the listener that keeps state to the owned partitions (``partitions.PartitionedState``)
    _partitioned: Any = None

    #: the state's changelogs (``changelog.TableLog``), set by :meth:`_prepare_state`
    _logs: tuple[Any, ...] = ()
    #: whether this start created the changelog topics (the query is new to the cluster)
    _changelogs_created = False

    def _log_changes(self, prefix: str, state: duckdb.DuckDBPyConnection) -> list[Any]:
        """Start logging the state's changes; the logs (``changelog.TableLog``), one per store."""
        if self._processor is None:
            return []
        return list(self._processor.log_changes(prefix, state, self._changelog_partitions))

    def _changelog_topics(self, prefix: str) -> list[str]:
        if self._processor is None:
            return []
        return list(self._processor.changelog_topics(prefix))

    def _source_topics(self) -> list[str]:
        return [self.plan.source.topic]

    def _produce_changes(self, tx: Any) -> None:
        """The batch's state changes into their changelogs, in the batch's transaction."""
        for log in self._logs:
            changes = log.drain()
            if changes is not None:
                tx.produce(log.topic, changes)

    def drop_state(self) -> None:
        """Delete a stopped query's state and, where it has them, its changelog topics."""
        if self._processor is not None:
            with self.store.transaction() as tx:
                self._processor.drop_state(tx.state)
        self._drop_changelogs()

    def _drop_changelogs(self) -> None:
        if self.store.changelogged and self.group is not None:
            from ksqlpy.runtime.changelog import delete_topics

            delete_topics(self.store, self._changelog_topics(self.group))

    def emit_stateful(self, batch: pa.Table, encoder: SinkEncoder | None, reader: Any) -> None:
        """Process a batch with a stateful processor and emit its rows."""
        raise NotImplementedError

    def emit(self, rows: pa.Table, encoder: SinkEncoder | None, reader: Any) -> None:
        raise NotImplementedError

    def done(self) -> bool:
        return False

    def _idle_hook(self) -> bool:
        return False

    def finished(self) -> None:
        pass


class PersistentQuery(QueryRunner):
    """CSAS / CTAS / INSERT INTO ... SELECT: results go to the sink topic, exactly once per batch."""

    def owned_partitions(self) -> tuple[frozenset[int], frozenset[int]] | None:
        """The partitions this server's consumer was last assigned (its active tasks) and those
        it keeps standby copies of (as placed, when standbys are on), as partition numbers
        of the query's input and so of its sink, which is keyed as the tasks are. None when its
        state does not follow partitions (no state, a join, a table aggregation)."""
        partitioned = self._partitioned
        if partitioned is None or not partitioned.co_partitioned:
            return None
        owned = partitioned._owned
        if owned is None:  # not assigned yet
            return frozenset(), frozenset()
        active = frozenset(owned)
        return active, partitioned.standbys - active

    def owners_known(self) -> bool:
        """Whether :meth:`owned_partitions` is settled: not before the first assignment."""
        partitioned = self._partitioned
        return partitioned is None or not partitioned.co_partitioned or partitioned._owned is not None

    def reads_ahead(self) -> bool:
        # Subclasses (two-stage GROUP BY, joins) write internal topics or hold records back
        # between batches: they start as usual. An aggregation in one stage reads ahead on its
        # first start only (see _state_is_new).
        if type(self) is not PersistentQuery or self.group is None:
            return False
        if self._processor is None:
            return self._partitioned is None and not self._logs
        return self._state_is_new()

    def _state_is_new(self) -> bool:
        """Whether the aggregation starts for the first time: no local state (no positions, no
        rows in its tables) and empty changelogs this start created. (That the group has
        committed nothing is asked when reading ahead begins.) Read-ahead batches then fill the
        empty state in a transaction that is kept whole, with the positions that say the state
        is complete up to them, or rolled back to empty: the assignment never finds half of it.

        A server that finds the changelogs made by another (the query runs elsewhere already)
        waits for its share: reading ahead everything, it would abort, and a broker that shows
        aborted records to read-committed readers (the test broker) would restore them."""
        if not self._logs or not self._changelogs_created or not getattr(self.store, "exactly_once", False):
            return False
        assert self.group is not None
        if self.store.state_positions(self.group):
            return False
        cursor = self.store.state_cursor()
        try:
            for changes in self._logs:
                row = cursor.execute(f"SELECT count(*) FROM {changes.table.table}").fetchone()
                if row is None or row[0]:
                    return False
        finally:
            cursor.close()
        return all(not any(self.store.end_offsets(changes.topic).values()) for changes in self._logs)

    def _decodes_ahead(self) -> bool:
        return (
            type(self) is PersistentQuery
            and self._processor is not None
            and self.group is not None
            and self.store.kind == "embedded"
        )

    def _overlaps(self) -> bool:
        # Subclasses (two-stage GROUP BY, joins) run loops of their own; state follows partitions
        # and commits with each batch, so a query with state commits before it reads on.
        return (
            type(self) is PersistentQuery
            and self._processor is None
            and self.group is not None
            and self.plan.sink is not None
            and self._partitioned is None
            and not self._logs
        )

    def emit(self, rows: pa.Table, encoder: SinkEncoder | None, reader: Any) -> None:
        assert encoder is not None and self.plan.sink is not None and self.group is not None
        records, errors = encode_windowed(encoder, self.plan.sink, rows)
        self.plog.write(self.query_id, errors)
        with reader.ahead_transaction() or self.store.transaction() as tx:
            if records.num_rows:
                tx.produce(self.plan.sink.topic, records)
            tx.commit_positions(self.group, reader.positions())
        self.records_out += records.num_rows
        self.bytes_out += record_bytes(records)
        self.operator_counts.add("sink", records.num_rows)


    #: the materializer of the table this query writes, if any (set by the engine)
    materializer_of: Callable[[], Any] | None = None
    #: the materializer this query feeds, and whether its sink allows it (see _feeding)
    _feeding_to: Any = None
    _sink_partitions: int | None = None
    #: the reader's count of rebalances that took partitions away, as of the hand-overs
    _feed_revokes: int | None = None
    #: when to try handing partitions over again after the materializer was not ready
    _feed_retry_at = 0.0

    def _feeding(self, reader: Any, ahead: bool) -> tuple[Any, frozenset[int]] | None:
        """The materializer of the table this query writes and the partitions whose rows this
        batch feeds into it, in the batch's transaction (``ksqlpy.runtime.materialize``, "Fed
        partitions"): those this server's task is active for, each handed over once the
        materializer holds all of it. None when nothing is fed."""
        lookup = self.materializer_of
        target = lookup() if lookup is not None else None
        if target is not self._feeding_to:
            self._stop_feeding()
            self._feeding_to = target
        if target is None:
            return None
        assert self.plan.sink is not None
        if self._sink_partitions is None:
            spec = self.store.describe_topic(self.plan.sink.topic)
            self._sink_partitions = spec.partitions if spec is not None else 0
        owned = self.owned_partitions()
        if owned is not None:
            active = owned[0]
        elif self.store.kind == "embedded":  # this query processes every partition, here
            active = frozenset(range(self._sink_partitions))
        else:
            active = frozenset()
        revokes = getattr(reader, "_revokes", None)
        eligible = (
            not ahead
            and type(self) is PersistentQuery
            and self._processor is not None
            and getattr(self.store, "exactly_once", False)
            and target.feedable(self._sink_partitions)
        )
        fed = target.fed()
        if not eligible or revokes != self._feed_revokes:
            # A rebalance took partitions away since the hand-over (they may have been written
            # elsewhere meanwhile, even if they are back): they are read again, then handed over.
            self._feed_revokes = revokes
            self._stop_feeding()
            self._feeding_to = target
            fed = frozenset()
        elif fed - active:
            target.stop_feeding(fed - active)
            fed = fed & active
        if not eligible:
            return None
        if active - fed and time.monotonic() >= self._feed_retry_at:
            for p in sorted(active - fed):
                # Nothing is written to the partition meanwhile: this thread is its only writer.
                answer = target.start_feeding(p, timeout=FEED_HANDOVER_SECONDS)
                if answer is Handover.FED:
                    fed = fed | {p}
                elif answer is Handover.TIMED_OUT:  # the materializer is slow to catch up: later
                    self._feed_retry_at = time.monotonic() + FEED_RETRY_SECONDS
                # (NOT_YET: reading the partition in or far behind, asked again after the next batch)
        return (target, fed) if fed else None

    #: the rows kept for the table while reading ahead (see _AheadRows); None: not so
    _ahead_rows: _AheadRows | None = None
    #: whether a read-ahead batch has produced records yet (the rows are kept from the first on)
    _ahead_produced = False

    def _keeping_ahead(self, reader: Any) -> _AheadRows | None:
        """(A batch read ahead of the group's first assignment, before it produces.) The rows
        kept for the table this query writes: from the read-ahead's first output on, when the
        table's materializer takes the partitions then (``Materializer.feed_ahead``)."""
        if self._ahead_produced:
            return self._ahead_rows
        self._ahead_produced = True
        lookup = self.materializer_of
        target = lookup() if lookup is not None else None
        if (
            target is None
            or type(self) is not PersistentQuery
            or self._processor is None
            or not getattr(self.store, "exactly_once", False)
        ):
            return None
        assert self.plan.sink is not None
        if self._sink_partitions is None:
            spec = self.store.describe_topic(self.plan.sink.topic)
            self._sink_partitions = spec.partitions if spec is not None else 0
        taken = target.feed_ahead(self._sink_partitions)
        if not taken:
            return None
        self._stop_feeding()
        self._feeding_to = target
        # the assignment that ends the read-ahead moves nothing away: feeding goes on after it
        self._feed_revokes = getattr(reader, "_revokes", None)
        self._ahead_rows = _AheadRows(target, taken)
        return self._ahead_rows

    def _keep_ahead(self, kept: _AheadRows, rows: pa.Table) -> None:
        """Keep a read-ahead batch's rows for the table (its outputs were sent); past
        :data:`AHEAD_ROWS_MAX_BYTES` the table reads the partitions from the topic instead."""
        if kept is not self._ahead_rows:
            return
        cursor = self.store.state_cursor()
        try:
            fits = kept.add(rows, cursor)
        finally:
            cursor.close()
        if not fits:
            self._ahead_rows = None
            kept.target.end_ahead(kept.partitions, None)

    def _ahead_ended(self, kept: bool) -> None:
        """The read-ahead has ended: the rows it kept go into the table's state when it was
        kept, else the table reads the partitions from the topic."""
        ahead, self._ahead_rows = self._ahead_rows, None
        if ahead is not None:
            ahead.target.end_ahead(ahead.partitions, ahead.table() if kept else None)

    def _stop_feeding(self) -> None:
        target = self._feeding_to
        if target is not None:
            target.stop_feeding(target.fed())

    def finished(self) -> None:
        self._stop_feeding()
        self._feeding_to = None

    def emit_stateful(self, batch: pa.Table, encoder: SinkEncoder | None, reader: Any) -> None:
        # State, produced records and positions commit in one transaction (STATEFUL.md); a
        # batch read ahead of the group's assignment goes into the read-ahead's (reads_ahead).
        assert encoder is not None and self.plan.sink is not None and self.group is not None
        ahead = reader.ahead_transaction()
        # (a batch read ahead keeps its rows for the table instead, see _keeping_ahead)
        feeding = self._feeding(reader, False) if ahead is None else None
        keeping: _AheadRows | None = None
        kept_rows: pa.Table | None = None
        # The materializer publishes how far it has read the records this batch feeds only
        # once their state is committed too (it commits after Kafka's transaction does).
        fed = feeding[0].feed_lock if feeding is not None else contextlib.nullcontext()
        with contextlib.ExitStack() as stack:
            stack.enter_context(fed)
            tx = stack.enter_context(ahead or self.store.transaction())
            result = self._processor.process(batch, tx.state)
            self.plog.write(self.query_id, result.errors)
            self.operator_counts.add("main/out", result.rows.num_rows)
            records, errors, inner = _encode_windowed(encoder, self.plan.sink, result.rows)
            self.plog.write(self.query_id, errors)
            if records.num_rows and ahead is not None:
                keeping = self._keeping_ahead(reader)
                if keeping is not None and (inner is not None or self.plan.sink.window is None):
                    kept_rows = _fed_rows(self.plan.sink, result.rows, records, inner, keeping.partitions)
                elif keeping is not None:  # (no window columns) the materializer reads them
                    self._ahead_rows = None
                    keeping.target.end_ahead(keeping.partitions, None)
            if records.num_rows:
                target, partitions = feeding if feeding is not None else (None, frozenset())
                if target is not None and inner is None and self.plan.sink.window is not None:
                    target.stop_feeding(partitions)  # (no window columns) the materializer reads them
                    partitions = frozenset()
                elif target is not None:
                    # before producing: whether anyone else wrote the table's topic meanwhile
                    partitions = target.feed_from(tx, partitions)
                tx.produce(self.plan.sink.topic, records)
                if target is not None and partitions:
                    rows = _fed_rows(self.plan.sink, result.rows, records, inner, partitions)
                    target.feed(tx.state, rows)
                    target.commit_fed(tx, partitions)
            self._produce_changes(tx)
            tx.commit_positions(self.group, reader.positions())
            if ahead is None and self._commits_behind() and reader.overlappable():
                # The transaction ends (Kafka's commit, mostly waiting for the broker, then the
                # state's) on the committer thread while this one polls and decodes the next
                # batch, processed only after it (see _committed).
                self._commit_later(stack.pop_all(), records)
                return
        if keeping is not None and kept_rows is not None:
            self._keep_ahead(keeping, kept_rows)
        self.records_out += records.num_rows
        self.bytes_out += record_bytes(records)
        self.operator_counts.add("sink", records.num_rows)

    def _commits_behind(self) -> bool:
        """Whether a batch's transaction may end while the next batch is polled and decoded: an
        aggregation of its own loop on Kafka under exactly-once, whose state follows the
        group's partitions (their moves wait for the transaction, see ``_AfterCommit``)."""
        return (
            type(self) is PersistentQuery
            and self._partitioned is not None
            and bool(getattr(self.store, "exactly_once", False))
        )


class _AheadRows:
    """The rows a query produced for its table's partitions while reading ahead of its group's
    first assignment (``Materializer.feed_ahead``), cut to the last of each key as they grow:
    handed to the table's state when the read-ahead is kept, instead of the materializer
    reading back, decoding and upserting what the read-ahead committed."""

    def __init__(self, target: Any, partitions: frozenset[int]) -> None:
        self.target = target
        self.partitions = partitions
        self._parts: list[pa.Table] = []
        self._rows = 0
        self._compacted = 0

    def add(self, rows: pa.Table, con: duckdb.DuckDBPyConnection) -> bool:
        """Keep ``rows`` (``con`` runs the query cutting them to one per key); False when the
        rows kept, one per key, are past :data:`AHEAD_ROWS_MAX_BYTES`."""
        self._parts.append(rows)
        self._rows += rows.num_rows
        if self._rows < max(AHEAD_ROWS_COMPACT, 2 * self._compacted):
            return True
        table = self.target.compact(con, pa.concat_tables(self._parts))
        self._parts, self._rows, self._compacted = [table], table.num_rows, table.num_rows
        return bool(table.nbytes <= AHEAD_ROWS_MAX_BYTES)

    def table(self) -> pa.Table | None:
        """Every row kept, in the order produced (None: none)."""
        return pa.concat_tables(self._parts) if self._parts else None


class _AfterCommit:
    """A query's rebalance listener that first waits for the batch transaction under way: the
    state follows the partitions once that batch is committed (or rolled back), as when the
    poll that moves them comes after the commit."""

    def __init__(self, listener: Any, await_commit: Callable[[], None]) -> None:
        self.listener = listener
        self._await_commit = await_commit

    def partitions_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        self._await_commit()
        self.listener.partitions_assigned(partitions)

    def partitions_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        self._await_commit()
        self.listener.partitions_revoked(partitions)


class PushQuery(QueryRunner):
    """A transient ``SELECT ... EMIT CHANGES``: rows go to a buffer the client drains."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer: deque[Row] = deque()
        self.cond = threading.Condition()
        self.listener: Callable[[], None] | None = None
        self.emitted = 0
        self.ended = False
        self.end_reason: str | None = None
        self.types = [c.type for c in self.plan.step.columns]
        self.created = time.time()

    @classmethod
    def function_connection(cls) -> duckdb.DuckDBPyConnection:
        """A new connection for one push query, with the functions installed (see
        :func:`new_connection`: installing them anew would cost a push query half a second)."""
        return new_connection()

    def _evaluator(self, encoder: SinkEncoder | None) -> StepEvaluator | None:
        from ksqlpy.planner.physical import AggregateStep

        if isinstance(self.plan.step, AggregateStep):
            from ksqlpy.runtime.aggregate import AggregateProcessor

            # The aggregate state itself lives in a private database (emit_stateful).
            self._processor = AggregateProcessor(self.plan.step, self.query_id, self.function_connection())
            return None
        return StepEvaluator(self.plan.step, self.function_connection(), drop_unmatched=True)

    #: leave out rows of records without a key (a scalable push query, see the session)
    skip_null_keys = False
    #: rows held for the client before the query stops reading until it drains them
    max_buffered = 10_000

    def emit(self, rows: pa.Table, encoder: SinkEncoder | None, reader: Any) -> None:
        limit = self.plan.limit
        if limit is not None and not self.skip_null_keys:
            # Converting fewer rows costs less; not when rows without a key are left out after
            # this, which would leave fewer than the LIMIT when more are there.
            rows = rows.slice(0, max(0, limit - self.emitted))
        out = self.client_rows(rows)
        with self.cond:
            # A client slower than the stream holds this query's reading up, not the server's
            # memory: the rows wait in the topic, where they are already stored.
            while len(self.buffer) >= self.max_buffered and not self._stop.is_set():
                self.cond.wait(0.5)
        self.deliver(out)

    def client_rows(self, rows: pa.Table) -> list[Row]:
        """The evaluated rows as the client sees them (queries of one plan share them)."""
        if self.skip_null_keys and NULL_KEY in rows.column_names and rows.num_rows:
            rows = rows.filter(pc.invert(pc.fill_null(rows.column(NULL_KEY), False)))
        if rows.num_rows == 0:
            return []
        deletes = deletes_of(rows)
        tomb = deletes.to_pylist() if deletes is not None else None
        return table_to_rows(rows.select(list(range(len(self.types)))), self.types, tomb)

    def deliver(self, rows: list[Row], *, wake: bool = True) -> bool:
        """Append rows to the client's buffer (up to the LIMIT) and wake the client; without
        ``wake`` the caller wakes it (:meth:`wake_client`) once it has delivered to all its
        queries. Whether any row was appended."""
        limit = self.plan.limit
        if limit is not None and len(rows) > limit - self.emitted:
            rows = rows[: max(0, limit - self.emitted)]
        if rows:
            with self.cond:
                self.buffer.extend(rows)
                self.emitted += len(rows)
                self.cond.notify_all()
            if wake:
                self._notify()
        if self._hub is not None and limit is not None and self.emitted >= limit:
            self._leave_hub()  # LIMIT reached: the query ends as one reading alone does
        return bool(rows)

    def wake_client(self) -> None:
        """Wake the client for rows :meth:`deliver` appended without waking it."""
        self._notify()

    # -- a push query served by a hub (see ``fanout``) -------------------------------------------

    #: the hub reading this query's source for it (None once it left), and whether it had one
    _hub: Any = None
    _shared = False

    def room(self) -> int:
        """Rows the client's buffer takes before the query stops reading."""
        return self.max_buffered - len(self.buffer)

    def drained(self) -> None:
        """The client took the buffered rows (called by the server after each drain)."""
        hub = self._hub
        if hub is not None:
            hub.drained(self)

    def hub_failed(self, error: BaseException) -> None:
        """The hub could not read, decode or evaluate for this query: it fails, as a query
        reading alone does (on the hub's thread)."""
        self._fail(error)
        self._leave_hub()

    def store_closed(self) -> None:
        """The store closed while a hub served this query: it ends (on the hub's thread)."""
        self._leave_hub()

    def _leave_hub(self) -> None:
        hub, self._hub = self._hub, None
        if hub is None:
            return
        from ksqlpy.runtime.fanout import HUBS

        HUBS.leave(self, hub)
        self._idle.set()
        self.finished()

    _private_state: duckdb.DuckDBPyConnection | None = None

    def emit_stateful(self, batch: pa.Table, encoder: SinkEncoder | None, reader: Any) -> None:
        # A push query's state lives only as long as the query: a private in-memory database.
        if self._private_state is None:
            self._private_state = duckdb.connect()
        result = self._processor.process(batch, self._private_state)
        self.plog.write(self.query_id, result.errors)
        self.emit(result.rows, encoder, reader)

    def start(self) -> None:
        from ksqlpy.runtime.fanout import HUBS, shareable

        if not shareable(self):
            super().start()
            return
        try:
            evaluator = self._evaluator(None)
            assert evaluator is not None  # shareable: no processor
            self.state = QueryState.RUNNING
            self._shared = True
            self._hub = HUBS.join(self, evaluator)
        except Exception as e:  # noqa: BLE001 - reported as the query's error
            self._fail(e)
            self.finished()
        self._ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self.cond:
            self.cond.notify_all()  # out of a wait for room in the buffer
        if self._shared:
            self._leave_hub()
            if self.state is not QueryState.ERROR:
                self.state = QueryState.TERMINATED
            return
        super().stop(timeout)

    def caught_up(self) -> bool:
        hub = self._hub
        if hub is None:
            return super().caught_up()
        positions = hub.positions_of(self)
        ends = self.store.end_offsets(self.plan.source.topic)
        return all(positions.get(p, 0) >= end for p, end in ends.items() if end > 0)

    #: set for a bounded read (a pull query over a stream): stop at these end offsets
    stop_at: dict[int, int] | None = None

    def done(self) -> bool:
        if self.plan.limit is not None and self.emitted >= self.plan.limit:
            return True
        if self.stop_at is not None and self._reader is not None:
            positions = {tp.partition: off for tp, off in self._reader.positions().items()}
            return all(positions.get(p, 0) >= end for p, end in self.stop_at.items())
        return False

    def _idle_hook(self) -> bool:
        return self.stop_at is not None and self.done()

    def finished(self) -> None:
        with self.cond:
            self.ended = True
            if self.end_reason is None:
                if self.state is QueryState.ERROR:
                    self.end_reason = "ERROR"
                elif self.plan.limit is not None and self.emitted >= self.plan.limit:
                    self.end_reason = "LIMIT"
                else:
                    self.end_reason = "COMPLETED"
            self.cond.notify_all()
        self._notify()

    def _notify(self) -> None:
        cb = self.listener
        if cb is not None:
            try:
                cb()
            except Exception:
                log.debug("push query listener failed", exc_info=True)


def encode_windowed(encoder: SinkEncoder, sink: Any, rows: pa.Table) -> tuple[pa.Table, list[Any]]:
    """Encode result rows; a windowed sink's keys get their window suffix from the rows'
    ``__WINDOWSTART``/``__WINDOWEND`` columns."""
    records, errors, _ = _encode_windowed(encoder, sink, rows)
    return records, errors


def _fed_rows(sink: Any, rows: pa.Table, records: pa.Table, inner: Any, partitions: frozenset[int]) -> pa.Table:
    """The rows of a batch for the materialized table's fed partitions, in its layout (ksqlDB
    column names, hidden columns and ``__tomb``), one per record produced, in order. ``inner``:
    a windowed sink's keys without their window suffix (None: the records' keys as they are).
    A record whose value is null deletes its key, as when the materializer reads it back."""
    from ksqlpy.runtime.materialize import KEY_BYTES_COLUMN, PARTITION_COLUMN

    n = rows.num_rows
    part = records.column("partition") if "partition" in records.column_names else pa.array([0] * n, pa.int32())
    columns: dict[str, Any] = {c.name: rows.column(c.name) for c in sink.key_columns}
    if inner is not None:
        columns["WINDOWSTART"] = rows.column(WINDOW_START)
        columns["WINDOWEND"] = rows.column(WINDOW_END)
    columns.update({c.name: rows.column(c.name) for c in sink.value_columns})
    columns["ROWTIME"] = pc.cast(rows.column(TS), pa.int64())
    columns[PARTITION_COLUMN] = pc.cast(part, pa.int32())
    columns[KEY_BYTES_COLUMN] = inner if inner is not None else records.column("key")
    columns["__tomb"] = pc.is_null(records.column("value"))
    table = pa.table(columns)
    keep = pc.is_in(table.column(PARTITION_COLUMN), value_set=pa.array(sorted(partitions), pa.int32()))
    if NULL_KEY in rows.column_names:
        # a record without a key is not stored (the materializer drops null keys too)
        keep = pc.and_(keep, pc.invert(pc.fill_null(rows.column(NULL_KEY), False)))
    return table.filter(keep)


def _encode_windowed(encoder: SinkEncoder, sink: Any, rows: pa.Table) -> tuple[pa.Table, list[Any], Any]:
    """:func:`encode_windowed`, with the keys without their window suffix (None for an
    unwindowed sink)."""
    records, errors = encoder.encode(rows, rows.column(TS), deletes_of(rows))
    if sink.window is None or WINDOW_START not in rows.column_names:
        return records, errors, None
    from ksqlpy.runtime.serde.window import WindowKind, join_windowed_keys

    inner = combine(records.column("key"))
    keys = join_windowed_keys(
        inner, rows.column(WINDOW_START), rows.column(WINDOW_END), WindowKind(sink.window.type.value)
    )
    records = records.set_column(records.schema.get_field_index("key"), "key", keys)
    if sink.partitions > 1 and records.num_rows:
        # Kafka Streams partitions windowed records by their inner key, not the windowed bytes.
        from ksqlpy.runtime.store.partitioner import partitions_for_keys

        records = records.append_column("partition", partitions_for_keys(inner, sink.partitions))
    return records, errors, inner


__all__ = ["DELETE", "TS", "PersistentQuery", "PushQuery", "QueryRunner", "QueryState"]
