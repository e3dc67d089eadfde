"""Pull queries: a SELECT without EMIT, answered from what exists now and then finished.

Over a table, a pull query reads the table's materialized state (``mat."<NAME>"``, kept by
:mod:`ksqlpy.runtime.materialize`). It first waits, bounded, until the table's materializer has
applied everything written to the table's topic before the query started (read-your-writes),
then fetches the keys the WHERE clause names (or scans the table, in the order ksqlDB's state
stores iterate) from the state database, and evaluates WHERE, the projection and LIMIT over
those rows in DuckDB.

Over a stream, a pull query is a bounded read: every record from the beginning of the topic up
to the end offsets at the time the query starts.

Beyond ksqlDB: a SELECT that ksqlDB would refuse as a pull query (a join, GROUP BY, ORDER BY, a
subquery...) but that reads only materialized tables runs as DuckDB SQL over their state, in one
statement and so from one consistent snapshot (:func:`start_sql_pull`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError, ExecutionError, KsqlpyError
from ksqlpy.parser import ast
from ksqlpy.planner.catalog import Source
from ksqlpy.planner.physical import QueryPlan
from ksqlpy.planner.pull import (
    Access,
    PullShapeError,
    TablePull,
    analyze_table_pull,
    check_pull_shape,
    not_queryable,
)
from ksqlpy.planner.select import analyze_select
from ksqlpy.runtime import pullcache, pullkeys, pulllive, pullwait
from ksqlpy.runtime.materialize import (
    CHANGED_ROWS,
    PARTITION_COLUMN,
    WINDOW_COLUMNS,
    Materializer,
    MatLayout,
    quote,
    quote_column,
)
from ksqlpy.runtime.query import PushQuery
from ksqlpy.runtime.relations import from_duckdb
from ksqlpy.runtime.rows import Row, table_to_rows

if TYPE_CHECKING:
    from ksqlpy.runtime.results import QueryDescription

log = logging.getLogger("ksqlpy.pull")

#: Longest wait for a table's materializer to catch up with its topic before answering.
CATCH_UP_SECONDS = 30.0
TABLE_SCAN = "ksql.query.pull.table.scan.enabled"
RANGE_SCAN = "ksql.query.pull.range.scan.enabled"

#: ksqlDB's request properties of a pull query forwarded by another server of the cluster
#: (``KsqlRequestConfig``): answer from these partitions, locally, and forward nothing.
PARTITIONS = "request.ksql.query.pull.partition"
SKIP_FORWARDING = "request.ksql.query.pull.skip.forwarding"
INTERNAL_REQUEST = "request.ksql.internal.request"

_local = threading.local()


def requested_partitions(properties: Any) -> frozenset[int] | None:
    """The partitions a forwarded pull query is to read (``"0,2"``), None for all."""
    value = properties.get(PARTITIONS) if properties is not None else None
    if value is None or str(value).strip() == "":
        return None
    try:
        return frozenset(int(p) for p in str(value).split(",") if p.strip())
    except ValueError:
        raise AnalysisError(f"Invalid value for {PARTITIONS}: {value}") from None


@dataclass(frozen=True, slots=True)
class PullTarget:
    """Where a table pull query's rows live: the table, its partition count, and the partitions
    its keys fall in (None for a scan, which reads them all). ``limit``: the query's LIMIT."""

    table: str
    partitions: int
    key_partitions: frozenset[int] | None
    limit: int | None


def pull_target(session: Any, text: str) -> PullTarget | None:
    """Where the rows of pull query ``text`` live, when it is a ksqlDB pull query over a table
    whose partitions this server may not all hold; else None (answered here as usual)."""
    from ksqlpy import parser

    engine = session.engine
    try:
        statements = parser.split_statements(text)
        if len(statements) != 1:
            return None
        stmt = parser.parse_statement(statements[0])
        if not isinstance(stmt, ast.QueryStatement) or stmt.query.refinement is not None:
            return None
        query = stmt.query
        if not isinstance(query.from_, ast.Table):
            return None
        check_pull_shape(query)
        source = engine.catalog.source(query.from_.name, query.from_.pos)
        if not source.is_table or engine.materializers.get(source.name) is None:
            return None
        config = session.config
        plan = analyze_table_pull(
            query, source, table_scan=_flag(config, TABLE_SCAN), range_scan=_flag(config, RANGE_SCAN)
        )
        spec = engine.store.describe_topic(source.topic)
        count = spec.partitions if spec is not None else 1
        keys = key_partitions(engine, plan, count) if plan.access is Access.LOOKUP else None
    except (KsqlpyError, PullShapeError):
        return None  # answered here, which reports the error
    return PullTarget(table=source.name, partitions=count, key_partitions=keys, limit=query.limit)


def key_partitions(engine: Any, plan: TablePull, count: int) -> frozenset[int] | None:
    """The partitions of the looked-up keys: Kafka's default partitioner over the serialized key
    (a windowed table's records are placed by the key without its window, as Kafka Streams'
    ``WindowedStreamPartitioner`` does). None when a key cannot be serialized (then all)."""
    from ksqlpy.runtime import serde
    from ksqlpy.runtime.codec import fields_of, serde_spec
    from ksqlpy.runtime.serde.registry import registry_for
    from ksqlpy.runtime.store.partitioner import partitions_for_keys

    source = plan.source
    try:
        keys = _lookup_keys(plan)
        ser = serde.serializer(
            serde_spec(source.key_format),
            fields_of(source.key_columns),
            is_key=True,
            registry=registry_for(engine.store),
            topic=source.topic,
        )
        table = pa.table(
            {c.name: keys.column(i).cast(sqltypes.to_arrow(c.type)) for i, c in enumerate(source.key_columns)}
        )
        encoded = ser.encode(table)
    except Exception:
        log.debug("Could not place the keys of a pull query on %s", source.name, exc_info=True)
        return None
    return frozenset(int(p) for p in partitions_for_keys(encoded, count).to_pylist())


