"""State stores: the named state of a query's stateful steps, as DuckDB tables.

A stateful step keeps its state in stores, as Kafka Streams gives each stateful processor a
state store: a key-value store (one row per key: a join's table side) or a window store (rows
by key and time, expired by retention: a stream–stream join's buffers). Each store is one table
in the query's state connection, named after the store, which takes ksqlDB's name for it (from
the step's query context: ``KafkaTopic_Right-Reduce``, ``Join-this-join-store``), so a store's
changelog topic is named as ksqlDB names it (``<query's group>-<store>-changelog``).

Operators change a store only through its batch operations (upsert, delete, delete or update
where), which is what lets a store record its changes: on the Kafka store, :meth:`log_to` makes
it keep a :class:`~ksqlpy.runtime.changelog.TableLog`, whose records the query produces in the
batch's transaction and restores from (see :mod:`ksqlpy.runtime.changelog`). On the embedded
store nothing is logged: state commits in the log's own database, one transaction per batch.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.runtime.changelog import StateTable, TableLog

#: Keys at most that a lookup or a delete passes to DuckDB as lists of values (statement
#: parameters) rather than as a registered Arrow table: registering and unregistering a table
#: cost about as much as a small batch's statement itself (~0.5 ms each, against ~1 ms).
LISTED_KEYS = 256


class StoreKind(enum.Enum):
    KEY_VALUE = "key-value"
    WINDOW = "window"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class StateStore:
    """One named store: a DuckDB table of ``schema`` in schema ``namespace``, keyed by ``keys``
    (no keys: a store of one row); a window store's rows also have a ``time`` column."""

    def __init__(
        self,
        *,
        name: str,
        namespace: str,
        owner: str,
        schema: pa.Schema | None,
        keys: Sequence[str],
        kind: StoreKind = StoreKind.KEY_VALUE,
        time: str | None = None,
        previous: str | None = None,
        table: str | None = None,
        columns: str | None = None,
        partition: str | None = None,
    ) -> None:
        """``owner`` (the query id) makes the table name unique in the state database;
        ``previous``: the table's name before stores were named (renamed on creation);
        ``table``: a table name of the store's own instead (qualified and quoted); ``columns``:
        the table's columns as DDL, when SQL types (not ``schema``) describe them; ``partition``:
        the column holding the source partition a row belongs to (whose changelog partition it
        is logged to, and with which it is restored and dropped when partitions move)."""
        self.name = name
        self.namespace = namespace
        self._owner = owner
        self._fixed = table is not None
        self.table = table if table is not None else f"{namespace}.{_q(f'{owner}/{name}')}"
        self.schema = schema
        self.columns = columns
        self.keys = tuple(keys)
        self.kind = kind
        self.time = time
        self.previous = previous
        self.partition = partition
        self.log: TableLog | None = None
        #: the table's columns, once read (see _table_columns)
        self._columns_read: list[str] | None = None

    def rename(self, name: str) -> None:
        self.name = name
        self._columns_read = None
        if not self._fixed:
            self.table = f"{self.namespace}.{_q(f'{self._owner}/{name}')}"

    def __repr__(self) -> str:
        return f"StateStore({self.name!r}, {self.kind.value})"

    # ------------------------------------------------------------------------ lifecycle

    def create(self, state: duckdb.DuckDBPyConnection) -> None:
        self._columns_read = None
        state.execute(f"CREATE SCHEMA IF NOT EXISTS {self.namespace}")
        if self.previous is not None:
            self._adopt(state, self.previous)
        if self.schema is None:
            state.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({self.columns})")
            return
        state.register("__empty", self.schema.empty_table())
        try:
            state.execute(f"CREATE TABLE IF NOT EXISTS {self.table} AS SELECT * FROM __empty")
        finally:
            state.unregister("__empty")

    def _adopt(self, state: duckdb.DuckDBPyConnection, previous: str) -> None:
        """State kept under the table's old name carries over (a restart after an upgrade)."""
        schema = self.namespace.strip('"')
        names = {
            n
            for (n,) in state.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [schema]
            ).fetchall()
        }
        new = self.table.split(".", 1)[1][1:-1].replace('""', '"')
        if previous in names and new not in names:
            state.execute(f"ALTER TABLE {self.namespace}.{_q(previous)} RENAME TO {_q(new)}")

    def drop(self, state: duckdb.DuckDBPyConnection) -> None:
        self._columns_read = None
        state.execute(f"DROP TABLE IF EXISTS {self.table}")
        if self.previous is not None:
            state.execute(f"DROP TABLE IF EXISTS {self.namespace}.{_q(self.previous)}")

    def changelog_topic(self, prefix: str) -> str:
        """The store's changelog topic, as ksqlDB names it from the query's application id."""
        return f"{prefix}-{self.name}-changelog"

    def log_to(
        self,
        prefix: str,
        con: duckdb.DuckDBPyConnection,
        state: duckdb.DuckDBPyConnection,
        partitions: int = 1,
    ) -> TableLog:
        """From now on record every change for the changelog topic (the table must exist);
        ``con`` encodes the records' keys; ``partitions``: the changelog's partitions (a row goes
        to the one of its :attr:`partition` column, as a Kafka Streams task logs to its own)."""
        table = StateTable(self.table, self.keys, self.changelog_topic(prefix), self.partition)
        self.log = TableLog(table, con, state, partitions)
        return self.log

    def _returning(self) -> str:
        """What a logged delete returns: the keys, and the partition the row belonged to."""
        cols = [*self.keys, *([self.partition] if self.partition and self.partition not in self.keys else [])]
        return ", ".join(f"{self.table}.{_q(k)}" for k in cols) or "1"

    def _gone(self, gone: pa.Table) -> pa.Table:
        if not self.keys:
            return gone
        cols = [*self.keys, *([self.partition] if self.partition and self.partition not in self.keys else [])]
        return gone.rename_columns(cols)

    # ------------------------------------------------------------------------ reads

    def lookup(
        self, state: duckdb.DuckDBPyConnection, keys: pa.Table, by: Sequence[str] | None = None
    ) -> pa.Table:
        """The stored rows whose keys are among ``keys`` (columns named as the store's keys);
        ``by``: match on these columns only (a window store's rows of some keys, any window)."""
        cols = list(self.keys if by is None else by)
        on = " AND ".join(f"s.{_q(c)} IS NOT DISTINCT FROM k.{_q(c)}" for c in cols) or "TRUE"
        listed = _listed(keys.select(cols))
        if listed is not None:
            return state.sql(
                f"SELECT s.* FROM {self.table} s SEMI JOIN (SELECT DISTINCT * FROM {listed}) k ON {on}",
                params=[keys.column(c).to_pylist() for c in cols],
            ).to_arrow_table()
        return _with(
            state,
            "__keys",
            keys.select(cols),
            f"SELECT s.* FROM {self.table} s SEMI JOIN (SELECT DISTINCT * FROM __keys) k ON {on}",
        )

    def scan(
        self, state: duckdb.DuckDBPyConnection, where: str = "TRUE", order: str | None = None
    ) -> pa.Table:
        sql = f"SELECT * FROM {self.table} WHERE {where}"
        if order is not None:
            sql += f" ORDER BY {order}"
        return state.sql(sql).to_arrow_table()

    # ------------------------------------------------------------------------ changes

    def upsert(
        self,
        state: duckdb.DuckDBPyConnection,
        rows: pa.Table,
        keep: str | None = None,
        stored: str | None = None,
    ) -> None:
        """Put ``rows`` (at most one per key) in place of their keys' rows; with ``keep``, a
        boolean column, the rows where it is not true delete their keys instead; with
        ``stored``, a boolean column, only the keys where it is true may have a row already
        (the others need no delete: a batch's new groups)."""
        if rows.num_rows == 0:
            return
        old: pa.Table | None = None
        if stored is not None:
            old = rows.filter(pc.fill_null(rows.column(stored), True)).select(list(self.keys))
            rows = rows.drop_columns([stored])
        if self.schema is not None:
            rows = rows.select([*self.schema.names, *([keep] if keep else [])])
        names = ", ".join(_q(n) for n in rows.column_names if n != keep)
        if self.log is not None:
            if keep is None:
                self.log.upserted(rows)
            else:
                kept = pc.fill_null(rows.column(keep), False)
                part = (
                    [self.partition]
                    if self.partition in rows.column_names and self.partition not in self.keys
                    else []
                )
                self.log.deleted(rows.filter(pc.invert(kept)).select([*self.keys, *part]))
                self.log.upserted(rows.filter(kept))
        if old is not None and old.num_rows:
            listed = _listed(old)
            if listed is not None:
                state.execute(
                    f"DELETE FROM {self.table} USING {listed} n WHERE {self._on(self.table, 'n')}",
                    [old.column(k).to_pylist() for k in self.keys],
                )
            else:
                _run(
                    state,
                    "__old",
                    old,
                    f"DELETE FROM {self.table} USING __old n WHERE {self._on(self.table, 'n')}",
                )
        if old is not None and keep is None and rows.column_names == self._table_columns(state):
            # the rows as they are, without registering them (which costs as much as the insert)
            state.from_arrow(rows).insert_into(self.table)
            return
        where = f" WHERE {_q(keep)}" if keep else ""
        state.register("__new", rows)
        try:
            if old is None:
                state.execute(f"DELETE FROM {self.table} USING __new n WHERE {self._on(self.table, 'n')}")
            state.execute(f"INSERT INTO {self.table} ({names}) SELECT {names} FROM __new{where}")
        finally:
            state.unregister("__new")

    def _table_columns(self, state: duckdb.DuckDBPyConnection) -> list[str]:
        """The names of the table's columns, in order (read once: the table keeps them)."""
        if self._columns_read is None:
            described = state.execute(f"SELECT * FROM {self.table} LIMIT 0").description or []
            self._columns_read = [d[0] for d in described]
        return self._columns_read

    def insert(self, state: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
        """Add ``rows`` whose keys are new to the store (a window store's fresh records)."""
        if rows.num_rows == 0:
            return
        rows = self._columns_of(rows)
        if self.log is not None:
            self.log.upserted(rows)
        self._insert(state, rows)

    def delete(self, state: duckdb.DuckDBPyConnection, keys: pa.Table) -> None:
        """Remove the rows of ``keys``."""
        if keys.num_rows == 0:
            return
        keys = keys.select(list(self.keys))
        self._deleting(
            state,
            "__gone",
            keys,
            f"DELETE FROM {self.table} USING __gone n WHERE {self._on(self.table, 'n')}",
        )

    def delete_where(
        self, state: duckdb.DuckDBPyConnection, where: str, params: list[Any] | None = None, using: str = ""
    ) -> None:
        """Remove the rows ``where`` holds for (a condition over the store's columns, and the
        tables of ``using``, such as ``other o``)."""
        sql = f"DELETE FROM {self.table}{f' USING {using}' if using else ''} WHERE {where}"
        if self.log is None:
            state.execute(sql, params)
            return
        gone = state.sql(f"{sql} RETURNING {self._returning()}", params=params).to_arrow_table()
        self.log.deleted(self._gone(gone))

    def expire(self, state: duckdb.DuckDBPyConnection, horizon: int, where: str = "TRUE") -> None:
        """A window store forgets rows at or before ``horizon`` (that ``where`` also holds for)."""
        assert self.time is not None, f"{self.name} is not a window store"
        self.delete_where(state, f"{_q(self.time)} <= ? AND ({where})", [horizon])

    def update_where(self, state: duckdb.DuckDBPyConnection, assignments: str, where: str) -> None:
        """``UPDATE`` the rows ``where`` holds for."""
        sql = f"UPDATE {self.table} SET {assignments} WHERE {where}"
        if self.log is None:
            state.execute(sql)
            return
        self.log.upserted(state.sql(f"{sql} RETURNING *").to_arrow_table())

    def replace_all(self, state: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
        """A store of one row (no keys) takes ``rows`` as its content."""
        assert not self.keys, f"{self.name} is keyed"
        rows = self._columns_of(rows)
        if self.log is not None:
            self.log.upserted(rows)
        state.execute(f"DELETE FROM {self.table}")
        self._insert(state, rows)

    # ------------------------------------------------------------------------ helpers

    def _columns_of(self, rows: pa.Table) -> pa.Table:
        return rows if self.schema is None else rows.select(self.schema.names)

    def _insert(self, state: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
        names = ", ".join(_q(n) for n in rows.column_names)
        _run(state, "__new", rows, f"INSERT INTO {self.table} ({names}) SELECT {names} FROM __new")

    def _on(self, table: str, other: str) -> str:
        return (
            " AND ".join(f"{table}.{_q(k)} IS NOT DISTINCT FROM {other}.{_q(k)}" for k in self.keys) or "TRUE"
        )

    def _deleting(self, state: duckdb.DuckDBPyConnection, name: str, keys: pa.Table, sql: str) -> None:
        if self.log is not None:
            sql += f" RETURNING {self._returning()}"
        state.register(name, keys)
        try:
            if self.log is None:
                state.execute(sql)
            else:
                self.log.deleted(self._gone(state.sql(sql).to_arrow_table()))
        finally:
            state.unregister(name)


def _listable(t: pa.DataType) -> bool:
    """Whether DuckDB reads a column of type ``t`` back from its Python values exactly as
    from Arrow: strings, booleans and integers that fit a BIGINT."""
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_boolean(t)
        or pa.types.is_signed_integer(t)
        or t in (pa.uint8(), pa.uint16(), pa.uint32())
    )


def _listed(keys: pa.Table) -> str | None:
    """A subquery of ``keys`` read from statement parameters, one list of values per column
    in order (``$1``, ``$2``, ...), with the columns' names; None when ``keys`` are too many,
    none, or of a type that does not go through Python values unchanged."""
    if not 0 < keys.num_rows <= LISTED_KEYS or not all(_listable(t) for t in keys.schema.types):
        return None
    columns = ", ".join(f"unnest(${i + 1}) AS {_q(name)}" for i, name in enumerate(keys.column_names))
    return f"(SELECT {columns})"


def _run(state: duckdb.DuckDBPyConnection, name: str, table: pa.Table, sql: str) -> None:
    state.register(name, table)
    try:
        state.execute(sql)
    finally:
        state.unregister(name)


def _with(state: duckdb.DuckDBPyConnection, name: str, table: pa.Table, sql: str) -> pa.Table:
    state.register(name, table)
    try:
        return state.sql(sql).to_arrow_table()
    finally:
        state.unregister(name)


__all__ = ["StateStore", "StoreKind"]
