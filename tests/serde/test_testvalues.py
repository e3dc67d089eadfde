"""QTT-level keys and values to bytes and back."""

from __future__ import annotations

import struct

import pytest

from ksqlpy import sqltypes as st
from ksqlpy.runtime.serde import Format, SerdeSpec, WindowKind
from ksqlpy.runtime.serde.testvalues import (
    decode_test_value,
    decode_windowed_test_key,
    encode_test_value,
    encode_windowed_test_key,
)


def spec(name: str) -> SerdeSpec:
    return SerdeSpec(format=Format.parse(name))


@pytest.mark.parametrize(
    ("fmt", "column", "value", "data"),
    [
        ("KAFKA", st.INTEGER, 2, struct.pack(">i", 2)),
        ("KAFKA", st.BIGINT, 998877665544332211, struct.pack(">q", 998877665544332211)),
        ("KAFKA", st.DOUBLE, 2.2, struct.pack(">d", 2.2)),
        ("KAFKA", st.STRING, "foo", b"foo"),
        ("KAFKA", st.BYTES, "dmFyaWF0aW9ucw==", b"variations"),
        ("DELIMITED", st.STRING, "0,zero,0", b"0,zero,0"),
        ("JSON", st.STRING, {"F": [1, "x"]}, b'{"F":[1,"x"]}'),
        ("JSON", st.BOOLEAN, "not a boolean", b'"not a boolean"'),
    ],
)
def test_values_to_bytes_and_back(fmt: str, column: st.SqlType, value: object, data: bytes) -> None:
    columns = [st.Field("V", column)]
    assert encode_test_value(value, spec=spec(fmt), columns=columns, is_key=False) == data
    assert decode_test_value(data, spec=spec(fmt), columns=columns, is_key=False) == value


def test_null_is_a_tombstone_everywhere() -> None:
    for fmt in ("JSON", "DELIMITED", "KAFKA", "NONE"):
        assert encode_test_value(None, spec=spec(fmt), columns=[], is_key=True) is None
        assert decode_test_value(None, spec=spec(fmt), columns=[], is_key=True) is None


def test_windowed_keys() -> None:
    columns = [st.Field("K", st.STRING)]
    data = encode_windowed_test_key("a", spec=spec("KAFKA"), columns=columns, kind=WindowKind.SESSION, start=5, end=9)
    assert data == b"a" + struct.pack(">q", 9) + struct.pack(">q", 5)
    assert decode_windowed_test_key(data, spec=spec("KAFKA"), columns=columns, kind=WindowKind.SESSION) == ("a", 5, 9)
    tumbling = encode_windowed_test_key(1, spec=spec("JSON"), columns=columns, kind=WindowKind.TUMBLING, start=0, end=None)
    assert decode_windowed_test_key(
        tumbling, spec=spec("JSON"), columns=columns, kind=WindowKind.TUMBLING, size_ms=1000
    ) == (1, 0, 1000)


def test_json_decimals_read_back_with_their_scale() -> None:
    from decimal import Decimal

    columns = [st.Field("D", st.Decimal(3, 2))]
    value = decode_test_value(b'{"D": 3.40}', spec=spec("JSON"), columns=columns, is_key=False)
    assert value == {"D": Decimal("3.40")} and str(value["D"]) == "3.40"
