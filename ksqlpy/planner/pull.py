"""Pull queries: ``SELECT ... FROM table [WHERE ...] [LIMIT n]`` without EMIT, as ksqlDB plans them.

:func:`check_pull_shape` applies ksqlDB's rules that hold for every pull query (no JOIN, WINDOW,
GROUP BY, HAVING or PARTITION BY; no ROWPARTITION/ROWOFFSET; LIMIT not negative).
:func:`analyze_table_pull` plans a pull query over a materialized table: the projection and the
WHERE clause compiled to DuckDB SQL over the table's materialized columns (``input``), and the
key access the WHERE allows: point lookups (``=``, ``IN`` on every key column in every disjunct)
or a table scan. ksqlDB's errors for forms it refuses are reproduced, including the stricter
ones that apply when ``ksql.query.pull.table.scan.enabled`` is false.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError
from ksqlpy.parser import ast
from ksqlpy.planner import scope as scopes
from ksqlpy.planner.catalog import WINDOW_BOUND_COLUMNS, Source
from ksqlpy.planner.physical import OutputColumn
from ksqlpy.planner.select import expand_select, name_projections

SEE_DOCS = " See https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended to issue a push query."
DISALLOWED_COLUMNS = ("ROWPARTITION", "ROWOFFSET")
_N = TypeVar("_N")

#: More disjuncts than this after expanding WHERE to OR-of-ANDs: scan instead of looking up.
MAX_LOOKUP_DISJUNCTS = 1024


class PullShapeError(AnalysisError):
    """A query form ksqlDB's pull queries refuse (JOIN, GROUP BY, ...): such a query may still
    be answered as plain SQL over materialized tables."""


class Access(enum.Enum):
    LOOKUP = "KEY LOOKUP"
    SCAN = "TABLE SCAN"


@dataclass(frozen=True, slots=True, kw_only=True)
class TablePull:
    """A planned pull query over one materialized table.

    ``where_sql`` and the columns' ``sql`` read the table's materialized columns as ``input``.
    For a lookup, ``keys`` holds one tuple of DuckDB literal expressions per key to fetch,
    in key column order."""

    source: Source
    columns: tuple[OutputColumn, ...]
    where_sql: str | None
    access: Access
    keys: tuple[tuple[str, ...], ...] = ()
    limit: int | None = None


# ------------------------------------------------------------------------------------ checks


def check_pull_shape(query: ast.Query) -> None:
    """ksqlDB's checks for any pull query (stream or table)."""
    refused = (
        (not isinstance(query.from_, ast.Table), "JOIN"),
        (query.window is not None, "WINDOW"),
        (bool(query.group_by), "GROUP BY"),
        (query.having is not None, "HAVING"),
        (bool(query.partition_by), "PARTITION BY"),
    )
    for hit, clause in refused:
        if hit:
            raise PullShapeError(f"Pull queries don't support {clause} clauses." + SEE_DOCS, pos=query.pos)
    if any(_is_aggregate(f.name) for f in _calls(query.select)):
        raise PullShapeError("Pull queries don't support aggregate functions." + SEE_DOCS, pos=query.pos)
    if query.limit is not None and query.limit < 0:
        raise AnalysisError(
            "Pull queries don't support negative integers in the LIMIT clause." + SEE_DOCS, pos=query.pos
        )
    for clause, nodes in (("SELECT", query.select), ("WHERE", (query.where,) if query.where else ())):
        used = sorted({c.name for n in nodes for c in column_refs(n) if c.name in DISALLOWED_COLUMNS})
        if used:
            names = ", ".join(f"`{n}`" for n in used)
            raise AnalysisError(f"Pull queries don't support the following columns in {clause} clauses: {names}")


def column_refs(node: object) -> Iterator[ast.ColumnRef]:
    """Every column reference under an AST node."""
    if isinstance(node, ast.ColumnRef):
        yield node
        return
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from column_refs(getattr(node, f.name))
    elif isinstance(node, tuple):
        for item in node:
            yield from column_refs(item)


def _calls(node: object) -> Iterator[ast.FunctionCall]:
    return _nodes(node, ast.FunctionCall)