def _evaluator() -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection with ksqlpy's functions: a cursor of the database they
    are installed in once (installing them costs half a second of CPU under the GIL, which every
    new worker thread paid, holding up every other request meanwhile)."""
    con: duckdb.DuckDBPyConnection | None = getattr(_local, "con", None)
    if con is None:
        con = _local.con = PushQuery.function_connection()
    return con


def _flag(config: dict[str, Any], name: str, default: bool = True) -> bool:
    value = config.get(name)
    return default if value is None else str(value).strip().lower() == "true"


def _query_id() -> str:
    return f"query_{int(time.time() * 1000)}"


# ------------------------------------------------------------------------------------ entry


def start_pull(session: Any, stmt: ast.QueryStatement) -> Any:
    """Answer a pull query: over a table from its materialized state, over a stream by a
    bounded read; a form ksqlDB refuses may still run as SQL over materialized tables."""
    engine = session.engine
    query = stmt.query
    cached = start_prepared_pull(session, stmt)
    if cached is not None:
        return cached
    partitions = requested_partitions(session.properties)
    try:
        check_pull_shape(query)
    except PullShapeError:
        answered = start_sql_pull(session, stmt.text)
        if answered is None:
            raise
        return answered
    assert isinstance(query.from_, ast.Table)
    source = engine.catalog.source(query.from_.name, query.from_.pos)
    if not source.is_table:
        return _stream_pull(session, stmt)
    config = session.config
    table_scan, range_scan = _flag(config, TABLE_SCAN), _flag(config, RANGE_SCAN)
    prepared = _prepare(engine, stmt, source, table_scan=table_scan, range_scan=range_scan)
    rows = _run_prepared(engine, prepared, partitions)
    from ksqlpy.runtime.streaming import StreamingQuery

    return StreamingQuery(
        engine,
        _query_id(),
        prepared.fields,
        rows=rows,
        key_columns=prepared.keys,
        header_columns=prepared.headers,
        is_pull=True,
        table_pull=True,
    )


def _queryable(source: Source) -> bool:
    """ksqlDB answers pull queries on CTAS sinks and CREATE SOURCE TABLEs, not plain CREATE TABLEs."""
    return source.is_source or _is_create_as_select(source.statement)


@functools.lru_cache(maxsize=1024)
def _is_create_as_select(statement: str) -> bool:
    from ksqlpy import parser

    try:
        return isinstance(parser.parse_statement(statement), ast.CreateAsSelect)
    except KsqlpyError:
        return False


def _stream_pull(session: Any, stmt: ast.QueryStatement) -> Any:
    from ksqlpy.runtime.streaming import StreamingQuery

    engine = session.engine
    source, step = analyze_select(stmt.query, engine.catalog, sink_name=None, persistent=False)
    query_id = _query_id()
    plan = QueryPlan(query_id=query_id, step=step, sink=None, limit=stmt.query.limit, statement=stmt.text)
    runner = PushQuery(plan, engine.store, engine.plog, group=None, start="earliest")
    runner.stop_at = {p: end for p, end in engine.store.end_offsets(source.topic).items() if end > 0}
    columns = tuple(sqltypes.Field(c.name, c.type) for c in step.columns)
    sq = StreamingQuery(engine, query_id, columns, runner=runner, is_pull=True)
    engine.transient[query_id] = sq
    runner.start()
    return sq


# ------------------------------------------------------------------------------------ tables


def catch_up(engine: Any, materializer: Materializer, keys: tuple[str | int, ...] | None = None) -> None:
    """Read-your-writes: wait until the state includes the table's topic as of now, and, for a
    table a persistent query writes, what that query's sources held as of now (transitively).

    On the embedded store, every commit (records, positions, state) bumps the store's version
    while it publishes; when the version and the set of persistent queries are what they were
    when this table last caught up, nothing was written since and the wait is skipped.

    ``keys``: the values a key lookup reads, whose rows may need less of the writer's pending
    records than the whole table (see :mod:`ksqlpy.runtime.pullwait`); the table is then not
    known to be caught up for other keys, and nothing is recorded for them.

    With the ``ksqlpy.pull`` logger at DEBUG, each wait for the writers is logged with its
    length: under writes, lookups of keys with a pending record wait for the writer's commit,
    and these waits make the slowest of a table's lookups."""
    if _is_caught_up(engine, materializer):
        return
    version: int | None = getattr(engine.store, "_version", None)  # None: a store without a version counter
    queries: tuple[str, ...] = tuple(engine.queries)
    started = time.monotonic()
    deadline = started + CATCH_UP_SECONDS
    partial: list[str] = []
    if _wait_writers(engine, materializer.source.name, deadline, set(), keys, partial):
        _published(engine.store)
        if log.isEnabledFor(logging.DEBUG):
            waited_ms = (time.monotonic() - started) * 1000
            log.debug("Pull query on %s waited %.1f ms for the queries writing it", materializer.name, waited_ms)
    ends = engine.store.end_offsets(materializer.source.topic)
    if not materializer.wait_for(ends, max(0.0, deadline - time.monotonic())):
        if materializer.error is not None:
            raise ExecutionError(
                f"Table {materializer.name} cannot be queried: its materialization failed: {materializer.error}"
            )
        log.warning("Pull query on %s answered before its state caught up with the topic", materializer.name)
        return
    if version is not None and not partial:
        _caught_up[materializer] = (version, queries)


def _is_caught_up(engine: Any, materializer: Materializer) -> bool:
    """Whether nothing was written since ``materializer`` last caught up (see :func:`catch_up`)."""
    version: int | None = getattr(engine.store, "_version", None)
    if version is None or materializer.error is not None:
        return False
    return _caught_up.get(materializer) == (version, tuple(engine.queries))


#: Per materializer, the store version and persistent queries it was last caught up with.
_caught_up: weakref.WeakKeyDictionary[Materializer, tuple[int, tuple[str, ...]]] = weakref.WeakKeyDictionary()


def _published(store: Any) -> None:
    """The embedded store makes a transaction's records visible to ``end_offsets`` just after its
    positions commit, in the same publication: once that is over, so is the rest of it.

    (Waiting for the store's write lock would do too, but would also wait for the transaction
    under way after it, the next batch of a busy query; an empty transaction would also publish,
    bumping the store's version, so that no pull query could skip its catch-up.)"""
    if store.kind != "embedded":
        return
    published = getattr(store, "published", None)
    if published is not None:
        published()
        return
    with store.transaction():
        pass


def _wait_writers(
    engine: Any,
    name: str,
    deadline: float,
    seen: set[str],
    keys: tuple[str | int, ...] | None = None,
    partial: list[str] | None = None,
) -> bool:
    """Wait until the persistent queries writing ``name`` have committed everything their
    source topics hold now (upstream writers first). Whether there were any.

    With ``keys`` (a lookup of those keys of table ``name``), a writer whose rows of a key
    depend on its source's records of that key alone need only have committed those (see
    :mod:`ksqlpy.runtime.pullwait`); the writers it waited for less are added to ``partial``."""
    if name in seen:
        return False
    seen.add(name)
    store = engine.store
    found = False
    for q in list(engine.queries.values()):
        plan, group = getattr(q, "plan", None), getattr(q, "group", None)
        if plan is None or group is None or plan.sink is None or plan.sink.name != name:
            continue
        found = True
        # a join query reads several topics (its plan's source is then the join's result)
        join = getattr(plan, "join", None)
        for source in [i.source for i in join.inputs()] if join is not None else [plan.source]:
            if _wait_writers(engine, source.name, deadline, seen):
                _published(store)
            ends = {p: end for p, end in store.end_offsets(source.topic).items() if end > 0}
            wanted = None
            if keys is not None and join is None and not getattr(q, "internal_topics", ()):
                wanted = pullwait.source_keys(plan, keys)
            if wanted is not None:
                needed = _key_ends(store, q, group, source.topic, ends, wanted)
                if partial is not None and any(needed[p] < end for p, end in ends.items()):
                    partial.append(plan.query_id)  # other keys' records still pending
                ends = needed
            # Committed by the group, or settled by the running query: a query that started at
            # ``latest`` and found nothing new has committed nothing and owes nothing. (A join
            # query's settled positions are not kept per topic: only its commits count.)
            while time.monotonic() < deadline and getattr(q, "error", None) is None:
                version = _version(store)
                committed = store.committed(group, source.topic)
                done: dict[int, int] = q.settled() if join is None else {}
                if all(max(committed.get(p, 0), done.get(p, 0)) >= end for p, end in ends.items()):
                    break
                _await_commit(store, version)
        # a GROUP BY through its repartition topic: what the source's records were grouped into
        # is aggregated only once read back from there
        for topic in getattr(q, "internal_topics", ()):
            ends = {p: end for p, end in store.end_offsets(topic).items() if end > 0}
            while time.monotonic() < deadline and getattr(q, "error", None) is None:
                version = _version(store)
                committed = store.committed(group, topic)
                done = q.settled_internal(topic)
                if all(max(committed.get(p, 0), done.get(p, 0)) >= end for p, end in ends.items()):
                    break
                _await_commit(store, version)
    return found


