"""The bytes a query counts as read and written: the lengths of its records' keys and values,
nulls counting nothing, whatever the slicing and chunking of the batch's columns."""

from __future__ import annotations

import pyarrow as pa

from ksqlpy.runtime.stats import record_bytes


def _by_value(table: pa.Table) -> int:
    return sum(len(v) for name in ("key", "value") for v in table.column(name).to_pylist() if v is not None)


def test_sliced_chunked_and_null_columns_count_their_values_only() -> None:
    values = pa.chunked_array(
        [pa.array([b"xyz", b"", b"q"], pa.binary()).slice(1, 2), pa.array([b"12345", b"77"], pa.binary()).slice(1)]
    )
    keys = pa.array([b"ab", None, b"cde", b"f"], pa.binary()).slice(1)
    table = pa.table({"key": keys, "value": values})
    assert record_bytes(table) == _by_value(table) == 4 + 3

    strings = pa.table({"key": pa.nulls(2, pa.binary()), "value": pa.array(["héllo", "a", "bb"]).slice(1)})
    assert record_bytes(strings) == 3
    large = pa.table({"key": pa.array([b"ab"] * 3, pa.large_binary()).slice(1), "value": pa.nulls(2)})
    assert record_bytes(large) == 4
    assert record_bytes(pa.table({"value": pa.array([], pa.binary())})) == 0
