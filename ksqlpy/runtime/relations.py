"""Arrow tables meeting DuckDB: ksqlDB column names in, ksqlDB column names out.

ksqlDB column names are case-sensitive; DuckDB's are not, even quoted (a table cannot hold both
``A`` and `` `a` ``, and a registered relation with both answers ``"a"`` with ``A``). Wherever
an Arrow table whose columns carry ksqlDB names is registered in DuckDB or inserted into a
DuckDB table, its columns are renamed with :func:`~ksqlpy.planner.expressions.duckdb_name`
(the compiled SQL names them so too), and a result's columns are renamed back with
:func:`~ksqlpy.planner.expressions.ksql_name`. Upper-case names, the common case, are their own
DuckDB names, so for most schemas both renames change nothing.

Struct fields follow the same rule where DuckDB needs it: the fields of a struct whose field
names differ only in case take DuckDB names
(:func:`~ksqlpy.planner.expressions.struct_field_names`), at any depth.
"""

from __future__ import annotations

import functools

import pyarrow as pa

from ksqlpy.planner.expressions import duckdb_name, ksql_name, struct_field_names


@functools.lru_cache(maxsize=4096)
def _renamed(names: tuple[str, ...], to_duckdb: bool) -> tuple[str, ...] | None:
    """The new names, or None when no name changes (batches of one schema repeat)."""
    new = tuple(duckdb_name(n) if to_duckdb else ksql_name(n) for n in names)
    return None if new == names else new


def _field_names(names: tuple[str, ...], to_duckdb: bool) -> tuple[str, ...]:
    """A struct's field names on the other side: DuckDB's for ksqlDB's, or back. Names are
    renamed back only when they are what :func:`struct_field_names` makes of the result."""
    if to_duckdb:
        return struct_field_names(names)
    ksql = tuple(ksql_name(n) for n in names)
    return ksql if struct_field_names(ksql) == names else names


def _nested(t: pa.DataType, to_duckdb: bool) -> pa.DataType:
    """``t`` with the fields of its structs, at any depth, named for the other side."""
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        names = _field_names(tuple(f.name for f in fields), to_duckdb)
        return pa.struct(
            [f.with_name(n).with_type(_nested(f.type, to_duckdb)) for f, n in zip(fields, names, strict=True)]
        )
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_nested(t.value_type, to_duckdb)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_nested(t.value_type, to_duckdb)))
    if pa.types.is_map(t):
        return pa.map_(t.key_field, t.item_field.with_type(_nested(t.item_type, to_duckdb)))
    return t


@functools.lru_cache(maxsize=1024)
def _renames_fields(types: tuple[pa.DataType, ...], to_duckdb: bool) -> bool:
    """Whether a struct in ``types`` has fields named otherwise on the other side."""
    return any(not _nested(t, to_duckdb).equals(t) for t in types)


@functools.lru_cache(maxsize=1024)
def _nested_schema(schema: pa.Schema, to_duckdb: bool) -> pa.Schema | None:
    """``schema`` with nested struct fields renamed, or None when none changes."""
    new = pa.schema([f.with_type(_nested(f.type, to_duckdb)) for f in schema])
    return None if new.equals(schema) else new


def _with_nested_names(table: pa.Table, to_duckdb: bool) -> pa.Table:
    """``table`` with its struct fields renamed; the data is viewed, not copied (a rename
    keeps every buffer's layout)."""
    nested = tuple(t for t in table.schema.types if pa.types.is_nested(t))
    if not nested or not _renames_fields(nested, to_duckdb):
        return table  # the common case, decided without building the schema anew
    schema = _nested_schema(table.schema, to_duckdb)
    if schema is None:
        return table
    columns = [_viewed(column, f.type) for f, column in zip(schema, table.columns, strict=True)]
    return pa.table(columns, schema=schema)


def _viewed(column: pa.ChunkedArray, t: pa.DataType) -> pa.ChunkedArray:
    return column if column.type.equals(t) else pa.chunked_array([c.view(t) for c in column.chunks], t)


def to_duckdb(table: pa.Table) -> pa.Table:
    """``table`` with DuckDB column names, ready to register or insert."""
    table = _with_nested_names(table, True)
    new = _renamed(tuple(table.column_names), True)
    return table if new is None else table.rename_columns(list(new))


def from_duckdb(table: pa.Table) -> pa.Table:
    """A DuckDB result with its columns named by ksqlDB names again."""
    table = _with_nested_names(table, False)
    new = _renamed(tuple(table.column_names), False)
    return table if new is None else table.rename_columns(list(new))


__all__ = ["from_duckdb", "to_duckdb"]
