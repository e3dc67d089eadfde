"""SHOW / LIST / DESCRIBE / EXPLAIN: the engine's answers about itself, as result entities."""

from __future__ import annotations

from typing import Any

from ksqlpy.errors import AnalysisError
from ksqlpy.parser import ast
from ksqlpy.planner.catalog import ColumnNamespace, Source
from ksqlpy.runtime import results as r
from ksqlpy.runtime.config import shown_value
from ksqlpy.runtime.query import QueryState

_STATE = {
    QueryState.RUNNING: r.QueryState.RUNNING,
    QueryState.CREATED: r.QueryState.RUNNING,
    QueryState.PAUSED: r.QueryState.PAUSED,
    QueryState.ERROR: r.QueryState.ERROR,
    QueryState.TERMINATED: r.QueryState.ERROR,
}


def describe(session: Any, stmt: Any) -> r.Entity:
    engine = session.engine
    match stmt:
        case ast.Show(what=what, extended=extended):
            return _show(session, stmt, what, extended)
        case ast.DescribeSource(name=None, all_of=kind, extended=extended):
            descs = tuple(
                source_description(engine, s, stmt.text, extended) for s in engine.catalog if s.kind is kind
            )
            return r.SourceDescriptionList(statement_text=stmt.text, descriptions=descs)
        case ast.DescribeSource(name=name, extended=extended):
            source = engine.catalog.find(name)
            if source is None:
                raise AnalysisError(f"Could not find STREAM/TABLE '{name}' in the Metastore", pos=stmt.pos)
            return source_description(engine, source, stmt.text, extended)
        case ast.DescribeFunction(name=name):
            return function_description(stmt.text, name)
        case ast.Explain(query_id=qid) if qid is not None:
            match = next((q for k, q in engine.queries.items() if k.upper() == qid.upper()), None)
            if match is None:
                raise AnalysisError(f"Query with id:{qid} does not exist, use SHOW QUERIES to view the full set of queries.")
            return query_description(engine, match, stmt.text)
        case ast.Explain(statement=ast.QueryStatement(query=q) as pull) if q.refinement is None:
            from ksqlpy.runtime.pull import explain_pull

            return explain_pull(session, pull, stmt.text)
        case ast.Explain(statement=inner) if inner is not None:
            return explain_statement(session, inner, stmt.text)
    raise AnalysisError(f"Unsupported statement: {stmt.text}")


def _show(session: Any, stmt: Any, what: ast.ShowKind, extended: bool) -> r.Entity:
    engine = session.engine
    text = stmt.text
    match what:
        case ast.ShowKind.STREAMS | ast.ShowKind.TABLES:
            kind = ast.SourceKind.STREAM if what is ast.ShowKind.STREAMS else ast.SourceKind.TABLE
            sources = [s for s in engine.catalog if s.kind is kind]
            if extended:
                return r.SourceDescriptionList(
                    statement_text=text, descriptions=tuple(source_description(engine, s, text, True) for s in sources)
                )
            return r.SourceList(statement_text=text, kind=kind, sources=tuple(source_info(s) for s in sources))
        case ast.ShowKind.QUERIES:
            if extended:
                return r.QueryDescriptionList(
                    statement_text=text,
                    descriptions=tuple(query_description(engine, q, text) for q in engine.queries.values()),
                )
            return r.QueryList(statement_text=text, queries=tuple(running_queries(engine)))
        case ast.ShowKind.TOPICS | ast.ShowKind.ALL_TOPICS:
            specs = engine.store.list_topics()
            if what is ast.ShowKind.TOPICS:
                specs = [s for s in specs if not s.name.startswith("_")]
            topics = tuple(r.TopicInfo(name=s.name, replica_info=(s.replicas,) * s.partitions) for s in specs)
            return r.TopicList(statement_text=text, topics=topics, extended=extended)
        case ast.ShowKind.PROPERTIES:
            merged = session.config
            props = tuple(
                r.PropertyInfo(
                    name=k, value=shown_value(k, v), scope="KSQL" if not k.startswith("ksql.streams.") else "STREAMS"
                )
                for k, v in sorted(merged.items())
            )
            return r.PropertyList(
                statement_text=text,
                properties=props,
                overwritten=tuple(sorted(session.properties)),
            )
        case ast.ShowKind.FUNCTIONS:
            return function_list(text)
        case ast.ShowKind.TYPES:
            return r.TypeList(statement_text=text, types=dict(engine.catalog.types))
        case ast.ShowKind.VARIABLES:
            return r.VariableList(statement_text=text, variables=dict(session.variables))
        case ast.ShowKind.CONNECTORS:
            return r.ConnectorList(statement_text=text)
    raise AnalysisError(f"Unsupported statement: {text}")


