"""SELECT over one source, without aggregation: the analyzer of stateless queries.

Resolves the select list, WHERE and the sink's key against a :class:`Source`, type-checks every
expression by compiling it to DuckDB SQL, and names output columns as ksqlDB does (alias, column
name, struct field name, else ``KSQL_COL_<n>``). The result is a :class:`SelectStep`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError
from ksqlpy.parser import ast
from ksqlpy.planner import scope as scopes
from ksqlpy.planner.catalog import RESERVED_COLUMN_NAMES, WINDOW_BOUND_COLUMNS, Catalog, Source
from ksqlpy.planner.physical import OutputColumn, SelectStep, StepKind


@dataclass(frozen=True, slots=True)
class Projection:
    name: str
    expr: ast.Expr
    type: sqltypes.SqlType
    sql: str
    #: the source key column this item is a plain reference to, if any
    key_of: str | None


def analyze_select(
    query: ast.Query,
    catalog: Catalog,
    *,
    sink_name: str | None,
    persistent: bool,
    keyless_ok: bool = False,
) -> tuple[Source, SelectStep]:
    """Analyze a stateless query; ``sink_name`` names the sink in errors (CSAS/CTAS/INSERT).

    ``keyless_ok``: a stream query may leave its source's key out of the projection, making a
    sink without key columns (ksqlDB's ``ksql.new.query.planner.enabled``).
    """
    if not isinstance(query.from_, ast.Table):
        raise AnalysisError("Joins are not supported yet.", pos=query.from_.pos)
    if query.group_by:
        raise AnalysisError("GROUP BY is not supported yet.", pos=query.pos)
    if query.window is not None:
        raise AnalysisError("WINDOW clause requires a GROUP BY clause.", pos=query.window.pos)
    if query.having is not None:
        raise AnalysisError("HAVING clause requires a GROUP BY clause.", pos=query.having.pos)
    table = query.from_
    source = catalog.source(table.name, table.pos)
    if source.is_table and any(uses_table_function(i) for i in query.select):
        raise AnalysisError("Table source is not supported with table functions", pos=query.pos)
    scope = scopes.source_scope(source, table.alias or table.name)

    where_sql = None
    if query.where is not None:
        try:
            compiled = scopes.compile_expr(query.where, scope, clause="WHERE")
        except AnalysisError as e:
            # ksqlDB names the clause a type error comes from
            if not e.message.startswith(("Error in WHERE expression", "Invalid Predicate")):
                raise AnalysisError(f"Error in WHERE expression: {e.message}", pos=e.pos, hint=e.hint) from None
            raise
        if compiled.type is not None and compiled.type != sqltypes.BOOLEAN:
            raise AnalysisError(
                f"Type error in WHERE expression: Should evaluate to boolean but is "
                f"{scopes.format_expr(query.where)} ({compiled.type}) instead.",
                pos=query.where.pos,
            )
        where_sql = compiled.sql.sql(dialect="duckdb")

    if query.partition_by:
        from ksqlpy.planner.partition import partitioned_columns

        columns = partitioned_columns(query, source, table.alias or table.name, scope, sink_name, persistent)
    else:
        # A transient query's * over a windowed source includes the window bounds, after the key.
        bounds = not persistent and source.window is not None
        items = expand_select(query.select, source, table.alias or table.name, scope, window_bounds=bounds)
        projections = name_projections(items, scope, source, persistent=persistent)
        columns = key_columns_for(
            projections, source, sink_name, persistent, keyless_ok=keyless_ok and not source.is_table
        )
    kind = StepKind.TABLE_SELECT if source.is_table else StepKind.STREAM_SELECT
    # A persistent stream query forwards records without a value (see the evaluator).
    read = replace(source, null_values=True) if persistent and not source.is_table else source
    step = SelectStep(
        kind=kind,
        source=read,
        where_sql=where_sql,
        columns=columns,
        multiplies_rows=any(uses_table_function(i) for i in query.select),
        rekeyed=bool(query.partition_by),
    )
    return source, step


def expand_select(
    items: tuple[ast.SelectItem, ...],
    source: Source,
    alias: str,
    scope: scopes.Scope,
    *,
    window_bounds: bool = False,
) -> list[tuple[ast.Expr, str | None]]:
    out: list[tuple[ast.Expr, str | None]] = []
    for item in items:
        match item:
            case ast.AllColumns(source=qualifier):
                if qualifier is not None and qualifier not in (alias, source.name):
                    raise AnalysisError(f"Source '{qualifier}' does not exist.", pos=item.pos)
                names = [c.name for c in source.key_columns]
                if window_bounds:
                    names += list(WINDOW_BOUND_COLUMNS)
                names += [c.name for c in source.value_columns + source.header_columns]
                out.extend((ast.ColumnRef(name=n, pos=item.pos), None) for n in names)
            case ast.SingleColumn(expr=e, alias=a):
                out.append((e, a))
            case ast.StructAll(base=base):
                struct = scopes.compile_expr(base, scope, clause="SELECT").type
                if not isinstance(struct, sqltypes.Struct):
                    raise AnalysisError(
                        f"Expected STRUCT type, got: {struct}", pos=item.pos
                    )
                for f in struct.fields:
                    out.append((ast.Dereference(base=base, field=f.name, pos=item.pos), None))
    return out


_NUMBERED = re.compile(r"(?P<name>.*?)(?:_(?P<number>\d+))?")


class FieldAliases:
    """ksqlDB's StructFieldAliasGenerator: ``A->B`` is named ``B``, or ``B_1``, ``B_2``, ... past
    the numbers the source's columns already use for ``B`` (a bare ``B`` counts as number 0)."""

    def __init__(self, source_columns: Iterable[str]) -> None:
        self._used: dict[str, set[int]] = {}
        for column in source_columns:
            m = _NUMBERED.fullmatch(column)
            assert m is not None
            self._used.setdefault(m["name"], set()).add(int(m["number"]) if m["number"] else 0)
        self._next: dict[str, int] = {}

    def next(self, field_name: str) -> str:
        m = _NUMBERED.fullmatch(field_name)
        assert m is not None
        prefix = m["name"]
        used = self._used.get(prefix, set())
        index = self._next.get(prefix, 0)
        while index in used:
            index += 1
        self._next[prefix] = index + 1
        return prefix if index == 0 else f"{prefix}_{index}"


def name_projections(
    items: list[tuple[ast.Expr, str | None]], scope: scopes.Scope, source: Source, *, persistent: bool = True
) -> list[Projection]:
    """Name the select items as ksqlDB does. Only persistent queries must keep pseudo columns
    (ROWTIME, WINDOWSTART, ...) out of their output names; a push query may select them."""
    # generated names never clash with the source's own columns, selected or not
    used: set[str] = {c.name for c in source.columns}
    for e, a in items:
        if a is not None:
            used.add(a)
        elif isinstance(e, ast.ColumnRef):
            used.add(e.name)
    projections: list[Projection] = []
    generated = 0
    field_aliases = FieldAliases(c.name for c in source.columns)
    for e, a in items:
        if a is not None:
            name = a
            if name in RESERVED_COLUMN_NAMES:
                raise AnalysisError(
                    f"`{name}` is a reserved column name. You cannot use it as an alias for a column.", pos=e.pos
                )
        elif isinstance(e, ast.ColumnRef):
            name = e.name
            if persistent and name in RESERVED_COLUMN_NAMES:
                raise AnalysisError(
                    f"Reserved column name in select: `{name}`. Please remove or alias the column.", pos=e.pos
                )
        elif isinstance(e, ast.Dereference):
            name = field_aliases.next(e.field)
        else:
            while f"KSQL_COL_{generated}" in used:
                generated += 1
            name = f"KSQL_COL_{generated}"
            generated += 1
        compiled = scopes.compile_expr(e, scope, clause="SELECT")
        if compiled.type is None:
            raise AnalysisError(
                "Can't infer a type of null. Please explicitly cast it to a required type, "
                "e.g. CAST(null AS VARCHAR).",
                pos=e.pos,
            )
        key_of = None
        if isinstance(e, ast.ColumnRef):
            col = source.column(e.name)
            if col is not None and col.is_key:
                key_of = col.name
        projections.append(
            Projection(name=name, expr=e, type=compiled.type, sql=compiled.sql.sql(dialect="duckdb"), key_of=key_of)
        )
    seen: dict[str, Projection] = {}
    for p in projections:
        if p.name in seen:
            raise AnalysisError(f"Duplicate value columns found in schema: `{p.name}` {p.type}")
        seen[p.name] = p
    return projections


class KeyMissingError(AnalysisError):
    """The projection of a persistent query leaves out the source's key (a join words this its
    own way: see :func:`ksqlpy.planner.plans.joins.key_missing_error`). ``columns`` are the
    projection's names: ksqlDB checks the sink's TIMESTAMP column against them first."""

    def __init__(self, message: str, *, columns: tuple[str, ...] = ()) -> None:
        self.columns = columns
        super().__init__(message)


def key_columns_for(
    projections: list[Projection],
    source: Source,
    sink_name: str | None,
    persistent: bool,
    *,
    keyless_ok: bool = False,
) -> tuple[OutputColumn, ...]:
    """Mark which projected columns become the sink's key, with ksqlDB's checks."""
    if not persistent:
        return tuple(OutputColumn(name=p.name, type=p.type, sql=p.sql, expr=p.expr) for p in projections)
    by_key: dict[str, list[Projection]] = {}
    for p in projections:
        if p.key_of is not None:
            by_key.setdefault(p.key_of, []).append(p)
    for key, ps in by_key.items():
        if len(ps) > 1:
            names = sorted(p.name for p in ps)
            raise AnalysisError(
                f"The projection contains a key column (`{key}`) more than once, aliased as: "
                + " and ".join(names)
                + "."
            )
    missing = [k.name for k in source.key_columns if k.name not in by_key]
    if missing and not (keyless_ok and not by_key):
        missing = [k.name for k in source.key_columns]  # ksqlDB names every key column
        what = "key column" if len(missing) == 1 else "key columns"
        raise KeyMissingError(
            f"The query used to build `{sink_name}` must include the {what} {' and '.join(missing)} "
            f"in its projection (eg, SELECT {', '.join(missing)}...).",
            columns=tuple(p.name for p in projections),
        )
    columns = tuple(
        OutputColumn(name=p.name, type=p.type, sql=p.sql, is_key=p.key_of is not None, expr=p.expr)
        for p in projections
    )
    if not any(not c.is_key for c in columns):
        raise AnalysisError("The projection contains no value columns.")
    return columns



def uses_table_function(node: object) -> bool:
    """Whether an AST node calls a table function (EXPLODE, ...) anywhere inside it."""
    from ksqlpy.planner.functions import REGISTRY

    if isinstance(node, ast.FunctionCall) and REGISTRY.is_table_function(node.name):
        return True
    if isinstance(node, tuple):
        return any(uses_table_function(n) for n in node)
    fields = getattr(node, "__dataclass_fields__", None)
    if fields is None:
        return False
    return any(uses_table_function(getattr(node, f)) for f in fields if f != "pos")


def with_sink_timestamp(step: SelectStep, sink: Source) -> SelectStep:
    """The step writing its records with the sink's TIMESTAMP column as their timestamp.

    A BIGINT column is epoch milliseconds, a TIMESTAMP column is converted, a STRING column is
    parsed with TIMESTAMP_FORMAT; the evaluator drops records whose timestamp is missing or
    negative, as ksqlDB's timestamp extractor does.
    """
    name = sink.timestamp_column
    column = next((c for c in step.columns if c.name == name), None)
    if column is None:
        return step
    match column.type.base:
        case sqltypes.BaseType.BIGINT:
            sql = column.sql
        case sqltypes.BaseType.TIMESTAMP:
            sql = f"epoch_ms({column.sql})"
        case sqltypes.BaseType.STRING if sink.timestamp_format:
            pattern = sink.timestamp_format.replace("'", "''")
            sql = f"ksql_stringtotimestamp2({column.sql}, '{pattern}')"
        case _:
            return step
    return replace(step, timestamp_sql=sql)