def _is_aggregate(name: str) -> bool:
    from ksqlpy.planner.functions.aggregate import is_aggregate

    try:
        return is_aggregate(name)
    except ImportError:  # the aggregate function library is optional
        return False


def not_queryable(name: str) -> AnalysisError:
    """ksqlDB's error for a pull query on a table it does not materialize (plain CREATE TABLE)."""
    return AnalysisError(
        f"The `{name}` table isn't queryable. To derive a queryable table, you can do "
        f"'CREATE TABLE QUERYABLE_{name} AS SELECT * FROM {name}'. "
        "See https://cnfl.io/queries for more info.\n"
        "Add EMIT CHANGES if you intended to issue a push query.",
    )


# ------------------------------------------------------------------------------------ planning


def analyze_table_pull(query: ast.Query, source: Source, *, table_scan: bool, range_scan: bool) -> TablePull:
    """Plan a pull query over table ``source`` (already known to be materialized and queryable)."""
    assert isinstance(query.from_, ast.Table)
    alias = query.from_.alias or query.from_.name
    windowed = source.window is not None
    scope = scopes.source_scope(source, alias, window_bounds=windowed)
    where_sql = None
    access: Access = Access.SCAN
    keys: tuple[tuple[str, ...], ...] = ()
    if query.where is not None:
        where = _window_bound_literals(query.where) if windowed else query.where
        where_sql = _compile_where(where, source, scope)
        access, keys = _key_access(where, source, scope, table_scan=table_scan, range_scan=range_scan)
    columns = _projection(query.select, source, alias, scope)
    return TablePull(source=source, columns=columns, where_sql=where_sql, access=access, keys=keys, limit=query.limit)


def _window_bound_literals(expr: ast.Expr) -> ast.Expr:
    """ksqlDB accepts WINDOWSTART/WINDOWEND bounds as (partial) datetime strings: make them
    epoch milliseconds."""
    match expr:
        case ast.LogicalBinary(left=l, right=r):
            return dataclasses.replace(expr, left=_window_bound_literals(l), right=_window_bound_literals(r))
        case ast.Not(operand=o):
            return dataclasses.replace(expr, operand=_window_bound_literals(o))
        case ast.Comparison(left=ast.ColumnRef(name=n), right=ast.StringLiteral() as lit) if n in WINDOW_BOUND_COLUMNS:
            return dataclasses.replace(expr, right=_millis_literal(lit))
        case ast.Comparison(left=ast.StringLiteral() as lit, right=ast.ColumnRef(name=n)) if n in WINDOW_BOUND_COLUMNS:
            return dataclasses.replace(expr, left=_millis_literal(lit))
    return expr


def _millis_literal(lit: ast.StringLiteral) -> ast.IntegerLiteral:
    from ksqlpy.planner.timestamps import parse_partial_timestamp

    return ast.IntegerLiteral(value=parse_partial_timestamp(lit.value), pos=lit.pos)


def _compile_where(where: ast.Expr, source: Source, scope: scopes.Scope) -> str:
    if source.window is None:
        for ref in column_refs(where):
            if ref.name in WINDOW_BOUND_COLUMNS and source.column(ref.name) is None:
                raise AnalysisError(f"WHERE column '{ref.name}' cannot be resolved")
    for node in _in_lists(where):
        _check_in_list(node, source)
    for like in _likes(where):
        col = source.column(like.value.name) if isinstance(like.value, ast.ColumnRef) else None
        if col is not None and col.type != sqltypes.STRING:
            raise AnalysisError(
                f"The column type for Like condition must be VARCHAR. The column type is {col.type}"
            )
    try:
        compiled = scopes.compile_expr(where, scope, clause="WHERE")
    except AnalysisError as e:
        raise AnalysisError(
            f"Error in WHERE expression: {e.message}\nStatement: {scopes.format_expr(where)}"
        ) from e
    if compiled.type is not None and compiled.type != sqltypes.BOOLEAN:
        raise AnalysisError(
            f"Type error in WHERE expression: Should evaluate to boolean but is "
            f"{scopes.format_expr(where)} ({compiled.type}) instead.",
            pos=where.pos,
        )
    sql: str = compiled.sql.sql(dialect="duckdb")
    return sql


