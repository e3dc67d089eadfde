"""Arrow result rows to the JSON-ready values ksqlDB's REST API shows.

DECIMAL as a number, BYTES as base64, TIMESTAMP as ``yyyy-MM-ddTHH:mm:ss.SSS``, DATE as
``yyyy-MM-dd``, TIME as ``HH:mm:ss``, ARRAY as a list, MAP and STRUCT as objects.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from collections.abc import Sequence
from typing import Any, NamedTuple

import pyarrow as pa

from ksqlpy import sqltypes


class Row(NamedTuple):
    values: tuple[Any, ...]
    tombstone: bool = False


def to_json_value(value: Any, t: sqltypes.SqlType) -> Any:
    if value is None:
        return None
    match t:
        case sqltypes.Decimal():
            d = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))
            return float(d) if d != d.to_integral_value() or t.scale > 0 else int(d)
        case sqltypes.Array(element=e):
            return [to_json_value(v, e) for v in value]
        case sqltypes.Map(key=k, value=v):
            items = value.items() if isinstance(value, dict) else value
            return {str(to_json_value(a, k)): to_json_value(b, v) for a, b in items}
        case sqltypes.Struct(fields=fs):
            return {f.name: to_json_value(value.get(f.name), f.type) for f in fs}
    if t == sqltypes.BYTES:
        return base64.b64encode(value).decode()
    if t == sqltypes.TIMESTAMP:
        if isinstance(value, int):
            value = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=value)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if t == sqltypes.DATE:
        return value.isoformat()
    if t == sqltypes.TIME:
        return value.strftime("%H:%M:%S") if value.microsecond == 0 else value.isoformat(timespec="milliseconds")
    return value


def _plain(t: sqltypes.SqlType) -> bool:
    """Whether Arrow's Python values of type ``t`` are already what the REST API shows."""
    if isinstance(t, (sqltypes.Decimal, sqltypes.Array, sqltypes.Map, sqltypes.Struct)):
        return False
    return t not in (sqltypes.BYTES, sqltypes.TIMESTAMP, sqltypes.DATE, sqltypes.TIME)


def table_to_rows(
    table: pa.Table, types: Sequence[sqltypes.SqlType], tombstones: Sequence[bool] | None = None
) -> list[Row]:
    columns: list[list[Any]] = []
    for i, t in enumerate(types):
        values = table.column(i).to_pylist()
        # Per value conversion only where a type needs it: most columns (numbers, strings,
        # booleans) are as they are, and a row is then built with no Python call per value.
        columns.append(values if _plain(t) else [to_json_value(v, t) for v in values])
    if not columns:
        rows = [()] * table.num_rows
    else:
        rows = list(zip(*columns))
    # tuple.__new__ directly: a NamedTuple's own constructor is a Python function, called per row.
    new = tuple.__new__
    if tombstones is None:
        return [new(Row, (values, False)) for values in rows]
    return [new(Row, (values, bool(tomb))) for values, tomb in zip(rows, tombstones)]
