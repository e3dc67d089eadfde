"""CREATE ... AS SELECT statements as ksqlDB quotes them in the errors of planning them.

Before ksqlDB plans such a statement, its ``AstSanitizer`` qualifies every column reference
with its source (``F1`` becomes ``TEST.F1``, the source keeping its name as its alias) and names
every selected expression (``KSQL_COL_0``, a struct field's name); its injectors then print the
statement anew with its ``SqlFormatter``, and that text is the ``Statement:`` of any error found
while planning::

    CREATE TABLE OUTPUT AS SELECT
      TEST.F2 KEY,
      COUNT(*) TOTAL
    FROM TEST TEST
    GROUP BY TEST.F2
    EMIT CHANGES

A statement the sanitizer itself refuses (an unknown source, an ambiguous column) keeps the text
as written: :func:`planned_statement_text` then returns None.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ksqlpy.parser import ast
from ksqlpy.parser.tree import rewrite
from ksqlpy.planner.catalog import PSEUDO_COLUMNS, WINDOW_BOUND_COLUMNS, Catalog, Source
from ksqlpy.planner.expressions.formatter import format_expr, format_name
from ksqlpy.planner.select import FieldAliases

#: How ksqlDB prints join types (``JoinedSource.Type``).
_JOIN_WORDS = {
    ast.JoinType.INNER: "INNER",
    ast.JoinType.LEFT: "LEFT OUTER",
    ast.JoinType.RIGHT: "RIGHT OUTER",
    ast.JoinType.FULL: "FULL OUTER",
}


def planned_statement_text(stmt: ast.CreateAsSelect, catalog: Catalog) -> str | None:
    """``stmt`` sanitized and printed as ksqlDB's engine quotes it, or None when ksqlDB's
    sanitizer would refuse it (its errors quote the statement as written)."""
    sources = _sources(stmt.query.from_, catalog)
    if sources is None:
        return None
    try:
        query = _sanitized(stmt.query, sources)
    except _Ambiguous:
        return None
    return _create_as(stmt, query)


class _Ambiguous(Exception):
    """An unqualified column more than one source has: the sanitizer's error, not ours."""


def _sources(relation: ast.Relation, catalog: Catalog) -> dict[str, Source] | None:
    """The query's sources by alias (a source's alias is its name unless given)."""
    tables = [relation] if isinstance(relation, ast.Table) else [relation.left, *(r.source for r in relation.rights)]
    found: dict[str, Source] = {}
    for table in tables:
        source = catalog.find(table.name)
        if source is None:
            return None
        found[table.alias or table.name] = source
    return found


def _has_column(source: Source, name: str) -> bool:
    if name in PSEUDO_COLUMNS:
        return True
    if name in WINDOW_BOUND_COLUMNS:
        return source.window is not None
    return source.column(name) is not None


def _sanitized(query: ast.Query, sources: dict[str, Source]) -> ast.Query:
    """``query`` as ksqlDB's ``AstSanitizer`` leaves it: references qualified, items named."""

    def qualify(node: Any, bound: frozenset[str]) -> Any:
        def fn(n: Any) -> Any | None:
            match n:
                case ast.Lambda(params=params, body=body):
                    return dataclasses.replace(n, body=qualify(body, bound | frozenset(params)))
                case ast.ColumnRef(source=None, name=name) if name not in bound:
                    owners = [alias for alias, source in sources.items() if _has_column(source, name)]
                    if len(owners) > 1:
                        raise _Ambiguous(name)
                    return dataclasses.replace(n, source=owners[0]) if owners else n
            return None

        return rewrite(node, fn)

    joined = len(sources) > 1
    clashing = _clashing(sources)
    generated = _GeneratedNames(sources.values())
    select: list[ast.SelectItem] = []
    for item in query.select:
        if not isinstance(item, ast.SingleColumn):
            select.append(qualify(item, frozenset()))
            continue
        expr = qualify(item.expr, frozenset())
        alias = item.alias
        if alias is None:
            alias = generated.alias_for(expr, joined=joined, clashing=clashing)
        select.append(dataclasses.replace(item, expr=expr, alias=alias))
    return dataclasses.replace(
        query,
        select=tuple(select),
        where=qualify(query.where, frozenset()),
        group_by=qualify(query.group_by, frozenset()),
        partition_by=qualify(query.partition_by, frozenset()),
        having=qualify(query.having, frozenset()),
        from_=qualify(query.from_, frozenset()),
    )


def _clashing(sources: dict[str, Source]) -> frozenset[str]:
    """Column names more than one of a join's sources has."""
    seen: dict[str, int] = {}
    for source in sources.values():
        for column in source.columns:
            seen[column.name] = seen.get(column.name, 0) + 1
    return frozenset(name for name, count in seen.items() if count > 1)


