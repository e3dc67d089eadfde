"""The GROUP BY operator: an :class:`AggregateStep` over micro-batches, with state in DuckDB.

Per batch (see STATEFUL.md):

1. *pre*: WHERE, the grouping values, the aggregate arguments, ``__SEQ`` (input order) and
   ``__TS``, evaluated over the decoded batch on the query's own connection (where ksqlpy's
   UDFs live); a stream's plain columns are taken as they are, with no query. Rows with a
   null grouping value are dropped, as ksqlDB drops them. Table input turns each update into
   a retraction of the source row's previous value (``__SIGN`` -1, from the source-row table
   ``agg."<QID>_src"``, whose rows name the input partition that holds them, ``__SP``) and an
   addition (+1).
2. *windows*: tumbling/hopping rows expand to one row per window; a window closed for the
   stream time as of its record (``end + grace <= stream time``) drops the row (counted in
   ``late_records``). Stream time is kept per partition, as a Kafka Streams task keeps it: each
   group belongs to the partition ksqlDB would process it in (``__P``, see :meth:`_partitions`).
3. *aggregate*: the prior state of the touched groups comes from ``agg."<QID>"`` on the
   transaction's connection; each aggregate is computed as running window functions over the
   batch combined with it (vectorized), or by the accumulators one row at a time (session
   windows, functions without a vector form). Statements cost more than most batches'
   arithmetic, so the common cases take fewer: with caching (one output per group and commit)
   a batch is one GROUP BY (Arrow's, for COUNT and integer SUM/MIN/MAX) joined with the prior
   states in the state database itself; with per-record output, a stream's COUNTs and integer
   SUMs are numpy's cumulative sums per group. A batch of a few rows (a paced writer's) that
   would be a vectorized query is aggregated by the accumulators in Python instead.
4. *output*: HAVING and the projection; a row is emitted when it passes HAVING, a tombstone when
   it fails but the group's previous value passed. Without per-record output only each group's
   last change is emitted. EMIT FINAL emits a window once, when it closes.
5. The groups' last states are written back through the transaction's connection, so state,
   produced records and positions commit together; only the groups that had a state are
   deleted before the new states are inserted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.errors import KsqlpyError
from ksqlpy.planner.expressions import duckdb_name
from ksqlpy.planner.functions.aggregate import VectorForm
from ksqlpy.planner.physical import AggregateCall, AggregateStep, group_key_name
from ksqlpy.runtime.arrow_plans import aggregate_by, inner_join
from ksqlpy.runtime.changelog import TableLog
from ksqlpy.runtime.codec import HEADERS, TOMBSTONE
from ksqlpy.runtime.evaluate import DELETE, TS, Evaluated
from ksqlpy.runtime.processing_log import RECORD_PROCESSING_ERROR, ProcessingError
from ksqlpy.runtime.relations import to_duckdb
from ksqlpy.runtime.state import StateStore, StoreKind
from ksqlpy.runtime.stats import OperatorCounts

log = logging.getLogger("ksqlpy.aggregate")

SEQ = "__SEQ"
SIGN = "__SIGN"
PASS = "__PASS"
PRIOR_PASS = "__PRIOR_PASS"
#: Batches of at most this many rows are aggregated in Python (see ``AggregateProcessor._small``):
#: up to some hundreds of rows that costs less than the statements it saves.
SMALL_BATCH_ROWS = 128
KEPT_PASS = "__KEPT_PASS"  # the HAVING result a group keeps: its last change's, not a retraction's
FORCE_DELETE = "__FORCE_DELETE"
_SOURCE_SEQ = "__SOURCE_SEQ"  # an emitted row's input record (its SEQ), for its headers
SKIP = "__SKIP"  # a row that changes state but is not emitted by itself
PART = "__P"  # the partition a group is processed in: whose stream time applies to it
SOURCE_PART = "__SP"  # a table's source row: the input partition (task) whose store holds it
_HAD = "__HAD"  # a group that had a state before the batch
WINDOW_START = "__WINDOWSTART"
WINDOW_END = "__WINDOWEND"
_WS, _WE = "WINDOWSTART", "WINDOWEND"
_MIN_TS = -(2**62)
#: a session row's place in the batch's output (twice its record's SEQ, plus one for a value
#: after the tombstones), its state action (keep, delete or none), and whether one statement
#: made it (see AggregateProcessor._sessions)
_ORDER, _KEEP, _FAST = "__ORD", "__KEEP", "__FAST"
_EMPTY = pa.table({})


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _state_col(i: int) -> str:
    return f"__S{i}"


def _arg_col(i: int, j: int) -> str:
    return f"__A{i}_{j}"


def _source_key_col(i: int) -> str:
    return f"__SK{i}"


@dataclass(frozen=True, slots=True)
class StateTables:
    """The DuckDB tables (schema ``agg``) holding one aggregation's state."""

    groups: str  # one row per group (and window): states, timestamp, last HAVING result
    sources: str  # table input: the last row of each source key, as grouped
    meta: str  # stream time per partition

    @classmethod
    def of(cls, query_id: str) -> StateTables:
        return cls(
            groups=f"agg.{_q(query_id)}",
            sources=f"agg.{_q(query_id + '_src')}",
            meta=f"agg.{_q(query_id + '_meta')}",
        )


@dataclass(frozen=True, slots=True)
class _Pending:
    """Aggregated rows not computed yet: a query over Arrow tables (registered under their
    names), run as part of the query that consumes them."""

    sql: str
    tables: dict[str, pa.Table]


