"""``POST /trace``: where did the records with a given key go? ("trace an event" in the console).

Given a stream or table and a key (optionally a time range), the records with that key are read
from the source's topic, then followed downstream through every persistent query that reads the
source, hop by hop, to the records each query wrote to its sink topic; the answer lists them all
in time order. Topics are read with the engine's store from the earliest offset up to their end
at the moment of the request, and decoded as the queries decode them (:class:`SourceDecoder`).

Which sink records come from the traced ones is decided by the query's key, evaluated over the
traced records themselves with the query's own DuckDB expressions:

* a query that keeps the key (a filter or projection, ``CSAS``/``CTAS`` without ``PARTITION BY``
  or ``GROUP BY``): the traced records that pass its ``WHERE`` keep their key in the sink;
* a query that re-keys with ``PARTITION BY`` or ``GROUP BY`` an expression of the record's own
  columns: the value of that expression for each traced record (that passes ``WHERE``) is the
  downstream key, e.g. ``GROUP BY USER_ID`` follows the traced orders' ``USER_ID`` values;
* windowed aggregates: every window of the downstream key.

A sink record matches when its key is one of the downstream keys and it is not older than the
earliest traced record it could come from; a filter or projection's sink record, which keeps the
ROWTIME of its one input record, must also have the ROWTIME of a traced record (so a stream
re-keyed by ``PARTITION BY USER_ID`` shows the traced orders, not every order of that user). For an aggregate this means every later update of the
group, since each one includes the traced record. A join (stream–table, stream–stream, table–table,
foreign-key) is followed from either side through the side's join key (``server/trace_join.py``).
Not followed (listed under ``notFollowed`` with the reason): a join whose sink key needs the other
side's columns, or that re-keys one join's result into another, and queries whose key expression
fails over the traced records.
The walk stops at a sink already visited (``INSERT INTO`` loops) and after ``MAX_RECORDS``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError, KsqlpyError
from ksqlpy.planner.catalog import Source
from ksqlpy.planner.physical import AggregateStep, SelectStep
from ksqlpy.runtime.codec import HEADERS, TOMBSTONE, SourceDecoder
from ksqlpy.runtime.query import new_connection
from ksqlpy.runtime.serde.registry import registry_for
from ksqlpy.server.lineage import query_sources
from ksqlpy.server.trace_join import JoinHop, NotFollowed, follow_join, spans_mask

#: Records the answer holds at most, over all hops; beyond it the walk stops (``truncated``).
MAX_RECORDS = 5000
#: Seconds a topic is read at most; a topic still being written to is read up to its end as it
#: was when the request came.
READ_SECONDS = 20.0
#: Records asked of the store per poll.
POLL_RECORDS = 10_000

KeyRow = tuple[Any, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceRequest:
    """What to trace: a source's name, its key (a value, or column → value for several key
    columns) and an optional time range of ROWTIME in epoch milliseconds, both ends included."""

    source: str
    key: Any
    from_ms: int | None = None
    to_ms: int | None = None


@dataclass(frozen=True, slots=True)
class _Query:
    """What the walk needs of one persistent query, read under the statement lock."""

    query_id: str
    statement: str
    sources: tuple[Source, ...]
    sink: Source
    step: Any
    #: a join query's join tree (``ksqlpy.runtime.join.plan.JoinNode``), else None
    join: Any = None


@dataclass
class _Hop:
    """A source reached by the walk, with its traced records (decoded) and how it was reached."""

    source: Source
    rows: pa.Table
    query: _Query | None = None
    upstream: str | None = None
    keys: list[KeyRow] = field(default_factory=list)
    #: a join query's other inputs, which the upstream records were joined with
    joined: list[str] = field(default_factory=list)


def snapshot(engine: Any) -> tuple[dict[str, Source], list[_Query]]:
    """The catalog and the persistent queries with a sink (call under the statement lock)."""
    sources = {s.name: s for s in engine.catalog}
    queries: list[_Query] = []
    for q in sorted(engine.queries.values(), key=lambda q: str(q.query_id)):
        plan = q.plan
        sink = getattr(plan, "sink", None)
        if sink is None:
            continue
        queries.append(
            _Query(
                str(q.query_id),
                getattr(plan, "statement", ""),
                query_sources(plan),
                sink,
                getattr(plan, "step", None),
                getattr(plan, "join", None),
            )
        )
    return sources, queries


def parse_request(body: Mapping[str, Any]) -> TraceRequest:
    """The request's fields, checked; a mistake raises ``AnalysisError`` naming the field."""
    source = body.get("source")
    if not isinstance(source, str) or not source.strip():
        raise AnalysisError("Trace needs 'source': the name of a stream or table.")
    if "key" not in body or isinstance(body["key"], list):
        raise AnalysisError("Trace needs 'key': the key's value, or an object of key column names to values.")
    bounds: list[int | None] = []
    for name in ("from", "to"):
        value = body.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63
        ):
            raise AnalysisError(
                f"Trace '{name}' must be a ROWTIME in epoch milliseconds (a whole number), not {value!r}."
            )
        bounds.append(value)
    return TraceRequest(source=source.strip(), key=body["key"], from_ms=bounds[0], to_ms=bounds[1])


