"""Scopes of the analyzer: what names a query's expressions can see, and compiling within them."""

from __future__ import annotations

from typing import Any

from ksqlpy.parser import ast
from ksqlpy.planner.catalog import PSEUDO_COLUMNS, WINDOW_BOUND_COLUMNS, Source
from ksqlpy.planner.expressions.scope import ColumnScope, ScopeColumn

Scope = ColumnScope


def source_scope(source: Source, alias: str, *, window_bounds: bool = False) -> ColumnScope:
    """A source's columns (and pseudo columns), reachable bare or qualified by alias or name."""
    cols: list[ScopeColumn] = []
    qualifiers = {alias, source.name}
    for c in source.columns:
        for q in qualifiers:
            cols.append(ScopeColumn(c.name, c.type, q))
    pseudo = dict(PSEUDO_COLUMNS)
    if window_bounds or source.window is not None:
        pseudo.update(WINDOW_BOUND_COLUMNS)
    for name, t in pseudo.items():
        if source.column(name) is None:
            for q in qualifiers:
                cols.append(ScopeColumn(name, t, q))
    return ColumnScope(tuple(cols))


def compile_expr(expr: ast.Expr, scope: ColumnScope, *, clause: str | None = None) -> Any:
    """Type-check and compile ``expr``; returns the compiler's typed result (``.sql``, ``.type``)."""
    from ksqlpy.planner.expressions import compile_expression

    if clause is not None and scope.clause != clause:
        scope = ColumnScope(scope.columns, clause)
    return compile_expression(expr, scope)


def format_expr(expr: ast.Expr) -> str:
    from ksqlpy.planner.expressions.formatter import format_expr as fmt

    return fmt(expr)
