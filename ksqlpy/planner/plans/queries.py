"""The planner of persistent queries: a CSAS, CTAS or INSERT INTO becomes a ksqlDB plan.

``plan_query`` analyzes the statement (the analyzer checks it and names its columns, with
ksqlDB's errors), decides the sink, and builds the tree of execution steps ksqlDB would build:
``KsqlTopic/Source`` → ``WhereFilter`` → ``FlatMap`` → ``PartitionBy`` → ``Project`` → sink for
a stateless query, ``Aggregate/Prepare`` → ``Aggregate/GroupBy`` → ``Aggregate/Aggregate`` →
``Aggregate/HavingFilter`` → ``Aggregate/Project`` for an aggregation. The result is pure data:
the command log stores it and the runtime runs it; nothing here touches topics or state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal as PyDecimal
from typing import Any

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError, NodeLocationError, Position
from ksqlpy.parser import ast
from ksqlpy.planner import ddl
from ksqlpy.planner.aggregate import aggregate_window_info, analyze_aggregate, is_aggregate_query
from ksqlpy.planner.catalog import Catalog, Column, ColumnNamespace, Source
from ksqlpy.planner.physical import AggregateStep, SelectStep
from ksqlpy.planner.plans import expressions as ex
from ksqlpy.planner.plans.join_checks import check_join_formats, check_partitions, key_missing_error
from ksqlpy.planner.plans.joins import PlannedJoin, plan_join
from ksqlpy.planner.plans.sources import internal_formats, sink_step, source_step
from ksqlpy.planner.properties import WithClause
from ksqlpy.planner.select import KeyMissingError, analyze_select, uses_table_function, with_sink_timestamp
from ksqlpy.planner.steps import steps as s
from ksqlpy.planner.steps.catalog import command_of
from ksqlpy.planner.steps.commands import KsqlPlan, QueryPlan


@dataclass(frozen=True, slots=True)
class TopicShape:
    partitions: int
    replicas: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanContext:
    """What planning reads: the catalog, the effective configuration and the shape of
    existing topics (a sink inherits its source topic's partitions)."""

    catalog: Catalog
    config: Mapping[str, Any]
    topic: Callable[[str], TopicShape | None] = lambda name: None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedQuery:
    """A persistent query's plan with what the analyzer learned on the way: the sink as the
    catalog will hold it, the source, and the analyzer's fused operator for the same query."""

    plan: KsqlPlan
    sink: Source
    source: Source
    step: SelectStep | AggregateStep


@dataclass(frozen=True, slots=True, kw_only=True)
class Analyzed:
    """A query analyzed: its (single or joined) source, the analyzer's step, whether the
    result is a table, the query as planned (over a join's result) and the join, if any."""

    source: Source
    step: SelectStep | AggregateStep
    is_table: bool
    query: ast.Query
    join: PlannedJoin | None = None

    @property
    def source_names(self) -> tuple[str, ...]:
        if self.join is None:
            return (self.source.name,)
        return tuple(x.source.name for x in self.join.sides)


def analyze_query(
    query: ast.Query, ctx: PlanContext, *, sink_name: str | None, persistent: bool, kind: ast.SourceKind | None = None
) -> Analyzed:
    check_qualifiers(query)
    join = None
    catalog = ctx.catalog
    if isinstance(query.from_, ast.Join):
        join = plan_join(query, catalog, ctx.config, persistent=persistent)
        catalog = Catalog(sources={**catalog.sources, join.source.name: join.source}, types=catalog.types)
        query = join.query
        ctx = replace(ctx, catalog=catalog)
    try:
        source, step, is_table = analyze(query, ctx, sink_name=sink_name, persistent=persistent, kind=kind)
    except KeyMissingError as e:
        # ksqlDB's analyzer finishes (its format checks) before the planner looks for the key
        _check_windowed_tables(analyzed_sources(query, ctx.catalog, join), persistent)
        if join is None:
            raise
        check_join_formats(join)
        raise key_missing_error(join, sink_name, e.columns) from None
    _check_windowed_tables(analyzed_sources(query, ctx.catalog, join), persistent)
    if join is not None:
        check_join_formats(join)
        if persistent:
            check_partitions(join, lambda source: _partitions(source, ctx))
            for key in join.source.key_columns:
                ddl.check_key_type(key)  # ksqlDB's key serde for the join's repartition topics
        is_table = is_table or join.source.is_table
    return Analyzed(source=source, step=step, is_table=is_table, query=query, join=join)


def _partitions(source: Source, ctx: PlanContext) -> int:
    shape = ctx.topic(source.topic)
    return shape.partitions if shape is not None else source.partitions


def analyzed_sources(query: ast.Query, catalog: Catalog, join: PlannedJoin | None) -> tuple[Source, ...]:
    """The sources a query reads, as the catalog holds them."""
    if join is not None:
        return tuple(x.source for x in join.sides)
    assert isinstance(query.from_, ast.Table)
    return (catalog.source(query.from_.name, query.from_.pos),)


def _check_windowed_tables(sources: tuple[Source, ...], persistent: bool) -> None:
    """ksqlDB's PushQueryValidator: a persistent query cannot read a windowed table."""
    if persistent and any(x.is_table and x.window is not None for x in sources):
        raise AnalysisError("KSQL does not support persistent queries on windowed tables.")


def check_qualifiers(query: ast.Query) -> None:
    """Every ``X.col`` and ``X.*`` names a source or alias of the FROM clause (ksqlDB's parser
    checks this before anything else)."""
    tables = [query.from_] if isinstance(query.from_, ast.Table) else [
        query.from_.left, *(r.source for r in query.from_.rights)
    ]
    known = {t.name for t in tables} | {t.alias for t in tables if t.alias is not None}
    clauses = (query.select, query.from_, query.where, query.group_by, query.partition_by, query.having)
    for node in ex.walk(clauses):
        qualifier = node.source if isinstance(node, (ast.ColumnRef, ast.AllColumns)) else None
        if isinstance(qualifier, str) and qualifier not in known:
            raise AnalysisError(
                f"Failed to prepare statement: '{qualifier}' is not a valid stream/table name or alias."
            )


def analyze(
    query: ast.Query, ctx: PlanContext, *, sink_name: str | None, persistent: bool, kind: ast.SourceKind | None = None
) -> tuple[Source, SelectStep | AggregateStep, bool]:
    """The source, the analyzer's step and whether the result is a table."""
    if not is_aggregate_query(query):
        # ksqlDB's newer planner lets a stream query drop its source's key (the sink is keyless)
        keyless_ok = str(ctx.config.get("ksql.new.query.planner.enabled", "false")).lower() == "true"
        source, step = analyze_select(
            query, ctx.catalog, sink_name=sink_name, persistent=persistent, keyless_ok=keyless_ok
        )
        return source, step, source.is_table
    statement_kind = "CREATE STREAM AS SELECT" if kind is ast.SourceKind.STREAM else "CREATE TABLE AS SELECT"
    source, agg = analyze_aggregate(
        query, ctx.catalog, sink_name=sink_name, persistent=persistent, statement_kind=statement_kind
    )
    cache = str(ctx.config.get("ksql.streams.cache.max.bytes.buffering", "10000000")).strip()
    return source, replace(agg, per_record=cache == "0"), True


def plan_create_as_select(stmt: ast.CreateAsSelect, ctx: PlanContext, query_id: str) -> PlannedQuery:
    try:
        analyzed = analyze_query(stmt.query, ctx, sink_name=stmt.name, persistent=True, kind=stmt.kind)
    except KeyMissingError as e:
        # ksqlDB checks the sink's TIMESTAMP column while building the output, before the key
        ts_col = WithClause.of(stmt.properties).string("TIMESTAMP")
        if ts_col is not None and ts_col.upper() not in e.columns:
            raise AnalysisError(
                f"The TIMESTAMP column set in the WITH clause does not exist in the schema: '{ts_col.upper()}'"
            ) from None
        raise
    source, step, is_table = analyzed.source, analyzed.step, analyzed.is_table
    result_kind = ast.SourceKind.TABLE if is_table else ast.SourceKind.STREAM
    if result_kind is not stmt.kind:
        other = "TABLE" if result_kind is ast.SourceKind.TABLE else "STREAM"
        raise AnalysisError(
            f"Invalid result type. Your SELECT query produces a {other}. "
            f"Please use CREATE {other} AS SELECT statement instead.",
            pos=stmt.pos,
        )
    sink = sink_for(stmt, source, step, ctx)
    if isinstance(step, SelectStep) and sink.timestamp_column is not None:
        step = with_sink_timestamp(step, sink)
    if isinstance(step, AggregateStep):
        window = aggregate_window_info(step)
        if window is not None:
            emit = "FINAL" if step.emit_final else "CHANGES"
            window = replace(window, emit_strategy=emit)
        sink = replace(sink, window=window)
    root = build_steps(analyzed.query, source, step, sink, ctx.config, analyzed.join)
    plan = KsqlPlan(
        statement_text=stmt.text,
        ddl_command=command_of(sink, or_replace=stmt.or_replace),
        query_plan=QueryPlan(sources=analyzed.source_names, sink=sink.name, physical_plan=root, query_id=query_id),
    )
    return PlannedQuery(plan=plan, sink=sink, source=source, step=step)


def insert_target(stmt: ast.InsertInto, catalog: Catalog) -> Source:
    """The stream ``INSERT INTO`` writes to; ksqlDB reports an unknown one at the column just
    after ``INSERT INTO`` (its statement's start plus that text's length), wherever the name is."""
    target = catalog.sources.get(stmt.target)
    if target is None:
        pos = None if stmt.pos is None else Position(stmt.pos.line, stmt.pos.column + len("INSERT INTO") + 1)
        raise NodeLocationError(f"Source `{stmt.target}` does not exist.", pos=pos)
    return target


def fit_to_sink(stmt: ast.InsertInto, target: Source, ctx: PlanContext) -> ast.InsertInto:
    """``stmt`` with ksqlDB's implicit casts into its existing sink's DECIMAL columns.

    A numeric literal projected into a DECIMAL column becomes that DECIMAL when its value fits
    (``INSERT INTO t SELECT 1 AS c ...`` into ``c DECIMAL(5,2)``), and any DECIMAL result widens to
    a sink DECIMAL with at least its scale and integer digits. Select items match the sink's
    columns by position, keys first, as ksqlDB's ``SelectionUtil`` pairs them. Everything else
    is left for the schema check to accept or reject.
    """
    sink_types = [c.type for c in (*target.key_columns, *target.value_columns)]
    items = list(stmt.query.select)
    for index, item in enumerate(items[: len(sink_types)]):
        if not isinstance(item, ast.SingleColumn):
            break  # a ``*`` expands to an unknown count: positions after it are not the sink's
        wanted = sink_types[index]
        literal = _literal_decimal(item.expr)
        if (
            isinstance(wanted, sqltypes.Decimal)
            and literal is not None
            and sqltypes.can_implicitly_cast(literal, wanted)
        ):
            items[index] = replace(item, expr=_cast(item.expr, wanted))
    query = replace(stmt.query, select=tuple(items))
    analyzed = analyze_query(query, ctx, sink_name=stmt.target, persistent=True)
    result = {c.name: c.type for c in analyzed.step.columns}
    sink = {c.name: c.type for c in (*target.key_columns, *target.value_columns)}
    for index, item in enumerate(items):
        name = _output_name(item)
        if name is None or name not in result or name not in sink:
            continue
        have, wanted = result[name], sink[name]
        if (
            isinstance(have, sqltypes.Decimal)
            and isinstance(wanted, sqltypes.Decimal)
            and have != wanted
            and sqltypes.can_implicitly_cast(have, wanted)
        ):
            assert isinstance(item, ast.SingleColumn)
            items[index] = replace(item, expr=_cast(item.expr, wanted), alias=name)
    return replace(stmt, query=replace(query, select=tuple(items)))


def _output_name(item: ast.SelectItem) -> str | None:
    """The column a select item names, where that is plain: its alias or a bare column's name."""
    if not isinstance(item, ast.SingleColumn):
        return None
    if item.alias is not None:
        return item.alias
    return item.expr.name if isinstance(item.expr, ast.ColumnRef) else None


def _literal_decimal(expr: ast.Expr) -> sqltypes.Decimal | None:
    """The DECIMAL type of a numeric literal's value (ksqlDB's ``DecimalUtil.fromValue``)."""
    match expr:
        case ast.IntegerLiteral(value=v):
            text = str(v)
        case ast.DecimalLiteral(text=t):
            text = t
        case ast.DoubleLiteral(value=v):
            text = repr(v)  # Java's BigDecimal.valueOf(double) reads Double.toString's digits
        case _:
            return None
    value = PyDecimal(text)
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # a literal is finite
    scale = max(-exponent, 0)
    integer_digits = max(len(digits) + exponent, 0) if value != 0 else 0
    precision = max(integer_digits + scale, 1)
    return sqltypes.Decimal(precision, scale) if precision <= 38 else None


def _cast(expr: ast.Expr, to: sqltypes.Decimal) -> ast.Cast:
    return ast.Cast(operand=expr, type=ast.DecimalType(precision=to.precision, scale=to.scale), pos=expr.pos)


def plan_insert_into(stmt: ast.InsertInto, target: Source, ctx: PlanContext, query_id: str) -> PlannedQuery:
    analyzed = analyze_query(stmt.query, ctx, sink_name=stmt.target, persistent=True)
    source, step = analyzed.source, analyzed.step
    root = build_steps(analyzed.query, source, step, target, ctx.config, analyzed.join)
    plan = KsqlPlan(
        statement_text=stmt.text,
        ddl_command=None,
        query_plan=QueryPlan(sources=analyzed.source_names, sink=target.name, physical_plan=root, query_id=query_id),
    )
    return PlannedQuery(plan=plan, sink=target, source=source, step=step)


def build_steps(
    query: ast.Query,
    source: Source,
    step: SelectStep | AggregateStep,
    sink: Source,
    config: Mapping[str, Any] | None = None,
    join: PlannedJoin | None = None,
) -> s.ExecutionStep:
    initial = join.step if join is not None else None
    if isinstance(step, AggregateStep):
        from ksqlpy.planner.plans.aggregation import aggregation_steps

        default = ast.ColumnRef(name=join.sides[0].prefixed("ROWTIME")) if join is not None else None
        if default is not None:
            return sink_step(sink, aggregation_steps(query, source, step, config, initial, default))
        return sink_step(sink, aggregation_steps(query, source, step, config, initial))
    return sink_step(sink, stateless_steps(query, source, step, initial))


# ------------------------------------------------------------------------------ stateless


def stateless_steps(
    query: ast.Query, source: Source, step: SelectStep, initial: s.ExecutionStep | None = None
) -> s.ExecutionStep:
    """Source (or join) → WhereFilter → FlatMap → PartitionBy → Project."""
    current: s.ExecutionStep = initial if initial is not None else source_step(source)
    if query.where is not None:
        cls = s.TableFilter if source.is_table else s.StreamFilter
        where = ex.with_time_literals(ex.unqualified(query.where))
        current = cls(context="WhereFilter", source=current, filter_expression=ex.text(where))
    columns = list(step.columns)
    if step.multiplies_rows:
        current, columns = _flat_map(current, columns)
    if query.partition_by and not _by_source_key(query.partition_by, source):
        current = s.StreamSelectKey(
            context="PartitionBy",
            source=current,
            key_expressions=tuple(ex.text(ex.unqualified(e)) for e in query.partition_by),
        )
    keys = tuple(c.name for c in key_order(columns, source, query))
    values = tuple(ex.select_text(ex.unqualified(_expr(c)), c.name) for c in columns if not c.is_key)
    if source.is_table:
        return s.TableSelect(
            context="Project",
            source=current,
            key_column_names=keys,
            select_expressions=values,
            internal_formats=internal_formats(source),
        )
    return s.StreamSelect(
        context="Project", source=current, key_column_names=keys, selected_keys=None, select_expressions=values
    )


def key_order(columns: Any, source: Source, query: ast.Query) -> list[Any]:
    """The key columns in the order of what they rename: a projection renames the input's key
    columns, so its keys follow the input's key order (PARTITION BY: the new keys' order)."""
    keys = [c for c in columns if c.is_key]
    if query.partition_by and not _by_source_key(query.partition_by, source):
        return keys
    order = {c.name: i for i, c in enumerate(source.key_columns)}

    def position(c: Any) -> int:
        e = c.expr
        return order.get(e.name, len(order)) if isinstance(e, ast.ColumnRef) else len(order)

    return sorted(keys, key=position)


def _expr(c: Any) -> ast.Expr:
    if c.expr is None:
        return ast.ColumnRef(name=c.name)
    return c.expr  # type: ignore[no-any-return]


def _by_source_key(exprs: tuple[ast.Expr, ...], source: Source) -> bool:
    """PARTITION BY exactly the source's key columns, in order: no re-keying is needed."""
    keys = [c.name for c in source.key_columns]
    return len(exprs) == len(keys) and all(
        isinstance(e, ast.ColumnRef) and e.name == k for e, k in zip(exprs, keys, strict=True)
    )


def _flat_map(current: s.ExecutionStep, columns: list[Any]) -> tuple[s.ExecutionStep, list[Any]]:
    """Table function calls move into a FlatMap step; the projection reads their results as
    ``KSQL_SYNTH_<i>``."""
    calls: list[ast.FunctionCall] = []

    def extract(node: Any) -> Any | None:
        if isinstance(node, ast.FunctionCall) and uses_table_function(node) and _is_table_function(node):
            calls.append(node)
            return ast.ColumnRef(name=f"KSQL_SYNTH_{len(calls) - 1}")
        return None

    rewritten = [replace(c, expr=ex.rewrite(_expr(c), extract)) for c in columns]
    step = s.StreamFlatMap(
        context="FlatMap", source=current, table_functions=tuple(ex.text(ex.unqualified(c)) for c in calls)
    )
    return step, rewritten


def _is_table_function(node: ast.FunctionCall) -> bool:
    from ksqlpy.planner.functions import REGISTRY

    return REGISTRY.is_table_function(node.name)


# ------------------------------------------------------------------------------ the sink


def sink_for(stmt: ast.CreateAsSelect, source: Source, step: Any, ctx: PlanContext) -> Source:
    """The stream or table a C*AS creates: formats inherited from the source unless the WITH
    clause sets them, the source topic's partitions, the TIMESTAMP column checked."""
    props = WithClause.of(stmt.properties)
    config = ctx.config
    key_fmt, value_fmt = ddl.formats_from(props, config, inherit=(source.key_format, source.value_format))
    if stmt.query.partition_by or stmt.query.group_by:
        # the key is chosen anew: a keyless (NONE) source's format gives way to the default
        from ksqlpy.planner.partition import sink_key_format

        key_fmt = sink_key_format(
            key_fmt,
            any(c.is_key for c in step.columns),
            explicit=props.string("KEY_FORMAT") is not None or props.string("FORMAT") is not None,
            default_format=str(config.get("ksql.persistence.default.format.key", "KAFKA")),
        )
    prefix = config.get("ksql.output.topic.name.prefix", "") or ""
    topic = props.string("KAFKA_TOPIC") or prefix + stmt.name
    # a schema lists its key columns first (in the order of the keys they rename)
    keyed = [c for c in step.columns if c.is_key]
    new_planner = str(config.get("ksql.new.query.planner.enabled", "false")).lower() == "true"
    if isinstance(step, SelectStep) and not new_planner:  # ksqlDB's newer planner keeps projection order
        keyed = key_order(step.columns, source, stmt.query)
    ordered = keyed + [c for c in step.columns if not c.is_key]
    columns = tuple(
        Column(name=c.name, type=c.type, namespace=ColumnNamespace.KEY if c.is_key else ColumnNamespace.VALUE)
        for c in ordered
    )
    for c in columns:
        if c.is_key:
            ddl.check_key_type(c)
    ts_col = props.string("TIMESTAMP")
    if ts_col is not None:
        ts_col = ts_col.upper()
        col = next((c for c in columns if c.name == ts_col), None)
        if col is None:
            raise AnalysisError(
                f"The TIMESTAMP column set in the WITH clause does not exist in the schema: '{ts_col}'"
            )
        ddl.check_timestamp_column(col, props.string("TIMESTAMP_FORMAT"))
    shape = ctx.topic(source.topic)
    partitions = props.integer("PARTITIONS") or (shape.partitions if shape else source.partitions)
    replicas = props.integer("REPLICAS") or (shape.replicas if shape else 1)
    return Source(
        name=stmt.name,
        kind=stmt.kind,
        topic=topic,
        columns=columns,
        key_format=key_fmt,
        value_format=value_fmt,
        timestamp_column=ts_col,
        timestamp_format=props.string("TIMESTAMP_FORMAT"),
        window=source.window,
        statement=stmt.text,
        partitions=partitions,
        replicas=replicas,
    )
