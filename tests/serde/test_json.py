"""JSON serde: ksqlDB's coercions, case-insensitive fields, unwrapping, per-record errors."""

from __future__ import annotations

import datetime
import decimal

import orjson
import pyarrow as pa
import pytest

from ksqlpy import sqltypes as st
from ksqlpy.runtime.serde import Format, SerdeSpec, deserializer, serializer

JSON = SerdeSpec(format=Format.JSON)
UNWRAPPED = SerdeSpec(format=Format.JSON, wrap_single_value=False)


def decode(columns: list[st.Field], records: list[bytes | None], spec: SerdeSpec = JSON, is_key: bool = False):
    return deserializer(spec, columns, is_key=is_key).decode(pa.array(records, pa.binary()), topic="t")


def test_fields_match_exactly_then_case_insensitively() -> None:
    cols = [st.Field("ID", st.BIGINT), st.Field("Name", st.STRING)]
    out = decode(cols, [b'{"id": 1, "Name": "a"}', b'{"ID": 2, "name": "b"}', b'{"iD": 3, "NAME": "c"}'])
    # quoted (mixed-case) column names match only their exact spelling or upper-case keys
    assert out.table.to_pylist() == [
        {"ID": 1, "Name": "a"},
        {"ID": 2, "Name": None},
        {"ID": 3, "Name": None},
    ]
    assert out.errors == ()


def test_exact_spelling_wins_over_case_variant() -> None:
    out = decode([st.Field("FOO", st.INTEGER)], [b'{"foo": 1, "FOO": 2}', b'{"FOO": null, "foo": 3}'])
    assert out.table.column("FOO").to_pylist() == [2, None]


def test_numeric_coercions_follow_java() -> None:
    cols = [st.Field("I", st.INTEGER), st.Field("B", st.BIGINT), st.Field("D", st.DOUBLE)]
    out = decode(
        cols,
        [
            b'{"I": 1.9, "B": -2.7, "D": 3}',
            b'{"I": "12", "B": "-13", "D": "1.5"}',
            b'{"I": 4294967297, "B": 1, "D": "NaN"}',
        ],
    )
    rows = out.table.to_pylist()
    assert rows[0] == {"I": 1, "B": -2, "D": 3.0}
    assert rows[1] == {"I": 12, "B": -13, "D": 1.5}
    assert rows[2]["I"] == 1  # Java narrows a long to its low 32 bits
    assert rows[2]["D"] != rows[2]["D"]  # NaN
    assert out.errors == ()


def test_boolean_accepts_only_booleans() -> None:
    out = decode([st.Field("F", st.BOOLEAN)], [b'{"F": true}', b'{"F": "true"}', b'{"F": 1}'])
    assert out.table.column("F").to_pylist() == [True, None, None]
    assert [e.row for e in out.errors] == [1, 2]
    assert out.errors[0].message == (
        "Failed to deserialize value from topic: t. Can't convert type. "
        "sourceType: TextNode, requiredType: BOOLEAN, path: $.F"
    )
    assert out.errors[1].message == (
        "Failed to deserialize value from topic: t. Can't convert type. "
        "sourceType: IntNode, requiredType: BOOLEAN, path: $.F"
    )


def test_string_accepts_any_json() -> None:
    out = decode(
        [st.Field("S", st.STRING)],
        [b'{"S": 12}', b'{"S": 1.50}', b'{"S": true}', b'{"S": {"a": [1, 2]}}', b'{"S": [1, "x", null]}'],
    )
    assert out.table.column("S").to_pylist() == ["12", "1.50", "true", '{"a":[1,2]}', "[1, x, null]"]


def test_decimal_must_fit_without_rounding() -> None:
    out = decode([st.Field("D", st.Decimal(4, 2))], [b'{"D": 1.5}', b'{"D": "12.25"}', b'{"D": 1.234}', b'{"D": 123}'])
    assert out.table.column("D").to_pylist() == [decimal.Decimal("1.50"), decimal.Decimal("12.25"), None, None]
    assert [e.message for e in out.errors] == [
        (
            "Failed to deserialize value from topic: t. Cannot fit decimal '1.234' into DECIMAL(4, 2) without "
            "rounding. (Requires 4,3), path: $.D"
        ),
        (
            "Failed to deserialize value from topic: t. Numeric field overflow: A field with precision 4 and scale 2 "
            "must round to an absolute value less than 10^2. Got 123, path: $.D"
        ),
    ]


