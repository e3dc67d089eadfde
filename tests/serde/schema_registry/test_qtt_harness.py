"""The QTT harness with schema-registry formats: topic schemas registered before the
statements, inputs written with them, outputs read back with the schema each record names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ksqlpy.testing.qtt import load_file
from ksqlpy.testing.report import FAILED, PASSED
from ksqlpy.testing.runner import RunOptions, run_case
from ksqlpy.testing.schemas import java_hash_map_order

OPTIONS = RunOptions(case_timeout=0, idle_timeout=20)


def _case(tmp_path: Path, node: dict[str, Any]) -> list[Any]:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"tests": [node]}))
    return load_file(path)


def _inference_case(expected_c2: int) -> dict[str, Any]:
    return {
        "name": "inference",
        "statements": [
            "CREATE STREAM INPUT WITH (kafka_topic='input', format='AVRO');",
            "CREATE STREAM OUTPUT AS SELECT ROWKEY, C1, C2 * 2 AS C2 FROM INPUT;",
        ],
        "topics": [
            {
                "name": "input",
                "keySchema": "string",
                "valueSchema": {"type": "record", "name": "r", "fields": [{"name": "c1", "type": "string"}, {"name": "c2", "type": "int"}]},
            }
        ],
        "inputs": [{"topic": "input", "key": "k", "value": {"c1": "a", "c2": 4}}],
        "outputs": [{"topic": "OUTPUT", "key": "k", "value": {"C1": "a", "C2": expected_c2}}],
    }


def test_inferred_avro_case_passes(tmp_path: Path) -> None:
    (case,) = _case(tmp_path, _inference_case(8))
    result = run_case(case, OPTIONS)
    assert result.status == PASSED, result.error


def test_wrong_expectation_fails(tmp_path: Path) -> None:
    (case,) = _case(tmp_path, _inference_case(9))
    result = run_case(case, OPTIONS)
    assert result.status == FAILED
    assert result.outputs[0].value == {"C1": "a", "C2": 8}


@pytest.mark.parametrize("fmt", ["AVRO", "PROTOBUF", "JSON_SR"])
def test_format_variants_round_trip(tmp_path: Path, fmt: str) -> None:
    node = {
        "name": "variants",
        "format": [fmt],
        "statements": [
            (
                "CREATE STREAM INPUT (K STRING KEY, A INT, D DECIMAL(4, 2), T ARRAY<STRING>) "
                "WITH (kafka_topic='input', value_format='{FORMAT}');"
            ),
            "CREATE STREAM OUTPUT AS SELECT K, A + 1 AS B, D, T FROM INPUT;",
        ],
        "inputs": [{"topic": "input", "key": "k", "value": {"A": 1, "D": 1.5, "T": ["x"]}}],
        "outputs": [{"topic": "OUTPUT", "key": "k", "value": {"B": 2, "D": 1.50, "T": ["x"]}}],
    }
    (case,) = _case(tmp_path, node)
    result = run_case(case, OPTIONS)
    assert result.status == PASSED, result.error


def test_schema_ids_follow_java_hash_map_order() -> None:
    # bucket 1 before bucket 5; names in one bucket keep their insertion order
    assert java_hash_map_order(["OUTPUT", "input"]) == ["input", "OUTPUT"]
    assert java_hash_map_order(["source", "source2"]) == ["source", "source2"]
