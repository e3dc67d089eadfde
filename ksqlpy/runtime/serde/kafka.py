"""The KAFKA format: one column as Kafka's own primitive serializers lay it out.

INT is 4 bytes big-endian two's complement, BIGINT 8 bytes, DOUBLE an 8-byte big-endian IEEE 754
double, STRING UTF-8 text and BYTES the raw bytes (Kafka's ``IntegerSerializer``,
``LongSerializer``, ``DoubleSerializer``, ``StringSerializer``, ``ByteBufferSerializer``).
A schema without columns (a key-less stream) reads nothing and writes null.

Fixed-width layouts are decoded and encoded with numpy views over the Arrow buffers: no Python
work per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.runtime.serde.base import (
    Decoded,
    Deserializer,
    RecordError,
    Serializer,
    combine,
    null_table,
    present_or_all,
)
from ksqlpy.sqltypes import BaseType, Field


@dataclass(frozen=True, slots=True)
class _Width:
    size: int
    dtype: str
    arrow: pa.DataType
    kafka_name: str


_FIXED: dict[BaseType, _Width] = {
    BaseType.INTEGER: _Width(4, ">i4", pa.int32(), "IntegerDeserializer"),
    BaseType.BIGINT: _Width(8, ">i8", pa.int64(), "LongDeserializer"),
    BaseType.DOUBLE: _Width(8, ">f8", pa.float64(), "DoubleDeserializer"),
}


def _offsets(array: pa.Array) -> np.ndarray:
    raw = np.frombuffer(array.buffers()[1], dtype=np.int32)
    return raw[array.offset : array.offset + len(array) + 1]


def _data(array: pa.Array) -> np.ndarray:
    buffer = array.buffers()[2]
    return np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.zeros(0, dtype=np.uint8)


class KafkaDeserializer(Deserializer):
    def __init__(self, columns: Sequence[Field], *, is_key: bool) -> None:
        super().__init__(columns, is_key=is_key)

    def decode(self, data: pa.Array | pa.ChunkedArray, *, topic: str = "?") -> Decoded:
        data = combine(data).cast(pa.binary())
        rows = len(data)
        if not self.columns:
            return Decoded(table=null_table(self.schema, rows), present=pc.is_valid(data))
        base = self.columns[0].type.base
        width = _FIXED.get(base)
        errors: list[RecordError] = []
        if width is not None:
            column, errors = self._fixed(data, width, topic)
        elif base is BaseType.STRING:
            column = _utf8(data)
        else:
            column = data
        present = pc.is_valid(column)
        return Decoded(table=pa.table([column], schema=self.schema), present=present, errors=tuple(errors))

    def _fixed(self, data: pa.Array, width: _Width, topic: str) -> tuple[pa.Array, list[RecordError]]:
        valid = np.asarray(pc.is_valid(data), dtype=bool)
        offsets = _offsets(data)
        lengths = np.diff(offsets)
        wrong = valid & (lengths != width.size)
        good = valid & ~wrong
        starts = offsets[:-1][good]
        raw = _data(data)
        gathered = raw[starts[:, None] + np.arange(width.size)] if len(starts) else np.zeros((0, width.size), np.uint8)
        values = np.zeros(len(data), dtype=width.dtype[1:])
        values[good] = gathered.reshape(-1).view(width.dtype)
        column = pa.array(values, type=width.arrow, mask=~good)
        errors = [
            RecordError(
                int(row),
                f"Error deserializing KAFKA message from topic: {topic}. "
                f"Size of data received by {width.kafka_name} is not {width.size}",
            )
            for row in np.flatnonzero(wrong)
        ]
        return column, errors


def _utf8(data: pa.Array) -> pa.Array:
    """UTF-8 text; invalid sequences become U+FFFD as Java's ``new String(bytes, UTF_8)`` does."""
    try:
        return data.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array(
            [None if v is None else v.decode("utf-8", "replace") for v in data.to_pylist()], pa.string()
        )


class KafkaSerializer(Serializer):
    def __init__(self, columns: Sequence[Field], *, is_key: bool) -> None:
        super().__init__(columns, is_key=is_key)

    def encode(self, table: pa.Table, *, present: pa.Array | None = None) -> pa.BinaryArray:
        rows = table.num_rows
        if not self.columns:
            return pa.nulls(rows, pa.binary())
        keep = present_or_all(present, rows)
        column = combine(table.column(0))
        column = pc.if_else(keep, column, pa.nulls(rows, column.type))
        width = _FIXED.get(self.columns[0].type.base)
        if width is None:
            return column.cast(pa.binary())
        valid = np.asarray(pc.is_valid(column), dtype=bool)
        values = np.asarray(pc.fill_null(column.cast(width.arrow), 0)).astype(width.dtype)
        sizes = np.where(valid, width.size, 0).astype(np.int32)
        offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int32)]).astype(np.int32)
        payload = values.view(np.uint8).reshape(rows, width.size)[valid].reshape(-1)
        validity = pa.array(valid).buffers()[1] if not valid.all() else None
        array = pa.Array.from_buffers(
            pa.binary(), rows, [validity, pa.py_buffer(offsets.tobytes()), pa.py_buffer(payload.tobytes())]
        )
        assert isinstance(array, pa.BinaryArray)
        return array
