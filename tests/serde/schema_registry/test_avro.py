"""AVRO: ksqlDB's generated schemas, round trips through Arrow, reading foreign schemas."""

from __future__ import annotations

import decimal
import io
import json

import fastavro
import pyarrow as pa
import pytest

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.serde import Format, SerdeSpec, deserializer, serializer, validate_format
from ksqlpy.runtime.serde.avro import avro_schema, columns_from_avro
from ksqlpy.runtime.serde.registry import InProcessRegistry, read_header, wire_header

AVRO = SerdeSpec(format=Format.AVRO)
COLUMNS = (
    st.Field("ID", st.BIGINT),
    st.Field("NAME", st.STRING),
    st.Field("PRICE", st.Decimal(6, 2)),
    st.Field("DAY", st.DATE),
    st.Field("AT", st.TIMESTAMP),
    st.Field("TAGS", st.Array(st.STRING)),
    st.Field("ATTRS", st.Map(st.STRING, st.INTEGER)),
    st.Field("ADDRESS", st.Struct((st.Field("CITY", st.STRING), st.Field("ZIP", st.INTEGER)))),
)
ROWS = {
    "ID": [1, None],
    "NAME": ["a", None],
    "PRICE": [decimal.Decimal("12.30"), None],
    "DAY": [19000, None],
    "AT": [1_600_000_000_123, None],
    "TAGS": [["x", None], None],
    "ATTRS": [[("k", 1), ("n", None)], None],
    "ADDRESS": [{"CITY": "Oslo", "ZIP": 150}, None],
}


def _table() -> pa.Table:
    schema = pa.schema([pa.field(c.name, st.to_arrow(c.type)) for c in COLUMNS])
    arrays = []
    for c in COLUMNS:
        values = ROWS[c.name]
        if c.type.base is st.BaseType.DATE:
            arrays.append(pa.array(values, pa.int32()).cast(st.to_arrow(c.type)))
        elif c.type.base is st.BaseType.TIMESTAMP:
            arrays.append(pa.array(values, pa.int64()).cast(st.to_arrow(c.type)))
        else:
            arrays.append(pa.array(values, st.to_arrow(c.type)))
    return pa.table(arrays, schema=schema)


def test_generated_value_schema_is_ksqldb_s() -> None:
    schema = avro_schema(COLUMNS[:3], wrapped=True)
    assert schema["name"] == "KsqlDataSourceSchema"
    assert schema["namespace"] == "io.confluent.ksql.avro_schemas"
    assert schema["fields"][0] == {"name": "ID", "type": ["null", "long"], "default": None}
    price = schema["fields"][2]["type"][1]
    assert (price["type"], price["logicalType"], price["precision"], price["scale"]) == ("bytes", "decimal", 6, 2)
    nested = avro_schema(COLUMNS[7:], wrapped=True)["fields"][0]["type"][1]
    assert nested["name"] == "KsqlDataSourceSchema_ADDRESS"
    assert avro_schema([st.Field("K", st.INTEGER)], wrapped=False) == ["null", "int"]


def test_round_trip_through_the_registry(registry: InProcessRegistry) -> None:
    table = _table()
    ser = serializer(AVRO, COLUMNS, is_key=False, registry=registry, topic="orders")
    data = ser.encode(table)
    registered = registry.latest("orders-value")
    assert registered is not None and registered.schema_type == "AVRO"
    assert read_header(data[0].as_py()) == registered.id
    decoded = deserializer(AVRO, COLUMNS, is_key=False, registry=registry).decode(data, topic="orders")
    assert decoded.errors == ()
    assert decoded.present.to_pylist() == [True, True]
    assert decoded.table.to_pylist() == table.to_pylist()


def test_unwrapped_key_is_the_bare_value(registry: InProcessRegistry) -> None:
    key = (st.Field("K", st.STRING),)
    data = serializer(AVRO, key, is_key=True, registry=registry, topic="t").encode(pa.table({"K": ["abc", None]}))
    assert data[1].as_py() is None
    payload = data[0].as_py()[5:]
    assert fastavro.schemaless_reader(io.BytesIO(payload), fastavro.parse_schema(["null", "string"]), None) == "abc"
    decoded = deserializer(AVRO, key, is_key=True, registry=registry).decode(data)
    assert decoded.table.column("K").to_pylist() == ["abc", None]


