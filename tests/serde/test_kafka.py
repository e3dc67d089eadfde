"""KAFKA serde: Kafka's primitive byte layouts."""

from __future__ import annotations

import struct

import pyarrow as pa
import pytest

from ksqlpy import sqltypes as st
from ksqlpy.runtime.serde import Format, SerdeSpec, deserializer, serializer

KAFKA = SerdeSpec(format=Format.KAFKA)


@pytest.mark.parametrize(
    ("sql_type", "values", "layout"),
    [
        (st.INTEGER, [1, -2, 2**31 - 1], ">i"),
        (st.BIGINT, [1, -(2**63), 998877665544332211], ">q"),
        (st.DOUBLE, [1.1, -0.0, float("inf")], ">d"),
    ],
)
def test_fixed_width_layouts(sql_type: st.SqlType, values: list[object], layout: str) -> None:
    cols = [st.Field("V", sql_type)]
    records = [struct.pack(layout, v) for v in values] + [None]
    out = deserializer(KAFKA, cols, is_key=False).decode(pa.array(records, pa.binary()))
    assert out.table.column("V").to_pylist() == values + [None]
    assert out.present.to_pylist() == [True, True, True, False]
    again = serializer(KAFKA, cols, is_key=False).encode(out.table)
    assert again.to_pylist() == records


def test_wrong_size_is_a_record_error() -> None:
    out = deserializer(KAFKA, [st.Field("V", st.INTEGER)], is_key=True).decode(
        pa.array([b"\x00\x00\x00\x01", b"\x01", b""], pa.binary()), topic="t"
    )
    assert out.table.column("V").to_pylist() == [1, None, None]
    assert [e.row for e in out.errors] == [1, 2]
    assert out.errors[0].message == (
        "Error deserializing KAFKA message from topic: t. Size of data received by IntegerDeserializer is not 4"
    )


def test_string_and_bytes() -> None:
    s = deserializer(KAFKA, [st.Field("S", st.STRING)], is_key=True).decode(
        pa.array([b"caf\xc3\xa9", b"\xff", b""], pa.binary())
    )
    assert s.table.column("S").to_pylist() == ["café", "\ufffd", ""]
    b = deserializer(KAFKA, [st.Field("B", st.BYTES)], is_key=False).decode(pa.array([b"\x00\x01"], pa.binary()))
    assert b.table.column("B").to_pylist() == [b"\x00\x01"]
    assert serializer(KAFKA, [st.Field("S", st.STRING)], is_key=True).encode(
        pa.table({"S": ["é", None]})
    ).to_pylist() == ["é".encode(), None]


def test_no_columns_ignores_the_key() -> None:
    out = deserializer(KAFKA, [], is_key=True).decode(pa.array([b"whatever", None], pa.binary()))
    assert out.table.num_rows == 2 and out.table.num_columns == 0 and out.errors == ()
    assert serializer(KAFKA, [], is_key=True).encode(out.table).to_pylist() == [None, None]