def resolve(sources: Mapping[str, Source], name: str) -> Source:
    """A source by name as SQL would resolve it: unquoted names are upper-cased."""
    if name.startswith("`") and name.endswith("`") and len(name) > 1:
        name = name[1:-1]
    found = sources.get(name) or sources.get(name.upper())
    if found is None:
        raise AnalysisError(
            f"{name} does not exist.", hint="Trace a stream or table that SHOW STREAMS or SHOW TABLES lists."
        )
    return found


def trace(
    engine: Any, request: TraceRequest, sources: Mapping[str, Source], queries: Sequence[_Query]
) -> dict[str, Any]:
    """Walk from ``request.source`` downstream; the answer ``POST /trace`` sends (see README)."""
    root = resolve(sources, request.source)
    wanted = _root_key(root, request.key)
    rows = _read(engine, root)
    rows = rows.filter(_key_mask(rows, root, wanted))
    if request.from_ms is not None:
        rows = rows.filter(pc.greater_equal(rows.column("ROWTIME"), request.from_ms))
    if request.to_ms is not None:
        rows = rows.filter(pc.less_equal(rows.column("ROWTIME"), request.to_ms))
    hops = [_Hop(source=root, rows=rows, keys=[wanted])]
    not_followed: list[dict[str, Any]] = []
    visited = {root.name}
    total = rows.num_rows
    truncated = total > MAX_RECORDS
    frontier = [hops[0]]
    while frontier and not truncated:
        hop = frontier.pop(0)
        if hop.rows.num_rows == 0:
            continue
        for q in queries:
            if all(s.name != hop.source.name for s in q.sources):
                continue
            if q.sink.name in visited:
                continue
            reason = None
            keys: list[KeyRow] = []
            joined: JoinHop | None = None
            if not isinstance(q.step, SelectStep | AggregateStep) or (q.join is None and len(q.sources) > 1):
                reason = "reads several sources in a way the trace does not follow"
            else:
                try:
                    if q.join is not None:
                        joined = follow_join(q.join, q.step, hop.source, hop.rows, lambda s: _read(engine, s))
                        keys = joined.keys
                    else:
                        keys = derived_keys(q.step, hop.rows)
                except NotFollowed as e:
                    reason = str(e)
                except Exception as e:  # noqa: BLE001 - DuckDB's errors have no common base
                    reason = f"its key could not be computed over the traced records: {e}"
            if reason is not None:
                not_followed.append(
                    {"query": q.query_id, "source": hop.source.name, "sink": q.sink.name, "reason": reason}
                )
                continue
            visited.add(q.sink.name)
            found = _read(engine, q.sink) if keys else _decoded_empty(q.sink)
            if joined is not None:
                found = found.filter(spans_mask(found, q.sink, joined.spans))
            else:
                found = found.filter(_keys_mask(found, q.sink, set(keys), with_rowtime=timed(q.step)))
                if timed(q.step):
                    keys = sorted({k[:-1] for k in keys}, key=repr)
            earliest = pc.min(hop.rows.column("ROWTIME")).as_py()
            found = found.filter(pc.greater_equal(found.column("ROWTIME"), earliest))
            others = [s.name for s in q.sources if s.name != hop.source.name] if q.join is not None else []
            nxt = _Hop(source=q.sink, rows=found, query=q, upstream=hop.source.name, keys=keys, joined=others)
            hops.append(nxt)
            frontier.append(nxt)
            total += found.num_rows
            if total > MAX_RECORDS:
                truncated = True
                break
    return _answer(request, hops, not_followed, truncated)


