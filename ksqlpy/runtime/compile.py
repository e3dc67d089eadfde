"""Compiling a query's execution steps (ksqlDB's plan format) into the runtime's fused operators.

A stored plan is a tree of small steps (source, filter, select, PARTITION BY, GROUP BY,
aggregate...). The runtime does not run them one by one: a chain of stateless steps becomes one
:class:`~ksqlpy.planner.physical.SelectStep` (a single DuckDB query over the decoded batch
``input``), and an aggregation chain one :class:`~ksqlpy.planner.physical.AggregateStep`.

Fusion works by inlining. Every step's output columns are known (``resolve_all`` gives each
step's :class:`LogicalSchema`); here each output column also carries the sqlglot expression that
computes it from ``input``. A step's expressions are compiled in a scope over its *input*
schema whose columns are those expressions, so ``(A + 1) AS B`` followed by ``B * 2 AS C``
compiles to ``(("A" + 1) * 2)`` and the whole chain stays one query.

A join's subtree is lowered by :mod:`ksqlpy.runtime.join.compile`; the steps above it fuse over
the join's output as they fuse over a source. Plans this cannot run (unknown shapes) raise :class:`PlanError` naming the step type and
its query context: nothing is silently dropped.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import sqlglot
from sqlglot import exp

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError, PlanError
from ksqlpy.parser import ast
from ksqlpy.parser.tree import rewrite as _rewrite
from ksqlpy.planner import physical
from ksqlpy.planner.aggregate import DEFAULT_GRACE_MS
from ksqlpy.planner.catalog import Catalog, FormatInfo, Source
from ksqlpy.planner.expressions import compile_expression
from ksqlpy.planner.expressions.scope import duckdb_column
from ksqlpy.planner.select import with_sink_timestamp
from ksqlpy.planner.steps import commands as cmd
from ksqlpy.planner.steps import steps as s
from ksqlpy.planner.steps.catalog import catalog_format, source_of
from ksqlpy.planner.steps.formats import WindowExpression
from ksqlpy.planner.steps.schema import (
    LogicalSchema,
    parse_expression,
    quote_name,
    resolve_all,
    split_select,
)
from ksqlpy.runtime.fused import FusedColumns
from ksqlpy.runtime.serde.format import NAMED_DELIMITERS

#: the property saying whether aggregations emit per record (``0``) or per batch
CACHE_PROPERTY = "ksql.streams.cache.max.bytes.buffering"


_Columns = FusedColumns  # the shape the compiler and the join compiler share


def compile_query(
    query_plan: cmd.QueryPlan,
    catalog_or_sources: Catalog | Mapping[str, Source],
    sink: Source,
    config: Mapping[str, Any],
    *,
    statement: str = "",
) -> physical.QueryPlan:
    """Lower ``query_plan``'s step tree into one fused operator writing to ``sink``."""
    if isinstance(catalog_or_sources, Catalog):
        sources: Mapping[str, Source] = catalog_or_sources.sources
        types: Mapping[str, sqltypes.SqlType] = catalog_or_sources.types
    else:
        sources, types = catalog_or_sources, {}
    compiler = _Compiler(query_plan, sources, types, config)
    step = compiler.compile(query_plan.physical_plan, sink)
    throw = str(config.get("ksql.timestamp.throw.on.invalid") or "false").strip().lower() == "true"
    return physical.QueryPlan(
        query_id=query_plan.query_id,
        step=step,
        sink=sink,
        statement=statement,
        join=compiler.join,
        throw_on_invalid_timestamp=throw,
    )


def compile_join_tree(
    step: s.JoinStep,
    catalog: Catalog,
    output: Source,
    config: Mapping[str, Any],
    *,
    sources: tuple[str, ...],
) -> Any:
    """The runtime's join tree (a :class:`~ksqlpy.runtime.join.plan.JoinNode`) for a join step
    alone, its result described by ``output``: a push query runs the join and then its own
    analyzed step over the join's result, with no sink."""
    from ksqlpy.runtime.join.compile import compile_join

    query_plan = cmd.QueryPlan(sources=sources, sink=None, physical_plan=step, query_id="")
    compiler = _Compiler(query_plan, catalog.sources, catalog.types, config)
    compiler.schemas = resolve_all(step, catalog.types)
    node, _ = compile_join(compiler, step, output)
    return node


