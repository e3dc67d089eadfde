"""The QTT loader on real case files: variants, names, records, skips."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from qtt_corpus import QTT

from ksqlpy.testing import qtt

needs_corpus = pytest.mark.skipif(not QTT.is_dir(), reason=f"the QTT corpus is absent ({QTT})")


def write(tmp_path: Path, tests: list[dict], name: str = "sample.json") -> Path:
    folder = tmp_path / "suite"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(json.dumps({"tests": tests}))
    return path


def test_format_expansion_replaces_placeholder_and_names_cases(tmp_path: Path) -> None:
    path = write(tmp_path, [{
        "name": "proj",
        "format": ["JSON", "DELIMITED"],
        "statements": ["CREATE STREAM S (K INT KEY, V INT) WITH (kafka_topic='t', value_format='{FORMAT}');"],
        "inputs": [{"topic": "t", "key": 1, "value": {"V": 1}}],
        "outputs": [],
    }])
    cases = qtt.load_file(path)
    assert [c.case_id for c in cases] == ["suite/sample.json/proj - JSON", "suite/sample.json/proj - DELIMITED"]
    assert "value_format='DELIMITED'" in cases[1].statements[0]
    assert cases[0].format == "JSON"


def test_placeholder_without_format_gets_ksqldb_error_text(tmp_path: Path) -> None:
    path = write(tmp_path, [{"name": "x", "statements": ["SELECT '{FORMAT}';"], "expectedException": {}}])
    (case,) = qtt.load_file(path)
    assert qtt.FORMAT_REPLACE_ERROR in case.statements[0]
    assert case.format is None and case.case_id == "suite/sample.json/x"


def test_config_expansion_substitutes_properties(tmp_path: Path) -> None:
    path = write(tmp_path, [{
        "name": "c", "config": ["true", "false"],
        "properties": {"ksql.new.query.planner.enabled": "{CONFIG}", "n": 1},
        "statements": ["CREATE STREAM S (A INT) WITH (kafka_topic='t', value_format='JSON');"],
        "expectedException": {"message": "boom"},
    }])
    cases = qtt.load_file(path)
    assert [c.properties["ksql.new.query.planner.enabled"] for c in cases] == ["true", "false"]
    assert cases[1].case_id.endswith("/c - config=false")
    assert cases[0].expected_exception == qtt.ExpectedException(type=None, message="boom")


def test_records_keep_exact_decimals_windows_and_headers(tmp_path: Path) -> None:
    path = write(tmp_path, [{
        "name": "r",
        "statements": ["CREATE STREAM S (V DECIMAL(4,2)) WITH (kafka_topic='t', value_format='JSON');"],
        "inputs": [{"topic": "t", "value": {"V": 1.10}, "timestamp": 5, "partition": 2,
                    "headers": [{"KEY": "h", "VALUE": "IQ=="}]}],
        "outputs": [{"topic": "O", "key": "k", "value": None,
                     "window": {"start": 0, "end": 10, "type": "session"}}],
    }])
    (case,) = qtt.load_file(path)
    (record,) = case.inputs
    assert record.value == {"V": Decimal("1.10")}
    assert (record.timestamp, record.partition) == (5, 2)
    assert record.headers == (qtt.Header("h", b"!"),)
    assert case.outputs[0].window == qtt.Window(0, 10, "SESSION")
    assert case.outputs[0].timestamp is None and case.outputs[0].value is None


def test_disabled_and_future_cases_are_skipped_schema_registry_cases_run(tmp_path: Path) -> None:
    path = write(tmp_path, [
        {"name": "off", "enabled": False, "statements": ["X;"], "expectedException": {}},
        {"name": "sr", "statements": ["X;"], "topics": [{"name": "t", "valueSchema": "int"}],
         "expectedException": {}},
        {"name": "future", "versions": {"max": "5.0.0"}, "statements": ["X;"], "expectedException": {}},
        {"name": "run", "statements": ["X;"], "expectedException": {}},
    ])
    reasons = {c.name: c.skip_reason for c in qtt.load_file(path)}
    assert reasons["off"] and reasons["future"]
    assert reasons["sr"] is None and reasons["run"] is None


def test_a_decimal_input_stored_as_a_double_past_its_exact_digits_is_skipped(tmp_path: Path) -> None:
    """Past 2**53 a double has lost the digits of the DECIMAL the case was written with; below
    it, or for a DOUBLE column, the number is still the one the case meant."""
    decimal = "CREATE STREAM S (V DECIMAL(33, 16)) WITH (kafka_topic='t', value_format='JSON');"
    double = "CREATE STREAM S (V DOUBLE) WITH (kafka_topic='t', value_format='JSON');"
    path = tmp_path / "suite"
    path.mkdir()
    (path / "sample.json").write_text(
        '{"tests": ['
        f'{{"name": "lost", "statements": ["{decimal}"], "inputs": [{{"topic": "t", "value": {{"V": 1.2345678987654322e+16}}}}]}},'
        f'{{"name": "exact", "statements": ["{decimal}"], "inputs": [{{"topic": "t", "value": {{"V": 12345678.5}}}}]}},'
        f'{{"name": "double", "statements": ["{double}"], "inputs": [{{"topic": "t", "value": {{"V": 1.2345678987654322e+16}}}}]}}'
        "]}"
    )
    reasons = {c.name: c.skip_reason for c in qtt.load_file(path / "sample.json")}
    assert reasons["lost"] is not None and "12345678987654322" in reasons["lost"]
    assert reasons["exact"] is None and reasons["double"] is None


def test_rest_fields(tmp_path: Path) -> None:
    path = write(tmp_path, [{
        "name": "rest", "statements": ["CREATE STREAM S (A INT) WITH (kafka_topic='t', value_format='JSON');",
                                       "SELECT * FROM S;"],
        "responses": [{"admin": {"@type": "currentStatus"}}],
        "inputConditions": {"waitForActivePushQuery": True},
        "expectedError": {"message": "m", "status": 400},
    }])
    (case,) = qtt.load_file(path)
    assert case.is_rest and case.wait_for_query_header
    assert case.expected_error == qtt.ExpectedError(type=None, message="m", status=400)


def test_filter_and_missing_paths(tmp_path: Path) -> None:
    write(tmp_path, [{"name": "a", "statements": ["X;"], "expectedException": {}},
                     {"name": "b", "statements": ["X;"], "expectedException": {}}])
    assert [c.name for c in qtt.load_cases([tmp_path], filter="/b")] == ["b"]
    with pytest.raises(FileNotFoundError):
        qtt.load_cases([tmp_path / "nope"])


@needs_corpus
def test_whole_corpus_loads_with_unique_ids() -> None:
    cases = qtt.load_cases([QTT])
    ids = [c.case_id for c in cases]
    assert len(ids) == len(set(ids))
    assert len(cases) > 1600
    with_format = [c for c in cases if c.format is not None]
    assert with_format and all("{FORMAT}" not in s for c in with_format for s in c.statements)
    assert {c.suite for c in cases} == {"query-validation-tests", "rest-query-validation-tests"}
