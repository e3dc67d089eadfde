"""Entity JSON -> the text ksqlDB's CLI prints."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cli.render import OutputFormat, entities_lines, java_text, render_table, type_text

STREAMS: dict[str, Any] = {
    "@type": "streams",
    "statementText": "SHOW STREAMS;",
    "streams": [
        {
            "type": "STREAM",
            "name": "PAGEVIEWS_ORIGINAL",
            "topic": "pageviews",
            "keyFormat": "KAFKA",
            "valueFormat": "JSON",
            "isWindowed": False,
        },
        {
            "type": "STREAM",
            "name": "PV",
            "topic": "pv",
            "keyFormat": "KAFKA",
            "valueFormat": "AVRO",
            "isWindowed": True,
        },
    ],
    "warnings": [],
}

DESCRIBE: dict[str, Any] = {
    "@type": "sourceDescription",
    "statementText": "DESCRIBE PV;",
    "sourceDescription": {
        "name": "PV",
        "windowType": None,
        "readQueries": [],
        "writeQueries": [],
        "fields": [
            {
                "name": "USERID",
                "schema": {"type": "STRING", "fields": None, "memberSchema": None},
                "type": "KEY",
            },
            {
                "name": "TAGS",
                "schema": {
                    "type": "ARRAY",
                    "fields": None,
                    "memberSchema": {"type": "INTEGER", "fields": None, "memberSchema": None},
                },
            },
            {
                "name": "PRICE",
                "schema": {
                    "type": "DECIMAL",
                    "fields": None,
                    "memberSchema": None,
                    "parameters": {"precision": 4, "scale": 2},
                },
            },
            {
                "name": "ADDR",
                "schema": {
                    "type": "STRUCT",
                    "memberSchema": None,
                    "fields": [
                        {"name": "CITY", "schema": {"type": "STRING", "fields": None, "memberSchema": None}}
                    ],
                },
            },
        ],
        "type": "STREAM",
        "timestamp": "",
        "statistics": "",
        "errorStats": "",
        "extended": False,
        "keyFormat": "KAFKA",
        "valueFormat": "JSON",
        "topic": "pv",
        "partitions": 0,
        "replication": 0,
        "statement": "CREATE STREAM PV ...",
    },
    "warnings": [],
}


def _columns(line: str) -> list[str]:
    return [cell.strip() for cell in line.split("|")]


def test_show_streams_is_an_aligned_table() -> None:
    lines = entities_lines([STREAMS])
    assert lines[0] == ""  # ksqlDB prints a blank line before each entity
    header, separator, *rows, closing = lines[1:]
    assert _columns(header) == ["Stream Name", "Kafka Topic", "Key Format", "Value Format", "Windowed"]
    assert set(separator) == {"-"} and separator == closing
    # Every row has its bars exactly where the header has them.
    bars = [i for i, char in enumerate(header) if char == "|"]
    for row in rows:
        assert [i for i, char in enumerate(row) if char == "|"] == bars
    names = [
        (s["name"], s["topic"], s["keyFormat"], s["valueFormat"], java_text(s["isWindowed"]))
        for s in STREAMS["streams"]
    ]
    assert [tuple(_columns(row)) for row in rows] == names
    assert len(separator) == len(header)


def test_describe_prints_name_and_field_types() -> None:
    lines = entities_lines([DESCRIBE])
    assert lines[1].startswith("Name") and lines[1].endswith(": PV")
    table = {(_columns(line)[0]): _columns(line)[1] for line in lines if line.count("|") == 1}
    assert table["Field"] == "Type"
    assert table["USERID"].split() == ["VARCHAR(STRING)", "(key)"]
    assert table["TAGS"] == "ARRAY<INTEGER>"
    assert table["PRICE"] == "DECIMAL(4, 2)"
    assert table["ADDR"] == "STRUCT<CITY VARCHAR(STRING)>"
    assert "DESCRIBE <Stream,Table> EXTENDED" in lines[-1]


def test_key_of_a_table_is_a_primary_key() -> None:
    table = json.loads(json.dumps(DESCRIBE))
    table["sourceDescription"]["type"] = "TABLE"
    rows = {_columns(line)[0]: _columns(line)[1] for line in entities_lines([table]) if line.count("|") == 1}
    assert rows["USERID"] == "VARCHAR(STRING)  (primary key)"
    assert [name for name, kind in rows.items() if "key" in kind] == ["USERID"]


def test_command_status_prints_the_message_and_warnings() -> None:
    entity = {
        "@type": "currentStatus",
        "statementText": "CREATE STREAM ...",
        "commandId": "stream/`PV`/create",
        "commandStatus": {"status": "SUCCESS", "message": "Stream created\nmore detail", "queryId": None},
        "commandSequenceNumber": 2,
        "warnings": [{"message": "topic exists"}],
    }
    lines = entities_lines([entity])
    assert _columns(lines[1]) == ["Message"]
    assert _columns(lines[3]) == ["Stream created"]
    assert lines[-1] == "WARNING: topic exists"


def test_several_entities_are_each_preceded_by_their_statement() -> None:
    tables = {"@type": "tables", "statementText": "SHOW TABLES;", "tables": [], "warnings": []}
    lines = entities_lines([STREAMS, tables])
    assert lines == ["", "SHOW STREAMS;", *entities_lines([STREAMS])[1:], "", "SHOW TABLES;", *entities_lines([tables])[1:]]
    assert _columns(lines[lines.index("SHOW TABLES;") + 1])[:2] == ["Table Name", "Kafka Topic"]


def test_json_output_is_the_entities_as_json() -> None:
    lines = entities_lines([STREAMS], OutputFormat.JSON)
    assert json.loads("\n".join(lines)) == [STREAMS]


@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        (
            {
                "@type": "queries",
                "queries": [
                    {
                        "id": "CTAS_CNT_5",
                        "queryType": "PERSISTENT",
                        "state": "RUNNING",
                        "sinks": ["CNT"],
                        "sinkKafkaTopics": ["CNT"],
                        "queryString": "CREATE TABLE CNT AS\n SELECT 1;",
                    }
                ],
            },
            ["CTAS_CNT_5", "PERSISTENT", "RUNNING", "CNT", "CNT", "CREATE TABLE CNT AS SELECT 1;"],
        ),
        ({"@type": "kafka_topics", "topics": [{"name": "pv", "replicaInfo": [1, 1, 1]}]}, ["pv", "3", "1"]),
        ({"@type": "variables", "variables": [{"name": "topic", "value": "pv"}]}, ["topic", "pv"]),
        (
            {"@type": "terminate_query", "queryId": "transient_PV_1", "wasTerminated": True},
            ['Terminated query "transient_PV_1"'],
        ),
        (
            {
                "@type": "properties",
                "properties": [{"name": "a.b", "scope": "KSQL", "value": "x"}],
                "overwrittenProperties": ["a.b"],
                "defaultProperties": [],
            },
            ["a.b", "KSQL", "SESSION", "x"],
        ),
    ],
)
def test_list_entities_render_their_rows(entity: dict[str, Any], expected: list[str]) -> None:
    lines = entities_lines([{**entity, "statementText": "x", "warnings": []}])
    rows = [_columns(line) for line in lines if "|" in line or line.strip() and set(line.strip()) != {"-"}]
    assert expected in rows


def test_unknown_entity_kind_falls_back_to_json() -> None:
    entity = {"@type": "something_new", "statementText": "X;", "payload": [1, 2], "warnings": []}
    assert json.loads("\n".join(entities_lines([entity])[1:])) == entity


def test_table_cells_are_padded_to_the_widest_value() -> None:
    lines = render_table(("A", "Longer header"), [("wide value here", "x")])
    assert len({len(line) for line in (lines[0], lines[2])}) == 1
    assert render_table(("A",), [("x" * 500,)], width=40)[1] == "-" * 40


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        ("s", "s"),
        ([1, "a", None], "[1, a, null]"),
        ({"K": 1, "L": [True]}, "{K=1, L=[true]}"),
        (1.5, "1.5"),
    ],
)
def test_values_print_like_java(value: Any, text: str) -> None:
    assert java_text(value) == text


def test_map_type_text() -> None:
    schema = {"type": "MAP", "memberSchema": {"type": "BIGINT"}}
    assert type_text(schema) == "MAP<STRING, BIGINT>"
