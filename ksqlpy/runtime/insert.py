"""INSERT INTO ... VALUES and /inserts-stream rows: one record, serialized with the target's formats."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError, ExecutionError
from ksqlpy.parser import ast
from ksqlpy.planner.catalog import PSEUDO_COLUMNS, ColumnNamespace, Source
from ksqlpy.planner.expressions.scope import ColumnScope, duckdb_name, struct_field_names
from ksqlpy.planner.expressions.sqlbuild import duck_type
from ksqlpy.runtime.codec import SinkEncoder
from ksqlpy.runtime.relations import from_duckdb
from ksqlpy.runtime.serde.registry import registry_for


def _coercible(value: sqltypes.SqlType, target: sqltypes.SqlType) -> bool:
    """Whether an INSERT VALUES value of type ``value`` may be written to a column of ``target``
    (ksqlDB's value coercer: numeric widening, strings for temporal columns, and structs by field
    name, where fields the value leaves out are NULL and fields the column lacks are dropped)."""
    if value == target or sqltypes.can_implicitly_cast(value, target):
        return True
    if value == sqltypes.STRING and target in (sqltypes.TIMESTAMP, sqltypes.DATE, sqltypes.TIME):
        return True
    if isinstance(value, sqltypes.Array) and isinstance(target, sqltypes.Array):
        return _coercible(value.element, target.element)
    if isinstance(value, sqltypes.Map) and isinstance(target, sqltypes.Map):
        return _coercible(value.key, target.key) and _coercible(value.value, target.value)
    if isinstance(value, sqltypes.Struct) and isinstance(target, sqltypes.Struct):
        return all((f := target.field(v.name)) is None or _coercible(v.type, f.type) for v in value.fields)
    return False


def insert_values(session: Any, stmt: ast.InsertValues) -> None:
    engine = session.engine
    found = engine.catalog.find(stmt.target)
    if found is None:
        raise AnalysisError(
            f"Cannot insert values into an unknown stream/table: `{stmt.target}`"
            + engine.catalog.alternatives(stmt.target),
            pos=stmt.pos,
        )
    target: Source = found
    if not engine.config.get_bool("ksql.insert.into.values.enabled", True):
        raise AnalysisError("The server has disabled INSERT INTO ... VALUES functionality.")
    if target.is_source:
        raise AnalysisError(f"Cannot insert values into read-only {target.kind.value.lower()}: {target.name}")
    if target.window is not None:
        raise AnalysisError(f"Cannot insert values into windowed {target.kind.value.lower()}: {target.name}")
    columns = stmt.columns
    if columns is None:
        columns = tuple(c.name for c in target.key_columns + target.value_columns + target.header_columns)
    if len(columns) != len(stmt.values):
        raise AnalysisError(
            f"Expected a value for each column. Expected Columns: [{', '.join(columns)}]. "
            f"Got [{', '.join(_fmt(v) for v in stmt.values)}]",
            pos=stmt.pos,
        )
    headers = [c for c in columns if (col := target.column(c)) is not None and col.namespace is ColumnNamespace.HEADERS]
    if headers:
        raise AnalysisError(f"Cannot insert into HEADER columns: {', '.join(headers)}", pos=stmt.pos)
    from ksqlpy.planner.scope import compile_expr
    from ksqlpy.runtime.query import PushQuery

    values: dict[str, Any] = {}
    sql_items = []
    types: dict[str, sqltypes.SqlType] = {}
    empty = ColumnScope(())
    for name, expr in zip(columns, stmt.values):
        if name == "ROWTIME":
            t: sqltypes.SqlType = sqltypes.BIGINT
        elif name in PSEUDO_COLUMNS:
            raise AnalysisError(f"Inserting into column `{name}` is not allowed.", pos=stmt.pos)
        else:
            col = target.column(name)
            if col is None:
                raise AnalysisError(f"Column name {name} does not exist.", pos=stmt.pos)
            t = col.type
        compiled = compile_expr(expr, empty)
        if compiled.type is not None and not _coercible(compiled.type, t):
            raise AnalysisError(
                f"Expected type {t} for field {name} but got {_fmt(expr)}({compiled.type})", pos=stmt.pos
            )
        if compiled.type == sqltypes.Struct(()) and isinstance(t, sqltypes.Struct):
            # STRUCT() gives a struct whose every field is NULL, not a NULL struct.
            names = struct_field_names([f.name for f in t.fields])
            value_sql = "struct_pack(" + ", ".join(
                f'"{n}" := CAST(NULL AS {_duckdb_type(f.type)})' for n, f in zip(names, t.fields, strict=True)
            ) + ")"
        else:
            value_sql = compiled.sql.sql(dialect="duckdb")
        sql_items.append(f'CAST({value_sql} AS {_duckdb_type(t)}) AS "{duckdb_name(name)}"')
        types[name] = t
    con = PushQuery.function_connection()  # installing the functions anew costs half a second
    try:
        row = from_duckdb(con.sql("SELECT " + ", ".join(sql_items)).to_arrow_table())
    except Exception as e:  # noqa: BLE001 - a value that does not convert is the user's error
        raise ExecutionError(f"Failed to insert values into '{target.name}'. {e}") from None
    finally:
        con.close()
    values = {name: row.column(name) for name in columns}
    _produce(engine, target, values, pa_len=1)


def _duckdb_type(t: sqltypes.SqlType) -> str:
    return duck_type(t).sql(dialect="duckdb")


def insert_json_row(engine: Any, target_name: str, row: Mapping[str, Any]) -> None:
    insert_json_rows(engine, target_name, [row])


def insert_json_rows(engine: Any, target_name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert JSON objects (``/inserts-stream`` rows) into a stream or table, in order.

    The rows go to the topic as one batch, in one store transaction. When a row's values do not
    convert to the target's columns, the rows before it are inserted and its error is raised
    (:class:`InsertRowError` says which row it was)."""
    target: Source = engine.catalog.source(target_name)
    if not rows:
        return
    try:
        columns = _json_columns(target, rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        for i, row in enumerate(rows):
            try:
                _json_columns(target, [row])
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
                if i:
                    _produce(engine, target, _json_columns(target, rows[:i]), pa_len=i)
                raise InsertRowError(i, f"Failed to insert values into '{target.name}'. {e}") from None
        raise
    _produce(engine, target, columns, pa_len=len(rows))


class InsertRowError(ExecutionError):
    """A row of a batch of inserts did not convert; the rows before it were inserted."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def _json_columns(target: Source, rows: Sequence[Mapping[str, Any]]) -> dict[str, pa.Array]:
    columns: dict[str, pa.Array] = {}
    for c in target.key_columns + target.value_columns:
        columns[c.name] = pa.array([row.get(c.name) for row in rows], sqltypes.to_arrow(c.type))
    if any("ROWTIME" in row for row in rows):
        now = int(time.time() * 1000)
        columns["ROWTIME"] = pa.array([row.get("ROWTIME", now) for row in rows], pa.int64())
    return columns


def _produce(engine: Any, target: Source, values: Mapping[str, Any], pa_len: int) -> None:
    cols = {}
    for c in target.key_columns + target.value_columns:
        v = values.get(c.name)
        cols[c.name] = v if v is not None else pa.nulls(pa_len, sqltypes.to_arrow(c.type))
    table = pa.table({k: (v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v) for k, v in cols.items()})
    ts = values.get("ROWTIME")
    timestamps = (
        pa.array([int(time.time() * 1000)] * pa_len, pa.int64()) if ts is None else ts
    )
    records, _ = _encoder(engine.store, target).encode(table, timestamps)
    engine.store.produce(target.topic, records)


#: Formats whose serializers hold no schema-registry state: their encoders are kept per target.
_PLAIN_FORMATS = frozenset({"JSON", "KAFKA", "DELIMITED", "NONE"})
#: The encoders of recent targets: (store, target) identity -> (store, target, encoder). A
#: stream's ``Source`` is replaced when it is dropped or replaced, so a kept encoder always
#: matches its target's columns; the entries hold both alive, so the ids are not reused.
_encoders: dict[tuple[int, int], tuple[Any, Source, SinkEncoder]] = {}
MAX_ENCODERS = 256


def _encoder(store: Any, target: Source) -> SinkEncoder:
    """The target's encoder: building one (its serializers) cost as much as encoding a batch of
    a few rows, which is what a paced ``/inserts-stream`` client sends."""
    key = (id(store), id(target))
    found = _encoders.get(key)
    if found is not None and found[0] is store and found[1] is target:
        return found[2]
    encoder = SinkEncoder(target, registry_for(store))
    formats = {target.key_format.format.upper(), target.value_format.format.upper()}
    if formats <= _PLAIN_FORMATS:
        if len(_encoders) >= MAX_ENCODERS:
            _encoders.clear()
        _encoders[key] = (store, target, encoder)
    return encoder


def _fmt(e: ast.Expr) -> str:
    from ksqlpy.planner.scope import format_expr

    return format_expr(e)