def derived_keys(step: SelectStep | AggregateStep, rows: pa.Table) -> list[KeyRow]:
    """The sink keys the query gives ``rows`` (decoded source rows): its key expressions over the
    rows that pass its WHERE, evaluated with DuckDB as the query evaluates them."""
    where = f" WHERE {step.where_sql}" if step.where_sql else ""
    con = new_connection()
    try:
        con.register("input", _without_internal(rows))
        if isinstance(step, AggregateStep):
            keys = ", ".join(f'{k.sql} AS "{k.name}"' for k in step.group_keys)
            out = ", ".join(c.sql for c in step.key_columns)
            sql = f"SELECT DISTINCT {out} FROM (SELECT {keys} FROM input{where})"
        else:
            out = ", ".join(c.sql for c in step.key_columns)
            if timed(step):
                out += ', "ROWTIME"'
            sql = f"SELECT DISTINCT {out} FROM input{where}"
        if not step.key_columns:
            return []
        result = con.execute(sql).fetchall()
    finally:
        con.close()
    return [tuple(r) for r in result]


def timed(step: Any) -> bool:
    """Whether each sink record of ``step`` has the ROWTIME of the one record it comes from (a
    filter or projection without a TIMESTAMP column): then a sink record is matched by key and
    ROWTIME, so that a re-keyed stream does not count other records that share the new key."""
    return isinstance(step, SelectStep) and step.timestamp_sql == '"ROWTIME"'


def _without_internal(rows: pa.Table) -> pa.Table:
    """The columns a plan's SQL reads: the internal header and tombstone columns are dropped."""
    keep = [n for n in rows.column_names if n not in (HEADERS, TOMBSTONE)]
    return rows.select(keep)