def source_from_command(
    command: cmd.CreateSourceCommand, types: Mapping[str, sqltypes.SqlType] | None = None, **options: Any
) -> Source:
    """The catalog's view of a DDL command (see ``steps.catalog.source_of``), with the named
    delimiters plans keep as ksqlDB writes them (``SPACE``, ``TAB``) as the characters they name."""
    source = source_of(command, types, **options)
    return replace(
        source,
        key_format=_named_delimiter(source.key_format),
        value_format=_named_delimiter(source.value_format),
    )


def _named_delimiter(fmt: FormatInfo) -> FormatInfo:
    delimiter = fmt.properties.get("delimiter")
    if delimiter is None or delimiter.upper() not in NAMED_DELIMITERS:
        return fmt
    return replace(fmt, properties={**fmt.properties, "delimiter": NAMED_DELIMITERS[delimiter.upper()]})


def _unsupported(step: s.ExecutionStep, what: str) -> PlanError:
    return PlanError(f"{what}: {step.TYPE} at {step.context}")


def _sql(e: exp.Expression) -> str:
    return str(e.sql(dialect="duckdb"))


def _and(conditions: list[exp.Expression]) -> str | None:
    if not conditions:
        return None
    return " AND ".join(f"({_sql(c)})" for c in conditions) if len(conditions) > 1 else _sql(conditions[0])