def source_info(s: Source) -> r.SourceInfo:
    return r.SourceInfo(
        name=s.name, topic=s.topic, key_format=s.key_format.format, value_format=s.value_format.format,
        is_windowed=s.window is not None,
    )


def fields_of(s: Source) -> tuple[r.FieldInfo, ...]:
    out = []
    for c in s.columns:
        kind = None
        if c.namespace is ColumnNamespace.KEY:
            kind = r.FieldKind.KEY  # ksqlDB marks table primary keys "KEY" too
        elif c.namespace is ColumnNamespace.HEADERS:
            kind = r.FieldKind.HEADER
        out.append(r.FieldInfo(name=c.name, type=c.type, kind=kind, header_key=c.header_key))
    return tuple(out)


def running_queries(engine: Any) -> list[r.RunningQuery]:
    out = []
    for q in engine.queries.values():
        sink = q.plan.sink
        state = _STATE[q.state]
        out.append(
            r.RunningQuery(
                id=q.query_id,
                query_string=q.plan.statement,
                sinks=(sink.name,) if sink else (),
                sink_topics=(sink.topic,) if sink else (),
                query_type=r.QueryType.PERSISTENT,
                state=state,
                status_count={state: 1},
            )
        )
    for qid, sq in engine.transient.items():
        out.append(
            r.RunningQuery(
                id=qid, query_string=getattr(sq, "statement", ""), query_type=r.QueryType.PUSH,
                state=r.QueryState.RUNNING, status_count={r.QueryState.RUNNING: 1},
            )
        )
    return out


def source_description(engine: Any, s: Source, text: str, extended: bool) -> r.SourceDescription:
    readers = tuple(q for q in running_queries(engine) if _query(engine, q.id) and _query(engine, q.id).plan.source.name == s.name)
    writers = tuple(q for q in running_queries(engine) if s.name in q.sinks)
    spec = engine.store.describe_topic(s.topic)
    stats = ""
    if extended:
        consumed = sum(engine.queries[q.id].records_in for q in readers if q.id in engine.queries)
        stats = f"consumer-messages-per-sec: 0 consumer-total-messages: {consumed}" if consumed else ""
        late = sum(engine.queries[q.id].late_records for q in writers if q.id in engine.queries)
        if late:
            # Kafka Streams counts these as its dropped-records metric.
            stats = " ".join(part for part in (stats, f"late-records-dropped: {late}") if part)
        if s.is_table:
            from ksqlpy.runtime.materialize import describe_materialization

            stats = " ".join(part for part in (stats, describe_materialization(engine, s)) if part)
    return r.SourceDescription(
        statement_text=text,
        name=s.name,
        kind=s.kind,
        fields=fields_of(s),
        topic=s.topic,
        key_format=s.key_format.format,
        value_format=s.value_format.format,
        read_queries=readers,
        write_queries=writers,
        window_type=s.window.type.value if s.window else None,
        timestamp=s.timestamp_column or "",
        statistics=stats,
        extended=extended,
        partitions=spec.partitions if spec else s.partitions,
        replication=spec.replicas if spec else s.replicas,
        statement=s.statement,
    )


