"""Arrow tables meeting DuckDB: ksqlDB column names in, ksqlDB column names out.

ksqlDB column names are case-sensitive; DuckDB's are not, even quoted (a table cannot hold both
``A`` and `` `a` ``, and a registered relation with both answers ``"a"`` with ``A``). Wherever
an Arrow table whose columns carry ksqlDB names is registered in DuckDB or inserted into a
DuckDB table, its columns are renamed with :func:`~ksqlpy.planner.expressions.duckdb_name`
(the compiled SQL names them so too), and a result's columns are renamed back with
:func:`~ksqlpy.planner.expressions.ksql_name`. Upper-case names, the common case, are their own
DuckDB names, so for most schemas both renames change nothing.
"""

from __future__ import annotations

import functools

import pyarrow as pa

from ksqlpy.planner.expressions import duckdb_name, ksql_name


@functools.lru_cache(maxsize=4096)
def _renamed(names: tuple[str, ...], to_duckdb: bool) -> tuple[str, ...] | None:
    """The new names, or None when no name changes (batches of one schema repeat)."""
    new = tuple(duckdb_name(n) if to_duckdb else ksql_name(n) for n in names)
    return None if new == names else new


def to_duckdb(table: pa.Table) -> pa.Table:
    """``table`` with DuckDB column names, ready to register or insert."""
    new = _renamed(tuple(table.column_names), True)
    return table if new is None else table.rename_columns(list(new))


def from_duckdb(table: pa.Table) -> pa.Table:
    """A DuckDB result with its columns named by ksqlDB names again."""
    new = _renamed(tuple(table.column_names), False)
    return table if new is None else table.rename_columns(list(new))


__all__ = ["from_duckdb", "to_duckdb"]
