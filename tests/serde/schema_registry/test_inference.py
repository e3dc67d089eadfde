"""CREATE STREAM/TABLE without columns: columns from the registered schemas, ksqlDB's errors;
records written by a query read back with the registered schema after a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.serde.registry import read_header

VALUE_SCHEMA = {
    "type": "record",
    "name": "r",
    "fields": [{"name": "c1", "type": "boolean"}, {"name": "c2", "type": ["null", "long"]}],
}


def _engine(tmp_path: Path) -> Engine:
    return Engine.open({"ksql.streams.state.dir": str(tmp_path / "data"), "ksql.streams.auto.offset.reset": "earliest"})


def _columns(engine: Engine, name: str) -> list[tuple[str, st.SqlType, bool]]:
    return [(c.name, c.type, c.is_key) for c in engine.catalog.source(name).columns]


def test_value_and_key_columns_come_from_the_latest_schemas(tmp_path: Path) -> None:
    with _engine(tmp_path) as engine:
        engine.schema_registry.register("input-value", json.dumps(VALUE_SCHEMA), "AVRO")
        engine.schema_registry.register("input-key", '"string"', "AVRO")
        engine.session().execute_all(
            "CREATE STREAM INPUT WITH (KAFKA_TOPIC='input', FORMAT='AVRO', PARTITIONS=1);"
        )
        assert _columns(engine, "INPUT") == [
            ("ROWKEY", st.STRING, True),
            ("C1", st.BOOLEAN, False),
            ("C2", st.BIGINT, False),
        ]


def test_declared_key_with_inferred_value(tmp_path: Path) -> None:
    with _engine(tmp_path) as engine:
        engine.schema_registry.register("input-value", json.dumps(VALUE_SCHEMA), "AVRO")
        engine.session().execute_all(
            "CREATE STREAM INPUT (ID INT KEY) WITH (KAFKA_TOPIC='input', VALUE_FORMAT='AVRO', PARTITIONS=1);"
        )
        assert [c[0] for c in _columns(engine, "INPUT")] == ["ID", "C1", "C2"]


def test_schema_id_picks_a_registered_schema_and_keeps_its_names(tmp_path: Path) -> None:
    with _engine(tmp_path) as engine:
        schema_id = engine.schema_registry.register("other-value", 'syntax = "proto3"; message M { int32 x = 1; }', "PROTOBUF")
        engine.session().execute_all(
            f"CREATE STREAM INPUT WITH (KAFKA_TOPIC='input', VALUE_FORMAT='PROTOBUF', VALUE_SCHEMA_ID={schema_id}, PARTITIONS=1);"
        )
        assert _columns(engine, "INPUT") == [("x", st.INTEGER, False)]


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            "CREATE STREAM INPUT WITH (KAFKA_TOPIC='input', VALUE_FORMAT='AVRO', PARTITIONS=1);",
            "Schema for message values on topic 'input' does not exist in the Schema Registry.",
        ),
        (
            "CREATE STREAM INPUT (A INT) WITH (KAFKA_TOPIC='input', VALUE_FORMAT='AVRO', VALUE_SCHEMA_ID=1, PARTITIONS=1);",
            "Table elements and VALUE_SCHEMA_ID cannot both exist for create statement.",
        ),
        (
            "CREATE STREAM INPUT WITH (KAFKA_TOPIC='input', VALUE_FORMAT='KAFKA', VALUE_SCHEMA_ID=1, PARTITIONS=1);",
            "VALUE_FORMAT should support schema inference when VALUE_SCHEMA_ID is provided. Current format is KAFKA.",
        ),
        (
            "CREATE STREAM INPUT (A INT) WITH (KAFKA_TOPIC='input', VALUE_FORMAT='JSON', VALUE_SCHEMA_FULL_NAME='x.Y', PARTITIONS=1);",
            "JSON does not support the following configs: [fullSchemaName]",
        ),
    ],
)
def test_errors(tmp_path: Path, statement: str, message: str) -> None:
    with _engine(tmp_path) as engine, pytest.raises(AnalysisError) as error:
        engine.session().execute_all(statement)
    assert message in str(error.value)


def test_sink_schema_is_registered_and_survives_a_restart(tmp_path: Path) -> None:
    statements = (
        "CREATE STREAM INPUT (K STRING KEY, A INT) WITH (KAFKA_TOPIC='input', FORMAT='JSON', PARTITIONS=1);"
        "CREATE STREAM OUTPUT WITH (FORMAT='AVRO') AS SELECT K, A * 2 AS B FROM INPUT;"
    )
    with _engine(tmp_path) as engine:
        engine.session().execute_all(statements)
        engine.session().execute_all("INSERT INTO INPUT (K, A) VALUES ('k', 21);")
        assert engine.wait_idle(20)
        with engine.store.open_reader(["OUTPUT"], group=None, start="earliest") as reader:
            batch = reader.poll(10, timeout=5.0)
        value = batch.column("value")[0].as_py()
        schema_id = read_header(value)
    with _engine(tmp_path) as engine:
        latest = engine.schema_registry.latest("OUTPUT-value")
        assert latest is not None and latest.id == schema_id
        assert [f["name"] for f in json.loads(latest.schema)["fields"]] == ["B"]
        engine.session().execute_all(
            "CREATE STREAM AGAIN WITH (KAFKA_TOPIC='OUTPUT', FORMAT='AVRO');"
        )
        assert _columns(engine, "AGAIN") == [("ROWKEY", st.STRING, True), ("B", st.INTEGER, False)]