def test_reads_records_written_with_another_schema_case_insensitively(registry: InProcessRegistry) -> None:
    writer = {"type": "record", "name": "r", "fields": [{"name": "id", "type": "int"}, {"name": "extra", "type": "string"}]}
    schema_id = registry.register("t-value", json.dumps(writer), "AVRO")
    out = io.BytesIO()
    out.write(wire_header(schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(writer), {"id": 7, "extra": "x"})
    columns = (st.Field("ID", st.STRING),)  # coerced, as ksqlDB does
    decoded = deserializer(AVRO, columns, is_key=False, registry=registry).decode(
        pa.array([out.getvalue(), b"\x01bad"], pa.binary()), topic="t"
    )
    assert decoded.table.column("ID").to_pylist() == ["7", None]
    assert [e.row for e in decoded.errors] == [1]
    assert "Failed to deserialize value from topic: t. Unknown magic byte!" in decoded.errors[0].message


def test_reads_maps_written_as_connect_map_entries(registry: InProcessRegistry) -> None:
    """Connect writes a map with optional keys (ksqlDB 8's) as an array of key/value records."""
    entry = {
        "type": "record",
        "name": "KsqlDataSourceSchema_ATTRS",
        "fields": [
            {"name": "key", "type": ["null", "string"], "default": None},
            {"name": "value", "type": ["null", "long"], "default": None},
        ],
        "connect.internal.type": "MapEntry",
    }
    writer = {
        "type": "record",
        "name": "KsqlDataSourceSchema",
        "fields": [{"name": "ATTRS", "type": ["null", {"type": "array", "items": entry}], "default": None}],
    }
    schema_id = registry.register("t-value", json.dumps(writer), "AVRO")
    out = io.BytesIO()
    out.write(wire_header(schema_id))
    fastavro.schemaless_writer(
        out, fastavro.parse_schema(writer), {"ATTRS": [{"key": "a", "value": 1}, {"key": "b", "value": None}]}
    )
    columns = (st.Field("ATTRS", st.Map(st.STRING, st.BIGINT)),)
    decoded = deserializer(AVRO, columns, is_key=False, registry=registry).decode(
        pa.array([out.getvalue()], pa.binary()), topic="t"
    )
    assert decoded.errors == ()
    assert decoded.table.column("ATTRS").to_pylist() == [[("a", 1), ("b", None)]]


def test_inference_keeps_field_names_and_unwraps_optionals() -> None:
    schema = {
        "type": "record",
        "name": "r",
        "fields": [
            {"name": "c1", "type": ["null", "int"]},
            {"name": "c2", "type": {"type": "map", "values": "long"}},
            {"name": "c3", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}},
            {"name": "c4", "type": {"type": "record", "name": "n", "fields": [{"name": "f", "type": "string"}]}},
        ],
    }
    assert columns_from_avro(json.dumps(schema), is_key=False) == (
        st.Field("c1", st.INTEGER),
        st.Field("c2", st.Map(st.STRING, st.BIGINT)),
        st.Field("c3", st.Decimal(4, 2)),
        st.Field("c4", st.Struct((st.Field("f", st.STRING),))),
    )
    assert columns_from_avro('"int"', is_key=True) == (st.Field("ROWKEY", st.INTEGER),)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1Bad", "Schema is not compatible with Avro: Illegal initial character: 1Bad"),
        ("a-b", "Schema is not compatible with Avro: Illegal character in: a-b"),
    ],
)
def test_names_avro_rejects(name: str, message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        validate_format(AVRO, [st.Field(name, st.INTEGER)], is_key=False)


def test_maps_need_string_keys() -> None:
    with pytest.raises(AnalysisError, match="AVRO format only supports MAP types with STRING keys"):
        validate_format(AVRO, [st.Field("M", st.Map(st.INTEGER, st.INTEGER))], is_key=False)
