"""``GET /lineage``: the graph of topics, streams, tables and persistent queries, as JSON.

Built from the engine's catalog, its persistent queries and the topic store, at the moment of the
request; the web console draws it left to right. The shape (also documented in README.md)::

    {"nodes": [{"id": "topic:pageviews", "kind": "topic", "name": "pageviews", "partitions": 1},
               {"id": "source:PAGEVIEWS", "kind": "stream", "name": "PAGEVIEWS", "topic": "pageviews",
                "partitions": 1, "keyFormat": "KAFKA", "valueFormat": "JSON", "windowed": false},
               {"id": "query:CSAS_LONG_0", "kind": "query", "name": "CSAS_LONG_0", "state": "RUNNING",
                "statement": "...", "recordsIn": 2, "recordsOut": 1,
                "plan": [{"id": "LONG", "type": "streamSinkV1", "operation": "SINK", "depth": 0,
                          "records": 1}, ...]}, ...],
     "edges": [{"source": "topic:pageviews", "target": "source:PAGEVIEWS", "kind": "reads"}, ...]}

Edges run the way data flows: topic → the stream or table declared over it, source → the query
reading it, query → the stream or table it writes, and a written stream or table → its topic.
A query's ``plan`` is its step tree as EXPLAIN prints it (parents first, ``depth`` the
indentation), each step with the records that went through it since the query started here
(see :mod:`ksqlpy.runtime.step_counts`; ``null`` where the fused operators do not observe it).
Internal topics (names starting with ``_``: consumer-group state, changelogs) are left out, as
SHOW TOPICS leaves them out. Transient push queries are not part of the graph.
"""

from __future__ import annotations

from typing import Any

from ksqlpy.planner.catalog import Source
from ksqlpy.runtime.step_counts import step_records

#: Node kinds, in the order the console lists them.
KINDS = ("topic", "stream", "table", "query")


def topic_id(name: str) -> str:
    return f"topic:{name}"


def source_id(name: str) -> str:
    return f"source:{name}"


def query_id(name: str) -> str:
    return f"query:{name}"


def query_sources(plan: Any) -> tuple[Source, ...]:
    """The streams and tables a query reads: its plan's source, or the inputs of its join tree
    (``plan.join``), and any further ones a plan lists under ``sources``."""
    found: list[Source] = []
    join = getattr(plan, "join", None)
    # a join query's step reads the join's result; the join reads the topics
    candidates = [i.source for i in join.inputs()] if join is not None else [
        getattr(plan, "source", None), *getattr(plan, "sources", ())]
    for s in candidates:
        if isinstance(s, Source) and all(s.name != f.name for f in found):
            found.append(s)
    return tuple(found)


def lineage_json(engine: Any) -> dict[str, Any]:
    """The lineage graph of ``engine`` (a ``ksqlpy.runtime.engine.Engine``) as plain JSON data."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []

    def edge(source: str, target: str, kind: str) -> None:
        e = {"source": source, "target": target, "kind": kind}
        if e not in edges:
            edges.append(e)

    specs = {spec.name: spec for spec in engine.store.list_topics()}
    for name, spec in sorted(specs.items()):
        if not name.startswith("_"):
            nodes[topic_id(name)] = {"id": topic_id(name), "kind": "topic", "name": name,
                                     "partitions": spec.partitions}

    sources: list[Source] = list(engine.catalog)
    queries = sorted(engine.queries.values(), key=lambda q: str(q.query_id))
    written = {q.plan.sink.name for q in queries if getattr(q.plan, "sink", None) is not None}
    for s in sources:
        spec = specs.get(s.topic)
        nodes[source_id(s.name)] = {
            "id": source_id(s.name),
            "kind": "table" if s.is_table else "stream",
            "name": s.name,
            "topic": s.topic,
            "partitions": spec.partitions if spec is not None else s.partitions,
            "keyFormat": s.key_format.format,
            "valueFormat": s.value_format.format,
            "windowed": s.window is not None,
        }
        if topic_id(s.topic) not in nodes:  # declared, but its topic is gone (or not yet made)
            nodes[topic_id(s.topic)] = {"id": topic_id(s.topic), "kind": "topic", "name": s.topic,
                                        "partitions": s.partitions, "missing": spec is None}
        if s.name in written:
            edge(source_id(s.name), topic_id(s.topic), "writes")
        else:
            edge(topic_id(s.topic), source_id(s.name), "reads")

    for q in queries:
        qid = str(q.query_id)
        nodes[query_id(qid)] = {
            "id": query_id(qid),
            "kind": "query",
            "name": qid,
            "state": _state_name(q.state),
            "statement": getattr(q.plan, "statement", ""),
            # Read, not reset: the counters belong to the running query.
            "recordsIn": int(getattr(q, "records_in", 0)),
            "recordsOut": int(getattr(q, "records_out", 0)),
            "plan": _plan(engine, q),
        }
        for s in query_sources(q.plan):
            edge(source_id(s.name), query_id(qid), "reads")
        sink = getattr(q.plan, "sink", None)
        if sink is not None:
            edge(query_id(qid), source_id(sink.name), "writes")

    _drop_dangling(nodes, edges)
    order = {k: i for i, k in enumerate(KINDS)}
    ordered = sorted(nodes.values(), key=lambda n: (order.get(n["kind"], len(KINDS)), n["name"]))
    return {"nodes": ordered, "edges": edges}


def _plan(engine: Any, query: Any) -> list[dict[str, Any]]:
    """The query's steps with their record counts (empty for a query without a stored plan)."""
    stored = getattr(engine, "ksql_plans", {}).get(query.query_id)
    query_plan = getattr(stored, "query_plan", None)
    counts = getattr(query, "operator_counts", None)
    if query_plan is None or counts is None:
        return []
    return [
        {"id": s.context, "type": s.type, "operation": s.operation, "depth": s.depth, "records": s.records}
        for s in step_records(query_plan.physical_plan, counts.snapshot())
    ]


def _state_name(state: Any) -> str:
    value = getattr(state, "value", state)
    return str(value)


def _drop_dangling(nodes: dict[str, dict[str, Any]], edges: list[dict[str, str]]) -> None:
    """Keep only edges whose two ends are nodes: a query may outlive a dropped source for a moment."""
    edges[:] = [e for e in edges if e["source"] in nodes and e["target"] in nodes]