def _nodes(node: object, kind: type[_N]) -> Iterator[_N]:
    """Every node of type ``kind`` under an AST node."""
    if isinstance(node, kind):
        yield node
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from _nodes(getattr(node, f.name), kind)
    elif isinstance(node, tuple):
        for item in node:
            yield from _nodes(item, kind)


def _in_lists(node: object) -> Iterator[ast.InList]:
    return _nodes(node, ast.InList)


def _likes(node: object) -> Iterator[ast.Like]:
    return _nodes(node, ast.Like)


#: Literal kinds that convert to a key of a given type (ksqlDB coerces IN items to the key type).
_LITERAL_TYPES: dict[type, frozenset[sqltypes.BaseType]] = {
    ast.StringLiteral: frozenset({sqltypes.BaseType.STRING}),
    ast.IntegerLiteral: frozenset(
        {sqltypes.BaseType.INTEGER, sqltypes.BaseType.BIGINT, sqltypes.BaseType.DOUBLE}
    ),
    ast.DoubleLiteral: frozenset({sqltypes.BaseType.DOUBLE}),
    ast.BooleanLiteral: frozenset({sqltypes.BaseType.BOOLEAN}),
}


def _check_in_list(node: ast.InList, source: Source) -> None:
    if not isinstance(node.value, ast.ColumnRef):
        return
    key = source.column(node.value.name)
    if key is None or not key.is_key:
        return
    for item in node.items:
        if isinstance(item, ast.NullLiteral):
            raise AnalysisError(f"Primary key columns can not be NULL: ({key.name} = null)")
        allowed = _LITERAL_TYPES.get(type(item))
        base = key.type.base if isinstance(key.type, sqltypes.Primitive) else None
        if allowed is not None and base is not None and base not in allowed:
            raise AnalysisError(
                f"{scopes.format_expr(item)} can not be converted to the type of the key column: "
                f"{key.name} {key.type} KEY"
            )


def _projection(
    items: tuple[ast.SelectItem, ...], source: Source, alias: str, scope: scopes.Scope
) -> tuple[OutputColumn, ...]:
    """The select list, named as for any transient query; SELECT * on a windowed table includes
    WINDOWSTART and WINDOWEND after the key columns, and they count as key columns."""
    exprs = expand_select(items, source, alias, scope, window_bounds=source.window is not None)
    return tuple(
        OutputColumn(
            name=p.name,
            type=p.type,
            sql=p.sql,
            is_key=isinstance(p.expr, ast.ColumnRef) and _is_key_column(source, p.expr.name),
        )
        for p in name_projections(exprs, scope, source, persistent=False)
    )


def _is_key_column(source: Source, name: str) -> bool:
    col = source.column(name)
    if col is not None:
        return col.is_key
    return source.window is not None and name in WINDOW_BOUND_COLUMNS


# ------------------------------------------------------------------------------------ key access


@dataclass(frozen=True, slots=True)
class _Term:
    """One conjunct of a disjunct: an equality of a key column with a constant, or anything else."""

    expr: ast.Expr
    key: str | None = None
    value: ast.Expr | None = None


def _key_access(
    where: ast.Expr, source: Source, scope: scopes.Scope, *, table_scan: bool, range_scan: bool
) -> tuple[Access, tuple[tuple[str, ...], ...]]:
    keys = [c.name for c in source.key_columns]
    disjuncts = _dnf(where)
    lookups: list[tuple[str, ...]] = []
    if disjuncts is not None:
        for conj in disjuncts:
            found: dict[str, ast.Expr] = {}
            for term in conj:
                t = _classify(term, keys)
                if t.key is not None and t.value is not None:
                    found.setdefault(t.key, t.value)
            if len(found) != len(keys):
                break
            values = []
            for k in keys:
                col = source.column(k)
                assert col is not None
                lit = scopes.compile_expr(found[k], scope, clause="WHERE").sql.sql(dialect="duckdb")
                values.append(f"CAST({lit} AS {sqltypes.to_duckdb(col.type)})")
            lookups.append(tuple(values))
        else:
            return Access.LOOKUP, tuple(dict.fromkeys(lookups))
    if not table_scan:
        _refuse_scan(where, disjuncts, source, range_scan=range_scan)
    return Access.SCAN, ()