def test_temporal_and_bytes_columns() -> None:
    cols = [st.Field("D", st.DATE), st.Field("T", st.TIME), st.Field("TS", st.TIMESTAMP), st.Field("B", st.BYTES)]
    out = decode(cols, [b'{"D": 10, "T": 1000, "TS": 1500, "B": "AQI="}', b'{"T": 86400001}', b'{"B": "!!"}'])
    assert out.table.to_pylist()[0] == {
        "D": datetime.date(1970, 1, 11),
        "T": datetime.time(0, 0, 1),
        "TS": datetime.datetime(1970, 1, 1, 0, 0, 1, 500000),
        "B": b"\x01\x02",
    }
    assert [e.message for e in out.errors] == [
        (
            "Failed to deserialize value from topic: t. Time values must use number of milliseconds greater than 0 "
            "and less than 86400000., path: $.T"
        ),
        "Failed to deserialize value from topic: t. Value is not a valid Base64 encoded string: !!, path: $.B",
    ]


def test_nested_types() -> None:
    t = st.Struct((st.Field("A", st.Array(st.INTEGER)), st.Field("M", st.Map(st.STRING, st.DOUBLE))))
    out = decode([st.Field("S", t)], [b'{"s": {"a": [1, "2", null], "m": {"x": 1}}}', b'{"S": {"A": {}}}'])
    assert out.table.column("S").to_pylist()[0] == {"A": [1, 2, None], "M": [("x", 1.0)]}
    assert out.errors[0].message.endswith(
        "Can't convert type. sourceType: ObjectNode, requiredType: ARRAY<INTEGER>, path: $.S.A"
    )


def test_malformed_records_fail_alone() -> None:
    cols = [st.Field("A", st.INTEGER)]
    records: list[bytes | None] = [b'{"A": %d}' % i for i in range(5000)]
    records[10] = b"{not json"
    records[4000] = b'{"A": "x"}'
    out = decode(cols, records)
    assert [e.row for e in out.errors] == [10, 4000]
    values = out.table.column("A").to_pylist()
    assert values[9] == 9 and values[10] is None and values[4001] == 4001
    assert out.present.to_pylist()[10] is False and out.present.to_pylist()[11] is True


def test_records_that_are_not_one_document_each_fail_even_if_the_batch_parses() -> None:
    # Joined, these records read as two whole documents; on their own neither is one.
    cols = [st.Field("A", st.BIGINT), st.Field("B", st.BIGINT)]
    out = decode(cols, [b'{"A": 1}{"B": 2', b"}", b'{"A": 3}'])
    assert [e.row for e in out.errors] == [0, 1]
    assert out.present.to_pylist() == [False, False, True]
    assert out.table.column("A").to_pylist() == [None, None, 3]
    # Nor may a string span two records, with a third making up the count.
    spanning = decode(cols, [b'{"A": "x}', b'{","B": 2}', b"{}{}"])
    assert [e.row for e in spanning.errors] == [0, 1, 2]
    pretty = decode(cols, [b'{"A":\n 1,\r\n "B": 2}'])
    assert pretty.table.to_pylist() == [{"A": 1, "B": 2}] and pretty.errors == ()
    unwrapped = decode([st.Field("V", st.BIGINT)], [b'1}{"v": 2', b"3"], UNWRAPPED)
    assert [e.row for e in unwrapped.errors] == [0]
    assert unwrapped.table.column("V").to_pylist() == [None, 3]


def test_null_records_are_absent_not_errors() -> None:
    out = decode([st.Field("A", st.INTEGER)], [None, b"null", b'{"A": null}'])
    assert out.present.to_pylist() == [False, False, True]
    assert out.errors == ()


def test_non_object_for_wrapped_schema() -> None:
    out = decode([st.Field("A", st.STRING), st.Field("B", st.STRING)], [b'"bar"'])
    assert out.errors[0].message.endswith(
        "Can't convert type. sourceType: TextNode, requiredType: STRUCT<`A` STRING, `B` STRING>, path: $"
    )


