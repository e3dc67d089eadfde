"""PARTITION BY: re-keying a stream by expressions over its input.

ksqlDB evaluates the PARTITION BY expressions on the *input* record; their values become the new
key, in PARTITION BY order, and every other column moves to (or stays in) the value. The select
list names the new key columns: a select item whose expression is a partition expression becomes
that key column, under the item's name. ``SELECT *`` expands to the input's value columns, then
its old key columns (less any column that is now the key), and a partition expression it does not
name gets the name ksqlDB derives (the column's name, a struct field's name, else
``KSQL_COL_<n>``). ``PARTITION BY NULL`` drops the key altogether.

The result is the select step's output columns; the runtime needs nothing else, because the
sink encoder takes the key from the columns marked ``is_key`` and places records by that key.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError
from ksqlpy.parser import ast
from ksqlpy.planner import scope as scopes
from ksqlpy.planner.catalog import PSEUDO_COLUMNS, FormatInfo, Source
from ksqlpy.planner.physical import OutputColumn


@dataclass(frozen=True, slots=True)
class _Partition:
    expr: ast.Expr
    type: sqltypes.SqlType
    sql: str


def partitioned_columns(
    query: ast.Query,
    source: Source,
    alias: str,
    scope: scopes.Scope,
    sink_name: str | None,
    persistent: bool,
) -> tuple[OutputColumn, ...]:
    """The output columns of ``SELECT ... PARTITION BY``: new key columns first, then values."""
    from ksqlpy.planner.select import expand_select, name_projections

    parts = _partitions(query.partition_by, source, scope)
    star = any(isinstance(i, ast.AllColumns) for i in query.select)
    items: list[tuple[ast.Expr, str | None]] = []
    from_star: set[int] = set()
    for item in query.select:
        if isinstance(item, ast.AllColumns):
            expanded = _star(item, source, alias, parts)
            from_star.update(range(len(items), len(items) + len(expanded)))
            items.extend(expanded)
        else:
            items.extend(expand_select((item,), source, alias, scope))
    projections = name_projections(items, scope, source)

    # Which select item names each partition expression (a column of ``*`` never does: the
    # partition expression is then a new column beside it).
    owners: dict[int, list[int]] = {}
    for j, p in enumerate(projections):
        if j in from_star:
            continue
        for i, part in enumerate(parts):
            if p.sql == part.sql:
                owners.setdefault(i, []).append(j)
                break
    for i, js in owners.items():
        if len(js) > 1:
            key = _derived_name(parts[i].expr) or projections[js[0]].name
            names = sorted(projections[j].name for j in js)
            raise AnalysisError(
                f"The projection contains a key column (`{key}`) more than once, aliased as: "
                + " and ".join(names)
                + "."
            )
    missing = [i for i in range(len(parts)) if i not in owners]
    if missing and not star and persistent:
        texts = [_qualified(part.expr, source.name) for part in parts]
        noun = "expression" if len(parts) == 1 else "expressions"
        raise AnalysisError(
            f"The query used to build `{sink_name}` must include the partitioning {noun} "
            f"{' and '.join(texts)} in its projection (eg, SELECT {', '.join(texts)}...)."
        )

    used = {p.name for p in projections} | {c.name for c in source.columns}
    generated = 0
    keys: list[OutputColumn] = []
    for i, part in enumerate(parts):
        if i in owners:
            name = projections[owners[i][0]].name
        else:
            derived = _derived_name(part.expr)
            if derived is None:
                while f"KSQL_COL_{generated}" in used:
                    generated += 1
                derived = f"KSQL_COL_{generated}"
                generated += 1
            name = derived
        used.add(name)
        keys.append(OutputColumn(name=name, type=part.type, sql=part.sql, is_key=persistent, expr=part.expr))
    owned = {j for js in owners.values() for j in js}
    values = [
        OutputColumn(name=p.name, type=p.type, sql=p.sql, expr=p.expr)
        for j, p in enumerate(projections)
        if j not in owned and not (star and p.name in {k.name for k in keys})
    ]
    columns = tuple(keys + values)
    seen: set[str] = set()
    for c in columns:
        if c.name in seen:
            raise AnalysisError(f"Duplicate value columns found in schema: `{c.name}` {c.type}")
        seen.add(c.name)
    if persistent and not values:
        raise AnalysisError("The projection contains no value columns.")
    return columns


def _partitions(exprs: tuple[ast.Expr, ...], source: Source, scope: scopes.Scope) -> list[_Partition]:
    if any(isinstance(e, ast.NullLiteral) for e in exprs):
        if len(exprs) > 1:
            raise AnalysisError("Cannot PARTITION BY multiple columns including NULL")
        return []
    out: list[_Partition] = []
    for e in exprs:
        if isinstance(e, ast.ColumnRef) and source.column(e.name) is None and e.name not in PSEUDO_COLUMNS:
            raise AnalysisError(
                f"PARTITION BY column '{e.name}' cannot be resolved. '{e.name}' must be a column in the "
                "source schema since PARTITION BY is applied on the input.",
                pos=e.pos,
            )
        compiled = scopes.compile_expr(e, scope, clause="PARTITION BY")
        if compiled.type is None:
            raise AnalysisError("Cannot PARTITION BY multiple columns including NULL", pos=e.pos)
        out.append(_Partition(e, compiled.type, compiled.sql.sql(dialect="duckdb")))
    return out


def _star(
    item: ast.AllColumns, source: Source, alias: str, parts: list[_Partition]
) -> list[tuple[ast.Expr, str | None]]:
    """``*`` over a repartitioned input: value columns, then the old key columns; a column
    that is itself a partition expression is the new key and leaves the value."""
    if item.source is not None and item.source not in (alias, source.name):
        raise AnalysisError(f"Source '{item.source}' does not exist.", pos=item.pos)
    keyed = {p.expr.name for p in parts if isinstance(p.expr, ast.ColumnRef)}
    cols = source.value_columns + source.key_columns + source.header_columns
    return [(ast.ColumnRef(name=c.name, pos=item.pos), None) for c in cols if c.name not in keyed]


def _derived_name(e: ast.Expr) -> str | None:
    match e:
        case ast.ColumnRef(name=name):
            return name
        case ast.Dereference(field=f):
            return f
    return None


def _qualified(e: ast.Expr, source_name: str) -> str:
    if isinstance(e, ast.ColumnRef) and getattr(e, "source", None) is None:
        e = replace(e, source=source_name)
    return scopes.format_expr(e)


def sink_key_format(
    key_format: FormatInfo, has_keys: bool, explicit: bool, default_format: str
) -> FormatInfo:
    """The key format of a C*AS sink, as ksqlDB chooses it once the key is known.

    A sink without key columns has key format NONE (naming another format is an error); a sink
    that gains key columns from a keyless (NONE) source takes the default key format.
    """
    if not has_keys:
        if explicit and key_format.format != "NONE":
            raise AnalysisError("Key format specified for stream without key columns.")
        return FormatInfo(format="NONE")
    if key_format.format == "NONE" and not explicit:
        return FormatInfo(format=default_format.upper())
    return key_format
