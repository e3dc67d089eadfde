"""The HTTP client against a Schema Registry speaking Confluent's REST API over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from ksqlpy import sqltypes as st
from ksqlpy.runtime.serde import Format, SerdeSpec, deserializer, serializer
from ksqlpy.runtime.serde.registry import HttpRegistry, SchemaRegistryError, read_header

from .sr_server import SchemaRegistryServer


@pytest.fixture
def client() -> Iterator[HttpRegistry]:
    with SchemaRegistryServer() as url:
        registry = HttpRegistry(url)
        yield registry
        registry.close()


def test_register_latest_and_by_id(client: HttpRegistry) -> None:
    first = client.register("t-value", '"int"', "AVRO")
    assert client.register("t-value", '"int"', "AVRO") == first
    proto = client.register("u-value", 'syntax = "proto3"; message M { int32 a = 1; }', "PROTOBUF")
    assert proto != first
    latest = client.latest("u-value")
    assert latest is not None and (latest.id, latest.schema_type, latest.version) == (proto, "PROTOBUF", 1)
    assert client.by_id(first).schema == '"int"' and client.by_id(first).schema_type == "AVRO"
    assert client.subjects() == ["t-value", "u-value"]
    assert client.latest("missing-value") is None
    with pytest.raises(SchemaRegistryError, match="Schema 99 not found"):
        client.by_id(99)
    client.delete_subject("t-value")
    assert client.latest("t-value") is None


def test_avro_round_trip_through_the_http_registry(client: HttpRegistry) -> None:
    spec = SerdeSpec(format=Format.AVRO)
    columns = (st.Field("A", st.INTEGER), st.Field("B", st.STRING))
    table = pa.table({"A": pa.array([1, None], pa.int32()), "B": ["x", "y"]})
    data = serializer(spec, columns, is_key=False, registry=client, topic="orders").encode(table)
    latest = client.latest("orders-value")
    assert latest is not None and read_header(data[0].as_py()) == latest.id
    decoded = deserializer(spec, columns, is_key=False, registry=client).decode(data)
    assert decoded.table.to_pylist() == table.to_pylist()


def test_unreachable_registry_is_an_error() -> None:
    with SchemaRegistryServer() as url:
        pass
    with pytest.raises(SchemaRegistryError, match="Schema Registry request failed"):
        HttpRegistry(url, timeout=2.0).latest("t-value")


def test_engine_uses_the_configured_registry(tmp_path: Path) -> None:
    from ksqlpy.runtime.engine import Engine

    with SchemaRegistryServer() as url:
        outside = HttpRegistry(url)
        outside.register("input-value", '{"type": "record", "name": "r", "fields": [{"name": "a", "type": "int"}]}', "AVRO")
        config = {"ksql.streams.state.dir": str(tmp_path / "data"), "ksql.schema.registry.url": url}
        with Engine.open(config) as engine:
            assert isinstance(engine.schema_registry, HttpRegistry)
            engine.session().execute_all("CREATE STREAM INPUT WITH (KAFKA_TOPIC='input', VALUE_FORMAT='AVRO', PARTITIONS=1);")
            assert [c.name for c in engine.catalog.source("INPUT").columns] == ["A"]
        outside.close()


def test_basic_authentication() -> None:
    with SchemaRegistryServer(user_info="ksql:secret") as url:
        with pytest.raises(SchemaRegistryError, match="401"):
            HttpRegistry(url).subjects()
        client = HttpRegistry(url, user_info="ksql:secret")
        client.register("t-value", '"int"', "AVRO")
        assert client.subjects() == ["t-value"]
        client.close()
