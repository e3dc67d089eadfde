"""DELIMITED serde: Commons CSV parsing and quoting, Java parsing, per-record errors."""

from __future__ import annotations

import decimal

import pyarrow as pa
import pytest

from ksqlpy import sqltypes as st
from ksqlpy.runtime.serde import Format, SerdeSpec, deserializer, serializer
from ksqlpy.runtime.serde.delimited import CsvError, first_record

CSV = SerdeSpec(format=Format.DELIMITED)
COLS = [st.Field("ID", st.BIGINT), st.Field("NAME", st.STRING), st.Field("VALUE", st.INTEGER)]


def decode(records: list[bytes | None], cols: list[st.Field] = COLS, spec: SerdeSpec = CSV):
    return deserializer(spec, cols, is_key=False).decode(pa.array(records, pa.binary()), topic="t")


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("a,b,c", ["a", "b", "c"]),
        ('"a,b",c', ["a,b", "c"]),
        ('"say ""hi""",x', ['say "hi"', "x"]),
        ('a"b,c', ['a"b', "c"]),
        ('"x"  ,y', ["x", "y"]),
        ("a,", ["a", ""]),
        (",", ["", ""]),
        ("\n\na,b\nc,d", ["a", "b"]),
        ('"multi\nline",z', ["multi\nline", "z"]),
        ("", None),
    ],
)
def test_first_record(text: str, fields: list[str] | None) -> None:
    assert first_record(text, ",") == fields


@pytest.mark.parametrize("text", ['"open', '"a"b,c'])
def test_first_record_rejects(text: str) -> None:
    with pytest.raises(CsvError):
        first_record(text, ",")


def test_decode_simple_and_quoted() -> None:
    out = decode([b"0,zero,0", b'100,"a,b",-5', b'"22",,7', None])
    assert out.table.to_pylist() == [
        {"ID": 0, "NAME": "zero", "VALUE": 0},
        {"ID": 100, "NAME": "a,b", "VALUE": -5},
        {"ID": 22, "NAME": None, "VALUE": 7},
        {"ID": None, "NAME": None, "VALUE": None},
    ]
    assert out.present.to_pylist() == [True, True, True, False]
    assert out.errors == ()


def test_bad_records_are_reported_per_row() -> None:
    out = decode([b"1,a,1", b"1,a", b"x,a,1", b"", b"2,b,2", b"1,a,99999999999"])
    assert [e.row for e in out.errors] == [1, 2, 3, 5]
    assert [e.message for e in out.errors] == [
        "Failed to deserialize value from topic: t. Column count mismatch on deserialization. topic: t, expected: 3, got: 2",
        'Failed to deserialize value from topic: t. Error deserializing delimited: For input string: "x"',
        "Failed to deserialize value from topic: t. No fields in record",
        'Failed to deserialize value from topic: t. Error deserializing delimited: For input string: "99999999999"',
    ]
    assert out.table.column("ID").to_pylist() == [1, None, None, None, 2, None]
    assert out.present.to_pylist() == [True, False, False, False, True, False]


def test_java_parsing_rules() -> None:
    cols = [st.Field("B", st.BOOLEAN), st.Field("D", st.DOUBLE), st.Field("X", st.Decimal(6, 4))]
    out = decode([b"TRUE,1e3,12.0", b"yes, 2.5 ,-0.5", b"false,NaN,1"], cols)
    rows = out.table.to_pylist()
    assert rows[0] == {"B": True, "D": 1000.0, "X": decimal.Decimal("12.0000")}
    assert rows[1] == {"B": False, "D": 2.5, "X": decimal.Decimal("-0.5000")}
    assert rows[2]["D"] != rows[2]["D"]


@pytest.mark.parametrize(("name", "char"), [("TAB", "\t"), ("SPACE", " "), ("|", "|"), ("$", "$")])
def test_other_delimiters(name: str, char: str) -> None:
    from ksqlpy.runtime.serde import parse_delimiter

    spec = SerdeSpec(format=Format.DELIMITED, delimiter=parse_delimiter(name))
    record = char.join(["100", "100", "500"]).encode()
    out = decode([record], spec=spec)
    assert out.table.to_pylist() == [{"ID": 100, "NAME": "100", "VALUE": 500}]
    assert serializer(spec, COLS, is_key=False).encode(out.table).to_pylist() == [record]


def test_serialize_quotes_minimally() -> None:
    cols = [st.Field("A", st.STRING), st.Field("B", st.STRING), st.Field("C", st.DOUBLE)]
    table = pa.table(
        {
            "A": ["plain", "", None, " lead", "#hash"],
            "B": ['has "q"', "", None, "a,b", "trail "],
            "C": [1.0, 1e10, None, -0.5, 1e-4],
        }
    )
    out = serializer(CSV, cols, is_key=False).encode(table)
    assert out.to_pylist() == [
        b'plain,"has ""q""",1.0',
        b'"",,1.0E10',
        b",,",
        b'" lead","a,b",-0.5',
        b'"#hash","trail ",1.0E-4',
    ]
    # and what is written reads back
    back = deserializer(CSV, cols, is_key=False).decode(out)
    assert back.table.column("B").to_pylist() == ['has "q"', None, None, "a,b", "trail "]


def test_serialize_decimal_and_bytes() -> None:
    cols = [st.Field("D", st.Decimal(6, 4)), st.Field("B", st.BYTES), st.Field("T", st.TIME)]
    table = pa.table(
        [
            pa.array([decimal.Decimal("12.0000")], pa.decimal128(6, 4)),
            pa.array([b"variations"]),
            pa.array([1000], pa.int32()).cast(pa.time32("ms")),
        ],
        names=["D", "B", "T"],
    )
    assert serializer(CSV, cols, is_key=False).encode(table).to_pylist() == [b"12.0000,dmFyaWF0aW9ucw==,1000"]


def test_single_null_column_writes_an_empty_record_that_reads_as_bad() -> None:
    cols = [st.Field("V", st.INTEGER)]
    written = serializer(CSV, cols, is_key=False).encode(pa.table({"V": pa.array([None], pa.int32())}))
    assert written.to_pylist() == [b""]
    out = deserializer(CSV, cols, is_key=False).decode(written)
    assert out.present.to_pylist() == [False]
    assert [e.message for e in out.errors] == ["Failed to deserialize value from topic: ?. No fields in record"]


def test_a_record_starting_with_anything_but_a_letter_or_digit_is_quoted() -> None:
    import pyarrow as pa

    from ksqlpy import sqltypes
    from ksqlpy.runtime.serde.delimited import DelimitedSerializer

    columns = [sqltypes.Field("A", sqltypes.INTEGER), sqltypes.Field("B", sqltypes.INTEGER)]
    serializer = DelimitedSerializer(columns, is_key=False, delimiter=",")
    table = pa.table({"A": pa.array([-1, 1], pa.int32()), "B": pa.array([-2, -2], pa.int32())})
    # Commons CSV 1.4's MINIMAL quoting looks at the first character of a record only
    assert serializer.encode(table).to_pylist() == [b'"-1",-2', b"1,-2"]