class _Compiler:
    def __init__(
        self,
        query_plan: cmd.QueryPlan,
        sources: Mapping[str, Source],
        types: Mapping[str, sqltypes.SqlType],
        config: Mapping[str, Any],
    ) -> None:
        self.query_plan = query_plan
        self.sources = sources
        self.types = types
        self.config = config
        self.schemas: dict[int, LogicalSchema] = {}
        #: the join tree under the fused operator (see :mod:`ksqlpy.runtime.join`), if any
        self.join: Any = None

    # -------------------------------------------------------------------------- entry

    def compile(self, root: s.ExecutionStep, sink: Source) -> physical.SelectStep | physical.AggregateStep:
        if not isinstance(root, s.SinkStep):
            raise _unsupported(root, "A query plan must end in a sink")
        self.schemas = resolve_all(root, self.types)
        if root.timestamp_column is not None:
            sink = replace(
                sink,
                timestamp_column=root.timestamp_column.column,
                timestamp_format=root.timestamp_column.format,
            )
        chain = self._chain(root.source)
        base = None
        if isinstance(chain[0], s.JoinStep):
            from ksqlpy.runtime.join.compile import compile_join

            self.join, base = compile_join(self, chain[0], sink)
        if any(isinstance(st, s.AggregateStep) for st in chain):
            return self._aggregate(chain, sink, base)
        return self._select(chain, sink, base)

    @staticmethod
    def _chain(top: s.ExecutionStep) -> list[s.ExecutionStep]:
        """The steps from the source (or a join) up to ``top``, source first."""
        out: list[s.ExecutionStep] = []
        step: s.ExecutionStep = top
        while True:
            out.append(step)
            if isinstance(step, s.SourceStep | s.JoinStep):
                break
            if not isinstance(step, s.OneInput):
                raise _unsupported(step, "Steps of this type are not supported yet")
            step = step.source
        out.reverse()
        return out

    # -------------------------------------------------------------------------- sources

    def _source(self, step: s.SourceStep) -> tuple[Source, _Columns]:
        """The catalog's view of the topic the step reads, as the step describes it (its own
        schema and formats: the plan is the contract, whatever ALTER did since), and its
        output columns over ``input``."""
        command_type = (
            cmd.CreateTableCommand
            if isinstance(step, s.TableSource | s.TableSourceV1 | s.WindowedTableSource)
            else cmd.CreateStreamCommand
        )
        named = [self.sources[n] for n in self.query_plan.sources if n in self.sources]
        known = next((src for src in named if src.topic == step.topic_name), named[0] if named else None)
        window = getattr(step, "window_info", None)
        command = command_type(
            source_name=known.name if known is not None else step.topic_name,
            schema=step.source_schema,
            timestamp_column=step.timestamp_column,
            topic_name=step.topic_name,
            formats=step.formats,
            window_info=window,
        )
        source = source_from_command(
            command,
            self.types,
            statement=known.statement if known is not None else "",
            partitions=known.partitions if known is not None else 1,
            replicas=known.replicas if known is not None else 1,
        )
        if known is not None and known.window is not None and source.window is not None:
            source = replace(source, window=replace(source.window, retention_ms=known.window.retention_ms))
        schema = self.schemas[id(step)]
        keys = {c.name: duckdb_column(c.name) for c in schema.key}
        values = {c.name: duckdb_column(c.name) for c in schema.value}
        return source, _Columns(schema, keys, values)

    # -------------------------------------------------------------------------- expressions

    def _compile(self, text: str, columns: _Columns, step: s.ExecutionStep, clause: str | None = None) -> Any:
        try:
            return compile_expression(parse_expression(text), columns.scope(clause), custom_types=self.types)
        except AnalysisError as e:
            raise PlanError(f"Step '{step.context}' ({step.TYPE}) does not compile: {e.message}") from None

    def _stateless(
        self, step: s.ExecutionStep, columns: _Columns, where: list[exp.Expression], flags: dict[str, bool]
    ) -> _Columns:
        """One stateless step applied on top of ``columns``; filters add to ``where``."""
        schema = self.schemas[id(step)]
        match step:
            case s.FilterStep():
                if flags.get("flat_mapped"):
                    raise _unsupported(step, "A filter after a table function is not supported yet")
                compiled = self._compile(step.filter_expression, columns, step, "WHERE")
                where.append(compiled.sql)
                return columns
            case s.StreamSelect() | s.TableSelect():
                selected = getattr(step, "selected_keys", None)
                chosen = set(selected) if selected is not None else {c.name for c in columns.schema.key}
                source_keys = [c for c in columns.schema.key if c.name in chosen]
                keys = {
                    out.name: columns.keys[c.name] for out, c in zip(schema.key, source_keys, strict=True)
                }
                values: dict[str, exp.Expression] = {}
                for text in step.select_expressions:
                    expr, alias = split_select(text)
                    values[alias] = self._compile(expr, columns, step, "SELECT").sql
                return _Columns(schema, keys, values)
            case s.StreamSelectKeyV1() | s.StreamSelectKey() | s.TableSelectKey():
                if isinstance(step, s.TableSelectKey) and not isinstance(step.source, s.SourceStep):
                    raise _unsupported(step, "Re-keying a table here is not supported yet")
                if isinstance(step.source, s.TableSource | s.TableSourceV1) and not isinstance(
                    step, s.TableSelectKey
                ):
                    raise _unsupported(step, "PARTITION BY here is not supported yet")
                if flags.get("flat_mapped"):
                    raise _unsupported(step, "PARTITION BY here is not supported yet")
                flags["rekeyed"] = True
                compiled = [self._compile(e, columns, step, "PARTITION BY").sql for e in step.key_expressions]
                if isinstance(step, s.StreamSelectKeyV1):
                    return _Columns(schema, {"ROWKEY": compiled[0]}, columns.values)
                if not schema.key:  # PARTITION BY NULL
                    return _Columns(schema, {}, columns.values)
                keys = {c.name: sql for c, sql in zip(schema.key, compiled, strict=True)}
                values = dict(columns.values)
                for c in schema.value:
                    if c.name not in values:  # a new key's copy in the value
                        values[c.name] = keys[c.name]
                return _Columns(schema, keys, values)
            case s.StreamFlatMap():
                if flags.get("flat_mapped"):
                    raise _unsupported(step, "More than one table function step is not supported yet")
                flags["flat_mapped"] = True
                values = dict(columns.values)
                for i, call in enumerate(step.table_functions):
                    values[f"KSQL_SYNTH_{i}"] = self._compile(call, columns, step, "SELECT").sql
                return _Columns(schema, columns.keys, values)
        raise _unsupported(step, "Steps of this type are not supported here yet")

    # -------------------------------------------------------------------------- stateless chains

    def _head(
        self, chain: list[s.ExecutionStep], base: tuple[Source, _Columns] | None
    ) -> tuple[Source, _Columns]:
        """What a chain reads: its source step's topic, or (``base``) a join's output."""
        if base is not None:
            return base
        head = chain[0]
        assert isinstance(head, s.SourceStep)
        return self._source(head)

    def _select(
        self, chain: list[s.ExecutionStep], sink: Source | None, base: tuple[Source, _Columns] | None = None
    ) -> physical.SelectStep:
        source, columns = self._head(chain, base)
        where: list[exp.Expression] = []
        flags: dict[str, bool] = {}
        for step in chain[1:]:
            if source.is_table != isinstance(step, s.TableSelect | s.TableFilter | s.TableSelectKey):
                raise _unsupported(
                    step,
                    f"A {'table' if source.is_table else 'stream'} step of this type is not supported here",
                )
            columns = self._stateless(step, columns, where, flags)
        if sink is not None and not isinstance(chain[-1], s.StreamSelect | s.TableSelect):
            raise _unsupported(chain[-1], "A sink must read a projection")
        out = [
            physical.OutputColumn(name=c.name, type=c.type, sql=_sql(columns.keys[c.name]), is_key=True)
            for c in columns.schema.key
        ]
        out += [
            physical.OutputColumn(name=c.name, type=c.type, sql=_sql(columns.values[c.name]))
            for c in columns.schema.value
        ]
        kind = physical.StepKind.TABLE_SELECT if source.is_table else physical.StepKind.STREAM_SELECT
        # A persistent stream query forwards records without a value (see the evaluator).
        read = source if source.is_table else replace(source, null_values=True)
        fused = physical.SelectStep(
            kind=kind,
            source=read,
            where_sql=_and(where),
            # a join's side writes to no sink: its key is the join key, whatever its name
            columns=_named_as_sink(out, sink) if sink is not None else tuple(out),
            multiplies_rows=flags.get("flat_mapped", False),
            rekeyed=flags.get("rekeyed", False),
        )
        if sink is not None and sink.timestamp_column is not None:
            fused = with_sink_timestamp(fused, sink)
        return fused

    # -------------------------------------------------------------------------- aggregations

    def _aggregate(
        self, chain: list[s.ExecutionStep], sink: Source, base: tuple[Source, _Columns] | None = None
    ) -> physical.AggregateStep:
        at = next(i for i, st in enumerate(chain) if isinstance(st, s.AggregateStep))
        aggregate = chain[at]
        assert isinstance(aggregate, s.AggregateStep)
        group_by = chain[at - 1]
        if not isinstance(group_by, s.GroupByStep | s.StreamGroupByKey):
            raise _unsupported(aggregate, "An aggregation must read a GROUP BY")
        source, columns = self._head(chain, base)
        if isinstance(aggregate, s.StreamWindowedAggregate | s.StreamAggregate) == source.is_table:
            raise _unsupported(aggregate, "An aggregation of this type is not supported over this source")
        where: list[exp.Expression] = []
        flags: dict[str, bool] = {}
        for step in chain[1 : at - 1]:
            columns = self._stateless(step, columns, where, flags)
        if flags:
            raise _unsupported(
                group_by, "GROUP BY after PARTITION BY or a table function is not supported yet"
            )
        keys, grouped = self._group_keys(group_by, columns)
        calls = self._calls(aggregate, grouped)
        suppressed = any(isinstance(st, s.TableSuppress) for st in chain[at + 1 :])
        window = None
        if isinstance(aggregate, s.StreamWindowedAggregate):
            expression = aggregate.window_expression
            if suppressed and expression.emit_strategy is None:  # plans before emitStrategy was written
                expression = replace(expression, emit_strategy="FINAL")
            window = _window(expression)
        emit_final = (window is not None and suppressed) or (
            isinstance(aggregate, s.StreamWindowedAggregate)
            and (aggregate.window_expression.emit_strategy or "").upper() == "FINAL"
        )
        post = self._aggregated(aggregate, keys)
        substitute = self._substitution(group_by, columns, keys)
        having: list[str] = []
        projection: s.TableSelect | None = None
        for step in chain[at + 1 :]:
            match step:
                case s.TableFilter() if projection is None:
                    compiled = self._compile_post(step.filter_expression, post, substitute, step, "HAVING")
                    having.append(_sql(compiled.sql))
                case s.TableSelect() if projection is None:
                    projection = step
                case s.TableSuppress() if projection is not None:
                    pass  # EMIT FINAL, seen above
                case _:
                    raise _unsupported(step, "Steps of this type are not supported after an aggregation yet")
        if projection is None:
            raise _unsupported(aggregate, "An aggregation without a projection is not supported")
        schema = self.schemas[id(projection)]
        out = [
            physical.OutputColumn(name=c.name, type=c.type, sql=_sql(post.keys[k.name]), is_key=True)
            for c, k in zip(schema.key, post.schema.key, strict=True)
        ]
        for text, c in zip(projection.select_expressions, schema.value, strict=True):
            expr, _ = split_select(text)
            compiled = self._compile_post(expr, post, substitute, projection, "SELECT")
            out.append(physical.OutputColumn(name=c.name, type=c.type, sql=_sql(compiled.sql)))
        calls += self._carried(aggregate, grouped, post, [*having, *(c.sql for c in out)])
        cache = str(self.config.get(CACHE_PROPERTY, "10000000")).strip()
        return physical.AggregateStep(
            source=source,
            where_sql=_and(where),
            group_keys=keys,
            calls=calls,
            window=window,
            having_sql=" AND ".join(f"({h})" for h in having) if having else None,
            columns=_named_as_sink(out, sink),
            emit_final=emit_final,
            per_record=cache == "0",
            repartition=_group_by_topic(group_by, self.schemas[id(group_by)]),
        )

    def _group_keys(
        self, step: s.ExecutionStep, columns: _Columns
    ) -> tuple[tuple[physical.OutputColumn, ...], _Columns]:
        """The grouping values over ``input`` and the GROUP BY step's output columns."""
        schema = self.schemas[id(step)]
        if isinstance(step, s.StreamGroupByKey):
            sqls = [columns.keys[c.name] for c in columns.schema.key]
        else:
            assert isinstance(step, s.GroupByStep)
            sqls = [self._compile(e, columns, step, "GROUP BY").sql for e in step.group_by_expressions]
            if isinstance(step, s.StreamGroupByV1 | s.TableGroupByV1) and len(sqls) > 1:
                # ksqlDB before 0.15 grouped by several expressions into one STRING key: their
                # values as text, joined by '|+|' (a null as 'null', Java's String.valueOf)
                parts = [f"COALESCE(CAST({_sql(e)} AS VARCHAR), 'null')" for e in sqls]
                sqls = [
                    typing.cast(exp.Expression, sqlglot.parse_one(" || '|+|' || ".join(parts), read="duckdb"))
                ]
        if len(sqls) != len(schema.key):
            raise _unsupported(step, "GROUP BY keys do not match the step's schema")
        keys = tuple(
            physical.OutputColumn(name=physical.group_key_name(i), type=c.type, sql=_sql(sql), is_key=True)
            for i, (c, sql) in enumerate(zip(schema.key, sqls, strict=True))
        )
        grouped = _Columns(
            schema,
            {c.name: sql for c, sql in zip(schema.key, sqls, strict=True)},
            {c.name: columns.values[c.name] for c in schema.value if c.name in columns.values},
        )
        return keys, grouped

    def _calls(self, step: s.AggregateStep, grouped: _Columns) -> tuple[physical.AggregateCall, ...]:
        """The aggregate calls resolved as the analyzer resolves them (``COUNT(*)`` is written
        ``COUNT(ROWTIME)`` in plans)."""
        return tuple(
            self._call(step, text, grouped, f"KSQL_AGG_VARIABLE_{i}")
            for i, text in enumerate(step.aggregation_functions)
        )

    def _call(self, step: s.AggregateStep, text: str, grouped: _Columns, name: str) -> physical.AggregateCall:
        from ksqlpy.planner.functions import aggregates  # noqa: F401 - registers the aggregate library
        from ksqlpy.planner.functions.aggregate import NOT_CONSTANT, AggregateArg, resolve_aggregate

        call = parse_expression(text)
        if not isinstance(call, ast.FunctionCall):
            raise _unsupported(step, f"Not an aggregate call ({text})")
        args: list[AggregateArg] = []
        sqls: list[str] = []
        arg_types: list[sqltypes.SqlType] = []
        if call.star:
            args.append(AggregateArg(type=sqltypes.BIGINT, star=True))
            sqls.append('"ROWTIME"')
            arg_types.append(sqltypes.BIGINT)
        scope = grouped.scope("SELECT")
        try:
            for a in call.args:
                compiled = compile_expression(a, scope, custom_types=self.types)
                constant = compiled.value if compiled.is_constant else NOT_CONSTANT
                args.append(AggregateArg(type=compiled.type, constant=constant))
                sqls.append(_sql(compiled.sql))
                arg_types.append(compiled.type or sqltypes.STRING)
            # the query's properties set function limits (ksql.functions.collect_list.limit, ...)
            accumulator = resolve_aggregate(call.name, args, config=self.config)
        except AnalysisError as e:
            raise PlanError(f"Step '{step.context}' ({step.TYPE}) does not compile: {e.message}") from None
        present = [j < len(sqls) for j in accumulator.column_args]
        return physical.AggregateCall(
            name=name,
            text=text,
            args_sql=tuple(sqls[j] if ok else '"ROWTIME"' for j, ok in zip(accumulator.column_args, present)),
            arg_types=tuple(
                arg_types[j] if ok else sqltypes.BIGINT for j, ok in zip(accumulator.column_args, present)
            ),
            accumulator=accumulator,
        )

    def _carried(
        self, step: s.AggregateStep, grouped: _Columns, post: _Columns, sqls: list[str]
    ) -> tuple[physical.AggregateCall, ...]:
        """Calls keeping the carried (non-aggregate) columns that the output reads: each
        group's value from its latest record, nulls included, as ksqlDB's aggregator copies
        them. Only plans of ksqlDB before 0.15 read them (``KEY='foo'`` sources)."""
        calls = []
        for c in post.schema.value:
            column = f'"{_CARRIED_PREFIX}{c.name}"'
            carried = c.name in post.values and _sql(post.values[c.name]) == column
            if carried and any(column in sql for sql in sqls):
                text = f"LATEST_BY_OFFSET({quote_name(c.name)}, false)"
                calls.append(self._call(step, text, grouped, _CARRIED_PREFIX + c.name))
        return tuple(calls)

    def _aggregated(self, step: s.AggregateStep, keys: tuple[physical.OutputColumn, ...]) -> _Columns:
        """The aggregation's output columns over the aggregated relation: group keys as
        ``__K<i>``, the calls by name, the window bounds. A carried (non-aggregate) value column
        reads as a group key where it is one, else as its latest value (see :meth:`_carried`)."""
        schema = self.schemas[id(step)]
        key_sql = {c.name: duckdb_column(k.name) for c, k in zip(schema.key, keys, strict=True)}
        values: dict[str, exp.Expression] = {}
        for c in schema.value:
            if c.name.startswith("KSQL_AGG_VARIABLE_") or c.name in ("WINDOWSTART", "WINDOWEND"):
                values[c.name] = duckdb_column(c.name)
            elif c.name in key_sql:
                values[c.name] = key_sql[c.name]
            elif not isinstance(step, s.TableAggregate):  # a table's rows can be retracted
                values[c.name] = duckdb_column(_CARRIED_PREFIX + c.name)
        return _Columns(schema, key_sql, values)

    def _substitution(
        self, group_by: s.ExecutionStep, columns: _Columns, keys: tuple[physical.OutputColumn, ...]
    ) -> Callable[[ast.Expr], ast.Expr]:
        """Rewrites an expression after the aggregation so that each sub-expression equal to a
        GROUP BY expression (over the aggregation's input) reads that group key instead."""
        schema = self.schemas[id(group_by)]
        by_sql = {k.sql: c.name for k, c in zip(keys, schema.key, strict=True)}
        scope = columns.scope()

        def fn(node: Any) -> Any | None:
            if isinstance(node, _LITERALS) or not isinstance(node, _EXPRESSIONS):
                return None
            try:
                compiled = compile_expression(typing.cast(ast.Expr, node), scope, custom_types=self.types)
            except AnalysisError:
                return None
            name = by_sql.get(_sql(compiled.sql))
            return None if name is None else ast.ColumnRef(name=name, pos=getattr(node, "pos", None))

        return lambda e: _rewrite(e, fn)

    def _compile_post(
        self,
        text: str,
        post: _Columns,
        substitute: Callable[[ast.Expr], ast.Expr],
        step: s.ExecutionStep,
        clause: str,
    ) -> Any:
        expr = substitute(parse_expression(text))
        try:
            return compile_expression(expr, post.scope(clause), custom_types=self.types)
        except AnalysisError as e:
            raise PlanError(f"Step '{step.context}' ({step.TYPE}) does not compile: {e.message}") from None


