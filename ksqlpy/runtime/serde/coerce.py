"""ksqlDB's JSON coercion rules, one value at a time: the exact (slow) path of the JSON serde.

Input is a parsed JSON document (``json.loads`` with ``parse_float=Decimal``, so numbers stay
exact as Jackson's ``USE_BIG_DECIMAL_FOR_FLOATS`` keeps them). Output is the physical Python value
of :func:`ksqlpy.runtime.serde.base.physical_type` (DATE/TIME/TIMESTAMP as ints).

The rules follow ksqlDB's ``KsqlJsonDeserializer`` / ``JsonSerdeUtils``:
numbers and numeric strings convert to INT/BIGINT/DOUBLE/DECIMAL (with Java's truncation and
parsing), BOOLEAN accepts only booleans, STRING accepts any scalar (and prints objects and arrays),
BYTES and DECIMAL accept text, STRUCT fields match column names exactly first and then
case-insensitively. A value that cannot convert raises :class:`CoercionError` naming the JSON
node type and path, as ksqlDB's messages do.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from ksqlpy import sqltypes
from ksqlpy.runtime.serde import javatext
from ksqlpy.sqltypes import BaseType

JsonValue = Any


class CoercionError(ValueError):
    """A JSON value that does not fit its SQL type; ``path`` is ksqlDB's (``$.F[0]``)."""

    def __init__(self, message: str, path: str) -> None:
        self.raw = message
        self.path = path
        super().__init__(f"{message}, path: {path}")


def node_type(value: JsonValue) -> str:
    """The Jackson node class ksqlDB names in conversion errors."""
    match value:
        case bool():
            return "BooleanNode"
        case int() if javatext.INT_MIN <= value <= javatext.INT_MAX:
            return "IntNode"
        case int() if javatext.LONG_MIN <= value <= javatext.LONG_MAX:
            return "LongNode"
        case int():
            return "BigIntegerNode"
        case decimal.Decimal() | float():
            return "DecimalNode"
        case str():
            return "TextNode"
        case list():
            return "ArrayNode"
        case dict():
            return "ObjectNode"
    return "MissingNode"


def _invalid(value: JsonValue, required: object) -> ValueError:
    return ValueError(f"Can't convert type. sourceType: {node_type(value)}, requiredType: {required}")


def _string_failure(base: BaseType) -> ValueError:
    return ValueError(f"Can't coerce string to type. targetType: {base.value}")


def _is_number(value: JsonValue) -> bool:
    return isinstance(value, (int, decimal.Decimal, float)) and not isinstance(value, bool)


def _integral(value: JsonValue) -> int:
    """Jackson's ``asLong`` of a numeric node: floats and decimals truncate toward zero."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    return int(value.to_integral_value(rounding=decimal.ROUND_DOWN))


def _text_integral(value: str, base: BaseType, parse: Callable[[str], int]) -> int:
    try:
        return parse(value)
    except ValueError:
        raise _string_failure(base) from None


def _to_int(value: JsonValue, t: sqltypes.SqlType) -> int:
    if _is_number(value):
        return javatext.java_int32(_integral(value))
    if isinstance(value, str):
        return _text_integral(value, BaseType.INTEGER, javatext.parse_int)
    raise _invalid(value, "INTEGER")


def _to_long(value: JsonValue, base: BaseType) -> int:
    if _is_number(value):
        return javatext.java_int64(_integral(value))
    if isinstance(value, str):
        return _text_integral(value, base, javatext.parse_long)
    raise _invalid(value, base.value)


def _to_bigint(value: JsonValue, t: sqltypes.SqlType) -> int:
    return _to_long(value, BaseType.BIGINT)


def _to_timestamp(value: JsonValue, t: sqltypes.SqlType) -> int:
    return _to_long(value, BaseType.TIMESTAMP)


def _to_date(value: JsonValue, t: sqltypes.SqlType) -> int:
    days = _to_long(value, BaseType.DATE)
    if not javatext.INT_MIN <= days <= javatext.INT_MAX:
        raise ValueError(f"Date out of range: {days} days")
    return days


def _to_time(value: JsonValue, t: sqltypes.SqlType) -> int:
    return check_time(_to_long(value, BaseType.TIME))


def check_time(millis: int) -> int:
    if 0 <= millis <= javatext.MILLIS_PER_DAY:
        return millis
    raise ValueError(
        "Time values must use number of milliseconds greater than 0 and less than "
        f"{javatext.MILLIS_PER_DAY}."
    )


def _to_double(value: JsonValue, t: sqltypes.SqlType) -> float:
    if _is_number(value):
        try:
            return float(value)
        except OverflowError:
            return float("inf") if value > 0 else float("-inf")
    if isinstance(value, str):
        try:
            return javatext.parse_double(value)
        except ValueError:
            raise _string_failure(BaseType.DOUBLE) from None
    raise _invalid(value, "DOUBLE")


def _to_boolean(value: JsonValue, t: sqltypes.SqlType) -> bool:
    if isinstance(value, bool):
        return value
    raise _invalid(value, "BOOLEAN")


def _to_decimal(value: JsonValue, t: sqltypes.SqlType) -> decimal.Decimal:
    assert isinstance(t, sqltypes.Decimal)
    if _is_number(value):
        number = value if isinstance(value, decimal.Decimal) else decimal.Decimal(repr(value) if isinstance(value, float) else value)
        return javatext.ensure_fit(number, t.precision, t.scale)
    if isinstance(value, str):
        return javatext.ensure_fit(javatext.parse_big_decimal(value), t.precision, t.scale)
    raise _invalid(value, t)


def _to_bytes(value: JsonValue, t: sqltypes.SqlType) -> bytes:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"Value is not a valid Base64 encoded string: {value}") from None
    raise _invalid(value, t)


def as_text(value: JsonValue) -> str:
    """Jackson's ``asText`` of a scalar node, or how ksqlDB prints an object or array as STRING."""
    match value:
        case bool():
            return "true" if value else "false"
        case str():
            return value
        case decimal.Decimal():
            return javatext.big_decimal_str(value)
        case float():
            return javatext.double_str(value)
        case int():
            return str(value)
        case dict():
            return dump_compact(value)
        case list():
            return "[" + ", ".join("null" if v is None else as_text(v) for v in value) + "]"
    return ""