def _root_key(source: Source, key: Any) -> KeyRow:
    """The request's key as a row of the source's key columns."""
    columns = source.key_columns
    if not columns:
        raise AnalysisError(
            f"{source.name} has no key columns: there is no key to trace.",
            hint="Trace a stream or table declared with a KEY or PRIMARY KEY column.",
        )
    if isinstance(key, dict):
        upper = {str(k).upper(): v for k, v in key.items()}
        missing = [c.name for c in columns if c.name not in key and c.name.upper() not in upper]
        if missing:
            raise AnalysisError(
                f"Trace key has no value for the key column(s) {', '.join(missing)} of {source.name}."
            )
        return tuple(key.get(c.name, upper.get(c.name.upper())) for c in columns)
    if len(columns) > 1:
        names = ", ".join(c.name for c in columns)
        raise AnalysisError(
            f"{source.name} has several key columns ({names}): give 'key' as an object of "
            "column names to values."
        )
    return (key,)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _key_mask(rows: pa.Table, source: Source, wanted: KeyRow) -> pa.Array:
    """Rows whose key columns equal ``wanted``, compared as text (a key typed into a form is text)."""
    mask = pa.array([True] * rows.num_rows, pa.bool_())
    for column, value in zip(source.key_columns, wanted):
        text = _as_text(value)
        data = rows.column(column.name)
        if text is None:
            match = pc.is_null(data)
        else:
            try:
                as_text = pc.cast(data, pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                as_text = pa.array([_as_text(v) for v in data.to_pylist()], pa.string())
            match = pc.fill_null(pc.equal(as_text, text), False)
        mask = pc.and_(mask, match)
    return mask


def _keys_mask(rows: pa.Table, source: Source, keys: set[KeyRow], *, with_rowtime: bool) -> pa.Array:
    """Rows whose key (as a row of values, then ROWTIME when ``with_rowtime``) is one of ``keys``."""
    if not keys or not source.key_columns:
        return pa.array([False] * rows.num_rows, pa.bool_())
    names = [c.name for c in source.key_columns] + (["ROWTIME"] if with_rowtime else [])
    columns = [rows.column(n).to_pylist() for n in names]
    return pa.array([tuple(k) in keys for k in zip(*columns)], pa.bool_())


def _read(engine: Any, source: Source) -> pa.Table:
    """The source's topic from its earliest offset up to its end now, decoded; bad records are
    left out (the queries send them to the processing log)."""
    store = engine.store
    if store.describe_topic(source.topic) is None:
        return _decoded_empty(source)
    ends = {p: e for p, e in store.end_offsets(source.topic).items() if e > 0}
    decoder = SourceDecoder(source, registry_for(store))
    tables: list[pa.Table] = []
    deadline = time.monotonic() + READ_SECONDS
    with store.open_reader([source.topic], start="earliest") as reader:
        while ends and time.monotonic() < deadline:
            batch = reader.poll(POLL_RECORDS, timeout=0.2)
            if batch.num_rows:
                tables.append(decoder.decode(batch).table)
            positions = {tp.partition: off for tp, off in reader.positions().items()}
            if all(positions.get(p, 0) >= end for p, end in ends.items()):
                break
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return _decoded_empty(source)
    return pa.concat_tables(tables, promote_options="default")


def _decoded_empty(source: Source) -> pa.Table:
    """No rows, with the key columns and ROWTIME that filtering needs."""
    cols = {c.name: pa.array([], sqltypes.to_arrow(c.type)) for c in source.key_columns}
    cols["ROWTIME"] = pa.array([], pa.int64())
    return pa.table(cols)


def _answer(
    request: TraceRequest, hops: Sequence[_Hop], not_followed: list[dict[str, Any]], truncated: bool
) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    for order, hop in enumerate(hops):
        for row in _row_dicts(hop):
            row["hop"] = order
            records.append(row)
    # Time order; a record's own hop breaks ties, so that a derived record follows its origin.
    records.sort(key=lambda r: (r["rowtime"], r["hop"], r["partition"], r["offset"]))
    return {
        "source": hops[0].source.name,
        "key": request.key,
        "from": request.from_ms,
        "to": request.to_ms,
        "hops": [
            {
                "source": h.source.name,
                "kind": "table" if h.source.is_table else "stream",
                "topic": h.source.topic,
                "query": h.query.query_id if h.query else None,
                "statement": h.query.statement if h.query else None,
                "upstream": h.upstream,
                "joinedWith": h.joined,
                "keys": [list(k) for k in h.keys],
                "records": h.rows.num_rows,
            }
            for h in hops
        ],
        "records": records,
        "notFollowed": not_followed,
        "truncated": truncated,
    }


def _row_dicts(hop: _Hop) -> Iterable[dict[str, Any]]:
    source = hop.source
    rows = hop.rows
    if rows.num_rows == 0:
        return
    key_names = [c.name for c in source.key_columns]
    if source.window is not None:
        key_names += [n for n in ("WINDOWSTART", "WINDOWEND") if n in rows.column_names]
    value_names = [c.name for c in source.value_columns]
    tombstones = rows.column(TOMBSTONE).to_pylist() if TOMBSTONE in rows.column_names else None
    data = {n: rows.column(n).to_pylist() for n in (*key_names, *value_names)}
    times = rows.column("ROWTIME").to_pylist()
    partitions = rows.column("ROWPARTITION").to_pylist()
    offsets = rows.column("ROWOFFSET").to_pylist()
    for i in range(rows.num_rows):
        tombstone = bool(tombstones[i]) if tombstones is not None else False
        yield {
            "source": source.name,
            "topic": source.topic,
            "query": hop.query.query_id if hop.query else None,
            "rowtime": times[i],
            "partition": partitions[i],
            "offset": offsets[i],
            "key": {n: data[n][i] for n in key_names},
            "value": None if tombstone else {n: data[n][i] for n in value_names},
        }


def trace_error(error: KsqlpyError) -> str:
    """The message an error sends back (its hint after it, as statement errors show theirs)."""
    hint = getattr(error, "hint", None)
    return f"{error} {hint}" if hint and hint not in str(error) else str(error)


def trace_json(engine: Any, lock: Any, body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /trace``'s answer to ``body``. The catalog and the queries are read under ``lock``
    (the server's statement lock); the topics are read after it is released, so that a long
    trace does not hold statements up."""
    wanted = parse_request(body)
    with lock:
        sources, queries = snapshot(engine)
    return trace(engine, wanted, sources, queries)
