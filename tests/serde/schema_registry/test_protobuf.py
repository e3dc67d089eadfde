"""PROTOBUF / PROTOBUF_NOSR: generated schemas, parsing schema text, wire format, round trips."""

from __future__ import annotations

import decimal

import pyarrow as pa
import pytest

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.serde import Format, SerdeSpec, deserializer, serializer, validate_format
from ksqlpy.runtime.serde.protobuf import (
    columns_from_proto,
    decode_indexes,
    encode_indexes,
    message_type,
    proto_schema_text,
)
from ksqlpy.runtime.serde.registry import InProcessRegistry, read_header

COLUMNS = (
    st.Field("I", st.INTEGER),
    st.Field("S", st.STRING),
    st.Field("PRICE", st.Decimal(4, 2)),
    st.Field("AT", st.TIMESTAMP),
    st.Field("TAGS", st.Array(st.STRING)),
    st.Field("M", st.Map(st.STRING, st.BIGINT)),
    st.Field("INNER", st.Struct((st.Field("F", st.DOUBLE),))),
)


def test_generated_schema_is_ksqldb_s() -> None:
    text = proto_schema_text(COLUMNS[:2])
    assert text == 'syntax = "proto3";\n\nmessage ConnectDefault1 {\n  int32 I = 1;\n  string S = 2;\n}\n'
    wrapped = proto_schema_text(COLUMNS[:1], nullable="WRAPPER")
    assert 'import "google/protobuf/wrappers.proto";' in wrapped and "google.protobuf.Int32Value I = 1;" in wrapped
    assert "optional int32 I = 1;" in proto_schema_text(COLUMNS[:1], nullable="OPTIONAL")


def test_generated_schema_infers_back_to_the_columns() -> None:
    text = proto_schema_text(COLUMNS)
    inferred = columns_from_proto(text, is_key=False)
    assert [f.name for f in inferred] == [c.name for c in COLUMNS]
    assert inferred[4].type == st.Array(st.STRING)
    assert inferred[5].type == st.Map(st.STRING, st.BIGINT)
    assert inferred[6].type == st.Struct((st.Field("F", st.DOUBLE),))


def test_parses_schemas_with_enums_wrappers_options_and_several_messages() -> None:
    text = (
        'syntax = "proto3"; import "google/protobuf/wrappers.proto"; import "confluent/type/decimal.proto";'
        " message First {uint32 a = 1;}"
        " message Second { enum Suit {SPADES = 0; HEARTS = 1;} Suit s = 1; google.protobuf.Int64Value w = 2;"
        ' confluent.type.Decimal d = 3 [(confluent.field_meta) = { params: [{ value: "4", key: "precision" },'
        ' { value: "2", key: "scale" }]}]; }'
    )
    assert columns_from_proto(text, is_key=False) == (st.Field("a", st.BIGINT),)
    assert columns_from_proto(text, is_key=False, full_name="Second") == (
        st.Field("s", st.STRING),
        st.Field("w", st.BIGINT),
        st.Field("d", st.Decimal(4, 2)),
    )
    second = message_type(text, "Second")
    assert second.index_path == (1,)
    data = second.write_value({"s": "HEARTS", "w": 5, "d": decimal.Decimal("12.34")})
    assert second.read_value(data) == {"s": "HEARTS", "w": 5, "d": decimal.Decimal("12.34")}
    assert second.read_value(second.write_value({})) == {"s": "SPADES", "w": None, "d": None}


@pytest.mark.parametrize("path", [(0,), (1,), (2, 0, 3)])
def test_message_indexes_round_trip(path: tuple[int, ...]) -> None:
    encoded = encode_indexes(path)
    assert decode_indexes(b"xx" + encoded + b"rest", 2) == (path, 2 + len(encoded))
    if path == (0,):
        assert encoded == b"\x00"


def _table() -> pa.Table:
    return pa.table(
        {
            "I": pa.array([1, None], pa.int32()),
            "S": ["a", None],
            "PRICE": pa.array([decimal.Decimal("1.50"), None], pa.decimal128(4, 2)),
            "AT": pa.array([1_600_000_000_123, None], pa.int64()).cast(st.to_arrow(st.TIMESTAMP)),
            "TAGS": [["x"], None],
            "M": pa.array([[("k", 2)], None], pa.map_(pa.string(), pa.int64())),
            "INNER": [{"F": 1.5}, None],
        }
    )


def test_round_trip_with_the_registry(registry: InProcessRegistry) -> None:
    spec = SerdeSpec(format=Format.PROTOBUF)
    data = serializer(spec, COLUMNS, is_key=False, registry=registry, topic="t").encode(_table())
    registered = registry.latest("t-value")
    assert registered is not None and registered.schema_type == "PROTOBUF"
    first = data[0].as_py()
    assert read_header(first) == registered.id and first[5:6] == b"\x00"
    decoded = deserializer(spec, COLUMNS, is_key=False, registry=registry).decode(data)
    assert decoded.errors == ()
    rows = decoded.table.to_pylist()
    assert rows[0] == _table().to_pylist()[0]
    # proto3 scalars have no null: they read back as defaults; messages, lists and maps stay empty
    assert rows[1] == {"I": 0, "S": "", "PRICE": None, "AT": None, "TAGS": [], "M": [], "INNER": None}