class AggregateProcessor:
    """Processes micro-batches of one aggregation; ``process(batch, state)`` per STATEFUL.md."""

    def __init__(
        self,
        step: AggregateStep,
        query_id: str,
        con: duckdb.DuckDBPyConnection,
        *,
        key_partitioner: Callable[[pa.Table], pa.Array] | None = None,
    ) -> None:
        """``key_partitioner`` maps the group key columns to the partition ksqlDB's repartition
        topic would put them in (the sink key format's bytes, murmur2); without it a hash of the
        values stands in for it."""
        self.step = step
        self.query_id = query_id
        self.con = con
        self.tables = StateTables.of(query_id)
        self.keys = [group_key_name(i) for i in range(len(step.group_keys))]
        self.window = step.window
        self.windowed = step.window is not None
        self.group_cols = self.keys + ([_WS, _WE] if self.windowed else [])
        self.is_table = step.source.is_table
        self.source_keys = [_source_key_col(i) for i in range(len(step.source.key_columns))]
        self.args = [[_arg_col(i, j) for j in range(len(c.args_sql))] for i, c in enumerate(step.calls)]
        accs = [c.accumulator for c in step.calls]
        self.vectorized = (
            not (self.window is not None and self.window.is_session)
            and all(a.vector is not None for a in accs)
            and (not self.is_table or all(a.vector.supports_undo for a in accs))
        )
        #: whether each group's last state can be computed by one GROUP BY over a batch: the
        #: functions whose batch part is an exact, order-free aggregate (DOUBLE sums would round
        #: in another order than the running ones; a DECIMAL sum's overflow is checked per record)
        self._groupable = self.vectorized and all(_order_free(c) for c in step.calls)
        #: how Arrow aggregates each function's part of a batch, when it can (see _arrow_groups)
        self._arrow_kinds = _arrow_kinds(step.calls) if self._groupable else None
        #: whether a session window's batch in time order may be aggregated by one GROUP BY
        #: (see _sessions_in_order): the same functions as _groupable
        self._sessions_groupable = (
            self.window is not None
            and self.window.is_session
            and not self.is_table
            and bool(accs)
            and all(a.vector is not None for a in accs)
            and all(_order_free(c) for c in step.calls)
        )
        self.key_partitioner = key_partitioner
        self.partitions = max(1, step.source.partitions)
        # Grouping by the source's key needs no repartition: a group stays in its source partition.
        self.by_source_key = len(step.group_keys) == len(step.source.key_columns) and all(
            k.sql == _q(duckdb_name(c.name))
            for k, c in zip(step.group_keys, step.source.key_columns, strict=False)
        )
        #: records dropped because their window had closed (past its grace period)
        self.late_records = 0
        #: where the rows past WHERE and those with a group are counted (``main/where``, ``main/grouped``)
        self.counts: OperatorCounts | None = None
        self._groups = StateStore(
            name="Aggregate-Aggregate-Materialize",
            namespace="agg",
            owner=query_id,
            table=self.tables.groups,
            schema=None,
            keys=self.group_cols,
            kind=StoreKind.WINDOW if self.windowed else StoreKind.KEY_VALUE,
            partition=PART,
        )
        self._meta = StateStore(
            name="Aggregate-StreamTime",
            namespace="agg",
            owner=query_id,
            table=self.tables.meta,
            schema=None,
            keys=("partition",),
            columns="stream_time BIGINT, partition INTEGER",
            partition="partition",
        )
        #: a table aggregation's input: each source key's last row, as grouped, in the input
        #: partition it was read from (Kafka Streams materializes a grouped table per task)
        self._sources = StateStore(
            name="Aggregate-Source",
            namespace="agg",
            owner=query_id,
            table=self.tables.sources,
            schema=None,
            keys=self.source_keys,
            partition=SOURCE_PART,
        )
        self._created = False
        self._out_schema: pa.Schema | None = None
        #: the aggregated rows' columns the output's columns are (see _projected), once known
        self._refs: list[str | None] | None = None

    # ------------------------------------------------------------------ state tables

    def _ensure_tables(self, state: duckdb.DuckDBPyConnection) -> None:
        if self._created:
            return
        step = self.step
        cols = [
            f"{_q(k)} {sqltypes.to_duckdb(c.type)}" for k, c in zip(self.keys, step.group_keys, strict=True)
        ]
        if self.windowed:
            cols += [f"{_WS} BIGINT", f"{_WE} BIGINT"]
        cols += [
            f"{_state_col(i)} {sqltypes.to_duckdb(c.accumulator.state_type)}"
            for i, c in enumerate(step.calls)
        ]
        cols += [f"{TS} BIGINT", f"{PASS} BOOLEAN", f"{PART} INTEGER"]
        state.execute("CREATE SCHEMA IF NOT EXISTS agg")
        existing = state.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'agg' AND table_name = ? ORDER BY column_index",
            [self.query_id],
        ).fetchall()
        wanted = [c.split(" ", 1)[0].strip('"') for c in cols]
        if existing and [n for (n,) in existing] == wanted[:-1]:
            # State from before stream time was kept per partition: it all belonged to one.
            state.execute(f"ALTER TABLE {self.tables.groups} ADD COLUMN {PART} INTEGER DEFAULT 0")
            state.execute(
                f"ALTER TABLE {self.tables.meta} ADD COLUMN IF NOT EXISTS partition INTEGER DEFAULT 0"
            )
        elif existing and [n for (n,) in existing] != wanted:
            # CREATE OR REPLACE changed the aggregation: its old state no longer applies.
            for table in (self.tables.groups, self.tables.sources, self.tables.meta):
                state.execute(f"DROP TABLE IF EXISTS {table}")
        self._groups.columns = ", ".join(cols)
        self._groups.create(state)
        self._meta.create(state)
        if self.is_table:
            src = [
                f"{_q(sk)} {sqltypes.to_duckdb(c.type)}"
                for sk, c in zip(self.source_keys, step.source.key_columns, strict=True)
            ]
            src += [
                f"{_q(k)} {sqltypes.to_duckdb(c.type)}"
                for k, c in zip(self.keys, step.group_keys, strict=True)
            ]
            for i, c in enumerate(step.calls):
                for j, a in enumerate(self.args[i]):
                    src.append(f"{a} {sqltypes.to_duckdb(c.arg_types[j])}")
            src.append(f"{SOURCE_PART} INTEGER")
            self._sources.columns = ", ".join(src)
            kept = state.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'agg' AND table_name = ?",
                [self.query_id + "_src"],
            ).fetchall()
            if kept and (SOURCE_PART,) not in kept:
                # Source rows kept before they named their partition were all in partition 0.
                state.execute(f"ALTER TABLE {self.tables.sources} ADD COLUMN {SOURCE_PART} INTEGER DEFAULT 0")
            self._sources.create(state)
        self._created = True

    @property
    def stores(self) -> list[StateStore]:
        """This aggregation's state stores, named as ksqlDB names them."""
        return [self._groups, self._meta, *([self._sources] if self.is_table else [])]

    def changelog_topics(self, changelog_prefix: str) -> list[str]:
        return [store.changelog_topic(changelog_prefix) for store in self.stores]

    def log_changes(
        self, changelog_prefix: str, state: duckdb.DuckDBPyConnection, partitions: int = 1
    ) -> list[TableLog]:
        """From now on record every state change for the changelog topics (of ``partitions``
        partitions); returns the logs."""
        self._ensure_tables(state)
        return [store.log_to(changelog_prefix, self.con, state, partitions) for store in self.stores]

    def drop_state(self, state: duckdb.DuckDBPyConnection) -> None:
        """Delete this aggregation's state tables (the query was terminated)."""
        for table in (self.tables.groups, self.tables.sources, self.tables.meta):
            state.execute(f"DROP TABLE IF EXISTS {table}")
        self._created = False

    # ------------------------------------------------------------------ the batch

    def process(self, batch: pa.Table, state: duckdb.DuckDBPyConnection) -> Evaluated:
        try:
            return self._process(batch, state)
        except duckdb.Error as e:
            # An aggregate failing (overflow, a bad state) stops the query, as in ksqlDB.
            raise KsqlpyError(f"Exception caught in process. {str(e).splitlines()[0]}") from e

    def _process(self, batch: pa.Table, state: duckdb.DuckDBPyConnection) -> Evaluated:
        self._ensure_tables(state)
        self._errors: list[ProcessingError] = []
        batch = _numbered(batch)
        rows = self._pre(batch)
        if self.is_table:
            rows = self._signed(rows, state)
            # A table aggregation is never windowed: stream time does not apply to it.
            rows = rows.append_column(PART, pa.array(np.zeros(rows.num_rows, dtype=np.int32)))
        return self._aggregate(rows, batch, state, paired=self.is_table)

    def prepare(self, batch: pa.Table, state: duckdb.DuckDBPyConnection) -> Evaluated:
        """Stage one of a GROUP BY through its repartition topic (see
        :mod:`ksqlpy.runtime.group_by`): WHERE, the grouping values and the aggregate arguments
        of each input row, in input order, with its ``__TS`` and its record's headers; a row
        without a group is dropped (with ksqlDB's processing-log entry). A table's change is a
        retraction of the row's previous value (``__SIGN`` -1) and an addition (+1); a
        retraction followed by an addition to the same group is marked ``__SKIP``."""
        try:
            self._ensure_tables(state)
            self._errors = []
            batch = _numbered(batch)
            rows = self._pre(batch, partitioned=False)
            if self.is_table:
                rows = self._signed(rows, state)
        except duckdb.Error as e:
            raise KsqlpyError(f"Exception caught in process. {str(e).splitlines()[0]}") from e
        if HEADERS in batch.column_names and rows.num_rows:
            seq = rows.column(SEQ)
            rows = rows.append_column(
                HEADERS, batch.column(HEADERS).take(pc.divide(seq, 2) if self.is_table else seq)
            )
        return Evaluated(rows, self._errors)

    def process_grouped(
        self, rows: pa.Table, headers: pa.ChunkedArray | None, state: duckdb.DuckDBPyConnection
    ) -> Evaluated:
        """Stage two: aggregate rows as :meth:`prepare` made them, read back from the
        repartition topic in its processing order, each with the partition it was read from
        (``__P``: whose stream time applies); ``headers`` are the records' headers."""
        try:
            self._ensure_tables(state)
            self._errors = []
            rows = _numbered(rows)
            batch = pa.table({HEADERS: headers}) if headers is not None else rows.slice(0, 0)
            return self._aggregate(rows, batch, state, paired=False)
        except duckdb.Error as e:
            raise KsqlpyError(f"Exception caught in process. {str(e).splitlines()[0]}") from e

    def _aggregate(
        self, rows: pa.Table, batch: pa.Table, state: duckdb.DuckDBPyConnection, *, paired: bool
    ) -> Evaluated:
        """Windows, aggregation, output and state of prepared rows; ``batch`` holds the input
        records' headers, two rows per record when ``paired`` (a table's retraction and addition)."""
        kept = self._keeps_stream_time()
        prior_st = self._stream_time(state) if kept else {}
        # EMIT FINAL needs every stream time the batch passes through; otherwise only the last
        # matters, and listing tens of thousands of distinct times cost more than the window step.
        times = _stream_times(rows, prior_st, every=self.step.emit_final) if kept else []
        rows = self._windows(rows, prior_st)
        if rows.num_rows == 0:
            out = self._empty()
        elif self.window is not None and self.window.is_session:
            out = self._sessions(rows, state)
        elif self._groupable and not self.step.per_record:
            out = self._finish(self._grouped(rows, state), state, plain=True)
        elif self._arrow_kinds is not None:
            out = self._finish(self._running(rows, state), state, plain=True)
        else:
            prior = self._groups.lookup(state, rows)
            if self.vectorized and rows.num_rows <= SMALL_BATCH_ROWS and self._small_in_python:
                out = self._finish(self._small(rows, prior), state, plain=True)
            else:
                agg = self._vector(rows, prior) if self.vectorized else self._sequential(rows, prior)
                out = self._finish(agg, state)
        # Each partition's stream time after the batch: the last it advanced to.
        advanced = dict(times)
        if advanced:
            self._advance(state, advanced, prior_st)
            self._expire(state)
        if self.step.emit_final:
            out = self._final(state, times)
        return Evaluated(self._with_headers(out, batch, paired), self._errors)

    def _with_headers(self, out: pa.Table, batch: pa.Table, paired: bool) -> pa.Table:
        """Each emitted row carries the headers of the input record that caused it, as Kafka
        Streams forwards an aggregate's update in that record's context (unwindowed
        aggregations only, so far: windows renumber their rows)."""
        if _SOURCE_SEQ not in out.column_names:
            return out
        seq = out.column(_SOURCE_SEQ)
        out = out.drop_columns([_SOURCE_SEQ])
        if HEADERS not in batch.column_names or out.num_rows == 0:
            return out
        # a table source's change is a retraction and an addition, numbered 2i and 2i + 1
        rows = pc.divide(seq, 2) if paired else seq
        return out.append_column(HEADERS, batch.column(HEADERS).take(rows))

    def _relation(
        self, name: str, table: pa.Table, sql: str, con: duckdb.DuckDBPyConnection | None = None
    ) -> pa.Table:
        con = con if con is not None else self.con
        con.register(name, table)
        try:
            return con.sql(sql).to_arrow_table()
        finally:
            con.unregister(name)

    def _relations(self, tables: dict[str, pa.Table], sql: str) -> pa.Table:
        for name, table in tables.items():
            self.con.register(name, table)
        try:
            return self.con.sql(sql).to_arrow_table()
        finally:
            for name in tables:
                self.con.unregister(name)

    def _pre(self, batch: pa.Table, *, partitioned: bool = True) -> pa.Table:
        """The batch's prepared rows; a stream's with the partition of their group
        (``partitioned``, see :meth:`_partitions`). A table's rows name the input partition whose
        source-row store holds them (``__SP``): the one they were read from in stage one of a
        GROUP BY through the repartition topic, 0 when aggregated in place (``partitioned``),
        where all of a table aggregation's state is in partition 0."""
        step = self.step
        items = [f"{SEQ}", f"ROWTIME AS {TS}"]
        items += [f"TRY({k.sql}) AS {_q(n)}" for n, k in zip(self.keys, step.group_keys, strict=True)]
        for i, c in enumerate(step.calls):
            items += [f"TRY({sql}) AS {a}" for a, sql in zip(self.args[i], c.args_sql, strict=True)]
        where = f"COALESCE(TRY({step.where_sql}), FALSE)" if step.where_sql else "TRUE"
        not_null = " AND ".join(f"{_q(k)} IS NOT NULL" for k in self.keys) or "TRUE"
        if not self.is_table:
            items += ["ROWPARTITION AS __PART", "ROWOFFSET AS __OFF"]
            sql = f"SELECT *, {not_null} AS __KEYED FROM (SELECT {', '.join(items)} FROM input WHERE {where}) ORDER BY {SEQ}"
        else:
            items += [
                f"{_q(duckdb_name(c.name))} AS {sk}"
                for sk, c in zip(self.source_keys, step.source.key_columns, strict=True)
            ]
            items.append(f"{'0' if partitioned else 'ROWPARTITION'}::INTEGER AS {SOURCE_PART}")
            items.append(f'(NOT "{TOMBSTONE}" AND {where}) AS __OK')
            sql = f"SELECT *, (__OK AND {not_null}) AS __VALID FROM (SELECT {', '.join(items)} FROM input) ORDER BY {SEQ}"
        # The batch's columns by their DuckDB names, as the compiled expressions name them.
        named = to_duckdb(batch)
        plain = None if self.is_table or step.where_sql else self._plain(named)
        result = plain if plain is not None else self._relation("input", named, sql)
        if self.is_table:
            self._count(_true(result.column("__OK")), _true(result.column("__VALID")))
            return result
        keyed = result.column("__KEYED")
        if not pc.all(keyed).as_py():
            self._null_keys(result.filter(pc.invert(keyed)))
            result = result.filter(keyed)
        self._count(len(keyed), result.num_rows)
        if partitioned:
            result = result.append_column(PART, self._partitions(result))
        return result.drop_columns(["__KEYED", "__PART", "__OFF"])

    def _plain(self, batch: pa.Table) -> pa.Table | None:
        """:meth:`_pre`'s rows of a stream without WHERE whose grouping values and aggregate
        arguments are columns of the batch, of their types, taken as they are (a query that
        only renames, and copies, the batch fewer); None for any other."""
        step = self.step
        names = {n: i for i, n in enumerate(batch.column_names)}
        wanted: list[tuple[str, str, sqltypes.SqlType]] = [
            (n, k.sql, k.type) for n, k in zip(self.keys, step.group_keys, strict=True)
        ]
        for i, c in enumerate(step.calls):
            wanted += [(a, sql, t) for a, sql, t in zip(self.args[i], c.args_sql, c.arg_types, strict=True)]
        cols: dict[str, pa.ChunkedArray] = {SEQ: batch.column(SEQ), TS: batch.column("ROWTIME")}
        for name, sql, t in wanted:
            source = next((c for c in names if _q(c) == sql), None)
            if source is None:
                return None
            column = batch.column(names[source])
            if column.type != sqltypes.to_arrow(t):
                return None
            cols[name] = column
        keyed = None
        for k in self.keys:
            valid = pc.is_valid(cols[k])
            keyed = valid if keyed is None else pc.and_(keyed, valid)
        n = batch.num_rows
        cols["__PART"], cols["__OFF"] = batch.column("ROWPARTITION"), batch.column("ROWOFFSET")
        cols["__KEYED"] = keyed if keyed is not None else pa.chunked_array([np.ones(n, dtype=bool)])
        return pa.table(cols)

    def _count(self, passed: int, grouped: int) -> None:
        if self.counts is not None:
            self.counts.add("main/where", passed)
            self.counts.add("main/grouped", grouped)

    def _partitions(self, rows: pa.Table) -> pa.Array:
        """The partition each row's group is processed in, which is whose stream time applies.

        ksqlDB aggregates by the source's key in the source partition; grouping by anything else
        first repartitions by the new key into as many partitions as the source has."""
        n = self.partitions
        if n == 1 or rows.num_rows == 0:
            return pa.array(np.zeros(rows.num_rows, dtype=np.int32))
        if self.by_source_key:
            return rows.column("__PART").combine_chunks().cast(pa.int32())
        keys = rows.select(self.keys)
        if self.key_partitioner is not None:
            return self.key_partitioner(keys).cast(pa.int32())
        hashed = ", ".join(_q(k) for k in self.keys)
        return self._relation("k", keys, f"SELECT (hash({hashed}) % {n})::INTEGER AS p FROM k").column(0)

    def _null_keys(self, rows: pa.Table) -> None:
        """ksqlDB drops a row whose grouping value is null, with a processing-log entry."""
        nulls = [pc.is_null(rows.column(k)).to_pylist() for k in self.keys]
        for r, (part, off) in enumerate(
            zip(rows.column("__PART").to_pylist(), rows.column("__OFF").to_pylist(), strict=True)
        ):
            index = next(i for i, col in enumerate(nulls) if col[r])
            self._errors.append(
                ProcessingError(
                    type=RECORD_PROCESSING_ERROR,
                    message=f"Group-by column with index {index} resolved to null. "
                    "The source row will be excluded from the table.",
                    topic=self.step.source.topic,
                    partition=part,
                    offset=off,
                )
            )

    def _signed(self, rows: pa.Table, state: duckdb.DuckDBPyConnection) -> pa.Table:
        """Table input: each update retracts the source key's previous row, then adds the new."""
        values = self.keys + [a for args in self.args for a in args]
        prior = self._sources.lookup(state, rows)
        part = ", ".join(_q(k) for k in self.source_keys) or "1"
        cols = ", ".join(_q(c) for c in self.source_keys + values)
        lags = ", ".join(f"LAG({_q(v)}) OVER w AS {_q('__OLD' + v)}" for v in values)
        # An update within one group is one change (Kafka Streams sends old and new together):
        # its retraction updates the state but is not emitted on its own.
        same = " AND ".join(
            ["__VALID"] + [f"{_q('__OLD' + k)} IS NOT DISTINCT FROM {_q(k)}" for k in self.keys]
        )
        self.con.register("__prior", prior)
        try:
            sql = f"""
                WITH u AS (
                    SELECT -1::BIGINT AS {SEQ}, 0::BIGINT AS {TS}, {cols}, TRUE AS __VALID FROM __prior
                    UNION ALL
                    SELECT {SEQ}, {TS}, {cols}, __VALID FROM rows
                ), l AS (
                    SELECT *, LAG(__VALID) OVER w AS __OLD_VALID, {lags}
                    FROM u WINDOW w AS (PARTITION BY {part} ORDER BY {SEQ})
                )
                SELECT {SEQ} * 2 AS {SEQ}, {TS}, -1 AS {SIGN}, ({same}) AS {SKIP},
                       {", ".join(f"{_q('__OLD' + v)} AS {_q(v)}" for v in values)}
                FROM l WHERE {SEQ} >= 0 AND COALESCE(__OLD_VALID, FALSE)
                UNION ALL
                SELECT {SEQ} * 2 + 1, {TS}, 1, FALSE, {", ".join(_q(v) for v in values)}
                FROM l WHERE {SEQ} >= 0 AND __VALID
                ORDER BY {SEQ}
            """
            signed = self._relation("rows", rows, sql)
            last = self._relation(
                "rows",
                rows,
                f"SELECT {cols}, {SOURCE_PART}, __VALID FROM rows QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY {SEQ} DESC) = 1",
            )
        finally:
            self.con.unregister("__prior")
        self._sources.upsert(state, last, keep="__VALID")
        return signed

    def _stream_time(self, state: duckdb.DuckDBPyConnection) -> dict[int, int]:
        """Stream time per partition (a partition that has seen nothing is absent)."""
        rows = state.execute(
            f"SELECT partition, max(stream_time) FROM {self.tables.meta} GROUP BY partition"
        ).fetchall()
        return {int(p): int(t) for p, t in rows if p is not None and t is not None}

    def _keeps_stream_time(self) -> bool:
        """Whether batches read and advance stream time: it decides which records are late and
        which windows close, so an aggregation without windows needs none, and a batch saves
        a statement to read it and one to write it. Where the state has a changelog (the Kafka
        store) it is kept all the same, so that the changelog topics hold what they always did."""
        return self.window is not None or self._meta.log is not None

    def _advance(
        self, state: duckdb.DuckDBPyConnection, stream_time: dict[int, int], prior: dict[int, int]
    ) -> None:
        """Each partition's new stream time; ``prior``: the partitions that had one."""
        if stream_time.keys() <= prior.keys():
            # every partition has its row: one UPDATE, no table of the changes to delete and insert
            cases = " ".join(f"WHEN {int(p)} THEN {int(t)}" for p, t in stream_time.items())
            parts = ", ".join(str(int(p)) for p in stream_time)
            self._meta.update_where(
                state, f"stream_time = CASE partition {cases} END", f"partition IN ({parts})"
            )
            return
        changed = pa.table(
            {
                "stream_time": pa.array(list(stream_time.values()), pa.int64()),
                "partition": pa.array(list(stream_time), pa.int32()),
            }
        )
        self._meta.upsert(state, changed)

    def _windows(self, rows: pa.Table, prior_st: dict[int, int]) -> pa.Table:
        """Stream time as of each row (``__ST``, in its partition); tumbling/hopping windows
        expanded, closed ones dropped."""
        if rows.num_rows == 0:
            return rows
        if SIGN not in rows.column_names:
            rows = rows.append_column(SIGN, pa.array(np.ones(rows.num_rows, dtype=np.int32)))
            rows = rows.append_column(SKIP, pa.array(np.zeros(rows.num_rows, dtype=bool)))
        w = self.window
        if w is None:
            return rows
        prior = _by_partition(prior_st)
        running = (
            f"greatest({prior}, max({TS}) OVER (PARTITION BY {PART} ORDER BY {SEQ} ROWS UNBOUNDED PRECEDING))"
        )
        if w.is_session:
            st = self._relation("rows", rows, f"SELECT *, {running} AS __ST FROM rows ORDER BY {SEQ}")
            return st
        size, adv, grace = w.size_ms, w.advance_ms, w.grace_ms
        if size == adv:
            return self._tumbling(rows, prior_st, running, size, grace)
        sql = f"""
            WITH s AS (
                SELECT *, {running} AS __ST,
                       unnest(generate_series(greatest(0, {TS} - {size} + {adv}) // {adv} * {adv}, {TS}, {adv})) AS {_WS}
                FROM rows
            )
            SELECT * EXCLUDE ({SEQ}, __ST), {_WS} + {size} AS {_WE},
                   row_number() OVER (ORDER BY {SEQ}, {_WS}) AS {SEQ}, {SEQ} AS __RECORD
            FROM s WHERE {_WS} + {size} + {grace} > __ST
            ORDER BY {SEQ}
        """
        expanded = self._relation("rows", rows, sql)
        # A record all of whose windows had closed is late: ksqlDB drops (and counts) it.
        late = rows.num_rows - pc.count_distinct(expanded.column("__RECORD")).as_py()
        if late:
            self._late(late)
        return expanded.drop_columns(["__RECORD"])

    def _tumbling(
        self, rows: pa.Table, prior_st: dict[int, int], running: str, size: int, grace: int
    ) -> pa.Table:
        """:meth:`_windows` for tumbling windows: a record is in exactly one window (none before
        time 0), so no row is expanded and the rows keep their order."""
        seqs = rows.column(SEQ)
        if rows.column(TS).null_count == 0 and seqs.null_count == 0:
            seq_np = np.asarray(seqs.to_numpy(), dtype=np.int64)
            if bool(np.all(seq_np[1:] > seq_np[:-1])):
                return self._tumbling_in_order(rows, prior_st, size, grace)
        sql = f"""
            SELECT * EXCLUDE (__ST) FROM (
                SELECT * EXCLUDE ({SEQ}), {running} AS __ST, {TS} // {size} * {size} AS {_WS},
                       {TS} // {size} * {size} + {size} AS {_WE}, {SEQ}
                FROM rows
            )
            WHERE {TS} >= 0 AND {_WE} + {grace} > __ST
            ORDER BY {SEQ}
        """
        kept = self._relation("rows", rows, sql)
        # A record whose window had closed is late: ksqlDB drops (and counts) it.
        late = rows.num_rows - kept.num_rows
        if late:
            self._late(late)
        # numbered from 1 as the expanding query numbers its rows
        seq = kept.schema.get_field_index(SEQ)
        return kept.set_column(seq, SEQ, pa.array(np.arange(1, kept.num_rows + 1, dtype=np.int64)))

    def _tumbling_in_order(self, rows: pa.Table, prior_st: dict[int, int], size: int, grace: int) -> pa.Table:
        """:meth:`_tumbling` over rows in input order, with numpy: stream time is each
        partition's running maximum, no query needed."""
        ts = np.asarray(rows.column(TS).to_numpy(), dtype=np.int64)
        parts = np.asarray(rows.column(PART).to_numpy(zero_copy_only=False), dtype=np.int64)
        stream_time = np.empty_like(ts)
        for p in np.unique(parts):
            mine = parts == p
            before = prior_st.get(int(p), _MIN_TS)
            stream_time[mine] = np.maximum.accumulate(np.maximum(ts[mine], before))
        start = ts // size * size
        end = start + size
        keep = (ts >= 0) & (end + grace > stream_time)
        kept = rows.drop_columns([SEQ])
        if not keep.all():
            kept = kept.filter(pa.array(keep))
        # A record whose window had closed is late: ksqlDB drops (and counts) it.
        late = rows.num_rows - kept.num_rows
        if late:
            self._late(late)
        kept = kept.append_column(_WS, pa.array(start[keep]))
        kept = kept.append_column(_WE, pa.array(end[keep]))
        # numbered from 1 as the expanding query numbers its rows
        return kept.append_column(SEQ, pa.array(np.arange(1, kept.num_rows + 1, dtype=np.int64)))

    def _late(self, n: int) -> None:
        self.late_records += n
        log.debug("%s: %d record(s) for closed windows dropped", self.query_id, n)

    # ------------------------------------------------------------------ aggregation

    def _vector(self, rows: pa.Table, prior: pa.Table) -> _Pending:
        # run as part of the output's query: one round trip and one sort fewer
        return _Pending(self._vector_sql("rows", "__prior"), {"rows": rows, "__prior": prior})

    def _running(self, rows: pa.Table, state: duckdb.DuckDBPyConnection) -> pa.Table:
        """:meth:`_vector` with per-record output, of functions whose vector forms are plain
        SQL (those of :meth:`_arrow_groups`): run where the prior states are kept, joined with
        them there (no lookup of them first), and put in input order by Arrow."""
        computed = self._cumulative(rows, state)
        if computed is not None:
            return computed
        prior = f"(SELECT *, TRUE AS {_HAD} FROM {self.tables.groups}{self._window_range(rows)})"
        sql = self._vector_sql("__agg_rows", prior, had=True)
        return self._relation("__agg_rows", rows, sql, con=state).sort_by(SEQ)

    def _cumulative(self, rows: pa.Table, state: duckdb.DuckDBPyConnection) -> pa.Table | None:
        """:meth:`_running` of a stream's COUNTs and integer SUMs with numpy: each group's
        running sums are cumulative sums over the rows sorted (stably) by group, less the sum
        before the group's first row, each added to the group's prior state; None for other
        aggregations. A DuckDB window statement over a batch costs several times more."""
        kinds = self._arrow_kinds
        if kinds is None or self.is_table or any(k not in ("count", "sum") for k in kinds):
            return None
        n = rows.num_rows
        seq = np.asarray(rows.column(SEQ).to_numpy(), dtype=np.int64)
        if not bool(np.all(seq[1:] > seq[:-1])) or rows.column(TS).null_count:
            return None
        # each row's group: the grouping columns' values numbered together
        gid = np.zeros(n, dtype=np.int64)
        for c in self.group_cols:
            column = rows.column(c)
            if column.null_count or not _numbered_type(column.type):
                return None
            encoded = pc.dictionary_encode(column.combine_chunks())
            codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            _, gid = np.unique(gid * (len(encoded.dictionary) + 1) + codes, return_inverse=True)
        gid = gid.reshape(-1)
        order = np.argsort(gid, kind="stable")
        first = np.ones(n, dtype=bool)
        first[1:] = gid[order][1:] != gid[order][:-1]
        segment = np.cumsum(first) - 1  # each sorted row's group: gid[order]
        starts = np.flatnonzero(first)
        count = len(starts)

        def running(values: np.ndarray) -> np.ndarray:
            """Each row's sum of its group's values up to it (in input order)."""
            ordered = values[order]
            total = np.cumsum(ordered)
            out = np.empty(n, dtype=np.int64)
            out[order] = total - (total[starts] - ordered[starts])[segment]
            return out

        ts = np.asarray(rows.column(TS).to_numpy(), dtype=np.int64)
        ordered_ts = ts[order]
        low = int(ordered_ts.min())
        span = int(ordered_ts.max()) - low + 1
        if span * count >= 2**62:
            return None
        # running maxima restarting at each group: groups lifted apart by a span each
        lift = segment.astype(np.int64) * span
        max_ts = np.empty(n, dtype=np.int64)
        max_ts[order] = np.maximum.accumulate(ordered_ts - low + lift) - lift + low
        last = np.empty(n, dtype=bool)
        last[order] = np.append(first[1:], True)
        # the groups' prior states, by group number
        groups = rows.select(self.group_cols).take(pa.array(order[starts]))
        groups = groups.append_column("__GID", pa.array(np.arange(count, dtype=np.int64)))
        prior = self._groups.lookup(state, rows)
        for c in self.group_cols:
            at = prior.schema.get_field_index(c)
            prior = prior.set_column(at, c, prior.column(c).cast(groups.schema.field(c).type))
        joined = inner_join(groups, prior, self.group_cols) if prior.num_rows else None
        had = np.zeros(count, dtype=bool)
        prior_ts = np.full(count, _MIN_TS, dtype=np.int64)
        prior_pass = np.zeros(count, dtype=bool)
        prior_states = [np.zeros(count, dtype=np.int64) for _ in kinds]
        if joined is not None and joined.num_rows:
            at = np.asarray(joined.column("__GID").to_numpy(), dtype=np.int64)
            had[at] = True
            prior_ts[at] = np.asarray(pc.fill_null(joined.column(TS), _MIN_TS).to_numpy(), dtype=np.int64)
            prior_pass[at] = np.asarray(pc.fill_null(joined.column(PASS), False).to_numpy(), dtype=bool)
            for i in range(len(kinds)):
                values = pc.fill_null(joined.column(_state_col(i)), 0).cast(pa.int64())
                prior_states[i][at] = np.asarray(values.to_numpy(), dtype=np.int64)
        g = gid
        sign = np.asarray(rows.column(SIGN).to_numpy(zero_copy_only=False), dtype=np.int64)
        cols: dict[str, Any] = {SEQ: rows.column(SEQ)}
        cols |= {c: rows.column(c) for c in self.group_cols}
        cols[PART] = rows.column(PART)
        cols[TS] = pa.array(np.maximum(prior_ts[g], max_ts))
        cols[PRIOR_PASS] = pa.array(prior_pass[g], mask=~had[g])
        cols[FORCE_DELETE] = pa.array(np.zeros(n, dtype=bool))
        cols[SKIP] = rows.column(SKIP)
        results: dict[str, pa.Array] = {}
        for i, (kind, call) in enumerate(zip(kinds, self.step.calls, strict=True)):
            if not self.args[i]:
                values = sign
            else:
                arg = rows.column(self.args[i][0])
                valid = np.asarray(pc.is_valid(arg).to_numpy(zero_copy_only=False), dtype=bool)
                if kind == "count":
                    values = np.where(valid, sign, 0)
                else:
                    filled = pc.fill_null(arg, 0).cast(pa.int64())
                    values = np.asarray(filled.to_numpy(), dtype=np.int64) * sign
            with np.errstate(over="ignore"):  # a BIGINT sum wraps, as Java's does
                total = prior_states[i][g] + running(values)
            state_type = sqltypes.to_arrow(call.accumulator.state_type)
            if kind == "sum" and state_type == pa.int32():
                total = (total + 2**31) % 2**32 - 2**31  # an INT sum wraps at 32 bits
            cols[_state_col(i)] = results[call.name] = pa.array(total).cast(state_type)
        cols["__LAST"] = pa.array(last)
        cols[_HAD] = pa.array(had[g])
        return pa.table(cols | results)

    def _vector_sql(self, rows: str, prior: str, *, had: bool = False) -> str:
        """The running aggregates of each row of ``rows`` combined with its group's state in
        ``prior``; ``had``: whether a group had a state (``__HAD``, from ``prior``'s column)."""
        part = ", ".join(f"r.{_q(c)}" for c in self.group_cols)
        over = f"OVER (PARTITION BY {part} ORDER BY r.{SEQ} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
        on = " AND ".join(f"r.{_q(c)} IS NOT DISTINCT FROM p.{_q(c)}" for c in self.group_cols)
        states = []
        for i, c in enumerate(self.step.calls):
            v = c.accumulator.vector
            running = v.running([f"r.{a}" for a in self.args[i]], f"r.{SIGN}", over)
            states.append(f"{v.combine(f'p.{_state_col(i)}', running)} AS {_state_col(i)}")
        results = [
            f"{c.accumulator.vector.result(_state_col(i))} AS {_q(c.name)}"
            for i, c in enumerate(self.step.calls)
        ]
        # Without per-record output only each group's last change is emitted and kept: the
        # other rows are dropped here, before the output's projection and sort.
        last_only = "WHERE __LAST" if not self.step.per_record else ""
        sql = f"""
            WITH s AS (
                SELECT r.{SEQ}, {", ".join(f"r.{_q(c)}" for c in self.group_cols)}, r.{PART},
                       greatest(COALESCE(p.{TS}, {_MIN_TS}), max(r.{TS}) {over}) AS {TS},
                       p.{PASS} AS {PRIOR_PASS}, FALSE AS {FORCE_DELETE}, r.{SKIP},
                       {", ".join(states)}, lead(r.{SEQ}) {over} IS NULL AS __LAST
                       {f", COALESCE(p.{_HAD}, FALSE) AS {_HAD}" if had else ""}
                FROM {rows} r LEFT JOIN {prior} p ON {on}
            )
            SELECT *, {", ".join(results)} FROM s {last_only}
        """
        return sql

    def _grouped(self, rows: pa.Table, state: duckdb.DuckDBPyConnection) -> pa.Table:
        """:meth:`_vector` when only each group's last change is emitted and kept: one GROUP BY
        over the batch, joined with the groups' prior states where they are kept (the state
        connection: no lookup of them first), instead of running window functions whose rows
        but the last are dropped (a sort of the batch by group fewer). In the groups' order of
        their last records (``__SEQ``)."""
        cols = ", ".join(f"r.{_q(c)}" for c in self.group_cols)
        on = " AND ".join(f"g.{_q(c)} IS NOT DISTINCT FROM p.{_q(c)}" for c in self.group_cols)
        states = [
            f"{c.accumulator.vector.combine(f'p.{_state_col(i)}', f'g.__R{i}')} AS {_state_col(i)}"
            for i, c in enumerate(self.step.calls)
        ]
        results = [
            f"{c.accumulator.vector.result(_state_col(i))} AS {_q(c.name)}"
            for i, c in enumerate(self.step.calls)
        ]
        joined = f"""
            SELECT g.{SEQ}, {", ".join(f"g.{_q(c)}" for c in self.group_cols)}, g.{PART},
                   greatest(COALESCE(p.{TS}, {_MIN_TS}), g.__MAX_TS) AS {TS},
                   p.{PASS} AS {PRIOR_PASS}, FALSE AS {FORCE_DELETE}, g.{SKIP},
                   {", ".join(states)}, TRUE AS __LAST, COALESCE(p.{_HAD}, FALSE) AS {_HAD}
            FROM {{groups}} g LEFT JOIN (SELECT *, TRUE AS {_HAD} FROM {self.tables.groups}{self._window_range(rows)}) p
            ON {on}
        """
        groups = self._arrow_groups(rows)
        if groups is not None:
            sql = f"""
                WITH s AS ({joined.format(groups="__agg_groups")})
                SELECT *, {", ".join(results)} FROM s
            """
            # sorted here: a sort in the statement costs more than Arrow's of the groups
            return self._relation("__agg_groups", groups, sql, con=state).sort_by(SEQ)
        partials = [
            f"{c.accumulator.vector.running([f'r.{a}' for a in self.args[i]], f'r.{SIGN}', '')} AS __R{i}"
            for i, c in enumerate(self.step.calls)
        ]
        # a group's partition, and whether its last row is a retraction followed by an addition
        # in the next batch (SKIP), are its last row's
        sql = f"""
            WITH g AS (
                SELECT {cols}, max(r.{SEQ}) AS {SEQ}, arg_max(r.{PART}, r.{SEQ}) AS {PART},
                       arg_max(r.{SKIP}, r.{SEQ}) AS {SKIP}, max(r.{TS}) AS __MAX_TS, {", ".join(partials)}
                FROM __agg_rows r GROUP BY {cols}
            ), s AS ({joined.format(groups="g")})
            SELECT *, {", ".join(results)} FROM s ORDER BY {SEQ}
        """
        return self._relation("__agg_rows", rows, sql, con=state)

    def _window_range(self, rows: pa.Table) -> str:
        """A condition on stored windows that every window of ``rows`` meets: the stored rows
        of other windows are skipped unread (their row groups' start times are out of range)."""
        if not self.windowed or rows.num_rows == 0:
            return ""
        bounds = pc.min_max(rows.column(_WS))
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is None or high is None:
            return ""
        return f" WHERE {_WS} BETWEEN {int(low)} AND {int(high)}"

    def _arrow_groups(self, rows: pa.Table) -> pa.Table | None:
        """:meth:`_grouped`'s GROUP BY, when Arrow's hash aggregation can do it (a DuckDB
        statement costs more than the aggregation of a batch): COUNT, SUM of integers, MIN and
        MAX of integers over rows in input order. Each aggregate's part of the batch is what
        its vector form's running value over the batch would be (``__R<i>``): a sum wraps as
        its state does when combined, so it may be taken whole. None for other aggregations."""
        kinds = self._arrow_kinds
        if kinds is None:
            return None
        seq = np.asarray(rows.column(SEQ).to_numpy(), dtype=np.int64)
        if not bool(np.all(seq[1:] > seq[:-1])):
            return None  # "last" below is the last row's: rows must be in input order
        sign = rows.column(SIGN).cast(pa.int64())
        cols: dict[str, Any] = {c: rows.column(c) for c in self.group_cols}
        cols |= {SEQ: rows.column(SEQ), PART: rows.column(PART), SKIP: rows.column(SKIP), TS: rows.column(TS)}
        aggs: list[tuple[Any, ...]] = [(SEQ, "max"), (PART, "last"), (SKIP, "last"), (TS, "max")]
        for i, kind in enumerate(kinds):
            arg = rows.column(self.args[i][0]) if self.args[i] else None
            if arg is not None and kind != "count" and not pa.types.is_integer(arg.type):
                return None
            if arg is None:
                value, how = sign, "sum"
            elif kind == "count":
                value, how = pc.if_else(pc.is_valid(arg), sign, 0), "sum"
            elif kind == "sum":
                value, how = pc.multiply(arg.cast(pa.int64()), sign), "sum"
            else:
                value, how = arg, kind
            cols[f"__R{i}"] = value
            aggs.append((f"__R{i}", how, pc.ScalarAggregateOptions(min_count=0 if how == "sum" else 1)))
        grouped = aggregate_by(pa.table(cols), self.group_cols, aggs)
        # named "<column>_<function>", after the keys
        names = [f"{c}_{a[1]}" for c, a in zip([a[0] for a in aggs], aggs, strict=True)]
        return grouped.select([*self.group_cols, *names]).rename_columns(
            [*self.group_cols, SEQ, PART, SKIP, "__MAX_TS", *(f"__R{i}" for i in range(len(kinds)))]
        )

    @property
    def _small_in_python(self) -> bool:
        """Whether :meth:`_small` may aggregate this aggregation's batches: every argument, state
        and result a boolean, number (not DECIMAL), string or collection of them. The Python
        forms of the others differ from the vectorized ones at their edges (a DECIMAL sum's
        overflow, a DATE minimum's initial state)."""
        found = self._small_checked
        if found is None:
            types = [t for c in self.step.calls for t in (*c.arg_types, c.accumulator.state_type)]
            types += [c.accumulator.return_type for c in self.step.calls]
            found = self._small_checked = all(_plain_type(t) for t in types)
        return found

    _small_checked: bool | None = None

    def _small(self, rows: pa.Table, prior: pa.Table) -> pa.Table:
        """The aggregated rows of a batch of a few rows, as :meth:`_running` makes them (each
        group's last row marked ``__LAST``, ``__HAD`` whether it had a state; with caching, only
        those last rows): by the accumulators' Python methods (:meth:`_sequential`). Running the
        vectorized query costs a registration of the rows and of their prior states and a
        statement, several milliseconds whatever the rows, and then the output's statement too,
        which rows made so often need not (see :meth:`_projected`)."""
        agg = self._sequential(rows, prior)
        keys = [_hashable(list(k.values())) for k in rows.select(self.group_cols).to_pylist()]
        had = {_hashable(list(k.values())) for k in prior.select(self.group_cols).to_pylist()}
        agg = agg.append_column(_HAD, pa.array([k in had for k in keys], pa.bool_()))
        return agg if self.step.per_record else agg.filter(agg.column("__LAST"))

    def _sequential(self, rows: pa.Table, prior: pa.Table) -> pa.Table:
        """The accumulators' Python methods, one row at a time (the reference semantics), each
        group's last row marked ``__LAST``. Only a group's last state is kept, so the other rows'
        states are left null; with caching only the last rows are emitted, so only theirs are
        turned into results. A state can be large (COUNT_DISTINCT's is 2731 INTs): a batch's
        every intermediate state would take gigabytes."""
        calls = self.step.calls
        accs = [c.accumulator for c in calls]
        groups: dict[Any, list[Any]] = {}
        for p in prior.to_pylist():
            groups[_hashable([p[c] for c in self.group_cols])] = [
                [p[_state_col(i)] for i in range(len(calls))],
                p[TS],
                p[PASS],
            ]
        data = rows.to_pydict()
        n = rows.num_rows
        keys = [_hashable([data[c][r] for c in self.group_cols]) for r in range(n)]
        last = [False] * n
        for r in {k: r for r, k in enumerate(keys)}.values():
            last[r] = True
        every = self.step.per_record
        out_states: list[list[Any]] = [[None] * n for _ in calls]
        results: list[list[Any]] = [[None] * n for _ in calls]
        ts_out: list[int] = []
        prior_pass: list[bool | None] = []
        # Every state here is this loop's own (read from ``prior`` or new, and results are taken
        # from it at once): adds may change it in place.
        for r in range(n):
            entry = groups.get(keys[r])
            if entry is None:
                entry = [[a.initial() for a in accs], _MIN_TS, None]
                groups[keys[r]] = entry
            prior_pass.append(entry[2])
            sign = data[SIGN][r]
            for i, a in enumerate(accs):
                args = tuple(data[x][r] for x in self.args[i])
                current = entry[0][i] = a.add_owned(entry[0][i], args) if sign > 0 else a.undo(entry[0][i], args)
                if last[r]:
                    out_states[i][r] = current
                if every or last[r]:
                    results[i][r] = a.result(current)
            entry[1] = max(entry[1], data[TS][r])
            ts_out.append(entry[1])
        cols: dict[str, pa.Array] = {SEQ: rows.column(SEQ)}
        for g in self.group_cols:
            cols[g] = rows.column(g)
        cols[TS] = pa.array(ts_out, pa.int64())
        cols[PRIOR_PASS] = pa.array(prior_pass, pa.bool_())
        cols[FORCE_DELETE] = pa.array(np.zeros(n, dtype=bool))
        cols[SKIP] = rows.column(SKIP)
        cols[PART] = rows.column(PART)
        for i, (c, a) in enumerate(zip(calls, accs, strict=True)):
            cols[_state_col(i)] = pa.array(out_states[i], sqltypes.to_arrow(a.state_type))
            cols[c.name] = pa.array(results[i], sqltypes.to_arrow(a.return_type))
        cols["__LAST"] = pa.array(last, pa.bool_())
        return pa.table(cols)

    def _sessions(self, rows: pa.Table, state: duckdb.DuckDBPyConnection) -> pa.Table:
        """Session windows: a record joins (and merges) the key's sessions within the gap;
        merged-away sessions are deleted downstream with tombstones.

        Per-record output emits every change. With caching, as Kafka Streams' caching session
        store flushes a batch, each session the batch touched emits its last value once, and a
        merged-away session emits its tombstone only when the store held it before the batch:
        a session that began and was merged away within the batch was never emitted."""
        w = self.window
        assert w is not None
        gap, grace = w.gap_ms, w.grace_ms
        every = self.step.per_record
        calls = self.step.calls
        accs = [c.accumulator for c in calls]
        # The keys whose records come in time order take one statement; the others, one record
        # at a time (a key's sessions depend on its own records only).
        fast: pa.Table | None = None
        if self._sessions_groupable and rows.num_rows > SMALL_BATCH_ROWS:
            fast = self._sessions_in_order(rows, state)
            if fast is None and not every:  # with caching, records may come in any order
                fast = self._sessions_in_order(rows, state, any_order=True)
            if fast is not None:
                rows = rows.slice(0, 0)
            else:
                ordered = self._session_keys_in_order(rows, state)
                if (pc.sum(ordered).as_py() or 0) > SMALL_BATCH_ROWS:
                    fast = self._sessions_in_order(rows.filter(ordered), state, any_order=not every)
                    if fast is not None:
                        rows = rows.filter(pc.invert(ordered))
        prior = self._groups.lookup(state, rows, by=self.keys) if rows.num_rows else _EMPTY
        data = rows.to_pydict()
        sessions: dict[Any, list[dict[str, Any]]] = {}
        key_values: dict[Any, list[Any]] = {}
        partition_of: dict[Any, int] = {}
        for p in prior.to_pylist():
            hk = _hashable([p[k] for k in self.keys])
            key_values[hk] = [p[k] for k in self.keys]
            partition_of[hk] = p[PART]
            sessions.setdefault(hk, []).append(
                {
                    "start": p[_WS],
                    "end": p[_WE],
                    "states": [p[_state_col(i)] for i in range(len(calls))],
                    "ts": p[TS],
                    "pass": p[PASS],
                    # with caching: the stored row these bounds had before the batch, if any
                    "stored": True,
                    "prior": p[PASS],
                    "seq": None,  # the batch's last record that changed it
                }
            )
        emitted: list[dict[str, Any]] = []
        for r in range(rows.num_rows):
            seq = data[SEQ][r]
            ts, st = data[TS][r], data["__ST"][r]
            kv = [data[k][r] for k in self.keys]
            hk = _hashable(kv)
            key_values[hk] = kv
            partition_of[hk] = data[PART][r]
            mine = sessions.setdefault(hk, [])
            # sessions closed for good (end before stream time - gap - grace) have left the store
            live = st - gap - grace
            overlapping = [s for s in mine if s["end"] >= max(ts - gap, live) and s["start"] <= ts + gap]
            start = min([ts] + [s["start"] for s in overlapping])
            end = max([ts] + [s["end"] for s in overlapping])
            # Kafka Streams closes a session at end + gap + grace (strictly before stream time).
            if end + gap + grace < st:
                self._late(1)
                continue
            agg = [a.initial() for a in accs]
            prev_pass = None
            stored, stored_pass = False, None
            for s in overlapping:
                agg = [a.merge(x, y) for a, x, y in zip(accs, agg, s["states"], strict=True)]
                mine.remove(s)
                if s["start"] == start and s["end"] == end:
                    prev_pass = s["pass"]
                    stored, stored_pass = s["stored"], s["prior"]
                    continue
                if every or s["stored"]:
                    emitted.append(
                        {
                            "key": kv,
                            "start": s["start"],
                            "end": s["end"],
                            "states": s["states"],
                            "ts": s["end"],
                            "force": True,
                            "prior": None,
                            "seq": (seq, 0),
                        }
                    )
            args = [tuple(data[x][r] for x in self.args[i]) for i in range(len(calls))]
            agg = [a.add(x, arg) for a, x, arg in zip(accs, agg, args, strict=True)]
            session = {
                "start": start,
                "end": end,
                "states": agg,
                "ts": end,
                "pass": True,
                "stored": stored,
                "prior": stored_pass,
                "seq": (seq, 1),
            }
            mine.append(session)
            if every:
                emitted.append(
                    {
                        "key": kv,
                        "start": start,
                        "end": end,
                        "states": list(agg),
                        "ts": end,
                        "force": False,
                        "prior": prev_pass,
                        "seq": (seq, 1),
                    }
                )
        if not every:
            for hk, mine in sessions.items():
                for s in mine:
                    if s["seq"] is not None:
                        emitted.append(
                            {
                                "key": key_values[hk],
                                "start": s["start"],
                                "end": s["end"],
                                "states": s["states"],
                                "ts": s["end"],
                                "force": False,
                                "prior": s["prior"],
                                "seq": s["seq"],
                            }
                        )
            emitted.sort(key=lambda e: e["seq"])
        cols: dict[str, pa.Array] = {SEQ: pa.array(range(len(emitted)), pa.int64())}
        for j, k in enumerate(self.keys):
            cols[k] = pa.array(
                [e["key"][j] for e in emitted], sqltypes.to_arrow(self.step.group_keys[j].type)
            )
        cols[_WS] = pa.array([e["start"] for e in emitted], pa.int64())
        cols[_WE] = pa.array([e["end"] for e in emitted], pa.int64())
        cols[TS] = pa.array([e["ts"] for e in emitted], pa.int64())
        cols[PRIOR_PASS] = pa.array([e["prior"] for e in emitted], pa.bool_())
        cols[FORCE_DELETE] = pa.array([e["force"] for e in emitted], pa.bool_())
        cols[SKIP] = pa.array(np.zeros(len(emitted), dtype=bool))
        for i, (c, a) in enumerate(zip(calls, accs, strict=True)):
            cols[_state_col(i)] = pa.array([e["states"][i] for e in emitted], sqltypes.to_arrow(a.state_type))
            cols[c.name] = pa.array(
                [a.result(e["states"][i]) for e in emitted], sqltypes.to_arrow(a.return_type)
            )
        cols[PART] = pa.nulls(len(emitted), pa.int32())
        cols[_KEEP] = pa.nulls(len(emitted), pa.bool_())
        cols[_ORDER] = pa.array([2 * e["seq"][0] + e["seq"][1] for e in emitted], pa.int64())
        agg_table = pa.table(cols)
        if fast is not None:
            # one output in the records' order: the one-statement keys' rows and the others'
            fast = fast.select(agg_table.column_names).cast(agg_table.schema)
            agg_table = pa.concat_tables([fast, agg_table]).append_column(
                _FAST, pa.array(np.arange(fast.num_rows + len(emitted)) < fast.num_rows)
            )
            agg_table = agg_table.sort_by([(_ORDER, "ascending"), (_FAST, "descending")])
            agg_table = agg_table.set_column(0, SEQ, pa.array(np.arange(agg_table.num_rows), pa.int64()))
        out, full = self._output(agg_table)
        if fast is not None:
            in_fast = full.column(_FAST)
            kept = full.filter(pc.and_(in_fast, pc.is_valid(full.column(_KEEP))))
            columns = [*self.group_cols, *(_state_col(i) for i in range(len(calls))), TS, PART, _KEEP, PASS]
            self._groups.upsert(state, kept.select(columns), keep=_KEEP)
            full = full.filter(pc.invert(in_fast))
        if not sessions:
            return out
        passes = [bool(p) for p in full.column(PASS).to_pylist()]
        # Rewrite the batch's keys' sessions: drop every stored one, insert the survivors.
        touched = pa.table(
            {
                k: pa.array(
                    [key_values[h][j] for h in sessions], sqltypes.to_arrow(self.step.group_keys[j].type)
                )
                for j, k in enumerate(self.keys)
            }
        )
        on = " AND ".join(f"{self.tables.groups}.{_q(k)} IS NOT DISTINCT FROM n.{_q(k)}" for k in self.keys)
        state.register("__touched", touched)
        try:
            self._groups.delete_where(state, on, using="__touched n")
        finally:
            state.unregister("__touched")
        pass_of = {
            (_hashable(e["key"]), e["start"], e["end"]): p for e, p in zip(emitted, passes, strict=True)
        }
        survivors = [(h, s) for h, ss in sessions.items() for s in ss]
        if survivors:
            scols: dict[str, pa.Array] = {}
            for j, k in enumerate(self.keys):
                scols[k] = pa.array(
                    [key_values[h][j] for h, _ in survivors], sqltypes.to_arrow(self.step.group_keys[j].type)
                )
            scols[_WS] = pa.array([s["start"] for _, s in survivors], pa.int64())
            scols[_WE] = pa.array([s["end"] for _, s in survivors], pa.int64())
            for i, a in enumerate(accs):
                scols[_state_col(i)] = pa.array(
                    [s["states"][i] for _, s in survivors], sqltypes.to_arrow(a.state_type)
                )
            scols[TS] = pa.array([s["ts"] for _, s in survivors], pa.int64())
            scols[PASS] = pa.array(
                [pass_of.get((h, s["start"], s["end"]), s["pass"]) for h, s in survivors], pa.bool_()
            )
            scols[PART] = pa.array([partition_of[h] for h, _ in survivors], pa.int32())
            self._groups.upsert(state, pa.table(scols))
        return out

    def _sessions_in_order(
        self, rows: pa.Table, state: duckdb.DuckDBPyConnection, *, any_order: bool = False
    ) -> pa.Table | None:
        """:meth:`_sessions` in one statement. For a batch whose records come in time order per
        key, each record either extends its key's latest session (the stored one, or the
        batch's last) or begins a new one, so a key's sessions in the batch are the runs of its
        records less than the gap apart, aggregated by window functions (per-record output: a
        session's running value at each record, and the tombstone of its previous bounds) or
        by GROUP BY (caching: each session's last value, and the tombstone of a stored session
        it extended). With caching and ``any_order``, the records may come in any order: the
        batch's sessions are found in time order (see :meth:`_session_components_sql`).

        The rows to emit, each with its place in the output (``__ORD``) and its state action
        (``__KEEP``: keep the session, delete it, or null: neither), as :meth:`_sessions` makes
        them. None when a record could reach another session or drop out: a record more than
        the grace period behind stream time (late, or past a session's expiry), stored sessions
        within the gap of each other, and in time order only, a record earlier than the key's
        previous one or its latest stored session's end; with ``any_order``, a session of two
        stored ones (whose order of merging decides the states of its tombstones)."""
        assert self.window is not None
        gap = self.window.gap_ms
        calls = self.step.calls
        vectors = [c.accumulator.vector for c in calls]
        n = len(calls)
        keys = ", ".join(_q(k) for k in self.keys)

        def each(template: Callable[[int, VectorForm], str]) -> str:
            return ", ".join(template(i, v) for i, v in enumerate(vectors) if v is not None)

        states = ", ".join(_state_col(i) for i in range(n))
        results = each(lambda i, v: f"{v.result(_state_col(i))} AS {_q(calls[i].name)}")
        runs = f"{keys}, __SID"
        rows_sql = self._session_runs_sql()
        if self.step.per_record:
            # Each record: the tombstone of its session's previous bounds when it moves the end
            # (a stored session's is also deleted from the state), then the session's running
            # value; a run's last record leaves the session's state.
            over = f"OVER (PARTITION BY {runs} ORDER BY {SEQ} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
            running = each(
                lambda i, v: f"{v.combine(f'CASE WHEN __SID = 0 THEN __L{i} END', v.running(self.args[i], SIGN, over))}"
                f" AS {_state_col(i)}"
            )
            sql = f"""{rows_sql},
            e AS (
                SELECT *, CASE WHEN __SID = 0 THEN __LWS ELSE first_value({TS}) {over} END AS __START,
                       lag({TS}) OVER (PARTITION BY {runs} ORDER BY {SEQ}) AS __PTS,
                       {SEQ} = max({SEQ}) OVER (PARTITION BY {runs}) AS __FINAL, {running}
                FROM s
            ),
            f AS (
                SELECT *, COALESCE(__PTS, CASE WHEN __SID = 0 THEN __LWE END) AS __PEND,
                       {", ".join(f"CASE WHEN __PTS IS NULL THEN __L{i} ELSE lag({_state_col(i)}) OVER (PARTITION BY {runs} ORDER BY {SEQ}) END AS __P{i}" for i in range(n))}
                FROM e
            ),
            t AS (
                SELECT {SEQ} * 2 + 1 AS __ORD, {keys}, __START AS {_WS}, {TS} AS {_WE},
                       CASE WHEN __PEND = {TS} THEN CASE WHEN __PTS IS NULL THEN __LPASS ELSE TRUE END END
                           AS {PRIOR_PASS},
                       FALSE AS {FORCE_DELETE}, {states}, {PART}, CASE WHEN __FINAL THEN TRUE END AS __KEEP, __OK
                FROM f
                UNION ALL
                SELECT {SEQ} * 2, {keys}, __START, __PEND, NULL, TRUE,
                       {", ".join(f"__P{i}" for i in range(n))}, COALESCE(__LPART, {PART}),
                       CASE WHEN __PTS IS NULL THEN FALSE END, __OK
                FROM f WHERE {TS} > __PEND
            )"""
        elif not any_order:
            # Each session's last value, and before the record that first extended a stored
            # session, its tombstone (one key's sessions are disjoint: no two rows share bounds).
            combined = each(
                lambda i, v: f"{v.combine(f'CASE WHEN __SID = 0 THEN any_value(__L{i}) END', v.running(self.args[i], SIGN, ''))}"
                f" AS {_state_col(i)}"
            )
            sql = f"""{rows_sql},
            g AS (
                SELECT {runs}, max({SEQ}) AS __LAST_SEQ, min({SEQ}) FILTER (WHERE {TS} > __LWE) AS __EXTENDED_SEQ,
                       min({TS}) AS __MIN, max({TS}) AS __MAX, arg_max({PART}, {SEQ}) AS {PART},
                       any_value(__LWS) AS __LWS, any_value(__LWE) AS __LWE, any_value(__LPASS) AS __LPASS,
                       any_value(__LPART) AS __LPART, {", ".join(f"any_value(__L{i}) AS __L{i}" for i in range(n))},
                       {combined}, bool_and(__OK) AS __OK
                FROM s GROUP BY {runs}
            ),
            t AS (
                SELECT __LAST_SEQ * 2 + 1 AS __ORD, {keys},
                       CASE WHEN __SID = 0 THEN __LWS ELSE __MIN END AS {_WS},
                       CASE WHEN __SID = 0 THEN greatest(__LWE, __MAX) ELSE __MAX END AS {_WE},
                       CASE WHEN __SID = 0 AND __MAX <= __LWE THEN __LPASS END AS {PRIOR_PASS},
                       FALSE AS {FORCE_DELETE}, {states}, {PART}, TRUE AS __KEEP, __OK
                FROM g
                UNION ALL
                SELECT __EXTENDED_SEQ * 2, {keys}, __LWS, __LWE, NULL, TRUE,
                       {", ".join(f"__L{i}" for i in range(n))}, __LPART, FALSE, __OK
                FROM g WHERE __SID = 0 AND __EXTENDED_SEQ IS NOT NULL
            )"""
        else:
            # Each touched session's last value, and the tombstone of a stored session it took
            # in with other bounds, at the first record that reached it from outside.
            combined = each(
                lambda i, v: f"{v.combine(f'x.__X{i}', f'p.__R{i}')} AS {_state_col(i)}"
            )
            partials = each(lambda i, v: f"{v.running(self.args[i], SIGN, '')} AS __R{i}")
            sql = f"""{self._session_components_sql()},
            x AS (
                SELECT {keys}, __CID, count(*) FILTER (WHERE __STORED) AS __NSTORED,
                       count(*) FILTER (WHERE NOT __STORED) AS __NPOINTS, min(__B) AS __MIN, max(__E) AS __MAX,
                       max(__SEQ) AS __LAST_SEQ, any_value(__KPART) AS __KPART, any_value(__XWS) AS __XWS,
                       any_value(__XWE) AS __XWE, any_value(__XPASS) AS __XPASS, any_value(__XPART) AS __XPART,
                       {", ".join(f"any_value(__X{i}) AS __X{i}" for i in range(n))},
                       min(__SEQ) FILTER (WHERE NOT __STORED AND (__B < __CWS OR __B > __CWE)
                                          AND __B BETWEEN __CWS - {gap} AND __CWE + {gap}) AS __MERGED_SEQ,
                       bool_and(__KOK) AND count(*) FILTER (WHERE __STORED) <= 1 AS __OK
                FROM c GROUP BY {keys}, __CID
            ),
            p AS (SELECT {keys}, __CID, {partials} FROM c WHERE NOT __STORED GROUP BY {keys}, __CID),
            t AS (
                SELECT x.__LAST_SEQ * 2 + 1 AS __ORD, {", ".join(f"x.{_q(k)}" for k in self.keys)},
                       x.__MIN AS {_WS}, x.__MAX AS {_WE},
                       CASE WHEN x.__MIN = x.__XWS AND x.__MAX = x.__XWE THEN x.__XPASS END AS {PRIOR_PASS},
                       FALSE AS {FORCE_DELETE}, {combined}, x.__KPART AS {PART}, TRUE AS __KEEP, x.__OK
                FROM x JOIN p ON {" AND ".join(f"x.{_q(k)} IS NOT DISTINCT FROM p.{_q(k)}" for k in self.keys)}
                             AND x.__CID = p.__CID
                UNION ALL
                SELECT __MERGED_SEQ * 2, {keys}, __XWS, __XWE, NULL, TRUE,
                       {", ".join(f"__X{i}" for i in range(n))}, __XPART, FALSE, __OK
                FROM x WHERE __NPOINTS > 0 AND __NSTORED = 1 AND (__MIN <> __XWS OR __MAX <> __XWE)
            )"""
        sql += f"""
            SELECT (row_number() OVER (ORDER BY __ORD) - 1)::BIGINT AS {SEQ}, {keys}, {_WS}, {_WE},
                   {_WE} AS {TS}, {PRIOR_PASS}, {FORCE_DELETE}, FALSE AS {SKIP}, {states}, {results},
                   {PART}, __KEEP, __ORD, bool_and(__OK) OVER () AS __OK
            FROM t ORDER BY __ORD
        """
        emitted = self._relation("__sess_rows", rows, sql, con=state)
        if emitted.num_rows and not emitted.column("__OK")[0].as_py():
            return None
        return emitted.drop_columns(["__OK"])

    def _session_runs_sql(self) -> str:
        """The CTEs of :meth:`_sessions_in_order` over ``__sess_rows``, ending with ``s``: each
        record with its run (``__SID``; run 0 extends the key's latest stored session) and
        whether it is in order (``__OK``), with that session's bounds, state and HAVING result."""
        w = self.window
        assert w is not None
        gap, grace = w.gap_ms, w.grace_ms
        n = len(self.step.calls)
        keys = ", ".join(_q(k) for k in self.keys)

        def on(a: str, b: str) -> str:
            return " AND ".join(f"{a}.{_q(k)} IS NOT DISTINCT FROM {b}.{_q(k)}" for k in self.keys)

        return f"""
            WITH p AS (
                SELECT g.*, row_number() OVER (PARTITION BY {", ".join(f"g.{_q(k)}" for k in self.keys)}
                                               ORDER BY g.{_WE} DESC) AS __RN
                FROM {self.tables.groups} g SEMI JOIN (SELECT DISTINCT {keys} FROM __sess_rows) k ON {on("g", "k")}
            ),
            l AS (SELECT * FROM p WHERE __RN = 1),
            l2 AS (SELECT {keys}, {_WE} AS __WE2 FROM p WHERE __RN = 2),
            o AS (
                SELECT r.*, lag(r.{TS}) OVER (PARTITION BY {", ".join(f"r.{_q(k)}" for k in self.keys)}
                                              ORDER BY r.{SEQ}) AS __PREV,
                       l.{_WS} AS __LWS, l.{_WE} AS __LWE, l.{PASS} AS __LPASS, l.{PART} AS __LPART,
                       {", ".join(f"l.{_state_col(i)} AS __L{i}" for i in range(n))}, l2.__WE2
                FROM __sess_rows r LEFT JOIN l ON {on("r", "l")} LEFT JOIN l2 ON {on("r", "l2")}
            ),
            s AS (
                SELECT *,
                       sum(CASE WHEN __PREV IS NULL THEN __LWE IS NULL OR {TS} - __LWE > {gap}
                                ELSE {TS} - __PREV > {gap} END::INTEGER)
                           OVER (PARTITION BY {keys} ORDER BY {SEQ}) AS __SID,
                       COALESCE({TS} >= "__ST" - {grace} AND {TS} >= COALESCE(__PREV, __LWE, {TS})
                                AND {TS} - {gap} > COALESCE(__WE2, {_MIN_TS}), FALSE) AS __OK
                FROM o
            )"""

    def _session_components_sql(self) -> str:
        """The CTEs of :meth:`_sessions_in_order` with caching over ``__sess_rows``, ending with
        ``c``: the records (points) and the stored sessions of their keys (intervals), each with
        its final session (``__CID``). Without records dropped as late or past expiry, a key's
        sessions after a batch do not depend on the order of its records: a record merges the
        sessions within the gap of it, and a merged session has no hole wider than the gap, so
        the sessions are the runs, in time order, of records within the gap of the run so far
        and of stored sessions within the gap of one of its records. ``__OK``: the record is
        within the grace period of stream time, or the stored session more than the gap from
        the key's previous one (both hold but at an expiry's edge)."""
        w = self.window
        assert w is not None
        gap, grace = w.gap_ms, w.grace_ms
        n = len(self.step.calls)
        keys = ", ".join(_q(k) for k in self.keys)
        args = ", ".join(dict.fromkeys(a for arg in self.args for a in arg))
        order = f"PARTITION BY {keys} ORDER BY __B, __STORED DESC, __SEQ"
        return f"""
            WITH l AS (
                SELECT g.* FROM {self.tables.groups} g
                SEMI JOIN (SELECT DISTINCT {keys} FROM __sess_rows) k
                ON {" AND ".join(f"g.{_q(k)} IS NOT DISTINCT FROM k.{_q(k)}" for k in self.keys)}
            ),
            items AS (
                SELECT {keys}, {TS} AS __B, {TS} AS __E, {SEQ} AS __SEQ, FALSE AS __STORED,
                       {PART} AS __PART, COALESCE({TS} >= "__ST" - {grace}, FALSE) AS __OK, {SIGN}{", " + args if args else ""}
                FROM __sess_rows
                UNION ALL BY NAME
                SELECT {keys}, {_WS} AS __B, {_WE} AS __E, TRUE AS __STORED,
                       COALESCE({_WS} - lag({_WE}) OVER (PARTITION BY {keys} ORDER BY {_WS}) > {gap}, TRUE) AS __OK,
                       {_WS} AS __XWS, {_WE} AS __XWE, {PASS} AS __XPASS, {PART} AS __XPART,
                       {", ".join(f"{_state_col(i)} AS __X{i}" for i in range(n))}
                FROM l
            ),
            w AS (
                SELECT *, max(__E) OVER before AS __MAXE,
                       max(CASE WHEN NOT __STORED THEN __E END) OVER before AS __MAXP,
                       arg_max(__PART, __SEQ) OVER (PARTITION BY {keys}) AS __KPART
                FROM items
                WINDOW before AS ({order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
            ),
            c0 AS (
                SELECT *, sum(COALESCE(__B - CASE WHEN __STORED THEN __MAXP ELSE __MAXE END > {gap}, TRUE)::INTEGER)
                              OVER ({order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __CID
                FROM w
            ),
            c AS (
                SELECT *, max(__XWS) OVER (PARTITION BY {keys}, __CID) AS __CWS,
                       max(__XWE) OVER (PARTITION BY {keys}, __CID) AS __CWE,
                       bool_and(__OK) OVER (PARTITION BY {keys}) AS __KOK
                FROM c0
            )"""

    def _session_keys_in_order(self, rows: pa.Table, state: duckdb.DuckDBPyConnection) -> pa.Array:
        """Whether each row's key can take :meth:`_sessions_in_order` (all its records in order)."""
        keys = ", ".join(_q(k) for k in self.keys)
        if self.step.per_record:
            sql = f"""{self._session_runs_sql()}
                SELECT bool_and(__OK) OVER (PARTITION BY {keys}) AS __KOK FROM s ORDER BY {SEQ}
            """
        else:  # a key is out whose records make a session of two stored ones
            sql = f"""{self._session_components_sql()}
                SELECT __KOK AND bool_and(__NSTORED <= 1 OR __NPOINTS = 0) OVER (PARTITION BY {keys}) AS __KOK
                FROM (
                    SELECT *, count(*) FILTER (WHERE __STORED) OVER (PARTITION BY {keys}, __CID) AS __NSTORED,
                           count(*) FILTER (WHERE NOT __STORED) OVER (PARTITION BY {keys}, __CID) AS __NPOINTS
                    FROM c
                ) WHERE NOT __STORED ORDER BY __SEQ
            """
        return self._relation("__sess_rows", rows, sql, con=state).column("__KOK").combine_chunks()

    # ------------------------------------------------------------------ output

    def _output(self, agg: pa.Table | _Pending) -> tuple[pa.Table, pa.Table]:
        """HAVING and the projection over the aggregated rows, in one query: the records to
        emit, and every aggregated row with its HAVING result (``__PASS``) and whether it is its
        group's last (``__LAST``, the state to keep)."""
        step = self.step
        part = ", ".join(_q(c) for c in self.group_cols)
        having = f"COALESCE(TRY({step.having_sql}), FALSE)" if step.having_sql else "TRUE"
        outs = [f"TRY({c.sql}) AS __O{i}" for i, c in enumerate(step.columns)]
        bounds = f", {_WS} AS {WINDOW_START}, {_WE} AS {WINDOW_END}" if self.windowed else ""
        if self.window is None:  # unwindowed, SEQ still numbers the batch's records
            bounds += f", {SEQ} AS {_SOURCE_SEQ}"
        # HAVING of the group's previous emitted change: a failing row is a tombstone only
        # when that one passed (ksqlDB filters the aggregate table with old and new values).
        prev = (
            f"COALESCE(LAG(CASE WHEN NOT {SKIP} THEN {PASS} END IGNORE NULLS) "
            f"OVER (PARTITION BY {part} ORDER BY {SEQ}), {PRIOR_PASS}, FALSE)"
            if step.per_record
            else f"COALESCE({PRIOR_PASS}, FALSE)"
        )
        if step.having_sql is None and not self.is_table:
            # Without HAVING every row passes or is a forced delete, and without a table's
            # retractions (SKIP) nothing is left to decide by the previous result: no window.
            prev = "FALSE"
        # A retraction whose addition follows is never emitted, even as a group's last row of
        # the batch (read back from a repartition topic, the addition may come in the next one).
        gate = f"NOT {SKIP}" if step.per_record else f"__LAST AND NOT {SKIP}"
        # _vector marks each group's last row as it aggregates (its window is already sorted so)
        if isinstance(agg, _Pending):
            source, tables, marked = f"agg AS ({agg.sql}),", agg.tables, True
        else:
            source, tables, marked = "", {"agg": agg}, "__LAST" in agg.column_names
        last = (
            "" if marked else f", row_number() OVER (PARTITION BY {part} ORDER BY {SEQ} DESC) = 1 AS __LAST"
        )
        sql = f"""
            WITH {source} a AS (
                SELECT *, (NOT {FORCE_DELETE} AND {having}) AS {PASS}{last}
                FROM agg
            )
            SELECT {", ".join(outs)}, {TS}, NOT {PASS} AS {DELETE}{bounds},
                   {gate} AND ({FORCE_DELETE} OR {PASS} OR {prev}) AS __EMIT, *,
                   CASE WHEN {SKIP} THEN {prev} ELSE {PASS} END AS {KEPT_PASS}
            FROM a ORDER BY {SEQ}
        """
        full = self._relations(tables, sql)
        n_out = len(step.columns) + 2 + (2 if self.windowed else 0) + (1 if self.window is None else 0)
        out = full.filter(pc.fill_null(full.column("__EMIT"), False)).select(list(range(n_out)))
        return self._typed(out), full.select(list(range(n_out + 1, full.num_columns)))

    def _typed(self, result: pa.Table) -> pa.Table:
        names = [c.name for c in self.step.columns] + result.column_names[len(self.step.columns) :]
        result = result.rename_columns(names)
        if self._out_schema is None:
            fields = [pa.field(c.name, sqltypes.to_arrow(c.type)) for c in self.step.columns]
            fields += [result.schema.field(i) for i in range(len(fields), result.num_columns)]
            self._out_schema = pa.schema(fields)
        return result.cast(self._out_schema) if result.schema != self._out_schema else result

    def _empty(self) -> pa.Table:
        fields = [pa.field(c.name, sqltypes.to_arrow(c.type)) for c in self.step.columns]
        fields += [pa.field(TS, pa.int64()), pa.field(DELETE, pa.bool_())]
        if self.windowed:
            fields += [pa.field(WINDOW_START, pa.int64()), pa.field(WINDOW_END, pa.int64())]
        return pa.schema(fields).empty_table()

    def _finish(
        self, agg: pa.Table | _Pending, state: duckdb.DuckDBPyConnection, *, plain: bool = False
    ) -> pa.Table:
        """The output of aggregated rows, whose groups' last states are kept; ``plain``: rows of
        :meth:`_grouped`, one per group."""
        keep = self.group_cols + [_state_col(i) for i in range(len(self.step.calls))] + [TS, PASS, PART]
        # whether each group had a state is known to _grouped: only those are deleted first
        had = [_HAD] if plain else []
        projected = self._projected(agg) if plain and isinstance(agg, pa.Table) else None
        if projected is not None:
            out, last = projected
        else:
            out, full = self._output(agg)
            last = full.filter(full.column("__LAST"))
            # the HAVING result kept is that of the group's last change, which a retraction is not
            last = last.set_column(last.schema.get_field_index(PASS), PASS, last.column(KEPT_PASS))
        self._groups.upsert(state, last.select(keep + had), stored=_HAD if had else None)
        return out

    def _projected(self, agg: pa.Table) -> tuple[pa.Table, pa.Table] | None:
        """:meth:`_output` of a stream's aggregated rows (in input order, each group's last
        marked ``__LAST``) without HAVING whose columns are all grouping values, window bounds
        or aggregates, as they are: the records to emit, and the groups' last rows to keep with
        their HAVING result (``__PASS``); no query needed. None for any other aggregation."""
        step = self.step
        if step.having_sql is not None or self.is_table:
            return None
        if self._refs is None:
            names = {_q(n): n for n in agg.column_names}
            self._refs = [names.get(c.sql) for c in step.columns]
        refs = self._refs
        if any(r is None for r in refs):
            return None
        # Every group passes (no HAVING); a retraction whose addition follows (SKIP) is neither
        # emitted nor passing, as _output has it.
        emit = pc.invert(agg.column(SKIP))
        rows = agg if pc.all(emit).as_py() else agg.filter(emit)
        cols: dict[str, pa.ChunkedArray | pa.Array] = {
            f"__O{i}": rows.column(r) for i, r in enumerate(refs) if r is not None
        }
        cols[TS] = rows.column(TS)
        cols[DELETE] = pa.array(np.zeros(rows.num_rows, dtype=bool))
        if self.windowed:
            cols[WINDOW_START], cols[WINDOW_END] = rows.column(_WS), rows.column(_WE)
        if self.window is None:
            cols[_SOURCE_SEQ] = rows.column(SEQ)
        kept = agg.append_column(PASS, emit)
        return self._typed(pa.table(cols)), kept.filter(kept.column("__LAST")) if step.per_record else kept

    def _expire(self, state: duckdb.DuckDBPyConnection) -> None:
        """Forget windows that can no longer change, each by its partition's stream time:
        their records would be dropped as late (EMIT FINAL forgets them once emitted, in
        :meth:`_final`)."""
        w = self.window
        if w is None or self.step.emit_final:
            return
        slack = w.gap_ms + w.grace_ms if w.is_session else w.grace_ms
        g = self.tables.groups
        self._groups.delete_where(
            state,
            f"{g}.{PART} = m.partition AND {g}.{_WE} + {slack} < m.stream_time - 1",
            using=f"{self.tables.meta} m",
        )

    def _final(self, state: duckdb.DuckDBPyConnection, times: list[tuple[int, int]]) -> pa.Table:
        """EMIT FINAL, as Kafka Streams' ``EmitStrategy.onWindowClose`` does it: each time
        stream time advances, the windows ending exactly at the new close time (stream time less
        grace) are emitted; every closed window is then forgotten (its late records are
        dropped, so it cannot change again). ``times`` are the (partition, stream time) pairs
        the batch advanced through."""
        w = self.window
        assert w is not None
        if not times:
            return self._empty()
        g = self.tables.groups
        # a batch of events a millisecond apart passes through as many stream times: a table of
        # them, not SQL text (tens of thousands of VALUES took longer to parse than to run).
        # Closed windows come out as Kafka Streams' time-ordered store gives them: by window,
        # then by key.
        pairs = sorted(set(times))
        closes = pa.table(
            {
                "partition": pa.array([p for p, _ in pairs], pa.int32()),
                "window_end": pa.array([t - w.grace_ms for _, t in pairs], pa.int64()),
            }
        )
        state.register("__closes", closes)
        try:
            closed = state.sql(
                f"SELECT * FROM {g} WHERE ({PART}, {_WE}) IN (SELECT partition, window_end FROM __closes) "
                f"ORDER BY {', '.join([_WE, _WS, *(_q(k) for k in self.keys)])}"
            ).to_arrow_table()
        finally:
            state.unregister("__closes")
        self._groups.delete_where(
            state,
            f"{g}.{PART} = m.partition AND {g}.{_WE} + {w.grace_ms} <= m.stream_time",
            using=f"{self.tables.meta} m",
        )
        if closed.num_rows == 0:
            return self._empty()
        calls = self.step.calls
        results = ", ".join(
            f"{c.accumulator.vector.result(_state_col(i))} AS {_q(c.name)}"
            if c.accumulator.vector is not None
            else f"{_state_col(i)} AS {_q(c.name)}"
            for i, c in enumerate(calls)
        )
        agg = self._relation(
            "closed",
            closed,
            f"SELECT row_number() OVER () AS {SEQ}, *, NULL::BOOLEAN AS {PRIOR_PASS}, FALSE AS {FORCE_DELETE}, FALSE AS {SKIP}, {results} "
            f"FROM closed",
        )
        if any(c.accumulator.vector is None for c in calls):
            for i, c in enumerate(calls):
                a = c.accumulator
                vals = [a.result(s) for s in closed.column(_state_col(i)).to_pylist()]
                agg = agg.set_column(
                    agg.schema.get_field_index(c.name),
                    c.name,
                    pa.array(vals, sqltypes.to_arrow(a.return_type)),
                )
        out, _ = self._output(agg)
        return out.filter(pc.invert(out.column(DELETE)))