def _key_ends(
    store: Any, q: Any, group: str, topic: str, ends: dict[int, int], keys: list[bytes], *, read_log: bool = True
) -> dict[int, int]:
    """What writer ``q`` must have committed of ``topic`` for a lookup of source keys ``keys``:
    up to the last of their records before ``ends`` (see :mod:`ksqlpy.runtime.pullwait`);
    ``ends`` when that cannot be told (without ``read_log``: from memory)."""
    committed = store.committed(group, topic)
    done: dict[int, int] = q.settled()
    settled = {p: max(committed.get(p, 0), done.get(p, 0)) for p in ends}
    needed = pullwait.pending_ends(store, topic, settled, ends, keys, read_log=read_log)
    return ends if needed is None else needed


def _keys_settled(engine: Any, materializer: Materializer, keys: tuple[str | int, ...]) -> bool:
    """Whether a lookup of ``keys`` would find nothing to wait for (see :func:`catch_up`): the
    table's writers are all of the kind whose rows of a key depend on that key's records alone
    (see :mod:`ksqlpy.runtime.pullwait`), read sources no query writes, and have committed
    every record of the keys; and its materializer holds the table's topic. Never waits.

    When the writers owe nothing at all, the table is caught up as :func:`catch_up` would have
    found it, and recorded so (its lookups are then answered from ``pullcache`` again)."""
    store = engine.store
    version: int | None = getattr(store, "_version", None)
    names: tuple[str, ...] = tuple(engine.queries)
    queries = list(engine.queries.values())
    name = materializer.source.name
    whole = True
    for q in queries:
        plan, group = getattr(q, "plan", None), getattr(q, "group", None)
        if plan is None or group is None or plan.sink is None or plan.sink.name != name:
            continue
        if getattr(q, "internal_topics", ()) or getattr(q, "error", None) is not None:
            return False
        source = plan.source
        if any(
            getattr(w, "plan", None) is not None and w.plan.sink is not None and w.plan.sink.name == source.name
            for w in queries
        ):
            return False
        wanted = pullwait.source_keys(plan, keys)
        if wanted is None:
            return False
        ends = {p: end for p, end in store.end_offsets(source.topic).items() if end > 0}
        # on the event loop: from the store's memory of recent keys, never a read of the log
        needed = _key_ends(store, q, group, source.topic, ends, wanted, read_log=False)
        committed = store.committed(group, source.topic)
        done = q.settled()
        settled = {p: max(committed.get(p, 0), done.get(p, 0)) for p in ends}
        if not all(settled[p] >= end for p, end in needed.items()):
            return False
        whole = whole and all(settled[p] >= end for p, end in ends.items())
    _published(store)
    if materializer.error is not None or not materializer.wait_for(store.end_offsets(materializer.source.topic), 0.0):
        return False
    if whole and version is not None:
        _caught_up[materializer] = (version, names)
    return True


#: Longest wait between two looks at a writer's progress: a query that finds nothing new
#: settles its positions without committing anything (see ``QueryRunner.settled``).
WRITER_POLL_SECONDS = 0.005


def _version(store: Any) -> int | None:
    """The embedded store's commit counter (None: a store without one)."""
    version: int | None = getattr(store, "version", None)
    return version