CONNECT_MAP_SCHEMA = """syntax = "proto3";

message ConnectDefault1 {
  repeated ConnectDefault2Entry M = 1;

  message ConnectDefault2Entry {
    string key = 1;
    int64 value = 2;
  }
}
"""


def test_repeated_key_value_entries_are_a_map(registry: InProcessRegistry) -> None:
    """Connect writes a map with optional keys (ksqlDB 8's) as a repeated ``...Entry`` message,
    and reads it, and infers it, as a map."""
    columns = (st.Field("M", st.Map(st.STRING, st.BIGINT)),)
    assert columns_from_proto(CONNECT_MAP_SCHEMA, is_key=False) == columns
    message = message_type(CONNECT_MAP_SCHEMA)
    payload = message.write_value({"M": {"a": 1, "b": 2}})
    assert message.read_value(payload) == {"M": {"a": 1, "b": 2}}
    schema_id = registry.register("t-value", CONNECT_MAP_SCHEMA, "PROTOBUF")
    spec = SerdeSpec(format=Format.PROTOBUF, schema_id=schema_id)
    data = serializer(spec, columns, is_key=False, registry=registry, topic="t").encode(
        pa.table({"M": pa.array([[("a", 1), ("b", 2)]], st.to_arrow(columns[0].type))})
    )
    reader = deserializer(SerdeSpec(format=Format.PROTOBUF), columns, is_key=False, registry=registry)
    decoded = reader.decode(data)
    assert decoded.errors == ()
    assert decoded.table.to_pylist() == [{"M": [("a", 1), ("b", 2)]}]


def test_nosr_records_are_bare_messages(registry: InProcessRegistry) -> None:
    spec = SerdeSpec(format=Format.PROTOBUF_NOSR, nullable="OPTIONAL")
    columns = COLUMNS[:2]
    data = serializer(spec, columns, is_key=False, registry=registry, topic="t").encode(
        pa.table({"I": pa.array([7, None], pa.int32()), "S": [None, "b"]})
    )
    assert registry.latest("t-value") is None
    assert data[0].as_py() == b"\x08\x07"
    decoded = deserializer(spec, columns, is_key=False, registry=registry).decode(data)
    assert decoded.table.to_pylist() == [{"I": 7, "S": None}, {"I": None, "S": "b"}]


def test_protobuf_rejects_unwrapping_and_non_string_map_keys() -> None:
    with pytest.raises(AnalysisError, match="Format 'PROTOBUF' does not support 'WRAP_SINGLE_VALUE' set to 'false'"):
        validate_format(SerdeSpec(format=Format.PROTOBUF, wrap_single_value=False), COLUMNS[:1], is_key=False)
    with pytest.raises(AnalysisError, match="PROTOBUF format only supports MAP types with STRING keys"):
        validate_format(SerdeSpec(format=Format.PROTOBUF), [st.Field("M", st.Map(st.INTEGER, st.INTEGER))], is_key=False)


def test_schemas_importing_referenced_schemas(registry: InProcessRegistry) -> None:
    from ksqlpy.runtime.serde.registry import SchemaReference

    registry.register("event.proto", 'syntax = "proto3"; message Event { int64 at = 1; }', "PROTOBUF")
    main = 'syntax = "proto3"; import "event.proto"; message Logistics { Event event = 1; }'
    schema_id = registry.register(
        "t-value", main, "PROTOBUF", references=(SchemaReference("event.proto", "event.proto", 1),)
    )
    registered = registry.by_id(schema_id)
    assert registry.imports(registered) == {"event.proto": 'syntax = "proto3"; message Event { int64 at = 1; }'}
    spec = SerdeSpec(format=Format.PROTOBUF, schema_id=schema_id)
    columns = (st.Field("EVENT", st.Struct((st.Field("AT", st.BIGINT),))),)
    data = serializer(spec, columns, is_key=False, registry=registry, topic="t").encode(
        pa.table({"EVENT": [{"AT": 5}]})
    )
    assert read_header(data[0].as_py()) == schema_id
    decoded = deserializer(SerdeSpec(format=Format.PROTOBUF), columns, is_key=False, registry=registry).decode(data)
    assert decoded.table.to_pylist() == [{"EVENT": {"AT": 5}}]


def test_null_keys_stay_null(registry: InProcessRegistry) -> None:
    spec = SerdeSpec(format=Format.PROTOBUF)
    key = (st.Field("F1", st.INTEGER),)
    data = serializer(spec, key, is_key=True, registry=registry, topic="t").encode(
        pa.table({"F1": pa.array([None, 0], pa.int32())})
    )
    assert data[0].as_py() is None
    decoded = deserializer(spec, key, is_key=True, registry=registry).decode(data)
    assert decoded.table.column("F1").to_pylist() == [None, 0]
