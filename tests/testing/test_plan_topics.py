"""Which recorded topic schemas a stored-plan case registers (:func:`ksqlpy.testing.plans.load_case`)."""

from __future__ import annotations

import json
from pathlib import Path

from ksqlpy.testing.plans import load_case

JSON_SCHEMA = {"type": "object", "properties": {"C1": {"type": "integer"}}}
AVRO_SCHEMA = {"type": "record", "name": "R", "fields": [{"name": "C1", "type": ["null", "long"], "default": None}]}


def _write_case(folder: Path, value_format: str, recorded: str, schema: dict[str, object]) -> None:
    command = {
        "@type": "createStreamV1",
        "sourceName": "OUTPUT",
        "schema": "`C1` BIGINT",
        "topicName": "OUTPUT",
        "formats": {"keyFormat": {"format": "KAFKA"}, "valueFormat": {"format": value_format}},
    }
    plan = {"@type": "ksqlPlanV1", "statementText": "CREATE STREAM OUTPUT ...;", "ddlCommand": command}
    topic = {"name": "OUTPUT", "valueSchema": schema, "valueFormat": recorded, "valueSchemaId": 4}
    spec = {"version": "8.0.0", "testCase": {"name": "case", "statements": [], "inputs": [], "topics": [topic]}}
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps({"plan": [plan], "configs": {}}))
    (folder / "spec.json").write_text(json.dumps(spec))


def test_a_json_sr_topic_keeps_the_schema_recorded_as_json(tmp_path: Path) -> None:
    """ksqlDB records a JSON_SR topic's schema with its schema type, JSON; a plan may name it by id."""
    _write_case(tmp_path / "json_sr", "JSON_SR", "JSON", JSON_SCHEMA)
    (topic,) = load_case(tmp_path / "json_sr").topics
    assert topic.value_schema == JSON_SCHEMA and topic.value_schema_id == 4


def test_a_schema_in_another_format_than_the_topic_is_left_out(tmp_path: Path) -> None:
    _write_case(tmp_path / "json", "JSON", "AVRO", AVRO_SCHEMA)
    (topic,) = load_case(tmp_path / "json").topics
    assert topic.value_schema is None and topic.value_schema_id is None
