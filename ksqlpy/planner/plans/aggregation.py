"""The steps of an aggregation, as ksqlDB's AggregateNode builds them.

``Aggregate/Prepare`` projects what the aggregation needs: every column the query references
(in the order ksqlDB's AggregateAnalyzer first meets them: select list, WHERE, GROUP BY, HAVING)
and each aggregate argument that is not a plain column, as ``KSQL_INTERNAL_COL_<i>``.
``Aggregate/GroupBy`` re-keys by the GROUP BY expressions (``streamGroupByKeyV1`` when they are
the stream's own key), ``Aggregate/Aggregate`` applies the calls, numbered
``KSQL_AGG_VARIABLE_<i>`` in the order they occur (select list, then HAVING), and
``Aggregate/HavingFilter`` and ``Aggregate/Project`` read those names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ksqlpy import sqltypes
from ksqlpy.parser import ast
from ksqlpy.planner import scope as scopes
from ksqlpy.planner.aggregate import is_aggregate_function
from ksqlpy.planner.catalog import WINDOW_BOUND_COLUMNS, Source
from ksqlpy.planner.physical import AggregateStep
from ksqlpy.planner.plans import expressions as ex
from ksqlpy.planner.plans.sources import source_step
from ksqlpy.planner.select import expand_select
from ksqlpy.planner.steps import steps as s
from ksqlpy.planner.steps.catalog import format_info, formats_of
from ksqlpy.planner.steps.formats import FormatInfo, Formats, WindowExpression, WindowTime

INTERNAL_PREFIX = "KSQL_INTERNAL_COL_"
ROWTIME = ast.ColumnRef(name="ROWTIME")

#: key formats that hold several key columns / any key type (others fall back to JSON)
_MULTI_COLUMN_KEYS = frozenset({"JSON", "JSON_SR", "AVRO", "PROTOBUF", "PROTOBUF_NOSR", "DELIMITED"})
_UNWRAPPABLE_KEYS = frozenset({"JSON", "JSON_SR", "AVRO"})
#: the key types the KAFKA format can write
_KAFKA_KEY_TYPES = (sqltypes.INTEGER, sqltypes.BIGINT, sqltypes.DOUBLE, sqltypes.STRING, sqltypes.BYTES)


def aggregation_steps(
    query: ast.Query,
    source: Source,
    step: AggregateStep,
    config: Mapping[str, Any] | None = None,
    initial: s.ExecutionStep | None = None,
    default_argument: ast.ColumnRef = ROWTIME,
) -> s.ExecutionStep:
    config = config or {}
    alias = query.from_.alias or source.name if isinstance(query.from_, ast.Table) else source.name
    scope = scopes.source_scope(source, alias)
    items = [(ex.unqualified(e), a) for e, a in expand_select(query.select, source, alias, scope)]
    where = ex.with_time_literals(ex.unqualified(query.where)) if query.where is not None else None
    group_by = [ex.unqualified(e) for e in query.group_by]
    having = ex.unqualified(query.having) if query.having is not None else None

    analysis = _Analysis(default_argument)
    for e, _ in items:
        analysis.visit(e)
    if where is not None:
        analysis.visit(where)
    for e in group_by:
        analysis.visit(e)
    if having is not None:
        analysis.visit(having)
    internal = _InternalSchema(analysis, scope)

    current: s.ExecutionStep = initial if initial is not None else source_step(source)
    if where is not None:
        cls = s.TableFilter if source.is_table else s.StreamFilter
        current = cls(context="WhereFilter", source=current, filter_expression=ex.text(where))
    keys = tuple(c.name for c in source.key_columns)
    prepare = tuple(ex.select_text(e, name) for name, e in internal.expansions)
    value_format = format_info(source.value_format)
    source_formats = formats_of(source)
    if source.is_table:
        current = s.TableSelect(
            context="Aggregate/Prepare",
            source=current,
            key_column_names=keys,
            select_expressions=prepare,
            internal_formats=Formats(
                key_format=source_formats.key_format,
                value_format=value_format,
                key_features=source_formats.key_features,
            ),
        )
    else:
        current = s.StreamSelect(
            context="Aggregate/Prepare",
            source=current,
            key_column_names=keys,
            selected_keys=None,
            select_expressions=prepare,
        )

    group_types = [scopes.compile_expr(e, scope).type or sqltypes.STRING for e in query.group_by]
    if not source.is_table and not _repartition_needed(keys, group_by):
        key_formats = Formats(
            key_format=source_formats.key_format, value_format=value_format, key_features=source_formats.key_features
        )
        current = s.StreamGroupByKey(context="Aggregate/GroupBy", source=current, internal_formats=key_formats)
    else:
        key_format, key_features = _grouped_key_format(source, source_formats, group_types, config)
        key_formats = Formats(key_format=key_format, value_format=value_format, key_features=key_features)
        cls_g = s.TableGroupBy if source.is_table else s.StreamGroupBy
        current = cls_g(
            context="Aggregate/GroupBy",
            source=current,
            internal_formats=key_formats,
            group_by_expressions=tuple(ex.text(e) for e in group_by),
        )

    functions = tuple(ex.text(internal.function_call(c)) for c in analysis.calls)
    non_aggregate = tuple(r.name for r in analysis.required)
    if query.window is not None:
        current = s.StreamWindowedAggregate(
            context="Aggregate/Aggregate",
            source=current,
            internal_formats=key_formats,
            non_aggregate_columns=non_aggregate,
            aggregation_functions=functions,
            window_expression=window_expression(query.window, query.refinement),
        )
    else:
        cls_a = s.TableAggregate if source.is_table else s.StreamAggregate
        current = cls_a(
            context="Aggregate/Aggregate",
            source=current,
            internal_formats=key_formats,
            non_aggregate_columns=non_aggregate,
            aggregation_functions=functions,
        )

    rewriter = _AggregateRewriter()
    grouped = {ex.text(e) for e in group_by}
    projection = [
        (rewriter.rewrite(e), name)
        for (e, _), name in zip(items, _names(step, items), strict=True)
    ]
    if having is not None:
        current = s.TableFilter(
            context="Aggregate/HavingFilter", source=current, filter_expression=ex.text(rewriter.rewrite(having))
        )
    key_names = tuple(c.name for c in step.columns if c.is_key)
    values = tuple(
        ex.select_text(e, name)
        for (e, name), (orig, _) in zip(projection, items, strict=True)
        if name not in key_names and not (step.columns and ex.text(orig) in grouped and _persistent(step))
    )
    return s.TableSelect(
        context="Aggregate/Project",
        source=current,
        key_column_names=key_names,
        select_expressions=values,
        internal_formats=key_formats,
    )


def _persistent(step: AggregateStep) -> bool:
    return any(c.is_key for c in step.columns)


def _names(step: AggregateStep, items: list[tuple[ast.Expr, str | None]]) -> list[str]:
    """The output name of each select item (the analyzer's, in select order)."""
    by_expr: dict[str, list[str]] = {}
    for c in step.columns:
        if c.expr is not None:
            by_expr.setdefault(ex.text(ex.unqualified(c.expr)), []).append(c.name)
    names: list[str] = []
    for e, a in items:
        if a is not None:
            names.append(a)
            continue
        candidates = by_expr.get(ex.text(e), [])
        names.append(candidates.pop(0) if candidates else ex.text(e))
    return names


def _repartition_needed(keys: tuple[str, ...], group_by: list[ast.Expr]) -> bool:
    if len(keys) != 1 or len(group_by) != 1:
        return True
    e = group_by[0]
    return not (isinstance(e, ast.ColumnRef) and e.name == keys[0])


def _grouped_key_format(
    source: Source, formats: Formats, types: list[sqltypes.SqlType], config: Mapping[str, Any]
) -> tuple[FormatInfo, tuple[str, ...]]:
    """The key format after re-keying by the GROUP BY expressions (ksqlDB's sanitizing: NONE
    becomes the default key format, KAFKA cannot hold several columns or complex types)."""
    key = formats.key_format
    if key.format == "NONE":
        key = FormatInfo(format=str(config.get("ksql.persistence.default.format.key", "KAFKA")).upper())
    unsupported = any(t not in _KAFKA_KEY_TYPES for t in types)
    if key.format == "KAFKA" and (len(types) > 1 or unsupported) or key.format not in _MULTI_COLUMN_KEYS | {"KAFKA"}:
        key = FormatInfo(format="JSON")
    features: tuple[str, ...] = ()
    if len(types) == 1 and key.format in _UNWRAPPABLE_KEYS:
        features = tuple(f for f in formats.key_features if f in ("WRAP_SINGLES", "UNWRAP_SINGLES")) or (
            "UNWRAP_SINGLES",
        )
    return key, features


def window_expression(window: Any, refinement: ast.Refinement | None) -> WindowExpression:
    def t(d: ast.Duration | None) -> WindowTime | None:
        if d is None:
            return None
        unit = d.unit if d.unit.endswith("S") else d.unit + "S"
        return WindowTime(value=d.value, time_unit=unit)

    emit = "FINAL" if refinement is ast.Refinement.FINAL else None
    match window:
        case ast.TumblingWindow():
            return WindowExpression(
                window_type="TUMBLING", size=t(window.size), retention=t(window.retention),
                grace_period=t(window.grace), emit_strategy=emit,
            )
        case ast.HoppingWindow():
            return WindowExpression(
                window_type="HOPPING", size=t(window.size), advance_by=t(window.advance),
                retention=t(window.retention), grace_period=t(window.grace), emit_strategy=emit,
            )
        case ast.SessionWindow():
            return WindowExpression(
                window_type="SESSION", gap=t(window.gap), retention=t(window.retention),
                grace_period=t(window.grace), emit_strategy=emit,
            )
    raise TypeError(window)


class _Analysis:
    """ksqlDB's AggregateAnalyzer walk: the columns an aggregation needs and its calls."""

    def __init__(self, default_argument: ast.ColumnRef = ROWTIME) -> None:
        self.default_argument = default_argument
        self.required: list[ast.ColumnRef] = []
        self.calls: list[ast.FunctionCall] = []
        self.arguments: list[ast.Expr] = []

    def visit(self, node: Any) -> None:
        match node:
            case ast.FunctionCall() if is_aggregate_function(node.name):
                call = _with_default_argument(node, self.default_argument)
                self.arguments.extend(call.args)
                self.calls.append(call)
                for a in call.args:
                    self.visit(a)
                return
            case ast.ColumnRef(name=name) if name not in WINDOW_BOUND_COLUMNS:
                if all(r.name != name for r in self.required):
                    self.required.append(ast.ColumnRef(name=name))
                return
            case ast.Lambda(params=params, body=body):
                bound = set(params)
                before = len(self.required)
                self.visit(body)
                self.required[before:] = [r for r in self.required[before:] if r.name not in bound]
                return
        for child in _children(node):
            self.visit(child)


def _children(node: Any) -> list[Any]:
    import dataclasses

    if isinstance(node, tuple):
        return list(node)
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return []
    return [getattr(node, f.name) for f in dataclasses.fields(node) if f.name != "pos"]


def _with_default_argument(call: ast.FunctionCall, default: ast.ColumnRef) -> ast.FunctionCall:
    """``COUNT(*)`` and other argument-less aggregates count ROWTIME (over a join: the first
    source's), as ksqlDB rewrites them."""
    if call.args:
        return call
    return replace(call, args=(default,), star=False)


class _InternalSchema:
    """The Prepare step's columns: required columns by name, other arguments numbered."""

    def __init__(self, analysis: _Analysis, scope: scopes.Scope) -> None:
        self.scope = scope
        self.expansions: list[tuple[str, ast.Expr]] = []
        self.by_text: dict[str, str] = {}
        for e in [*analysis.required, *analysis.arguments]:
            key = ex.text(e)
            if key in self.by_text:
                continue
            name = e.name if isinstance(e, ast.ColumnRef) else f"{INTERNAL_PREFIX}{len(self.expansions)}"
            self.expansions.append((name, e))
            self.by_text[key] = name

    def function_call(self, call: ast.FunctionCall) -> ast.FunctionCall:
        """The call over the Prepare step's columns; literal initial arguments stay as written."""
        column_args = _column_argument_count(call, self.scope)
        args = tuple(
            ast.ColumnRef(name=self.by_text[ex.text(a)]) if i < column_args else a for i, a in enumerate(call.args)
        )
        return replace(call, args=args)


def _column_argument_count(call: ast.FunctionCall, scope: scopes.Scope) -> int:
    """How many leading arguments are per-row columns (the rest are a UDAF's initial args)."""
    from ksqlpy.planner.functions import aggregates  # noqa: F401 - registers the library
    from ksqlpy.planner.functions.aggregate import NOT_CONSTANT, AggregateArg, resolve_aggregate

    try:
        args = []
        for a in call.args:
            compiled = scopes.compile_expr(a, scope)
            constant = compiled.value if compiled.is_constant else NOT_CONSTANT
            args.append(AggregateArg(type=compiled.type, constant=constant))
        accumulator = resolve_aggregate(call.name, args)
    except Exception:  # noqa: BLE001 - unknown shapes: every argument is a column
        return len(call.args)
    columns = accumulator.column_args
    return (max(columns) + 1) if columns else 0


class _AggregateRewriter:
    """Aggregate calls → ``KSQL_AGG_VARIABLE_<i>``, numbered across every rewrite."""

    def __init__(self) -> None:
        self.index = 0

    def rewrite(self, e: ast.Expr) -> ast.Expr:
        def fn(node: Any) -> Any | None:
            if isinstance(node, ast.FunctionCall) and is_aggregate_function(node.name):
                name = f"KSQL_AGG_VARIABLE_{self.index}"
                self.index += 1
                return ast.ColumnRef(name=name)
            return None

        return ex.rewrite(e, fn)  # type: ignore[no-any-return]
