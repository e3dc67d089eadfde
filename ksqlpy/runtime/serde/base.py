"""The serde contract: record bytes in, Arrow columns out, a batch at a time, and back.

A :class:`Deserializer` turns a binary column (the ``key`` or ``value`` of a batch read from a
topic store) into a :class:`Decoded`: one Arrow column per SQL column, a ``present`` mask telling
rows apart from tombstones and failures, and one :class:`RecordError` per malformed record. A bad
record never fails the batch; the runtime sends its error to the processing log.

A :class:`Serializer` turns an Arrow table with one column per SQL column back into a binary
column; rows outside the optional ``present`` mask become null (tombstones).

Also here: the "physical" Arrow types serdes build values in (DATE, TIME and TIMESTAMP as plain
integers) and the cast to the runtime's logical types of :func:`ksqlpy.sqltypes.to_arrow`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.sqltypes import Field


class RecordError(NamedTuple):
    """A record that could not be (de)serialized: its row in the batch and ksqlDB's message.
    A tuple, so ``for row, message in decoded.errors`` works."""

    row: int
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    """The result of decoding one binary column.

    ``table`` has one column per SQL column, in order, null wherever the record was null or bad.
    ``present`` is true where the record decoded to a row; false for null records (tombstones),
    records that decode to nothing (JSON ``null``) and malformed records, the last of which are
    also listed in ``errors``.
    """

    table: pa.Table
    present: pa.BooleanArray
    errors: tuple[RecordError, ...] = field(default=())


class Deserializer(abc.ABC):
    """Decodes a batch of records of one format and schema."""

    def __init__(self, columns: Sequence[Field], *, is_key: bool) -> None:
        self.columns = tuple(columns)
        self.is_key = is_key
        self.schema = arrow_schema(self.columns)

    @abc.abstractmethod
    def decode(self, data: pa.Array | pa.ChunkedArray, *, topic: str = "?") -> Decoded:
        """Decode ``data`` (binary, nulls allowed). Never raises for a bad record."""

    def error_prefix(self, topic: str) -> str:
        target = "key" if self.is_key else "value"
        return f"Failed to deserialize {target} from topic: {topic}. "


class Serializer(abc.ABC):
    """Encodes batches of rows of one format and schema."""

    def __init__(self, columns: Sequence[Field], *, is_key: bool) -> None:
        self.columns = tuple(columns)
        self.is_key = is_key
        self.schema = arrow_schema(self.columns)

    @abc.abstractmethod
    def encode(self, table: pa.Table, *, present: pa.Array | None = None) -> pa.BinaryArray:
        """One record per row of ``table`` (columns taken by position); null where ``present``
        is false. Raises :class:`ksqlpy.errors.SerdeError` for a value the format cannot hold."""


def arrow_schema(columns: Sequence[Field]) -> pa.Schema:
    return pa.schema([pa.field(c.name, sqltypes.to_arrow(c.type)) for c in columns])


def physical_type(t: sqltypes.SqlType) -> pa.DataType:
    """The Arrow type a serde builds values of ``t`` in: DATE as int32 days, TIME as int32
    millis, TIMESTAMP as int64 millis; casting to :func:`sqltypes.to_arrow` is then free."""
    match t:
        case sqltypes.Array(element=e):
            return pa.list_(physical_type(e))
        case sqltypes.Map(key=k, value=v):
            return pa.map_(physical_type(k), physical_type(v))
        case sqltypes.Struct(fields=fs):
            return pa.struct([pa.field(f.name, physical_type(f.type)) for f in fs])
        case sqltypes.Primitive(base=sqltypes.BaseType.DATE | sqltypes.BaseType.TIME):
            return pa.int32()
        case sqltypes.Primitive(base=sqltypes.BaseType.TIMESTAMP):
            return pa.int64()
    return sqltypes.to_arrow(t)


def has_temporal(t: sqltypes.SqlType) -> bool:
    match t:
        case sqltypes.Array(element=e):
            return has_temporal(e)
        case sqltypes.Map(key=k, value=v):
            return has_temporal(k) or has_temporal(v)
        case sqltypes.Struct(fields=fs):
            return any(has_temporal(f.type) for f in fs)
    return t.base in (sqltypes.BaseType.DATE, sqltypes.BaseType.TIME, sqltypes.BaseType.TIMESTAMP)


def to_logical(array: pa.Array, t: sqltypes.SqlType) -> pa.Array:
    """Cast an array built in :func:`physical_type` to the runtime type of ``t``."""
    target = sqltypes.to_arrow(t)
    if array.type == target:
        return array
    return array.cast(target, safe=False)


def to_physical(array: pa.Array | pa.ChunkedArray, t: sqltypes.SqlType) -> pa.Array | pa.ChunkedArray:
    """Cast a runtime array of type ``t`` to :func:`physical_type` (temporal types to ints)."""
    target = physical_type(t)
    if array.type == target:
        return array
    return array.cast(target, safe=False)


def build_column(values: list[object], t: sqltypes.SqlType) -> pa.Array:
    """An Arrow column of type ``t`` from physical Python values (see :func:`physical_type`)."""
    return to_logical(pa.array(values, type=physical_type(t)), t)


def null_table(schema: pa.Schema, rows: int) -> pa.Table:
    """A table of ``rows`` all-null rows (a zero-column table still has ``rows`` rows)."""
    if len(schema) == 0:
        return empty_width_table(rows)
    return pa.table([pa.nulls(rows, f.type) for f in schema], schema=schema)


def empty_width_table(rows: int) -> pa.Table:
    return pa.table({"_": pa.nulls(rows)}).drop_columns(["_"])


def valid_mask(data: pa.Array) -> pa.BooleanArray:
    mask = pc.is_valid(data)
    assert isinstance(mask, pa.BooleanArray)
    return mask


def combine(data: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array (store batches may arrive chunked)."""
    if isinstance(data, pa.ChunkedArray):
        return data.combine_chunks() if data.num_chunks != 1 else data.chunk(0)
    return data


def present_or_all(present: pa.Array | None, rows: int) -> pa.BooleanArray:
    if present is None:
        return pa.array([True] * rows, pa.bool_()) if rows else pa.array([], pa.bool_())
    filled = pc.fill_null(present, False)
    assert isinstance(filled, pa.BooleanArray)
    return filled