def test_single_value_unwrapped() -> None:
    cols = [st.Field("V", st.Array(st.STRING))]
    out = decode(cols, [b'["a", null]', b"[1, 2]", b"null"], UNWRAPPED)
    assert out.table.column("V").to_pylist() == [["a", None], ["1", "2"], None]
    assert out.present.to_pylist() == [True, True, False]
    encoded = serializer(UNWRAPPED, cols, is_key=False).encode(out.table, present=out.present)
    assert encoded.to_pylist() == [b'["a",null]', b'["1","2"]', None]


def test_single_key_is_unwrapped_by_default() -> None:
    cols = [st.Field("K", st.BOOLEAN)]
    out = decode(cols, [b"true", b"false", None], JSON, is_key=True)
    assert out.table.column("K").to_pylist() == [True, False, None]
    assert serializer(JSON, cols, is_key=True).encode(out.table).to_pylist() == [b"true", b"false", None]


def test_serialize_wrapped_values() -> None:
    cols = [
        st.Field("ID", st.BIGINT),
        st.Field("D", st.Decimal(6, 4)),
        st.Field("TS", st.TIMESTAMP),
        st.Field("B", st.BYTES),
        st.Field("X", st.DOUBLE),
        st.Field("M", st.Map(st.STRING, st.Struct((st.Field("F0", st.DATE),)))),
    ]
    table = pa.table(
        [
            pa.array([1, None]),
            pa.array([decimal.Decimal("10.0000"), None], pa.decimal128(6, 4)),
            pa.array([1500, None], pa.int64()).cast(pa.timestamp("ms")),
            pa.array([b"\x01", None]),
            pa.array([float("nan"), 2.5]),
            pa.array([[("a", {"F0": 3})], None], pa.map_(pa.string(), pa.struct([("F0", pa.int32())]))).cast(
                pa.map_(pa.string(), pa.struct([("F0", pa.date32())]))
            ),
        ],
        names=[c.name for c in cols],
    )
    out = serializer(JSON, cols, is_key=False).encode(table, present=pa.array([True, True]))
    assert out.to_pylist() == [
        b'{"ID":1,"D":10.0000,"TS":1500,"B":"AQ==","X":"NaN","M":{"a":{"F0":3}}}',
        b'{"ID":null,"D":null,"TS":null,"B":null,"X":2.5,"M":null}',
    ]


def test_absent_rows_serialize_to_tombstones() -> None:
    cols = [st.Field("A", st.INTEGER)]
    out = serializer(JSON, cols, is_key=False).encode(pa.table({"A": [1, 2]}), present=pa.array([True, False]))
    assert out.to_pylist() == [b'{"A":1}', None]


@pytest.mark.parametrize("record", [b"", b"   ", b"{", b"[1,", b"NaN"])
def test_unparseable_json(record: bytes) -> None:
    out = decode([st.Field("A", st.INTEGER)], [record])
    assert out.errors and out.errors[0].row == 0
    assert out.errors[0].message.startswith("Failed to deserialize value from topic: t. ")


def test_map_columns_are_written_column_wise_as_the_row_by_row_writer_does() -> None:
    from ksqlpy.runtime.serde.json import JsonSerializer, _fragment

    t = st.Map(st.STRING, st.Struct((st.Field("N", st.INTEGER), st.Field("S", st.STRING))))
    cols = [st.Field("K", st.STRING), st.Field("M", t)]
    maps = pa.array(
        [[("a", {"N": 1, "S": "x"}), ("b\"q", None)], None, [], [("é", {"N": None, "S": "tab\t"})], [("z", {"N": 2, "S": None})]],
        pa.map_(pa.string(), pa.struct([("N", pa.int32()), ("S", pa.string())])),
    )
    table = pa.table([pa.array(["k0", "k1", "k2", "k3", "k4"]), maps], names=["K", "M"])
    for part in (table, table.slice(1), table.slice(2, 2)):
        present = pa.array([True] * part.num_rows)
        assert _fragment(part.column(1).combine_chunks(), t) is not None  # column-wise, not row by row
        columnar = JsonSerializer(cols, is_key=False, wrapped=True).encode(part, present=present)
        rows = [
            None if m is None else orjson.dumps({"K": k, "M": dict(m)}).decode()
            for k, m in zip(part.column(0).to_pylist(), part.column(1).to_pylist(maps_as_pydicts="strict"))
        ]
        assert [orjson.loads(r) for r in columnar.to_pylist()] == [
            orjson.loads(r) if r is not None else {"K": k, "M": None} for r, k in zip(rows, part.column(0).to_pylist())
        ]