class _GeneratedNames:
    """ksqlDB's ``ColumnAliasGenerator`` over the sources' columns: ``KSQL_COL_<n>`` past the
    numbers they use, and a struct field's name for a dereference."""

    def __init__(self, sources: Any) -> None:
        names = [c.name for source in sources for c in source.columns]
        self._fields = FieldAliases(names)
        self._taken = frozenset(names)
        self._next = 0

    def alias_for(self, expr: ast.Expr, *, joined: bool, clashing: frozenset[str]) -> str:
        match expr:
            case ast.ColumnRef(name=name, source=source) if source is not None and joined and (
                name in PSEUDO_COLUMNS or name in clashing
            ):
                return f"{source}_{name}"
            case ast.ColumnRef(name=name):
                return name
            case ast.Dereference(field=field):
                return self._fields.next(field)
        while f"KSQL_COL_{self._next}" in self._taken:
            self._next += 1
        self._next += 1
        return f"KSQL_COL_{self._next - 1}"


# ------------------------------------------------------------------------------- printing


def _create_as(stmt: ast.CreateAsSelect, query: ast.Query) -> str:
    head = "CREATE " + ("OR REPLACE " if stmt.or_replace else "") + stmt.kind.value + " "
    head += ("IF NOT EXISTS " if stmt.if_not_exists else "") + format_name(stmt.name)
    properties = sorted((p.name.upper(), format_expr(p.value)) for p in stmt.properties)
    if properties:
        head += " WITH (" + ", ".join(f"{name}={value}" for name, value in properties) + ")"
    # ksqlDB's parser gives a persistent query that says no EMIT its implicit EMIT CHANGES
    refined = query if query.refinement is not None else dataclasses.replace(query, refinement=ast.Refinement.CHANGES)
    return head + " AS " + _query(refined)


def _query(query: ast.Query) -> str:
    lines = [_select(query.select), "FROM " + _relation(query.from_)]
    if query.window is not None:
        lines.append("WINDOW" + _window(query.window))
    if query.where is not None:
        lines.append("WHERE " + format_expr(query.where))
    if query.group_by:
        lines.append("GROUP BY " + ", ".join(format_expr(e) for e in query.group_by))
    if query.partition_by:
        lines.append("PARTITION BY " + ", ".join(format_expr(e) for e in query.partition_by))
    if query.having is not None:
        lines.append("HAVING " + format_expr(query.having))
    if query.refinement is not None:
        lines.append("EMIT " + query.refinement.value)
    if query.limit is not None:
        lines.append(f"LIMIT {query.limit}")
    return "\n".join(lines)


def _select(items: tuple[ast.SelectItem, ...]) -> str:
    texts = [_select_item(item) for item in items]
    if len(texts) == 1:
        return "SELECT " + texts[0]
    return "SELECT" + ",".join("\n  " + t for t in texts)


def _select_item(item: ast.SelectItem) -> str:
    match item:
        case ast.SingleColumn(expr=expr, alias=alias):
            return format_expr(expr) + ("" if alias is None else " " + format_name(alias))
        case ast.AllColumns(source=source):
            return ("" if source is None else format_name(source) + ".") + "*"
        case ast.StructAll(base=base):
            return format_expr(base) + "->*"
    raise TypeError(item)


def _table(table: ast.Table) -> str:
    return f"{format_name(table.name)} {format_name(table.alias or table.name)}"


def _relation(relation: ast.Relation) -> str:
    if isinstance(relation, ast.Table):
        return _table(relation)
    text = _table(relation.left)
    for joined in relation.rights:
        text += f"\n{_JOIN_WORDS[joined.type]} JOIN {_table(joined.source)}"
        if joined.within is not None:
            text += _within(joined.within)
        text += f" ON ({format_expr(joined.on)})"
    return text


def _duration(d: ast.Duration) -> str:
    """``10 SECONDS``: ksqlDB prints a time unit by its Java ``TimeUnit`` name, plural."""
    unit = d.unit.upper()
    return f"{d.value} {unit if unit.endswith('S') else unit + 'S'}"


def _window_options(retention: ast.Duration | None, grace: ast.Duration | None) -> str:
    text = "" if retention is None else " , RETENTION " + _duration(retention)
    return text + ("" if grace is None else " , GRACE PERIOD " + _duration(grace))


def _window(window: ast.Window) -> str:
    options = _window_options(window.retention, window.grace)
    match window:
        case ast.TumblingWindow(size=size):
            return f" TUMBLING ( SIZE {_duration(size)}{options} ) "
        case ast.HoppingWindow(size=size, advance=advance):
            return f" HOPPING ( SIZE {_duration(size)} , ADVANCE BY {_duration(advance)}{options} ) "
        case ast.SessionWindow(gap=gap):
            return f" SESSION ( {_duration(gap)}{options} ) "
    raise TypeError(window)


def _within(within: ast.Within) -> str:
    if within.before.value == within.after.value:  # ksqlDB compares the numbers alone
        text = " WITHIN " + _duration(within.before)
    else:
        text = f" WITHIN ({_duration(within.before)}, {_duration(within.after)})"
    return text + ("" if within.grace is None else " GRACE PERIOD " + _duration(within.grace))
