"""Record keys and values as ksqlDB's conformance (QTT) cases write them, to bytes and back.

QTT cases give each record's key and value at "JSON level": JSON values for the JSON format,
strings such as ``"1,foo"`` for DELIMITED, primitives for KAFKA (BYTES as base64 text), and
``null`` for a tombstone or null key. :func:`encode_test_value` produces the bytes a producer
would have written; :func:`decode_test_value` turns bytes a query produced back into that JSON
level, to compare with a case's expected outputs.

Inputs are written as given, even when they do not match the schema: JSON values are plainly
JSON-encoded, so that the engine gets the chance to reject them as ksqlDB would.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import json
import math
import struct
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from ksqlpy.runtime.serde.format import Format, SerdeSpec
from ksqlpy.runtime.serde.javatext import double_str
from ksqlpy.runtime.serde.window import WindowKind, join_windowed_keys, split_windowed_keys
from ksqlpy.sqltypes import Array, BaseType, Decimal, Field, Map, SqlType, Struct

TestValue = Any

_KAFKA_PACK: dict[BaseType, str] = {BaseType.INTEGER: ">i", BaseType.BIGINT: ">q", BaseType.DOUBLE: ">d"}


def encode_test_value(
    value: TestValue, *, spec: SerdeSpec, columns: Sequence[Field], is_key: bool
) -> bytes | None:
    """The bytes of a QTT ``key`` or ``value`` in ``spec``'s format (None stays None)."""
    if value is None:
        return None
    match spec.format:
        case Format.JSON | Format.JSON_SR:
            return _json_bytes(value)
        case Format.DELIMITED:
            return _text(value).encode("utf-8")
        case Format.KAFKA:
            return _kafka_bytes(value, columns)
    # NONE and formats without a serde here: text as UTF-8, anything else as JSON
    return value.encode("utf-8") if isinstance(value, str) else _json_bytes(value)


def decode_test_value(
    data: bytes | None, *, spec: SerdeSpec, columns: Sequence[Field], is_key: bool
) -> TestValue:
    """The QTT-level form of record bytes in ``spec``'s format (None stays None)."""
    if data is None:
        return None
    match spec.format:
        case Format.JSON | Format.JSON_SR:
            if any(_has_decimal(c.type) for c in columns):
                # decimals keep their scale ("3.40"), as the Jackson reader of ksqlDB's harness does
                try:
                    return json.loads(data, parse_float=decimal.Decimal)
                except ValueError:
                    return data.decode("utf-8", "replace")
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                try:  # integers beyond 64 bits
                    return json.loads(data)
                except ValueError:
                    return data.decode("utf-8", "replace")
        case Format.DELIMITED:
            return data.decode("utf-8", "replace")
        case Format.KAFKA:
            return _kafka_value(data, columns)
        case Format.NONE:
            return None
    return data.decode("utf-8", "replace")


def _has_decimal(t: SqlType) -> bool:
    match t:
        case Decimal():
            return True
        case Array(element=e):
            return _has_decimal(e)
        case Map(key=k, value=v):
            return _has_decimal(k) or _has_decimal(v)
        case Struct(fields=fs):
            return any(_has_decimal(f.type) for f in fs)
    return False


def encode_windowed_test_key(
    value: TestValue,
    *,
    spec: SerdeSpec,
    columns: Sequence[Field],
    kind: WindowKind,
    start: int,
    end: int | None,
) -> bytes | None:
    """A QTT key of a windowed topic: the inner key's bytes plus the window suffix."""
    inner = encode_test_value(value, spec=spec, columns=columns, is_key=True)
    joined = join_windowed_keys(
        pa.array([inner if inner is not None else b""], pa.binary()),
        pa.array([start], pa.int64()),
        pa.array([end], pa.int64()),
        kind,
    )
    result: bytes = joined[0].as_py()
    return result


def decode_windowed_test_key(
    data: bytes | None,
    *,
    spec: SerdeSpec,
    columns: Sequence[Field],
    kind: WindowKind,
    size_ms: int | None = None,
) -> tuple[TestValue, int | None, int | None]:
    """(QTT key, window start, window end) of a windowed key record."""
    if data is None:
        return None, None, None
    keys = split_windowed_keys(pa.array([data], pa.binary()), kind, size_ms=size_ms)
    inner = keys.inner[0].as_py()
    value = decode_test_value(inner if inner else None, spec=spec, columns=columns, is_key=True)
    return value, keys.start[0].as_py(), keys.end[0].as_py()


def _json_bytes(value: TestValue) -> bytes:
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def _json_default(value: object) -> object:
    if isinstance(value, decimal.Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"not JSON: {type(value).__name__}")


def _text(value: TestValue) -> str:
    """A non-string QTT value written as text (DELIMITED cases sometimes give numbers)."""
    match value:
        case str():
            return value
        case bool():
            return "true" if value else "false"
        case float():
            return double_str(value)
    return str(value)


def _kafka_bytes(value: TestValue, columns: Sequence[Field]) -> bytes:
    base = columns[0].type.base if len(columns) == 1 else None
    pack = _KAFKA_PACK.get(base) if base is not None else None
    if pack is not None and isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
        number = float(value) if base is BaseType.DOUBLE else int(value)
        try:
            return struct.pack(pack, number)
        except struct.error:
            pass
    if base is BaseType.BYTES and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        return _json_bytes(value)
    # a number for a column that is not numeric (or no column): the JSON-level guess
    return struct.pack(">d" if isinstance(value, float) else ">i" if -(2**31) <= value < 2**31 else ">q", value)


def _kafka_value(data: bytes, columns: Sequence[Field]) -> TestValue:
    base = columns[0].type.base if len(columns) == 1 else None
    pack = _KAFKA_PACK.get(base) if base is not None else None
    if pack is not None and len(data) == struct.calcsize(pack):
        number = struct.unpack(pack, data)[0]
        if isinstance(number, float) and not math.isfinite(number):
            return double_str(number)
        return number
    if base is BaseType.BYTES:
        return base64.b64encode(data).decode("ascii")
    return data.decode("utf-8", "replace")