def _await_commit(store: Any, version: int | None) -> None:
    """Wait for the next commit after ``version`` on the embedded store, which wakes its waiters
    as it publishes one (a writer's commit ends the wait at once), or :data:`WRITER_POLL_SECONDS`."""
    if version is None:
        time.sleep(WRITER_POLL_SECONDS)
    else:
        store.wait_changed(version, WRITER_POLL_SECONDS)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A table pull query planned once for its statement text and the catalog entries it read.

    ``sql`` answers it in one statement over the state database (keys, fetch, WHERE,
    projection, order and LIMIT); None when it calls ksqlpy functions, which only the
    evaluator connection has (then the rows are fetched and evaluated in two steps)."""

    key: tuple[str, bool, bool]
    name: str
    source: Source
    materializer: Materializer
    plan: TablePull
    sql: str | None
    fields: tuple[sqltypes.Field, ...]
    keys: tuple[str, ...]
    #: the header columns a ``SELECT *`` selects, with their header keys
    headers: tuple[tuple[str, str | None], ...]
    schema: pa.Schema
    #: ``sql`` is a key lookup whose rows depend only on the state it reads (see ``pullcache``)
    cacheable: bool = False

    def current(self, engine: Any) -> bool:
        """Whether the catalog still holds the same table, materialized by the same materializer
        (DDL replaces both, so a dropped, recreated or altered table is planned again)."""
        try:
            source = engine.catalog.source(self.name)
        except KsqlpyError:
            return False
        return source is self.source and engine.materializers.get(self.name) is self.materializer


#: Prepared table pulls by (statement text, table scan enabled, range scan enabled).
_prepared: dict[tuple[str, bool, bool], _Prepared] = {}
MAX_PREPARED = 1024


def start_prepared_pull(session: Any, stmt: ast.QueryStatement) -> Any | None:
    """Answer a table pull query planned before for the same text and settings, else None.

    It only reads the catalog (and checks that what it planned against is still there), so
    it needs no statement lock."""
    config = session.config
    key = (stmt.text, _flag(config, TABLE_SCAN), _flag(config, RANGE_SCAN))
    prepared = _prepared.get(key)
    engine = session.engine
    if prepared is None or not prepared.current(engine):
        prepared = _bound(engine, stmt.text, key[1], key[2])
        if prepared is None:
            return None
    return _answer_prepared(engine, prepared, requested_partitions(session.properties))


def start_bound_pull(session: Any, text: str) -> Any | None:
    """Answer statement ``text`` (not parsed yet) when it is a key lookup of a shape planned
    before with other key values, else None: no parsing, no analysis, one statement."""
    config = session.config
    engine = session.engine
    found = _template_of(engine, text, _flag(config, TABLE_SCAN), _flag(config, RANGE_SCAN))
    if found is None:
        return None
    template, values = found
    prepared = _bind(template, values)
    partitions = requested_partitions(session.properties)
    if prepared.sql is None:
        return _answer_prepared(engine, prepared, partitions)
    catch_up(engine, prepared.materializer, _looked_up(prepared.plan))
    # caught up, the live snapshot of the shape holds what DuckDB would answer
    live = _live_rows(engine, template, values, partitions, make=True)
    if live is not None:
        return _query_of(engine, prepared, live)
    return _query_of(engine, prepared, _read_prepared(engine, prepared, partitions))


def start_ready_pull(session: Any, text: str) -> Any | None:
    """Like :func:`start_bound_pull`, but only when answering cannot wait: the lookup is one
    statement over a table caught up as of the store's current version (nothing written since
    it last caught up), or over a table being written whose writers have committed every record
    of the keys it reads (see :func:`_keys_settled`). A server answers such a lookup on its
    event loop, where a wait would stall every connection; anything else (None) goes to a
    worker thread as usual."""
    engine = session.engine
    config = session.config
    found = _template_of(engine, text, _flag(config, TABLE_SCAN), _flag(config, RANGE_SCAN))
    if found is None:
        return None
    template, values = found
    prepared = _bind(template, values)
    if prepared.sql is None:
        return None
    partitions = requested_partitions(session.properties)
    if not _is_caught_up(engine, prepared.materializer):
        # A table being written: its lookup of keys nothing wrote meanwhile needs no wait either.
        keys = _looked_up(prepared.plan)
        if keys is None or not _keys_settled(engine, prepared.materializer, keys):
            return None
        if not _is_caught_up(engine, prepared.materializer):
            live = _live_rows(engine, template, values, partitions, make=True)
            if live is not None:
                return _query_of(engine, prepared, live)
            return _query_of(engine, prepared, _read_prepared(engine, prepared, partitions))
    if not prepared.cacheable or partitions is not None:
        return _answer_prepared(engine, prepared, partitions)
    live = _live_rows(engine, template, values, partitions, make=False)
    if live is not None:
        return _query_of(engine, prepared, live)
    # Caught up: the stamp is the store's version and queries now. Rows read while it stayed
    # the same are the table's rows at that stamp, and answer the same statement until it moves.
    materializer = prepared.materializer
    stamp = _caught_up.get(materializer)
    if stamp is None:
        return _answer_prepared(engine, prepared, partitions)
    rows = pullcache.kept_rows(materializer, stamp, prepared.sql, prepared.fields)
    if rows is None and template.snapshot is not None:
        by_key = pullcache.snapshot_of(materializer, template.prepared.key, stamp)
        if by_key is None and pullcache.wants_snapshot(materializer, stamp):
            by_key = _read_snapshot(engine, template, stamp)
        if by_key is not None:
            rows = by_key.get(values[template.snapshot[1]][1:-1], [])
    if rows is None:
        rows = _run_prepared(engine, prepared)
        if _is_caught_up(engine, materializer) and _caught_up.get(materializer) == stamp:
            pullcache.keep_rows(materializer, stamp, prepared.sql, prepared.fields, rows)
    return _query_of(engine, prepared, rows)


def _live_rows(
    engine: Any, template: _Template, values: tuple[str, ...], partitions: frozenset[int] | None, *, make: bool
) -> list[Row] | None:
    """The rows of a settled lookup from the live snapshot of its shape (see ``pulllive``);
    None when there is none. With ``make`` (a lookup to be read from DuckDB otherwise, not
    one ``pullcache`` may answer), enough such lookups make the snapshot."""
    snapshot = template.snapshot
    prepared = template.prepared
    if (
        snapshot is None
        or snapshot[2] is None
        or partitions is not None
        or not prepared.cacheable
        or engine.store.kind != "embedded"
    ):
        return None
    materializer = prepared.materializer
    live = pulllive.live_snapshot(materializer, prepared.key)
    if live is not None:
        return live.rows_of(values[snapshot[1]][1:-1])
    if make and pulllive.wants_live(materializer, prepared.key):
        pulllive.build(
            engine.store,
            materializer,
            prepared.key,
            snapshot[0],
            snapshot[2],
            prepared.schema,
            [f.type for f in prepared.fields],
        )
    return None


def _read_snapshot(engine: Any, template: _Template, stamp: pullcache.Stamp) -> dict[str, list[Row]] | None:
    """The table of lookup shape ``template`` read whole at ``stamp``, its rows by key (see
    ``pullcache``); None when it is too large, or the stamp moved while it was read."""
    assert template.snapshot is not None
    prepared = template.prepared
    materializer = prepared.materializer
    cursor = engine.store.state_cursor()
    try:
        result = cursor.sql(template.snapshot[0]).to_arrow_table()
    except duckdb.Error:
        pullcache.keep_snapshot(materializer, prepared.key, stamp, None)  # lookups read DuckDB as before
        return None
    finally:
        cursor.close()
    if result.num_rows > pullcache.SNAPSHOT_ROWS:
        pullcache.keep_snapshot(materializer, prepared.key, stamp, None)
        return None
    by_key = pulllive.rows_by_key(result, prepared.schema, [f.type for f in prepared.fields])
    if by_key is None:  # one row per key is what a table holds; anything else reads DuckDB
        pullcache.keep_snapshot(materializer, prepared.key, stamp, None)
        return None
    if not (_is_caught_up(engine, materializer) and _caught_up.get(materializer) == stamp):
        return None
    pullcache.keep_snapshot(materializer, prepared.key, stamp, by_key)
    return by_key


@dataclass(frozen=True, slots=True)
class _Template:
    """A key lookup planned for its shape (see :mod:`ksqlpy.runtime.pullkeys`) with sentinels
    for the key values. ``fixed``: per slot of the shape, the value a statement must have there
    to be answered by this plan (None for a key parameter); ``distinct``: whether the key
    parameters were all different when it was learned (a repeated key is planned afresh)."""

    prepared: _Prepared
    fixed: tuple[str | None, ...]
    distinct: bool
    sentinels: dict[str, int]
    pattern: re.Pattern[str]
    #: the statement reading the whole table for this shape, the slot of its key value, and
    #: the statement reading the rows of a writer's changed keys (see ``pullcache`` and
    #: ``pulllive``; None: no live snapshot); None when the shape's lookups cannot be answered
    #: from a snapshot
    snapshot: tuple[str, int, str | None] | None = None


#: Key lookup plans by (shape, table scan enabled, range scan enabled); None: the shape cannot
#: be planned with parameters.
_templates: dict[tuple[str, bool, bool], _Template | None] = {}


def _bound(engine: Any, text: str, table_scan: bool, range_scan: bool) -> _Prepared | None:
    """The plan of ``text`` from the plan of its shape, with its key values bound; None when
    there is none for it (then it is planned as usual)."""
    found = _template_of(engine, text, table_scan, range_scan)
    return None if found is None else _bind(*found)


def _template_of(
    engine: Any, text: str, table_scan: bool, range_scan: bool
) -> tuple[_Template, tuple[str, ...]] | None:
    """The plan of ``text``'s shape and its key values, when its plan answers ``text``."""
    shape = pullkeys.shape_of(text)
    if shape is None or not shape.values:
        return None
    template = _templates.get((shape.text, table_scan, range_scan))
    if template is None or not template.prepared.current(engine):
        return None
    params = []
    for fixed, value in zip(template.fixed, shape.values, strict=True):
        if fixed is None:
            params.append(value)
        elif fixed != value:
            return None
    if (len(set(params)) == len(params)) != template.distinct:
        return None
    return template, shape.values