_EXACT_SUMMED = frozenset({sqltypes.BaseType.INTEGER, sqltypes.BaseType.BIGINT})


def _order_free(call: AggregateCall) -> bool:
    """Whether an aggregate call's vector form over a batch is an exact aggregate whatever the
    order of its rows: COUNT, MIN and MAX, and SUM and AVG of integers."""
    name = call.accumulator.name.upper()
    if name in ("COUNT", "MIN", "MAX"):
        return True
    if name in ("SUM", "AVG"):
        return all(isinstance(t, sqltypes.Primitive) and t.base in _EXACT_SUMMED for t in call.arg_types)
    return False


def _arrow_kinds(calls: tuple[AggregateCall, ...]) -> list[str] | None:
    """Each call's aggregation by Arrow (``count``, ``sum``, ``min``, ``max``), or None when
    one of them has none: COUNT, and SUM, MIN and MAX of integers."""
    kinds = []
    for call in calls:
        name = call.accumulator.name.upper()
        integers = all(isinstance(t, sqltypes.Primitive) and t.base in _EXACT_SUMMED for t in call.arg_types)
        if name == "COUNT":
            kinds.append("count")
        elif name in ("SUM", "MIN", "MAX") and integers and len(call.arg_types) == 1:
            kinds.append(name.lower())
        else:
            return None
    return kinds