def _query(engine: Any, qid: str) -> Any:
    return engine.queries.get(qid)


def _aggregate_lines(step: Any) -> list[str]:
    """The GROUP BY part of a query's plan (nothing for a stateless step)."""
    from ksqlpy.planner.physical import AggregateStep

    if not isinstance(step, AggregateStep):
        return []
    keys = ", ".join(k.sql for k in step.group_keys)
    calls = ", ".join(f"{c.text} AS {c.name}" for c in step.calls)
    w = step.window
    window = ""
    if w is not None:
        bounds = f"GAP {w.gap_ms} ms" if w.is_session else f"SIZE {w.size_ms} ms, ADVANCE {w.advance_ms} ms"
        from ksqlpy.planner.aggregate import window_retention_ms

        retention = window_retention_ms(w)
        window = f" | WINDOW {w.type} ({bounds}, GRACE {w.grace_ms} ms, RETENTION {retention} ms)"
    lines = []
    if step.having_sql:
        lines.append(f" > [ HAVING ] | {step.having_sql}")
    emit = "FINAL" if step.emit_final else "CHANGES"
    lines.append(f" > [ AGGREGATE ] | GROUP BY {keys} | {calls}{window} | EMIT {emit}")
    return lines


def query_description(engine: Any, q: Any, text: str, ksql_plan: Any = None) -> r.QueryDescription:
    """A query described: its execution plan is the summary of the very step tree it runs
    (ksqlDB's format), followed by how ksqlpy runs it (state, materialization)."""
    plan = q.plan
    sink = plan.sink
    fields = tuple(
        r.FieldInfo(name=c.name, type=c.type, kind=r.FieldKind.KEY if c.is_key else None) for c in plan.step.columns
    )
    step = plan.step
    ksql_plan = ksql_plan if ksql_plan is not None else engine.ksql_plans.get(q.query_id)
    sources: tuple[str, ...] = (plan.source.name,)
    if ksql_plan is not None and ksql_plan.query_plan is not None:
        from ksqlpy.planner.steps.render import summarize

        sources = tuple(ksql_plan.query_plan.sources)
        lines = summarize(ksql_plan.query_plan.physical_plan, q.query_id, engine.catalog.types).rstrip("\n").split("\n")
    else:  # a push query runs the analyzer's fused step directly
        lines = [
            f" > [ PROJECT ] | {', '.join(f'{c.sql} AS {c.name}' for c in step.columns)}",
        ]
        if step.where_sql:
            lines.append(f"\t\t > [ FILTER ] | {step.where_sql}")
        lines.append(f"\t\t\t\t > [ SOURCE ] | {plan.source.name} (topic: {plan.source.topic})")
    lines += _aggregate_lines(step)
    materializer = engine.materializers.get(sink.name) if sink is not None else None
    if materializer is not None:
        lines.append(f" > [ MATERIALIZE ] | {materializer.layout.ref} from topic {sink.topic}: pull queries read it")
    return r.QueryDescription(
        statement_text=text,
        id=q.query_id,
        query_string=plan.statement,
        fields=fields,
        sources=sources,
        sinks=(sink.name,) if sink else (),
        sink_topics=(sink.topic,) if sink else (),
        topology=_topology(engine, plan),
        execution_plan="\n".join(lines),
        state=_STATE[q.state],
        query_errors=tuple(q.errors),
        consumer_group_id=engine.query_group(q.query_id),
    )