def _bind(template: _Template, values: tuple[str, ...]) -> _Prepared:
    prepared = template.prepared

    def bind(sql: str) -> str:
        return pullkeys.bind(sql, template.pattern, template.sentinels, values)

    plan = dataclasses.replace(
        prepared.plan,
        keys=tuple(tuple(bind(v) for v in k) for k in prepared.plan.keys),
        where_sql=None if prepared.plan.where_sql is None else bind(prepared.plan.where_sql),
    )
    return dataclasses.replace(prepared, plan=plan, sql=None if prepared.sql is None else bind(prepared.sql))


def _learn(engine: Any, prepared: _Prepared, text: str, *, table_scan: bool, range_scan: bool) -> None:
    """Keep the plan of key lookup ``prepared`` (of statement ``text``) for its shape, with its
    key values as parameters, when planning the shape with sentinels in their place gives the
    same plan once the values are put back."""
    shape = pullkeys.shape_of(text)
    if shape is None or not shape.values or "ksqlpy#param" in text or "98765" in text:
        return
    key = (shape.text, table_scan, range_scan)
    if key in _templates:
        known = _templates[key]
        if known is None or known.prepared.current(engine):
            return
    if len(_templates) >= MAX_PREPARED:
        _templates.clear()
    _templates[key] = None
    kinds = pullkeys.slot_kinds(shape)
    everywhere = [pullkeys.sentinel(k, i) for i, k in enumerate(kinds)]
    try:
        probe = _plan_shape(engine, pullkeys.fill(shape, everywhere), prepared.source, table_scan, range_scan)
        planned_keys = " ".join(v for k in probe.keys for v in k)
        params = {i for i, s in enumerate(everywhere) if s in planned_keys}
        if not params:
            return
        values = [everywhere[i] if i in params else v for i, v in enumerate(shape.values)]
        plan = _plan_shape(engine, pullkeys.fill(shape, values), prepared.source, table_scan, range_scan)
    except (KsqlpyError, PullShapeError, RecursionError):
        return
    sentinels = {everywhere[i]: i for i in params}
    pattern = pullkeys.sentinel_pattern(sentinels)
    if any(len(pattern.findall(v)) != 1 for k in plan.keys for v in k):
        return
    if any(pattern.search(c.sql) for c in plan.columns):
        return
    template = _Template(
        prepared=dataclasses.replace(
            prepared,
            key=key,
            plan=plan,
            sql=(sql := _single_statement(plan, prepared.materializer.layout)),
            cacheable=_cacheable(plan, sql),
        ),
        fixed=tuple(None if i in params else v for i, v in enumerate(shape.values)),
        distinct=len({shape.values[i] for i in params}) == len(params),
        sentinels=sentinels,
        pattern=pattern,
        snapshot=_snapshot_of_shape(plan, prepared.materializer.layout, sentinels),
    )
    # the values put back must give the plan of the statement itself, with keys that need no check
    again = _bind(template, shape.values)
    if (
        again.plan != prepared.plan
        or again.sql != _single_statement(prepared.plan, prepared.materializer.layout)
        or not all(_SURE_KEY.fullmatch(v) for k in again.plan.keys for v in k)
    ):
        return
    _templates[key] = template


def _snapshot_of_shape(
    plan: TablePull, layout: MatLayout, sentinels: dict[str, int]
) -> tuple[str, int, str | None] | None:
    """The statement reading the whole table for lookups of ``plan`` (planned with ``sentinels``),
    the slot of the key value, and the statement reading the rows of a writer's changed keys (if
    it cannot fail), when they are lookups of one string key of a table without windows or LIMIT
    (see ``pullcache`` and ``pulllive``)."""
    keys = plan.source.key_columns
    if (
        plan.access is not Access.LOOKUP
        or len(plan.keys) != 1
        or len(keys) != 1
        or keys[0].type != sqltypes.Primitive(sqltypes.BaseType.STRING)
        or layout.windowed
        or plan.limit is not None
        or len(sentinels) != 1
    ):
        return None
    (sentinel, slot), = sentinels.items()
    if not sentinel.startswith("'") or plan.keys[0] != (f"CAST({sentinel} AS VARCHAR)",):
        return None
    items = [f"{c.sql} AS {quote_column(c.name)}" for c in plan.columns]
    key = quote_column(keys[0].name)
    sql = pullcache.snapshot_sql(items, key, layout.ref, plan.where_sql, sentinel)
    changed = pullcache.snapshot_sql(items, key, layout.ref, plan.where_sql, sentinel, changed=CHANGED_ROWS)
    return None if sql is None else (sql, slot, changed)


def _plan_shape(engine: Any, text: str, source: Source, table_scan: bool, range_scan: bool) -> TablePull:
    """Plan ``text``, a statement of a lookup's shape with sentinels, over the same ``source``."""
    from ksqlpy import parser

    stmt = parser.parse_statement(text)
    if not isinstance(stmt, ast.QueryStatement) or not isinstance(stmt.query.from_, ast.Table):
        raise PullShapeError("not a pull query over a table")
    check_pull_shape(stmt.query)
    if engine.catalog.source(stmt.query.from_.name, stmt.query.from_.pos) is not source:
        raise PullShapeError("another table")
    plan = analyze_table_pull(stmt.query, source, table_scan=table_scan, range_scan=range_scan)
    if plan.access is not Access.LOOKUP:
        raise PullShapeError("not a key lookup")
    return plan


def _answer_prepared(engine: Any, prepared: _Prepared, partitions: frozenset[int] | None = None) -> Any:
    return _query_of(engine, prepared, _run_prepared(engine, prepared, partitions))