def dump_compact(value: JsonValue) -> str:
    """JSON text without spaces, decimals printed as Java's BigDecimal prints them."""
    match value:
        case dict():
            return "{" + ",".join(json.dumps(k) + ":" + dump_compact(v) for k, v in value.items()) + "}"
        case list():
            return "[" + ",".join(dump_compact(v) for v in value) + "]"
        case None:
            return "null"
        case str():
            return json.dumps(value, ensure_ascii=False)
    return as_text(value)


def _to_string(value: JsonValue, t: sqltypes.SqlType) -> str:
    return as_text(value)


def _to_array(value: JsonValue, t: sqltypes.SqlType) -> list[object]:
    assert isinstance(t, sqltypes.Array)
    if not isinstance(value, list):
        raise _invalid(value, t)
    return [coerce(v, t.element, f"[{i}]") for i, v in enumerate(value)]


def _to_map(value: JsonValue, t: sqltypes.SqlType) -> list[tuple[str, object]]:
    assert isinstance(t, sqltypes.Map)
    if not isinstance(value, dict):
        raise _invalid(value, t)
    return [(k, coerce(v, t.value, f".{k}.value")) for k, v in value.items()]


def _to_struct(value: JsonValue, t: sqltypes.SqlType) -> dict[str, object]:
    assert isinstance(t, sqltypes.Struct)
    if not isinstance(value, dict):
        raise _invalid(value, t)
    found = lookup_all(value, (f.name for f in t.fields))
    return {f.name: coerce(v, f.type, f".{f.name}") for f, v in zip(t.fields, found)}


def lookup(obj: dict[str, JsonValue], name: str) -> JsonValue:
    """A field of a JSON object by column name: exact match first, then upper-cased keys
    (ksqlDB's case-insensitive rule; unquoted column names are upper case)."""
    return lookup_all(obj, (name,))[0]


def lookup_all(obj: dict[str, JsonValue], names: Iterable[str]) -> list[JsonValue]:
    """:func:`lookup` of each of ``names``, upper-casing the object's keys at most once."""
    upper: dict[str, JsonValue] | None = None
    out: list[JsonValue] = []
    for name in names:
        if name in obj:
            out.append(obj[name])
            continue
        if upper is None:
            upper = {k.upper(): v for k, v in obj.items()}  # a later key wins, as in ksqlDB
        out.append(upper.get(name))
    return out


_HANDLERS: dict[BaseType, Callable[[JsonValue, sqltypes.SqlType], object]] = {
    BaseType.BOOLEAN: _to_boolean,
    BaseType.INTEGER: _to_int,
    BaseType.BIGINT: _to_bigint,
    BaseType.DOUBLE: _to_double,
    BaseType.DECIMAL: _to_decimal,
    BaseType.STRING: _to_string,
    BaseType.BYTES: _to_bytes,
    BaseType.DATE: _to_date,
    BaseType.TIME: _to_time,
    BaseType.TIMESTAMP: _to_timestamp,
    BaseType.ARRAY: _to_array,
    BaseType.MAP: _to_map,
    BaseType.STRUCT: _to_struct,
}


def coerce(value: JsonValue, t: sqltypes.SqlType, path: str = "$") -> object:
    """``value`` as the physical Python value of ``t``; ``None`` for JSON null or absence."""
    if value is None:
        return None
    try:
        return _HANDLERS[t.base](value, t)
    except CoercionError as e:
        raise CoercionError(e.raw, path + e.path) from None
    except (ValueError, ArithmeticError) as e:
        raise CoercionError(str(e), path) from None


def parse_json(data: bytes) -> JsonValue:
    """Parse one record exactly (decimals as ``Decimal``), as ksqlDB's Jackson mapper does."""
    return json.loads(data, parse_float=decimal.Decimal)