#: the aggregated relation's columns holding carried (non-aggregate) values
_CARRIED_PREFIX = "__CARRIED_"

_LITERALS = (
    ast.NullLiteral,
    ast.BooleanLiteral,
    ast.IntegerLiteral,
    ast.DecimalLiteral,
    ast.DoubleLiteral,
    ast.StringLiteral,
)
_EXPRESSIONS: tuple[type, ...] = tuple(
    t for t in typing.get_args(ast.Expr) if t not in (ast.Lambda, ast.IntervalUnit)
)


def _group_by_topic(step: s.ExecutionStep, schema: LogicalSchema) -> physical.GroupByTopic | None:
    """The internal topic a GROUP BY that re-keys goes through, as Kafka Streams names it
    after the step's context (``Aggregate/GroupBy`` -> ``Aggregate-GroupBy-repartition``)."""
    if not isinstance(step, s.GroupByStep):
        return None  # GROUP BY the source's key: no repartition
    formats = step.internal_formats
    return physical.GroupByTopic(
        topic=f"{step.context.replace('/', '-')}-repartition",
        key_names=tuple(c.name for c in schema.key),
        key_format=catalog_format(formats.key_format, formats.key_features, key=True),
        value_format=catalog_format(formats.value_format, formats.value_features, key=False),
    )