def _query_of(engine: Any, prepared: _Prepared, rows: list[Row]) -> Any:
    from ksqlpy.runtime.streaming import StreamingQuery

    return StreamingQuery(
        engine,
        _query_id(),
        prepared.fields,
        rows=rows,
        key_columns=prepared.keys,
        header_columns=prepared.headers,
        is_pull=True,
        table_pull=True,
    )


#: A planned pull query: called, it waits for its tables to catch up and answers (None when it
#: cannot, and the statement is to be run the usual way, which reports why).
Answer = Callable[[], Any | None]


def plan_pull(session: Any, stmt: ast.QueryStatement) -> Answer | None:
    """Plan ``stmt`` when it is a pull query over materialized tables (as ksqlDB's pull queries
    or as plain SQL over them), else None. Planning reads the catalog, so a server holds its
    statement lock for it; answering waits for the tables to catch up and needs no lock. A query
    that fails to plan is left to :func:`start_pull` (None), which reports the error."""
    query = stmt.query
    if query.refinement is not None or not isinstance(query.from_, ast.Table):
        return None
    engine = session.engine
    try:
        check_pull_shape(query)
    except PullShapeError:
        return plan_sql_answer(session, stmt.text)
    try:
        source = engine.catalog.source(query.from_.name, query.from_.pos)
        if not source.is_table:
            return None
        config = session.config
        prepared = _prepare(
            engine, stmt, source, table_scan=_flag(config, TABLE_SCAN), range_scan=_flag(config, RANGE_SCAN)
        )
    except KsqlpyError:
        return None
    partitions = requested_partitions(session.properties)
    return functools.partial(_answer_current, engine, prepared, partitions)


def _answer_current(engine: Any, prepared: _Prepared, partitions: frozenset[int] | None = None) -> Any | None:
    """Answer as planned, unless the table changed since (then None)."""
    return _answer_prepared(engine, prepared, partitions) if prepared.current(engine) else None


def plan_sql_answer(session: Any, text: str) -> Answer | None:
    """Plan ``text`` as DuckDB SQL over materialized tables (see :func:`start_sql_pull`)."""
    engine = session.engine
    planned = plan_sql_pull(engine, text)
    if planned is None:
        return None
    sql, materializers = planned
    return functools.partial(_answer_sql, engine, sql, materializers)


def _star_headers(query: ast.Query, source: Source) -> tuple[tuple[str, str | None], ...]:
    """The header columns of ``SELECT *`` over ``source``, which ksqlDB's pull query schema
    keeps as headers (``QueryProjectNode``); a column selected by name is a plain value."""
    if not any(isinstance(item, ast.AllColumns) for item in query.select):
        return ()
    return tuple((c.name, c.header_key) for c in source.header_columns)


def _prepare(engine: Any, stmt: ast.QueryStatement, source: Source, *, table_scan: bool, range_scan: bool) -> _Prepared:
    """Plan a pull query over table ``source`` and keep the plan for the statement's text."""
    plan = analyze_table_pull(stmt.query, source, table_scan=table_scan, range_scan=range_scan)
    materializer = engine.materializers.get(source.name)
    if materializer is None or not _queryable(source):
        raise not_queryable(source.name)
    if plan.access is Access.LOOKUP and not all(_SURE_KEY.fullmatch(v) for k in plan.keys for v in k):
        _lookup_keys(plan)  # reports an invalid key literal in ksqlDB's words, before any read
    key = (stmt.text, table_scan, range_scan)
    prepared = _Prepared(
        key=key,
        name=source.name,
        source=source,
        materializer=materializer,
        plan=plan,
        sql=(sql := _single_statement(plan, materializer.layout)),
        fields=tuple(sqltypes.Field(c.name, c.type) for c in plan.columns),
        keys=tuple(c.name for c in plan.columns if c.is_key),
        headers=_star_headers(stmt.query, source),
        schema=pa.schema([pa.field(c.name, sqltypes.to_arrow(c.type)) for c in plan.columns]),
        cacheable=_cacheable(plan, sql),
    )
    if len(_prepared) >= MAX_PREPARED:
        _prepared.clear()
    _prepared[key] = prepared
    if plan.access is Access.LOOKUP:
        _learn(engine, prepared, stmt.text, table_scan=table_scan, range_scan=range_scan)
    return prepared


def _cacheable(plan: TablePull, sql: str) -> bool:
    return plan.access is Access.LOOKUP and pullcache.deterministic(sql)


def _restricted(sql: str, layout: MatLayout, partitions: frozenset[int] | None) -> str:
    """``sql`` reading only ``partitions`` of the table (a pull query forwarded for them)."""
    if partitions is None:
        return sql
    listed = ", ".join(str(p) for p in sorted(partitions)) or "NULL"
    only = f"(SELECT * FROM {layout.ref} WHERE {quote_column(PARTITION_COLUMN)} IN ({listed}))"
    alias = " t" if f"{layout.ref} t" in sql else " input"  # a single key's lookup reads it as input
    return sql.replace(f"{layout.ref}{alias}", f"{only}{alias}", 1)


def _run_prepared(engine: Any, prepared: _Prepared, partitions: frozenset[int] | None = None) -> list[Row]:
    """Catch up, then read and evaluate in one statement when possible."""
    if prepared.sql is None:
        return run_table_pull(engine, prepared.plan, prepared.materializer, partitions)
    catch_up(engine, prepared.materializer, _looked_up(prepared.plan))
    return _read_prepared(engine, prepared, partitions)


def _read_prepared(engine: Any, prepared: _Prepared, partitions: frozenset[int] | None = None) -> list[Row]:
    """Read and evaluate in one statement (``prepared.sql``), or in two when it fails."""
    assert prepared.sql is not None
    cursor = engine.store.state_cursor()
    try:
        result = cursor.sql(_restricted(prepared.sql, prepared.materializer.layout, partitions)).to_arrow_table()
    except duckdb.Error:
        # A ksqlpy function or a failure to report in the evaluator's words: evaluate in two
        # steps from now on (the same rows, the same errors as before).
        if _prepared.get(prepared.key) is prepared:
            _prepared[prepared.key] = dataclasses.replace(prepared, sql=None)
        template = _templates.get(prepared.key)
        if template is not None and template.prepared.sql is not None:
            _templates[prepared.key] = dataclasses.replace(
                template, prepared=dataclasses.replace(template.prepared, sql=None)
            )
        return _evaluate(engine, prepared.plan, prepared.materializer.layout, partitions)
    finally:
        cursor.close()
    result = from_duckdb(result)
    if result.schema != prepared.schema:
        result = result.cast(prepared.schema)
    return table_to_rows(result, [f.type for f in prepared.fields])