def _dnf(expr: ast.Expr) -> list[list[ast.Expr]] | None:
    """WHERE as OR of ANDs (IN lists on a column expanded to equalities); None when too large."""
    match expr:
        case ast.LogicalBinary(op=ast.LogicalOp.AND, left=l, right=r):
            left, right = _dnf(l), _dnf(r)
            if left is None or right is None or len(left) * len(right) > MAX_LOOKUP_DISJUNCTS:
                return None
            return [a + b for a in left for b in right]
        case ast.LogicalBinary(op=ast.LogicalOp.OR, left=l, right=r):
            left, right = _dnf(l), _dnf(r)
            if left is None or right is None or len(left) + len(right) > MAX_LOOKUP_DISJUNCTS:
                return None
            return left + right
        case ast.InList(value=ast.ColumnRef() as col, items=items, negated=False):
            return [[ast.Comparison(op=ast.ComparisonOp.EQUAL, left=col, right=i, pos=expr.pos)] for i in items]
    return [[expr]]


def _is_constant(expr: ast.Expr) -> bool:
    return not any(True for _ in column_refs(expr))


def _classify(term: ast.Expr, keys: list[str]) -> _Term:
    match term:
        case ast.Comparison(op=ast.ComparisonOp.EQUAL, left=ast.ColumnRef(name=n), right=v) if (
            n in keys and _is_constant(v)
        ):
            return _Term(term, n, v)
        case ast.Comparison(op=ast.ComparisonOp.EQUAL, left=v, right=ast.ColumnRef(name=n)) if (
            n in keys and _is_constant(v)
        ):
            return _Term(term, n, v)
    return _Term(term)


def _refuse_scan(
    where: ast.Expr, disjuncts: list[list[ast.Expr]] | None, source: Source, *, range_scan: bool
) -> None:
    """ksqlDB's errors for a WHERE that needs a table scan while scans are disabled."""
    keys = [c.name for c in source.key_columns]
    for conj in disjuncts or [[where]]:
        refs = {r.name for term in conj for r in column_refs(term)}
        if not refs & set(keys):
            text = " AND ".join(scopes.format_expr(t) for t in conj)
            raise AnalysisError(f"WHERE clause missing key column for disjunct: {text}")
        for term in conj:
            if isinstance(term, ast.Comparison):
                sides = (term.left, term.right)
                key_side = [s for s in sides if isinstance(s, ast.ColumnRef) and s.name in keys]
                touches_key = any(r.name in keys for s in sides for r in column_refs(s))
                if touches_key and not key_side:
                    raise AnalysisError("A comparison must directly reference a key column.")
                if key_side and not all(_is_constant(s) for s in sides if s is not key_side[0]):
                    raise AnalysisError("A comparison must be between a key column and a resolvable expression.")
        per_key = [
            s.name for t in conj if isinstance(t, ast.Comparison)
            for s in (t.left, t.right) if isinstance(s, ast.ColumnRef) and s.name in keys
        ]
        if len(per_key) != len(set(per_key)):
            raise AnalysisError(
                "A comparison condition on the key column cannot be combined with other comparisons "
                "such as an IN predicate"
            )
        ranged = [
            t for t in conj
            if isinstance(t, ast.Comparison) and t.op is not ast.ComparisonOp.EQUAL
            and any(isinstance(s, ast.ColumnRef) and s.name in keys for s in (t.left, t.right))
        ]
        if len(keys) > 1 and (ranged or any(k not in refs for k in keys)):
            if range_scan and ranged and all(k in refs for k in keys):
                raise AnalysisError("Query requires table scan to be enabled")
            raise AnalysisError("Multi-column sources must specify every key in the WHERE clause.")
        if ranged:
            if not range_scan:
                raise AnalysisError(
                    "A comparison condition on the key column cannot be combined with other comparisons "
                    "such as an IN predicate"
                )
            key = source.column(keys[0])
            if key is None or key.type != sqltypes.STRING or len(ranged) > 1 or len(disjuncts or []) > 1:
                raise AnalysisError("Query requires table scan to be enabled")


__all__ = [
    "Access",
    "PullShapeError",
    "TablePull",
    "analyze_table_pull",
    "check_pull_shape",
    "column_refs",
    "not_queryable",
]
