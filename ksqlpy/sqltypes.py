"""ksqlDB's SQL types, and how they map onto Arrow and DuckDB.

A type is an immutable value: ``SqlType.INTEGER`` and friends for the primitives, and
:class:`Decimal`, :class:`Array`, :class:`Map`, :class:`Struct` for the parameterised ones.
``str(t)`` prints a type the way ksqlDB does in schemas and error messages
(``INTEGER``, ``DECIMAL(4, 2)``, ``STRUCT<`F1` STRING>``).

This module imports nothing from ksqlpy, so every layer may use it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

import pyarrow as pa


class BaseType(enum.Enum):
    BOOLEAN = "BOOLEAN"
    INTEGER = "INTEGER"
    BIGINT = "BIGINT"
    DOUBLE = "DOUBLE"
    DECIMAL = "DECIMAL"
    STRING = "STRING"
    BYTES = "BYTES"
    DATE = "DATE"
    TIME = "TIME"
    TIMESTAMP = "TIMESTAMP"
    ARRAY = "ARRAY"
    MAP = "MAP"
    STRUCT = "STRUCT"


@dataclass(frozen=True, slots=True)
class Primitive:
    base: BaseType

    def __str__(self) -> str:
        return self.base.value


@dataclass(frozen=True, slots=True)
class Decimal:
    precision: int
    scale: int

    @property
    def base(self) -> BaseType:
        return BaseType.DECIMAL

    def __str__(self) -> str:
        return f"DECIMAL({self.precision}, {self.scale})"


@dataclass(frozen=True, slots=True)
class Array:
    element: SqlType

    @property
    def base(self) -> BaseType:
        return BaseType.ARRAY

    def __str__(self) -> str:
        return f"ARRAY<{self.element}>"


@dataclass(frozen=True, slots=True)
class Map:
    key: SqlType
    value: SqlType

    @property
    def base(self) -> BaseType:
        return BaseType.MAP

    def __str__(self) -> str:
        return f"MAP<{self.key}, {self.value}>"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: SqlType

    def __str__(self) -> str:
        return f"`{self.name}` {self.type}"


@dataclass(frozen=True, slots=True)
class Struct:
    fields: tuple[Field, ...]

    @property
    def base(self) -> BaseType:
        return BaseType.STRUCT

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def __str__(self) -> str:
        return "STRUCT<" + ", ".join(str(f) for f in self.fields) + ">"


SqlType: TypeAlias = Primitive | Decimal | Array | Map | Struct

BOOLEAN = Primitive(BaseType.BOOLEAN)
INTEGER = Primitive(BaseType.INTEGER)
BIGINT = Primitive(BaseType.BIGINT)
DOUBLE = Primitive(BaseType.DOUBLE)
STRING = Primitive(BaseType.STRING)
BYTES = Primitive(BaseType.BYTES)
DATE = Primitive(BaseType.DATE)
TIME = Primitive(BaseType.TIME)
TIMESTAMP = Primitive(BaseType.TIMESTAMP)

PRIMITIVES_BY_NAME: dict[str, SqlType] = {
    "BOOLEAN": BOOLEAN,
    "INT": INTEGER,
    "INTEGER": INTEGER,
    "BIGINT": BIGINT,
    "DOUBLE": DOUBLE,
    "STRING": STRING,
    "VARCHAR": STRING,
    "BYTES": BYTES,
    "DATE": DATE,
    "TIME": TIME,
    "TIMESTAMP": TIMESTAMP,
}

NUMERIC_BASES = frozenset({BaseType.INTEGER, BaseType.BIGINT, BaseType.DECIMAL, BaseType.DOUBLE})

# ksqlDB's implicit numeric widening order: INTEGER -> BIGINT -> DECIMAL -> DOUBLE.
_NUMERIC_RANK = {BaseType.INTEGER: 0, BaseType.BIGINT: 1, BaseType.DECIMAL: 2, BaseType.DOUBLE: 3}


def is_numeric(t: SqlType) -> bool:
    return t.base in NUMERIC_BASES


def decimal_of(t: SqlType) -> Decimal:
    """The DECIMAL a numeric type widens to (ksqlDB: INTEGER -> DECIMAL(10,0), BIGINT -> DECIMAL(19,0))."""
    if isinstance(t, Decimal):
        return t
    if t == INTEGER:
        return Decimal(10, 0)
    if t == BIGINT:
        return Decimal(19, 0)
    raise ValueError(f"{t} has no DECIMAL form")


def widen(a: SqlType, b: SqlType) -> SqlType | None:
    """The common type two numeric types widen to, or None when they have none.

    Non-numeric types only 'widen' to themselves.
    """
    if a == b:
        return a
    if is_numeric(a) and is_numeric(b):
        ra, rb = _NUMERIC_RANK[a.base], _NUMERIC_RANK[b.base]
        if BaseType.DOUBLE in (a.base, b.base):
            return DOUBLE
        if BaseType.DECIMAL in (a.base, b.base):
            da, db = decimal_of(a), decimal_of(b)
            scale = max(da.scale, db.scale)
            digits = max(da.precision - da.scale, db.precision - db.scale)
            return Decimal(min(digits + scale, 38), scale)
        return a if ra >= rb else b
    return None


def can_implicitly_cast(source: SqlType, target: SqlType) -> bool:
    """Whether ksqlDB would widen ``source`` to ``target`` without an explicit CAST."""
    if source == target:
        return True
    if is_numeric(source) and is_numeric(target):
        if isinstance(target, Decimal):
            if isinstance(source, Decimal):
                return (target.precision - target.scale) >= (source.precision - source.scale) and (
                    target.scale >= source.scale
                )
            if source.base in (BaseType.INTEGER, BaseType.BIGINT):
                d = decimal_of(source)
                return target.precision - target.scale >= d.precision
            return False
        return _NUMERIC_RANK[source.base] <= _NUMERIC_RANK[target.base]
    if isinstance(source, Array) and isinstance(target, Array):
        return can_implicitly_cast(source.element, target.element)
    if isinstance(source, Map) and isinstance(target, Map):
        return can_implicitly_cast(source.key, target.key) and can_implicitly_cast(
            source.value, target.value
        )
    if isinstance(source, Struct) and isinstance(target, Struct):
        return len(source.fields) == len(target.fields) and all(
            s.name == t.name and can_implicitly_cast(s.type, t.type)
            for s, t in zip(source.fields, target.fields)
        )
    return False


def to_arrow(t: SqlType) -> pa.DataType:
    """The Arrow type that carries values of ``t`` through the runtime."""
    match t:
        case Decimal(precision=p, scale=s):
            return pa.decimal128(max(p, 1), s)
        case Array(element=e):
            return pa.list_(to_arrow(e))
        case Map(key=k, value=v):
            return pa.map_(to_arrow(k), to_arrow(v))
        case Struct(fields=fs):
            return pa.struct([pa.field(f.name, to_arrow(f.type)) for f in fs])
        case Primitive(base=b):
            return _ARROW_PRIMITIVES[b]
    raise TypeError(t)


_ARROW_PRIMITIVES: dict[BaseType, pa.DataType] = {
    BaseType.BOOLEAN: pa.bool_(),
    BaseType.INTEGER: pa.int32(),
    BaseType.BIGINT: pa.int64(),
    BaseType.DOUBLE: pa.float64(),
    BaseType.STRING: pa.string(),
    BaseType.BYTES: pa.binary(),
    BaseType.DATE: pa.date32(),
    BaseType.TIME: pa.time32("ms"),
    BaseType.TIMESTAMP: pa.timestamp("ms"),
}


def to_duckdb(t: SqlType) -> str:
    """The DuckDB type name for ``t`` (as used in CAST and table definitions)."""
    match t:
        case Decimal(precision=p, scale=s):
            return f"DECIMAL({max(p, 1)}, {s})"
        case Array(element=e):
            return f"{to_duckdb(e)}[]"
        case Map(key=k, value=v):
            return f"MAP({to_duckdb(k)}, {to_duckdb(v)})"
        case Struct(fields=fs):
            inner = ", ".join('"' + f.name.replace('"', '""') + '" ' + to_duckdb(f.type) for f in fs)
            return f"STRUCT({inner})"
        case Primitive(base=b):
            return _DUCKDB_PRIMITIVES[b]
    raise TypeError(t)


_DUCKDB_PRIMITIVES: dict[BaseType, str] = {
    BaseType.BOOLEAN: "BOOLEAN",
    BaseType.INTEGER: "INTEGER",
    BaseType.BIGINT: "BIGINT",
    BaseType.DOUBLE: "DOUBLE",
    BaseType.STRING: "VARCHAR",
    BaseType.BYTES: "BLOB",
    BaseType.DATE: "DATE",
    BaseType.TIME: "TIME",
    BaseType.TIMESTAMP: "TIMESTAMP",
}


def from_arrow(t: pa.DataType) -> SqlType:
    """The SQL type of an Arrow type produced by the runtime (inverse of :func:`to_arrow`)."""
    if pa.types.is_boolean(t):
        return BOOLEAN
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_int32(t):
        return INTEGER
    if pa.types.is_integer(t):
        return BIGINT
    if pa.types.is_floating(t):
        return DOUBLE
    if pa.types.is_decimal(t):
        return Decimal(t.precision, t.scale)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return STRING
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return BYTES
    if pa.types.is_date(t):
        return DATE
    if pa.types.is_time(t):
        return TIME
    if pa.types.is_timestamp(t):
        return TIMESTAMP
    if pa.types.is_map(t):
        return Map(from_arrow(t.key_type), from_arrow(t.item_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return Array(from_arrow(t.value_type))
    if pa.types.is_struct(t):
        return Struct(tuple(Field(t.field(i).name, from_arrow(t.field(i).type)) for i in range(t.num_fields)))
    raise TypeError(f"no SQL type for Arrow type {t}")