def _single_statement(plan: TablePull, layout: MatLayout) -> str:
    """One statement over the state database: the looked-up keys (as a VALUES list of their
    literals) or the whole table, WHERE, the projection and LIMIT, in the order ksqlDB reads."""
    visible = [f"t.{quote_column(n)}" for n, _ in layout.visible]
    windows = [f"t.{quote_column(w)}" for w in WINDOW_COLUMNS if layout.windowed]
    items = [f"{c.sql} AS {quote_column(c.name)}" for c in plan.columns]
    if plan.access is Access.LOOKUP and len(plan.keys) == 1 and not windows:
        # One key of a table without windows: at most one row, so nothing to order, and the
        # columns read straight from the table (a subquery and an ORDER BY double DuckDB's time).
        names = [quote_column(c.name) for c in plan.source.key_columns]
        matches = " AND ".join(f"input.{n} = {v}" for n, v in zip(names, plan.keys[0], strict=True))
        sql = f"SELECT {', '.join(items)} FROM {layout.ref} input WHERE {matches}"
        if plan.where_sql:
            sql += f" AND COALESCE({plan.where_sql}, FALSE)"
        if plan.limit is not None:
            sql += f" LIMIT {int(plan.limit)}"
        return sql
    if plan.access is Access.LOOKUP and len(plan.keys) == 1:
        # One key (the common case): a filter, far cheaper in DuckDB than joining a key list;
        # with a single key the partition and key ranks are constant, leaving the windows.
        names = [quote_column(c.name) for c in plan.source.key_columns]
        matches = " AND ".join(f"t.{n} = {v}" for n, v in zip(names, plan.keys[0], strict=True))
        order = windows or ["1"]
        source = f"{layout.ref} t WHERE {matches}"
    elif plan.access is Access.LOOKUP:
        names = [quote_column(c.name) for c in plan.source.key_columns]
        values = ", ".join(f"({', '.join(v)}, {i})" for i, v in enumerate(plan.keys, start=1))
        keys = f"SELECT * EXCLUDE (__ord), min(__ord) AS __ord FROM (VALUES {values}) v({', '.join(names)}, __ord) GROUP BY ALL"
        on = " AND ".join(f"t.{n} = k.{n}" for n in names)
        order = [f"min(k.__ord) OVER (PARTITION BY t.{quote_column(PARTITION_COLUMN)})", "k.__ord", *windows]
        source = f"{layout.ref} t JOIN ({keys}) k ON {on}"
    else:
        order = [f"t.{c.strip()}" for c in layout.scan_order().split(",")]
        source = f"{layout.ref} t"
    hidden = [f"{o} AS __pull_order_{i}" for i, o in enumerate(order)]
    fetch = f"SELECT {', '.join(visible + hidden)} FROM {source}"
    sql = f"SELECT {', '.join(items)} FROM ({fetch}) input"
    if plan.where_sql:
        sql += f" WHERE COALESCE({plan.where_sql}, FALSE)"
    sql += " ORDER BY " + ", ".join(f"input.__pull_order_{i}" for i in range(len(order)))
    if plan.limit is not None:
        sql += f" LIMIT {int(plan.limit)}"
    return sql


def run_table_pull(
    engine: Any, plan: TablePull, materializer: Materializer, partitions: frozenset[int] | None = None
) -> list[Row]:
    """Fetch the rows ``plan`` needs from the state database and evaluate it over them."""
    catch_up(engine, materializer, _looked_up(plan))
    return _evaluate(engine, plan, materializer.layout, partitions)


def _looked_up(plan: TablePull) -> tuple[str | int, ...] | None:
    """The key values a lookup reads (None for a scan, or keys that are not plain literals)."""
    return pullwait.lookup_values(plan.keys) if plan.access is Access.LOOKUP else None


def _evaluate(engine: Any, plan: TablePull, layout: MatLayout, partitions: frozenset[int] | None = None) -> list[Row]:
    """Fetch the candidate rows, then evaluate WHERE, the projection and LIMIT over them on the
    evaluator connection (which has ksqlpy's functions)."""
    fetched = _fetch(engine, plan, layout, partitions)
    con = _evaluator()
    items = [f"{c.sql} AS {quote_column(c.name)}" for c in plan.columns]
    sql = f"SELECT {', '.join(items)} FROM input"
    if plan.where_sql:
        sql += f" WHERE COALESCE({plan.where_sql}, FALSE)"
    if plan.limit is not None:
        sql += f" LIMIT {int(plan.limit)}"
    con.register("input", fetched)  # fetched from the state database: DuckDB names already
    try:
        result = from_duckdb(con.sql(sql).to_arrow_table())
    except duckdb.Error as e:
        raise ExecutionError(f"Pull query failed: {str(e).splitlines()[0]}") from e
    finally:
        con.unregister("input")
    types = [c.type for c in plan.columns]
    schema = pa.schema([pa.field(c.name, sqltypes.to_arrow(c.type)) for c in plan.columns])
    if result.schema != schema:
        result = result.cast(schema)
    return table_to_rows(result, types)


def _fetch(engine: Any, plan: TablePull, layout: MatLayout, partitions: frozenset[int] | None = None) -> pa.Table:
    """The candidate rows: the looked-up keys, or the whole table, in scan order."""
    visible = ", ".join(f"t.{quote_column(n)}" for n, _ in layout.visible)
    sql = _restricted(f"SELECT {visible} FROM {layout.ref} t", layout, partitions)
    cursor = engine.store.state_cursor()
    try:
        if plan.access is Access.LOOKUP:
            # ksqlDB looks keys up partition by partition, partitions in the order their first key
            # appears in the WHERE clause, and within one the keys in the order given.
            cursor.register("__pull_keys", _lookup_keys(plan))
            on = " AND ".join(f"t.{quote_column(c.name)} = k.{quote_column(c.name)}" for c in plan.source.key_columns)
            numbered = "SELECT *, row_number() OVER () AS __ord FROM __pull_keys"
            keys = f"SELECT * EXCLUDE (__ord), min(__ord) AS __ord FROM ({numbered}) GROUP BY ALL"
            partition_rank = f"min(k.__ord) OVER (PARTITION BY t.{quote_column(PARTITION_COLUMN)})"
            by_key = [partition_rank, "k.__ord"] + [f"t.{quote_column(w)}" for w in WINDOW_COLUMNS if layout.windowed]
            sql += f" JOIN ({keys}) k ON {on} ORDER BY {', '.join(by_key)}"
            return cursor.sql(sql).to_arrow_table()
        order = ", ".join(f"t.{c.strip()}" for c in layout.scan_order().split(","))
        return cursor.sql(f"{sql} ORDER BY {order}").to_arrow_table()
    finally:
        cursor.close()


#: A key literal that cannot fail to evaluate (a string, or an integer of nine digits at most):
#: checking it in DuckDB costs a statement, a quarter of a key lookup's CPU.
_SURE_KEY = re.compile(r"CAST\('(?:[^']|'')*' AS VARCHAR\)|CAST\(CAST\(-?\d{1,9} AS INT\) AS INTEGER\)")


