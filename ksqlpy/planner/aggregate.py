"""GROUP BY analysis: a query with aggregation becomes an :class:`AggregateStep`.

ksqlDB's model, which we follow: the input side (WHERE, the GROUP BY expressions, the aggregate
calls' arguments) is evaluated over the source's rows; the output side (the select list and
HAVING) sees only the grouping values, the aggregates' results and, for windowed aggregations,
WINDOWSTART/WINDOWEND. The analyzer rewrites the output side accordingly: every aggregate call
and every sub-expression equal to a GROUP BY expression becomes a reference to a column of the
aggregated relation; whatever still refers to a source column afterwards is an error
("Non-aggregate SELECT expression(s) not part of GROUP BY").

Expressions are matched by their compiled DuckDB SQL, so ``TEST.F1`` matches ``F1``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError, PlanError, Position
from ksqlpy.parser import ast
from ksqlpy.parser.tree import rewrite as _rewrite
from ksqlpy.parser.tree import walk as _walk
from ksqlpy.planner import scope as scopes
from ksqlpy.planner.catalog import (
    RESERVED_COLUMN_NAMES,
    WINDOW_BOUND_COLUMNS,
    Catalog,
    Source,
    WindowInfo,
    WindowType,
)
from ksqlpy.planner.expressions.scope import ColumnScope, ScopeColumn
from ksqlpy.planner.physical import AggregateCall, AggregateStep, OutputColumn, WindowSpec, group_key_name
from ksqlpy.planner.select import expand_select

#: Kafka Streams' default grace for windows declared without GRACE PERIOD: 24 hours less the
#: window size (``TimeWindows.of`` / ``SessionWindows.with``), never negative.
DEFAULT_GRACE_MS = 86_400_000
#: Kafka Streams' default retention of window stores.
DEFAULT_RETENTION_MS = 86_400_000

_WINDOW_BOUNDS_ERROR = (
    "Window bounds column {} can only be used in the SELECT clause of windowed aggregations"
)


def is_aggregate_function(name: str) -> bool:
    """Whether ``name`` is an aggregate function (the aggregate library's answer, else the
    function registry's)."""
    try:
        from ksqlpy.planner.functions.aggregate import is_aggregate

        return is_aggregate(name)
    except ImportError:
        from ksqlpy.planner.functions import REGISTRY

        return REGISTRY.is_aggregate(name)


def is_aggregate_query(query: ast.Query) -> bool:
    """Whether ``query`` aggregates: it has GROUP BY or calls an aggregate function in its
    select list or HAVING."""
    if query.group_by:
        return True
    exprs: list[Any] = [i.expr for i in query.select if isinstance(i, ast.SingleColumn)]
    if query.having is not None:
        exprs.append(query.having)
    return any(_aggregate_calls(e) for e in exprs)


# ---------------------------------------------------------------------------------------------
# Generic walks over the (frozen dataclass) expression tree


def _aggregate_calls(e: Any) -> list[ast.FunctionCall]:
    return [n for n in _walk(e) if isinstance(n, ast.FunctionCall) and is_aggregate_function(n.name)]


def _column_refs(e: Any, bound: frozenset[str] = frozenset()) -> Iterator[ast.ColumnRef]:
    """Column references of ``e`` that are not lambda parameters."""
    match e:
        case ast.ColumnRef(name=n, source=None) if n in bound:
            return
        case ast.ColumnRef():
            yield e
            return
        case ast.Lambda(params=ps, body=body):
            yield from _column_refs(body, bound | frozenset(ps))
            return
    if isinstance(e, tuple):
        for item in e:
            yield from _column_refs(item, bound)
        return
    if dataclasses.is_dataclass(e) and not isinstance(e, type):
        for f in dataclasses.fields(e):
            if f.name != "pos":
                yield from _column_refs(getattr(e, f.name), bound)


_LITERALS = (
    ast.NullLiteral,
    ast.BooleanLiteral,
    ast.IntegerLiteral,
    ast.DecimalLiteral,
    ast.DoubleLiteral,
    ast.StringLiteral,
)


# ---------------------------------------------------------------------------------------------
# The analyzer


@dataclass(frozen=True, slots=True)
class _GroupKey:
    expr: ast.Expr
    sql: str
    type: sqltypes.SqlType


def analyze_aggregate(
    query: ast.Query,
    catalog: Catalog,
    *,
    sink_name: str | None,
    persistent: bool,
    statement_kind: str = "CREATE TABLE AS SELECT",
) -> tuple[Source, AggregateStep]:
    """Analyze a query with GROUP BY or aggregate calls; returns its source and the step."""
    if not isinstance(query.from_, ast.Table):
        raise AnalysisError("Joins are not supported yet.", pos=query.from_.pos)
    if query.partition_by:
        raise AnalysisError("PARTITION BY is not supported yet.", pos=query.pos)
    table = query.from_
    source = catalog.source(table.name, table.pos)
    if source.value_format.format.upper() == "KAFKA":
        raise AnalysisError(
            f"Source(s) {source.name} are using the 'KAFKA' value format. "
            "This format does not yet support GROUP BY.",
            pos=table.pos,
        )
    alias = table.alias or table.name
    scope = scopes.source_scope(source, alias)
    windowed = query.window is not None
    if query.refinement is ast.Refinement.FINAL and not windowed:
        raise AnalysisError("EMIT FINAL is only supported for windowed aggregations.", pos=query.pos)

    where_sql = _where(query, scope)
    items = expand_select(query.select, source, alias, scope)
    if any(_is_table_function(n) for e, _ in items for n in _walk(e)):
        raise AnalysisError("Table functions cannot be used with aggregations.", pos=query.pos)

    for e in query.group_by:
        nested = _aggregate_calls(e)
        if nested:
            raise AnalysisError(
                f"GROUP BY does not support aggregate functions: {nested[0].name} is an aggregate function.",
                pos=nested[0].pos,
            )
    for e in (*query.group_by, *(a for c in _all_calls(items, query.having) for a in c.args)):
        _check_window_bounds(e, source)

    keys = tuple(_group_key(e, scope) for e in query.group_by)
    if not keys and not persistent:
        # a push query aggregating without GROUP BY: one group, of every row
        keys = (_GroupKey(ast.BooleanLiteral(value=True), "TRUE", sqltypes.BOOLEAN),)
    calls = _calls(items, query.having, scope)
    if source.is_table:
        if windowed:
            raise AnalysisError("Windowing not supported for table aggregations.", pos=query.pos)
        no_undo = sorted({c.accumulator.name for c in calls.values() if not c.accumulator.supports_undo})
        if no_undo:
            raise AnalysisError(
                f"The aggregation functions {', '.join(no_undo)} cannot be applied to a table source, "
                "only to a stream source.",
                pos=query.pos,
            )
    post = _post_scope(keys, calls, windowed, (alias, source.name))
    by_sql = {k.sql: i for i, k in enumerate(keys)}

    def substitute(e: ast.Expr) -> ast.Expr:
        def fn(node: Any) -> Any | None:
            if isinstance(node, ast.FunctionCall) and is_aggregate_function(node.name):
                return ast.ColumnRef(name=calls[_call_text(node)].name, pos=node.pos)
            if isinstance(node, _LITERALS) or not by_sql or not _is_expr(node):
                return None
            try:
                compiled = scopes.compile_expr(node, scope)
            except AnalysisError:
                return None
            i = by_sql.get(compiled.sql.sql(dialect="duckdb"))
            return (
                None if i is None else ast.ColumnRef(name=group_key_name(i), pos=getattr(node, "pos", None))
            )

        rewritten: ast.Expr = _rewrite(e, fn)
        return rewritten

    readable = {c.name: c.text for c in calls.values()}
    readable.update({group_key_name(i): scopes.format_expr(k.expr) for i, k in enumerate(keys)})
    # GROUP BY 1: a literal select item equal to a literal grouping expression is that key
    literal_keys = {k.expr: i for i, k in enumerate(keys) if isinstance(k.expr, _LITERALS)}
    names = _names(items)
    projected: list[tuple[str, ast.Expr, Any]] = []
    originals: dict[str, ast.Expr] = {}
    offenders: list[str] = []
    for (e, _), name in zip(items, names, strict=True):
        _check_columns_exist(e, scope, windowed, "SELECT")
        if not _aggregate_calls(e) and not any(r.name in WINDOW_BOUND_COLUMNS for r in _column_refs(e)):
            scopes.compile_expr(_unwrap_as_value(e), scope, clause="SELECT")  # unknown functions, types
        if isinstance(e, _LITERALS) and e in literal_keys:
            rewritten: ast.Expr = ast.ColumnRef(name=group_key_name(literal_keys[e]), pos=e.pos)
        else:
            rewritten = substitute(e)
        try:
            compiled = scopes.compile_expr(_unwrap_as_value(rewritten), post, clause="SELECT")
        except AnalysisError as err:
            if "cannot be resolved" not in str(err):
                raise _readable(err, readable) from None
            offenders.append(scopes.format_expr(e))
            continue
        if compiled.type is None:
            raise AnalysisError(
                "Can't infer a type of null. Please explicitly cast it to a required type, "
                "e.g. CAST(null AS VARCHAR).",
                pos=e.pos,
            )
        projected.append((name, rewritten, compiled))
        originals.setdefault(name, e)
    if offenders:
        raise AnalysisError(
            "Non-aggregate SELECT expression(s) not part of GROUP BY: "
            + ", ".join(offenders)
            + "\nEither add the column(s) to the GROUP BY or remove them from the SELECT.",
            pos=query.pos,
        )
    if not query.group_by and persistent:
        first = next(iter(calls.values()))
        raise AnalysisError(
            f"{statement_kind} statement does not support aggregate function "
            f"[{first.text}] without a GROUP BY clause.",
            pos=query.pos,
        )

    try:
        having_sql = _having(query.having, substitute, scope, post, windowed)
    except AnalysisError as err:
        if "not part of GROUP BY" in str(err):
            raise
        raise _readable(err, readable, "Error in HAVING expression: ") from None
    columns = tuple(
        replace(c, expr=originals.get(c.name)) for c in _output_columns(projected, keys, sink_name, persistent)
    )
    final = query.refinement is ast.Refinement.FINAL
    window = window_spec(query.window, emit_final=final) if query.window is not None else None
    step = AggregateStep(
        source=source,
        where_sql=where_sql,
        group_keys=tuple(
            OutputColumn(name=group_key_name(i), type=k.type, sql=k.sql, is_key=True)
            for i, k in enumerate(keys)
        ),
        calls=tuple(calls.values()),
        window=window,
        having_sql=having_sql,
        columns=columns,
        emit_final=query.refinement is ast.Refinement.FINAL,
    )
    if persistent:
        check_intermediate_types(step)
    return source, step


_EXPR_TYPES = tuple(t for t in typing.get_args(ast.Expr) if t not in (ast.Lambda, ast.IntervalUnit))


def _is_table_function(node: Any) -> bool:
    from ksqlpy.planner.functions import REGISTRY
    from ksqlpy.planner.functions.registry import FunctionKind

    if not isinstance(node, ast.FunctionCall):
        return False
    fn = REGISTRY.get(node.name)
    return fn is not None and fn.kind == FunctionKind.TABLE


def _readable(err: AnalysisError, names: dict[str, str], prefix: str = "") -> AnalysisError:
    """An error about the rewritten expression, told in the query's own terms (``SUM(VALUE)``,
    not its internal column)."""
    message = err.message
    for internal, text in sorted(names.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(internal, text)
    return AnalysisError(prefix + message, pos=getattr(err, "pos", None))


def _is_expr(node: Any) -> bool:
    return isinstance(node, _EXPR_TYPES)


def _unwrap_as_value(e: ast.Expr) -> ast.Expr:
    """``AS_VALUE(x)`` is ``x`` copied into the value (it only stops ``x`` being the key)."""

    def fn(node: Any) -> Any | None:
        if isinstance(node, ast.FunctionCall) and node.name == "AS_VALUE" and len(node.args) == 1:
            return _unwrap_as_value(node.args[0])
        return None

    unwrapped: ast.Expr = _rewrite(e, fn)
    return unwrapped


def _where(query: ast.Query, scope: ColumnScope) -> str | None:
    if query.where is None:
        return None
    for ref in _column_refs(query.where):
        if ref.name in WINDOW_BOUND_COLUMNS and ref.source is None:
            try:
                scope.resolve(ref)
            except AnalysisError:
                raise AnalysisError(
                    f"Error in WHERE expression: Unknown column {ref.name}.", pos=ref.pos
                ) from None
    compiled = scopes.compile_expr(query.where, scope, clause="WHERE")
    if compiled.type is not None and compiled.type != sqltypes.BOOLEAN:
        raise AnalysisError(
            f"Type error in WHERE expression: Should evaluate to boolean but is "
            f"{scopes.format_expr(query.where)} ({compiled.type}) instead.",
            pos=query.where.pos,
        )
    return str(compiled.sql.sql(dialect="duckdb"))


def _check_window_bounds(e: ast.Expr, source: Source) -> None:
    if source.window is not None:
        return
    for ref in _column_refs(e):
        if ref.name in WINDOW_BOUND_COLUMNS:
            raise AnalysisError(_WINDOW_BOUNDS_ERROR.format(ref.name), pos=ref.pos)


def _check_columns_exist(e: ast.Expr, scope: ColumnScope, windowed: bool, clause: str) -> None:
    """Unknown columns get the plain "cannot be resolved" error, not the GROUP BY one."""
    for ref in _column_refs(e):
        if windowed and ref.name in WINDOW_BOUND_COLUMNS:
            continue
        try:
            scope.resolve(ref)
        except AnalysisError:
            raise AnalysisError(
                f"{clause} column '{f'{ref.source}.' if ref.source else ''}{ref.name}' cannot be resolved.",
                pos=ref.pos,
            ) from None


def _group_key(e: ast.Expr, scope: ColumnScope) -> _GroupKey:
    compiled = scopes.compile_expr(e, scope, clause="GROUP BY")
    if compiled.type is None:
        raise AnalysisError(
            "Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR).",
            pos=e.pos,
        )
    return _GroupKey(e, str(compiled.sql.sql(dialect="duckdb")), compiled.type)


def _all_calls(items: list[tuple[ast.Expr, str | None]], having: ast.Expr | None) -> list[ast.FunctionCall]:
    exprs: list[Any] = [e for e, _ in items]
    if having is not None:
        exprs.append(having)
    return [c for e in exprs for c in _aggregate_calls(e)]


def _call_text(call: ast.FunctionCall) -> str:
    if call.star:
        return f"{call.name}(ROWTIME)"
    return scopes.format_expr(call)


def _calls(
    items: list[tuple[ast.Expr, str | None]], having: ast.Expr | None, scope: ColumnScope
) -> dict[str, AggregateCall]:
    """The distinct aggregate calls of the select list and HAVING, resolved, by their text."""
    from ksqlpy.planner.functions.aggregate import NOT_CONSTANT, AggregateArg, resolve_aggregate

    try:
        from ksqlpy.planner.functions import aggregates  # noqa: F401 - the library, if installed
    except ImportError:
        raise AnalysisError("Aggregate functions are not available.") from None

    calls: dict[str, AggregateCall] = {}
    for call in _all_calls(items, having):
        for arg in call.args:
            nested = _aggregate_calls(arg)
            if nested:
                raise AnalysisError(
                    f"Aggregate functions can not be nested: {scopes.format_expr(call)}", pos=call.pos
                )
        text = _call_text(call)
        if text in calls:
            continue
        args: list[AggregateArg] = []
        sqls: list[str] = []
        types: list[sqltypes.SqlType] = []
        if call.star:
            args.append(AggregateArg(type=sqltypes.BIGINT, star=True))
            sqls.append('"ROWTIME"')
            types.append(sqltypes.BIGINT)
        for a in call.args:
            compiled = scopes.compile_expr(a, scope, clause="SELECT")
            constant = compiled.value if compiled.is_constant else NOT_CONSTANT
            args.append(AggregateArg(type=compiled.type, constant=constant))
            sqls.append(str(compiled.sql.sql(dialect="duckdb")))
            types.append(compiled.type or sqltypes.STRING)
        accumulator = resolve_aggregate(call.name, args, pos=call.pos)
        present = [i < len(sqls) for i in accumulator.column_args]
        args_sql = tuple(sqls[i] if ok else '"ROWTIME"' for i, ok in zip(accumulator.column_args, present))
        arg_types = tuple(
            types[i] if ok else sqltypes.BIGINT for i, ok in zip(accumulator.column_args, present)
        )
        calls[text] = AggregateCall(
            name=f"KSQL_AGG_VARIABLE_{len(calls)}",
            text=text,
            args_sql=args_sql,
            arg_types=arg_types,
            accumulator=accumulator,
        )
    return calls


def _post_scope(
    keys: tuple[_GroupKey, ...], calls: dict[str, AggregateCall], windowed: bool, qualifiers: tuple[str, ...]
) -> ColumnScope:
    cols = [ScopeColumn(group_key_name(i), k.type) for i, k in enumerate(keys)]
    if windowed:
        cols += [ScopeColumn(n, t, q) for n, t in WINDOW_BOUND_COLUMNS.items() for q in qualifiers]
    cols += [ScopeColumn(c.name, c.accumulator.return_type) for c in calls.values()]
    return ColumnScope(tuple(cols))


def _names(items: list[tuple[ast.Expr, str | None]]) -> list[str]:
    """Output column names as ksqlDB gives them: the alias, a column's or struct field's name,
    else ``KSQL_COL_<n>`` skipping names already taken."""
    used = {a for _, a in items if a is not None}
    used |= {e.name for e, a in items if a is None and isinstance(e, ast.ColumnRef)}
    names: list[str] = []
    generated = 0
    for e, a in items:
        if a is not None:
            if a in RESERVED_COLUMN_NAMES:
                raise AnalysisError(
                    f"`{a}` is a reserved column name. You cannot use it as an alias for a column.", pos=e.pos
                )
            names.append(a)
        elif isinstance(e, ast.ColumnRef):
            names.append(e.name)
        elif isinstance(e, ast.Dereference):
            names.append(e.field)
        else:
            while f"KSQL_COL_{generated}" in used:
                generated += 1
            names.append(f"KSQL_COL_{generated}")
            generated += 1
    return names


def _having(
    having: ast.Expr | None,
    substitute: Callable[[ast.Expr], ast.Expr],
    scope: ColumnScope,
    post: ColumnScope,
    windowed: bool,
) -> str | None:
    if having is None:
        return None
    _check_columns_exist(having, scope, windowed, "HAVING")
    rewritten = substitute(having)
    for ref in _column_refs(rewritten):
        try:
            post.resolve(ref)
        except AnalysisError:
            raise AnalysisError(
                f"Non-aggregate HAVING expression not part of GROUP BY: {scopes.format_expr(ref)}",
                pos=ref.pos,
            ) from None
    compiled = scopes.compile_expr(rewritten, post, clause="HAVING")
    if compiled.type is not None and compiled.type != sqltypes.BOOLEAN:
        raise AnalysisError(
            f"Type error in HAVING expression: Should evaluate to boolean but is "
            f"{scopes.format_expr(having)} ({compiled.type}) instead.",
            pos=having.pos,
        )
    return str(compiled.sql.sql(dialect="duckdb"))


def _output_columns(
    projected: list[tuple[str, ast.Expr, Any]],
    keys: tuple[_GroupKey, ...],
    sink_name: str | None,
    persistent: bool,
) -> tuple[OutputColumn, ...]:
    """Persistent queries: the GROUP BY expressions' projections become the key columns (in
    GROUP BY order, first), the rest the values. Push queries: the projection as written."""
    seen: set[str] = set()
    for name, _, compiled in projected:
        if name in seen:
            raise AnalysisError(f"Duplicate value columns found in schema: `{name}` {compiled.type}")
        seen.add(name)
    if not persistent:
        return tuple(
            OutputColumn(name=n, type=c.type, sql=str(c.sql.sql(dialect="duckdb"))) for n, _, c in projected
        )
    key_cols: list[OutputColumn] = []
    key_items: set[int] = set()
    for i, k in enumerate(keys):
        ref = ast.ColumnRef(name=group_key_name(i))
        found = next((j for j, (_, e, _) in enumerate(projected) if e == ref and j not in key_items), None)
        if found is None:
            raise AnalysisError(
                f"The query used to build `{sink_name}` must include the grouping expression "
                f"{scopes.format_expr(k.expr)} in its projection (eg, SELECT {scopes.format_expr(k.expr)}...)."
            )
        key_items.add(found)
        name, _, compiled = projected[found]
        key_cols.append(OutputColumn(name=name, type=k.type, sql=f'"{group_key_name(i)}"', is_key=True))
    values = [
        OutputColumn(name=n, type=c.type, sql=str(c.sql.sql(dialect="duckdb")))
        for j, (n, _, c) in enumerate(projected)
        if j not in key_items
    ]
    if not values:
        raise AnalysisError("The projection contains no value columns.")
    return (*key_cols, *values)


def window_spec(w: ast.Window, *, emit_final: bool = False) -> WindowSpec:
    """A WINDOW clause with Kafka Streams' defaults for grace and retention (EMIT FINAL without
    GRACE PERIOD closes windows at their end)."""
    spec = _window_spec(w, emit_final=emit_final)
    _check_retention(spec, w.pos)
    return spec


def _window_spec(w: ast.Window, *, emit_final: bool) -> WindowSpec:
    retention = w.retention.millis if w.retention is not None else None
    match w:
        case ast.TumblingWindow(size=size, grace=grace):
            return WindowSpec(
                type="TUMBLING",
                size_ms=size.millis,
                advance_ms=size.millis,
                grace_ms=_grace(grace, size.millis, emit_final),
                retention_ms=retention,
            )
        case ast.HoppingWindow(size=size, advance=advance, grace=grace):
            if advance.millis <= 0 or advance.millis > size.millis:
                raise AnalysisError(
                    "Window advance must be greater than zero and no larger than the window size.", pos=w.pos
                )
            return WindowSpec(
                type="HOPPING",
                size_ms=size.millis,
                advance_ms=advance.millis,
                grace_ms=_grace(grace, size.millis, emit_final),
                retention_ms=retention,
            )
        case ast.SessionWindow(gap=gap, grace=grace):
            return WindowSpec(
                type="SESSION",
                gap_ms=gap.millis,
                grace_ms=_grace(grace, gap.millis, emit_final),
                retention_ms=retention,
            )
    raise AnalysisError(f"Unsupported window: {w}")


def _grace(grace: ast.Duration | None, size_ms: int, emit_final: bool) -> int:
    if grace is not None:
        return grace.millis
    return 0 if emit_final else max(DEFAULT_GRACE_MS - size_ms, 0)


#: The state store of a windowed aggregation as ksqlDB names it (its query context
#: ``Aggregate/Aggregate`` plus ``Materialize``), quoted by Kafka Streams' retention errors.
AGGREGATE_STORE_NAME = "Aggregate-Aggregate-Materialize"


def _span_ms(w: WindowSpec) -> int:
    """A window's own length: its size, or a session's inactivity gap."""
    return w.gap_ms if w.is_session else w.size_ms


def window_retention_ms(w: WindowSpec) -> int:
    """How long the aggregation's window (or session) store keeps a window: RETENTION when
    given, else Kafka Streams' default for a materialized windowed aggregation, the window size
    (session: the inactivity gap) plus the grace period."""
    return w.retention_ms if w.retention_ms is not None else _span_ms(w) + w.grace_ms


def _check_retention(w: WindowSpec, pos: Position | None) -> None:
    """Kafka Streams refuses a store that would expire windows still open for late records
    (``WindowStoreMaterializer`` / ``SessionStoreMaterializer``); ksqlDB reports its message."""
    retention = window_retention_ms(w)
    span = _span_ms(w)
    if span + w.grace_ms <= retention:
        return
    store, what, name = (
        ("session store", "the session inactivity gap", "gap") if w.is_session else ("window store", "its window size", "size")
    )
    raise PlanError(
        f"The retention period of the {store} {AGGREGATE_STORE_NAME} must be no smaller than {what} plus the "
        f"grace period. Got {name}=[{span}], grace=[{w.grace_ms}], retention=[{retention}]",
        pos=pos,
    )


def aggregate_window_info(step: AggregateStep) -> WindowInfo | None:
    """The sink's window (its keys are windowed) for an aggregation's step, with the retention
    its materialized table applies."""
    w = step.window
    if w is None:
        return None
    return WindowInfo(
        type=WindowType(w.type),
        size_ms=None if w.is_session else w.size_ms,
        retention_ms=window_retention_ms(w),
    )


#: value formats that cannot hold a structured (ARRAY/MAP/STRUCT) aggregate state
_FLAT_FORMATS = frozenset({"DELIMITED", "KAFKA"})


def check_intermediate_types(step: AggregateStep) -> None:
    """ksqlDB keeps aggregate state in the source's value format: a state type that format
    cannot serialize (TOPK's ARRAY in DELIMITED) is rejected up front."""
    if step.source.value_format.format.upper() not in _FLAT_FORMATS:
        return
    for call in step.calls:
        if isinstance(call.accumulator.state_type, (sqltypes.Array, sqltypes.Map, sqltypes.Struct)):
            raise AnalysisError(
                "One of the functions used in the statement has an intermediate type that the value "
                "format can not handle. Please remove the function or change the format."
            )
