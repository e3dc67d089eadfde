"""QTT records <-> topic records: spec-level serialization per format, windowed keys."""

from __future__ import annotations

import struct
from decimal import Decimal

import pyarrow as pa
import pytest

from ksqlpy import sqltypes
from ksqlpy.parser.ast import SourceKind
from ksqlpy.planner.catalog import Column, ColumnNamespace, FormatInfo, Source, WindowInfo, WindowType
from ksqlpy.testing.qtt import Header, QttRecord, Window
from ksqlpy.testing.records import UnsupportedFormat, decode, dump_json, encode, produce_batch, read_records


def source(key_format: str, value_format: str, *, key_type: sqltypes.SqlType = sqltypes.INTEGER,
           window: WindowInfo | None = None) -> Source:
    return Source(
        name="S", kind=SourceKind.STREAM, topic="t",
        columns=(Column(name="K", type=key_type, namespace=ColumnNamespace.KEY),
                 Column(name="V", type=sqltypes.STRING)),
        key_format=FormatInfo(format=key_format), value_format=FormatInfo(format=value_format), window=window,
    )


def test_json_text_keeps_decimal_digits() -> None:
    assert dump_json({"a": Decimal("1.10"), "b": [True, None, "x"], "c": 3}) == '{"a":1.10,"b":[true,null,"x"],"c":3}'


@pytest.mark.parametrize(
    ("base", "value", "raw"),
    [(sqltypes.INTEGER, 7, struct.pack(">i", 7)), (sqltypes.BIGINT, -2, struct.pack(">q", -2)),
     (sqltypes.DOUBLE, Decimal("1.5"), struct.pack(">d", 1.5)), (sqltypes.STRING, "hé", "hé".encode()),
     (sqltypes.BYTES, "IQ==", b"!")],
)
def test_kafka_primitives_round_trip(base: sqltypes.SqlType, value: object, raw: bytes) -> None:
    columns = [Column(name="K", type=base, namespace=ColumnNamespace.KEY)]
    fmt = FormatInfo(format="KAFKA")
    assert encode(fmt, columns, value) == raw
    assert decode(fmt, columns, raw) == (float(value) if isinstance(value, Decimal) else value)  # type: ignore[arg-type]


def test_delimited_and_json_are_written_as_given() -> None:
    assert encode(FormatInfo(format="DELIMITED"), [], "1,foo") == b"1,foo"
    assert encode(FormatInfo(format="JSON"), [], "a1") == b'"a1"'
    assert decode(FormatInfo(format="JSON"), [], b'{"X": 1.50}') == {"X": Decimal("1.50")}
    assert encode(FormatInfo(format="JSON"), [], None) is None
    with pytest.raises(UnsupportedFormat):
        encode(FormatInfo(format="AVRO"), [], {"A": 1})


def test_batches_round_trip_with_windows_and_headers() -> None:
    src = source("KAFKA", "JSON", window=WindowInfo(type=WindowType.TUMBLING, size_ms=10))
    records = [QttRecord(topic="t", key=3, value={"V": "x"}, timestamp=4, window=Window(10, 20, "TIME"),
                         headers=(Header("h", b"!"),)),
               QttRecord(topic="t", key=None, value=None, partition=0)]
    batch = produce_batch(src, records)
    assert batch.column("key")[0].as_py() == struct.pack(">iq", 3, 10)
    assert batch.column("timestamp").to_pylist() == [4, 0]
    stored = batch.drop_columns(["partition"]).append_column("topic", pa.array(["t", "t"])) \
        .append_column("partition", pa.array([0, 0], pa.int32())).append_column("offset", pa.array([0, 1]))
    first, second = read_records(stored, src)
    assert (first.key, first.value, first.window, first.headers) == (3, {"V": "x"}, Window(10, 20, "TIME"),
                                                                     (Header("h", b"!"),))
    assert (second.key, second.value, second.timestamp) == (None, None, 0)


def test_session_windows_carry_end_then_start() -> None:
    src = source("JSON", "JSON", window=WindowInfo(type=WindowType.SESSION))
    batch = produce_batch(src, [QttRecord(topic="t", key=1, value=None, window=Window(5, 9, "SESSION"))])
    assert batch.column("key")[0].as_py() == b"1" + struct.pack(">qq", 9, 5)