def _lookup_keys(plan: TablePull) -> pa.Table:
    """The keys a lookup fetches, computed in DuckDB from their literal expressions."""
    names = [c.name for c in plan.source.key_columns]
    rows = " UNION ALL ".join(
        "SELECT " + ", ".join(f"{v} AS {quote_column(n)}" for v, n in zip(values, names, strict=True))
        for values in plan.keys
    )
    try:
        return _evaluator().sql(rows).to_arrow_table()
    except duckdb.Error as e:
        raise AnalysisError(f"Invalid key in WHERE clause: {str(e).splitlines()[0]}") from e


# ------------------------------------------------------------------------------------ EXPLAIN


def explain_pull(session: Any, stmt: ast.QueryStatement, text: str) -> QueryDescription:
    """EXPLAIN of a pull query on a table: how it is served (key lookup or table scan) from
    which materialized state, without running it."""
    from ksqlpy.runtime import results as r

    engine = session.engine
    query = stmt.query
    check_pull_shape(query)
    assert isinstance(query.from_, ast.Table)
    source = engine.catalog.source(query.from_.name, query.from_.pos)
    if not source.is_table:
        raise AnalysisError("EXPLAIN of a pull query is supported on tables only.", pos=stmt.pos)
    config = session.config
    plan = analyze_table_pull(
        query, source, table_scan=_flag(config, TABLE_SCAN), range_scan=_flag(config, RANGE_SCAN)
    )
    materializer = engine.materializers.get(source.name)
    if materializer is None or not _queryable(source):
        raise not_queryable(source.name)
    layout = materializer.layout
    if plan.access is Access.LOOKUP:
        access = f"KEY LOOKUP | {len(plan.keys)} key(s) on {', '.join(c.name for c in source.key_columns)}"
    else:
        access = f"TABLE SCAN | ORDER BY {layout.scan_order()}"
    lines = [f" > [ PROJECT ] | {', '.join(f'{c.sql} AS {c.name}' for c in plan.columns)}"]
    if plan.limit is not None:
        lines.append(f"\t\t > [ LIMIT ] | {plan.limit}")
    if plan.where_sql:
        lines.append(f"\t\t > [ FILTER ] | {plan.where_sql}")
    lines.append(f"\t\t\t\t > [ {access} ] | {layout.ref} (materialized from topic {source.topic})")
    fields = tuple(
        r.FieldInfo(name=c.name, type=c.type, kind=r.FieldKind.KEY if c.is_key else None) for c in plan.columns
    )
    return r.QueryDescription(
        statement_text=text,
        id=_query_id(),  # the id the pull query would answer under
        query_string=stmt.text,
        fields=fields,
        sources=(source.name,),
        topology="Pull query: wait for the materializer to reach the topic's end offsets, read the state "
        "database, evaluate in DuckDB",
        execution_plan="\n".join(lines),
        query_type=r.QueryType.PULL,
    )


# ------------------------------------------------------------------------------------ plain SQL


def start_sql_pull(session: Any, text: str) -> Any | None:
    """Answer ``text`` as DuckDB SQL over materialized tables, or None when it is not such a
    query (then the caller reports ksqlDB's error for it)."""
    answer = plan_sql_answer(session, text)
    return None if answer is None else answer()


def _answer_sql(engine: Any, sql: str, materializers: list[Materializer]) -> Any | None:
    for m in materializers:
        catch_up(engine, m)
    cursor = engine.store.state_cursor()
    try:
        result = cursor.sql(sql).to_arrow_table()
    except duckdb.Error as e:
        log.debug("not answerable as SQL over materialized tables: %s", e)
        return None
    finally:
        cursor.close()
    fields, result = _result_fields(result)
    rows = table_to_rows(result, [f.type for f in fields])
    from ksqlpy.runtime.streaming import StreamingQuery

    return StreamingQuery(engine, _query_id(), fields, rows=rows, is_pull=True, table_pull=True)


#: Function name prefixes that reach outside the state database (files, settings, other DBs).
_FORBIDDEN_FUNCTIONS = ("read_", "parquet_", "glob", "sniff_", "getenv", "query", "duckdb_", "pragma_", "json_execute")


def plan_sql_pull(engine: Any, text: str) -> tuple[str, list[Materializer]] | None:
    """Rewrite ``text`` so each table reference reads ``mat."<NAME>"`` (visible columns only).
    None unless it is one SELECT over materialized tables and nothing else."""
    try:
        tree = sqlglot.parse_one(text.strip().rstrip(";"), read="duckdb")
    except (sqlglot.errors.SqlglotError, RecursionError):
        # too deep for sqlglot's recursive parser: not SQL this answers; the caller reports
        # the ksqlDB parser's error, with its position
        return None
    if not isinstance(tree, exp.Query):
        return None
    for fn in tree.find_all(exp.Func):
        name = (fn.name if isinstance(fn, exp.Anonymous) else fn.sql_name()).lower()
        if name.startswith(_FORBIDDEN_FUNCTIONS):
            return None
    ctes = {cte.alias_or_name.upper() for cte in tree.find_all(exp.CTE)}
    used: dict[str, Materializer] = {}
    tables = list(tree.find_all(exp.Table))
    if not tables:
        return None
    for table in tables:
        ident = table.this
        if not isinstance(ident, exp.Identifier) or table.args.get("db") or table.args.get("catalog"):
            return None
        name = ident.name if ident.quoted else ident.name.upper()
        if not ident.quoted and name in ctes:
            continue
        m = engine.materializers.get(name)
        if m is None:
            return None
        used[name] = m
        # User SQL names the columns by their ksqlDB names (DuckDB matches them in any case).
        visible = ", ".join(f"{quote_column(n)} AS {quote(n)}" for n, _ in m.layout.visible)
        inner = sqlglot.parse_one(f"SELECT {visible} FROM {m.layout.ref}", read="duckdb")
        alias = table.alias or ident.name
        table.replace(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias))))
    return tree.sql(dialect="duckdb"), list(used.values())


def _result_fields(result: pa.Table) -> tuple[tuple[sqltypes.Field, ...], pa.Table]:
    """ksqlDB-style (upper-case) column names and SQL types of a DuckDB result; columns of a
    type ksqlDB lacks are shown as strings."""
    fields = []
    for i, f in enumerate(result.schema):
        try:
            t = sqltypes.from_arrow(f.type)
            result = result.set_column(i, f.name, result.column(i).cast(sqltypes.to_arrow(t)))
        except (TypeError, ValueError, pa.ArrowException):
            t = sqltypes.STRING
            result = result.set_column(i, f.name, result.column(i).cast(pa.string()))
        fields.append(sqltypes.Field(f.name.upper(), t))
    return tuple(fields), result


__all__ = [
    "Answer",
    "catch_up",
    "explain_pull",
    "plan_pull",
    "plan_sql_answer",
    "plan_sql_pull",
    "run_table_pull",
    "start_bound_pull",
    "start_prepared_pull",
    "start_pull",
    "start_ready_pull",
    "start_sql_pull",
]