def _topology(engine: Any, plan: Any) -> str:
    """How a query's micro-batches run, and where a stateful one keeps its state."""
    from ksqlpy.planner.physical import AggregateStep

    if not isinstance(plan.step, AggregateStep):
        return "Micro-batch pipeline: poll -> decode (Arrow) -> DuckDB select -> encode -> produce + commit"
    from ksqlpy.runtime.group_by import uses_repartition_topic

    stages = "poll -> decode (Arrow) -> aggregate (DuckDB window functions over the batch and state) -> encode"
    spec = plan.step.repartition
    if spec is not None and uses_repartition_topic(plan.step, engine.store):
        # a GROUP BY that re-keys goes through its repartition topic (ksqlpy.runtime.group_by)
        topic = f"{engine.query_group(plan.query_id)}-{spec.topic}"
        grouped = f"poll -> decode (Arrow) -> group -> produce to {topic}; poll {topic} -> "
        stages = grouped + stages.removeprefix("poll -> ")
    state = f'state in agg."{plan.query_id}"'
    if engine.store.changelogged:
        state += ", logged to changelog topics"
    return f"Micro-batch pipeline: {stages} -> produce + commit with the state changes ({state})"


def explain_statement(session: Any, stmt: Any, text: str) -> r.QueryDescription:
    """EXPLAIN <statement>: plan the query as the statement would, without running it, and
    describe the plan (the query id is the one the statement would get)."""
    from types import SimpleNamespace

    from ksqlpy.planner.physical import QueryPlan
    from ksqlpy.planner.plans import fit_to_sink, insert_target, plan_create_as_select, plan_insert_into
    from ksqlpy.planner.plans.queries import analyze

    engine = session.engine
    number = getattr(engine, "_query_counter", 0)
    ctx = session._plan_context()
    ksql_plan = None
    sink: Source | None
    match stmt:
        case ast.CreateAsSelect(name=name, kind=kind):
            prefix = "CSAS" if kind is ast.SourceKind.STREAM else "CTAS"
            query_id = f"{prefix}_{name}_{number}"
            planned = plan_create_as_select(stmt, ctx, query_id)
            source, step, sink, ksql_plan = planned.source, planned.step, planned.sink, planned.plan
        case ast.InsertInto():
            query_id = f"INSERTQUERY_{number}"
            target = insert_target(stmt, engine.catalog)
            planned = plan_insert_into(fit_to_sink(stmt, target, ctx), target, ctx, query_id)
            source, step, sink, ksql_plan = planned.source, planned.step, planned.sink, planned.plan
        case ast.QueryStatement(query=query):
            source, step, _ = analyze(query, ctx, sink_name=None, persistent=False)
            sink = None
            query_id = f"transient_{source.name}_{number}"
        case _:
            raise AnalysisError(f"EXPLAIN is not supported for: {stmt.text}", pos=stmt.pos)
    plan = QueryPlan(query_id=query_id, step=step, sink=sink, statement=stmt.text)
    described = SimpleNamespace(plan=plan, query_id=query_id, state=QueryState.CREATED, errors=())
    description = query_description(engine, described, text, ksql_plan)
    if sink is None:
        from dataclasses import replace

        description = replace(description, query_type=r.QueryType.PUSH)
    return description


def function_list(text: str) -> r.FunctionList:
    from ksqlpy.planner.functions import REGISTRY

    infos = []
    for f in REGISTRY.functions():
        infos.append(
            r.FunctionNameInfo(
                name=f.name.upper(),
                type=r.FunctionType(f.kind.value),
                category=str(getattr(f.category, "value", f.category)),
            )
        )
    return r.FunctionList(statement_text=text, functions=tuple(sorted(infos, key=lambda i: i.name)))


def function_description(text: str, name: str) -> r.FunctionDescription:
    from ksqlpy.planner.functions import REGISTRY

    f = REGISTRY.get(name)
    if f is None:
        raise AnalysisError(f"Can't find any functions with the name '{name}'")
    variants = tuple(
        r.FunctionVariant(
            arguments=tuple(
                r.FunctionArgument(name=p.name, type=str(p.type), is_variadic=p.variadic) for p in v.params
            ),
            return_type=v.returns_text,
            description=getattr(v, "description", "") or "",
        )
        for v in f.variants
    )
    return r.FunctionDescription(
        statement_text=text,
        name=f.name.upper(),
        type=r.FunctionType(f.kind.value),
        variants=variants,
        description=f.description,
    )
