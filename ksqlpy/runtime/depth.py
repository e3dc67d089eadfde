"""How deep planning may recurse, and the error for a statement too deep to plan.

The parser bounds nesting (:data:`ksqlpy.parser.MAX_NESTING` parse-tree levels, refused with
the position where the limit is crossed). Below that bound, planning still recurses once per
node: the analyzer, and sqlglot building and printing DuckDB SQL, where one ksqlDB operator is
several SQL nodes (INT ``a + b`` wraps as Java does, ``CAST(((a + b) + 2^31) & (2^32 - 1)) -
2^31 AS INT)``). That is about 25 Python frames per ``+``: ``a + a + ...`` of 40 terms, well
inside the parser's bound, went past Python's default limit of 1,000 frames.

:func:`allow_deep_statements` raises the interpreter's limit to :data:`RECURSION_LIMIT`,
enough for anything the parser admits (a 60-term chain, about the longest it accepts, needs
about 2,000; nested CASEs, function calls and parentheses at the parser's bound need less than
3,000). It is safe for the C stack: a Python frame that re-enters the interpreter through C,
the costly kind, takes about 640 bytes of it on CPython 3.11 (x86-64), so 5,000 such frames
take about 3 MiB of the 8 MiB that the main thread and new threads get by default. Should
some statement still exhaust it, :func:`too_complex` turns the ``RecursionError`` into an
error at the position of its most deeply nested expression, as ksqlDB positions its errors.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, get_args

from ksqlpy.errors import AnalysisError, Position
from ksqlpy.parser import ast

#: Python frames planning may use (the default is 1,000).
RECURSION_LIMIT = 5_000

_EXPRESSIONS = get_args(ast.Expr)


def allow_deep_statements() -> None:
    """Raise the interpreter's recursion limit to :data:`RECURSION_LIMIT` (never lower it)."""
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)


def too_complex(stmt: Any) -> AnalysisError:
    """The error for a statement whose planning ran out of recursion, at its deepest expression."""
    pos, depth = deepest_expression(stmt)
    return AnalysisError(
        f"Expression too complex to compile: it nests {depth} levels deep. Split it into simpler "
        "expressions, for example over a stream or table that computes part of it.",
        pos=pos,
    )


def deepest_expression(stmt: Any) -> tuple[Position | None, int]:
    """Where the outermost expression on the deepest path through ``stmt`` starts, and how many
    levels deep that path goes (walked with a stack of its own: this must not recurse)."""
    best: tuple[Position | None, int] = (getattr(stmt, "pos", None), 0)
    # (node, its depth, where the outermost expression above it starts)
    stack: list[tuple[Any, int, Position | None]] = [(stmt, 0, None)]
    while stack:
        node, depth, top = stack.pop()
        if isinstance(node, tuple):
            stack.extend((item, depth, top) for item in node)
            continue
        if not dataclasses.is_dataclass(node) or isinstance(node, type):
            continue
        if top is None and isinstance(node, _EXPRESSIONS):
            top = getattr(node, "pos", None)
        if depth > best[1]:
            best = (top or best[0], depth)
        for f in dataclasses.fields(node):
            if f.name != "pos":
                stack.append((getattr(node, f.name), depth + 1, top))
    return best
