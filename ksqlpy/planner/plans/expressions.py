"""Expressions as a plan writes them: unqualified, in ksqlDB's formatting.

Inside a single-source query every column is the source's, so ``TEST.ID`` is written ``ID``
(ksqlDB rewrites the statement the same way before it plans). Rewrites work on the frozen AST.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ksqlpy.parser import ast
from ksqlpy.parser.tree import rewrite, walk

__all__ = ["rewrite", "same", "select_text", "text", "unqualified", "walk", "with_time_literals"]
from ksqlpy.planner.expressions.formatter import format_expr, format_name


def unqualified(e: ast.Expr) -> ast.Expr:
    """``e`` with every column reference's source qualifier dropped."""
    return rewrite(e, lambda n: dataclasses.replace(n, source=None) if isinstance(n, ast.ColumnRef) and n.source else None)  # type: ignore[no-any-return]


def with_time_literals(e: ast.Expr) -> ast.Expr:
    """String literals compared with ROWTIME or a window bound, as the epoch milliseconds they
    name: ksqlDB rewrites them before planning, so the plan holds numbers."""
    from ksqlpy.planner.expressions.compiler import time_literal

    def fix(node: Any) -> Any | None:
        match node:
            case ast.Comparison(left=l, right=r):
                new_l, new_r = time_literal(l, r), time_literal(r, l)
                if new_l is not l or new_r is not r:
                    return dataclasses.replace(node, left=rewrite(new_l, fix), right=rewrite(new_r, fix))
            case ast.Between(value=v, low=lo, high=hi):
                new_lo, new_hi = time_literal(lo, v), time_literal(hi, v)
                if new_lo is not lo or new_hi is not hi:
                    return dataclasses.replace(node, low=new_lo, high=new_hi)
        return None

    return rewrite(e, fix)  # type: ignore[no-any-return]


def text(e: ast.Expr) -> str:
    return format_expr(e)


def select_text(e: ast.Expr, name: str) -> str:
    """A select expression: ``<expression> AS <name>``."""
    return f"{format_expr(e)} AS {format_name(name)}"


def same(a: ast.Expr, b: ast.Expr) -> bool:
    """Whether two expressions are the same once positions and qualifiers are ignored."""
    return format_expr(unqualified(a)) == format_expr(unqualified(b))