def _numbered_type(t: pa.DataType) -> bool:
    """Whether Arrow numbers (dictionary-encodes) and joins on values of type ``t`` as DuckDB
    groups them: strings, integers, booleans and dates, not floating point values (-0.0, NaN)."""
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_integer(t)
        or pa.types.is_boolean(t)
        or pa.types.is_date(t)
    )


def _numbered(batch: pa.Table) -> pa.Table:
    """The batch with its rows numbered in input order (``__SEQ``), replacing a numbering
    it came with (a join's output carries its own)."""
    if SEQ in batch.column_names:
        batch = batch.drop_columns([SEQ])
    return batch.append_column(SEQ, pa.array(np.arange(batch.num_rows, dtype=np.int64)))


def _true(column: pa.ChunkedArray) -> int:
    """How many of a boolean column's values are true."""
    return int(pc.sum(pc.fill_null(column, False)).as_py() or 0)


def _stream_times(rows: pa.Table, prior: dict[int, int], *, every: bool = True) -> list[tuple[int, int]]:
    """The distinct (partition, stream time) pairs the batch's rows advance their partitions to,
    in order within each partition; without ``every`` only each partition's last one."""
    if rows.num_rows == 0:
        return []
    ts = np.asarray(rows.column(TS).to_numpy(zero_copy_only=False), dtype=np.int64)
    parts = np.asarray(rows.column(PART).to_numpy(zero_copy_only=False), dtype=np.int32)
    out: list[tuple[int, int]] = []
    for p in np.unique(parts):
        before = prior.get(int(p), _MIN_TS)
        mine = ts[parts == p]
        if not every:
            last = int(mine.max())
            if last > before:
                out.append((int(p), last))
            continue
        running = np.maximum.accumulate(np.maximum(mine, before))
        out += [(int(p), int(t)) for t in np.unique(running) if t > before]
    return out


