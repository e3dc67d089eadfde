"""The NONE format, and the "no columns" case of every format: records carry nothing.

Reading ignores the bytes (a key-less stream may still receive keys); writing produces null.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.runtime.serde.base import Decoded, Deserializer, Serializer, combine, empty_width_table
from ksqlpy.sqltypes import Field


class VoidDeserializer(Deserializer):
    def __init__(self, columns: Sequence[Field] = (), *, is_key: bool) -> None:
        super().__init__(columns, is_key=is_key)

    def decode(self, data: pa.Array | pa.ChunkedArray, *, topic: str = "?") -> Decoded:
        data = combine(data)
        return Decoded(table=empty_width_table(len(data)), present=pc.is_valid(data))


class VoidSerializer(Serializer):
    def __init__(self, columns: Sequence[Field] = (), *, is_key: bool) -> None:
        super().__init__(columns, is_key=is_key)

    def encode(self, table: pa.Table, *, present: pa.Array | None = None) -> pa.BinaryArray:
        array = pa.nulls(table.num_rows, pa.binary())
        assert isinstance(array, pa.BinaryArray)
        return array
