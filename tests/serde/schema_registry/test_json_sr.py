"""JSON_SR: the JSON payload behind the wire header, and JSON Schemas as ksqlDB writes them."""

from __future__ import annotations

import json

import pyarrow as pa

from ksqlpy import sqltypes as st
from ksqlpy.runtime.serde import Format, SerdeSpec, deserializer, serializer
from ksqlpy.runtime.serde.json_sr import columns_from_json_schema, json_schema
from ksqlpy.runtime.serde.registry import InProcessRegistry, read_header

JSON_SR = SerdeSpec(format=Format.JSON_SR)
COLUMNS = (st.Field("A", st.INTEGER), st.Field("B", st.Array(st.STRING)), st.Field("C", st.Decimal(4, 1)))


def test_schema_round_trips_through_inference() -> None:
    schema = json_schema(COLUMNS, wrapped=True)
    assert schema["type"] == "object"
    assert schema["properties"]["A"] == {
        "oneOf": [{"type": "null"}, {"type": "integer", "connect.type": "int32"}],
        "connect.index": 0,
    }
    assert columns_from_json_schema(json.dumps(schema), is_key=False) == COLUMNS


def test_round_trip_with_header(registry: InProcessRegistry) -> None:
    table = pa.table({"A": [1, None], "B": [["x"], None], "C": pa.array([None, None], pa.decimal128(4, 1))})
    data = serializer(JSON_SR, COLUMNS, is_key=False, registry=registry, topic="t").encode(
        table, present=pa.array([True, False])
    )
    registered = registry.latest("t-value")
    assert registered is not None and registered.schema_type == "JSON"
    first = data[0].as_py()
    assert read_header(first) == registered.id
    assert json.loads(first[5:]) == {"A": 1, "B": ["x"], "C": None}
    assert data[1].as_py() is None
    decoded = deserializer(JSON_SR, COLUMNS, is_key=False, registry=registry).decode(data)
    assert decoded.table.column("A").to_pylist() == [1, None]
    assert decoded.present.to_pylist() == [True, False]


def test_records_without_header_are_errors(registry: InProcessRegistry) -> None:
    decoded = deserializer(JSON_SR, COLUMNS, is_key=False, registry=registry).decode(
        pa.array([b'{"A": 1}', b"\x00\x00\x00\x00\x01" + b'{"A": 2}'], pa.binary()), topic="t"
    )
    assert decoded.table.column("A").to_pylist() == [None, 2]
    assert [e.row for e in decoded.errors] == [0]
    assert decoded.errors[0].message.endswith("Unknown magic byte!")


def test_given_schema_properties_without_columns_are_written_as_null(registry: InProcessRegistry) -> None:
    given = {"type": "object", "properties": {"a": {"type": "integer"}, "extra": {"type": "string"}}}
    schema_id = registry.register("t-value", json.dumps(given), "JSON")
    spec = SerdeSpec(format=Format.JSON_SR, schema_id=schema_id)
    columns = (st.Field("a", st.INTEGER),)
    data = serializer(spec, columns, is_key=False, registry=registry, topic="t").encode(
        pa.table({"a": pa.array([4, None], pa.int32())}), present=pa.array([True, False])
    )
    assert read_header(data[0].as_py()) == schema_id
    assert json.loads(data[0].as_py()[5:]) == {"a": 4, "extra": None}
    assert data[1].as_py() is None