def _by_partition(stream_time: dict[int, int]) -> str:
    """SQL for the stream time before the batch of the row's partition (``__P``)."""
    if not stream_time:
        return str(_MIN_TS)
    cases = " ".join(f"WHEN {p} THEN {t}" for p, t in stream_time.items())
    return f"(CASE {PART} {cases} ELSE {_MIN_TS} END)"


_PLAIN_BASES = frozenset(
    {
        sqltypes.BaseType.BOOLEAN,
        sqltypes.BaseType.INTEGER,
        sqltypes.BaseType.BIGINT,
        sqltypes.BaseType.DOUBLE,
        sqltypes.BaseType.STRING,
    }
)


def _plain_type(t: sqltypes.SqlType) -> bool:
    """A boolean, INT, BIGINT, DOUBLE or STRING, or an ARRAY, MAP or STRUCT of such types only."""
    match t:
        case sqltypes.Primitive():
            return t.base in _PLAIN_BASES
        case sqltypes.Array():
            return _plain_type(t.element)
        case sqltypes.Map():
            return _plain_type(t.key) and _plain_type(t.value)
        case sqltypes.Struct():
            return all(_plain_type(f.type) for f in t.fields)
    return False


def _hashable(values: list[Any]) -> Any:
    return tuple(repr(v) if isinstance(v, (dict, list)) else v for v in values)