def _named_as_sink(columns: list[physical.OutputColumn], sink: Source) -> tuple[physical.OutputColumn, ...]:
    """The output's key columns under the sink's names. Plans of ksqlDB before 0.15 did not
    name the result's key (``keyColumnNames``): the sink's DDL command did, and the records
    must match the sink's schema."""
    keys = [c for c in columns if c.is_key]
    names = [c.name for c in sink.key_columns]
    if len(keys) != len(names) or {c.name for c in keys} == set(names):
        # the same names, in whatever order (the new planner's sinks list keys as projected)
        return tuple(columns)
    renamed = iter(names)
    return tuple(replace(c, name=next(renamed)) if c.is_key else c for c in columns)


def _window(w: WindowExpression) -> physical.WindowSpec:
    """A window expression with Kafka Streams' defaults (see ``planner.aggregate.window_spec``)."""
    final = (w.emit_strategy or "").upper() == "FINAL"
    retention = w.retention.millis if w.retention is not None else None

    def grace(span: int) -> int:
        if w.grace_period is not None:
            return w.grace_period.millis
        return 0 if final else max(DEFAULT_GRACE_MS - span, 0)

    kind = w.window_type.upper()
    if kind == "SESSION" and w.gap is not None:
        return physical.WindowSpec(
            type=kind, gap_ms=w.gap.millis, grace_ms=grace(w.gap.millis), retention_ms=retention
        )
    if kind in ("TUMBLING", "HOPPING") and w.size is not None:
        size = w.size.millis
        advance = w.advance_by.millis if kind == "HOPPING" and w.advance_by is not None else size
        return physical.WindowSpec(
            type=kind, size_ms=size, advance_ms=advance, grace_ms=grace(size), retention_ms=retention
        )
    raise PlanError(f"Unsupported window: {w.window_type}")


__all__ = ["CACHE_PROPERTY", "compile_query", "source_from_command"]
