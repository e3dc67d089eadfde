"""Cases run end to end on the engine: outputs compared, expected errors, the tool mode."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from ksqlpy.testing import cli
from ksqlpy.testing.qtt import build_case
from ksqlpy.testing.runner import run_case, topics_to_create

STATEMENTS = [
    "CREATE STREAM INPUT (ID INT KEY, V INT) WITH (kafka_topic='input', value_format='JSON');",
    "CREATE STREAM OUTPUT AS SELECT ID, V * 2 AS D FROM INPUT WHERE V > 1;",
]


def case(**fields: object) -> object:
    node = {"name": "c", "statements": STATEMENTS,
            "inputs": [{"topic": "input", "key": 1, "value": {"V": 1}, "timestamp": 5},
                       {"topic": "input", "key": 2, "value": {"V": 3}, "timestamp": 6}]}
    node.update(fields)
    return build_case(node, suite="s", file_name="f.json", fmt=None, config=None)


def test_matching_outputs_pass_and_are_reported() -> None:
    result = run_case(case(outputs=[{"topic": "OUTPUT", "key": 2, "value": {"D": 6}, "timestamp": 6}]))
    assert result.status == "passed", result.error
    assert [(r.key, r.value, r.timestamp) for r in result.outputs] == [(2, {"D": 6}, 6)]


def test_differing_outputs_fail_with_the_records_seen() -> None:
    result = run_case(case(outputs=[{"topic": "OUTPUT", "key": 2, "value": {"D": 7}}]))
    assert result.status == "failed"
    assert "Topic 'OUTPUT', message 0" in (result.error or "")


def test_expected_exception_matches_message() -> None:
    bad = ["CREATE STREAM OUTPUT AS SELECT NOPE FROM INPUT;"]
    good = run_case(case(statements=STATEMENTS[:1] + bad, inputs=[],
                         expectedException={"message": "NOPE"}))
    assert good.status == "passed", good.error
    wrong = run_case(case(statements=STATEMENTS[:1] + bad, inputs=[],
                          expectedException={"message": "something else entirely"}))
    assert wrong.status == "failed"


def test_error_positions_count_lines_across_the_statements() -> None:
    # ksqlDB's harness parses the statements joined by newlines: the third statement is line 3
    statements = [
        STATEMENTS[0],
        "CREATE STREAM OTHER (ID INT KEY, V INT) WITH (kafka_topic='other', value_format='JSON');",
        "CREATE STREAM OUTPUT AS SELECT INPUT.ID, V FROM INPUT JOIN OTHER WITHIN 1 SECOND ON INPUT.ID = OTHER.ID;",
    ]
    result = run_case(case(statements=statements, inputs=[],
                           expectedException={"message": "Line: 3, Col: 42: Column 'V' is ambiguous. "
                                                         "Could be INPUT.V or OTHER.V."}))
    assert result.status == "passed", result.error


def test_topics_come_from_create_statements_and_inputs() -> None:
    c = case(statements=[STATEMENTS[0].replace("value_format", "partitions=3, value_format")],
             inputs=[{"topic": "other", "value": 1, "partition": 1}])
    assert topics_to_create(c) == {"input": 3, "other": 2}  # type: ignore[arg-type]


def test_topics_whose_partitions_post_conditions_check_are_created_with_them() -> None:
    post = {"topics": {"topics": [{"name": "input", "partitions": 4}, {"name": "OUTPUT", "partitions": 4}]}}
    assert topics_to_create(case(post=post)) == {"input": 4, "OUTPUT": 4}  # type: ignore[arg-type]
    # a statement's PARTITIONS stands: the condition then checks what the statement made
    sized = case(post=post, statements=[STATEMENTS[0].replace("value_format", "partitions=2, value_format")])
    assert topics_to_create(sized) == {"input": 2, "OUTPUT": 4}  # type: ignore[arg-type]


def test_a_listed_topic_without_a_count_takes_the_create_statements() -> None:
    """ksqlDB's harness makes a listed topic (1 partition unless it says) and never checks a
    CREATE's PARTITIONS against it; a count the topic gives stands."""
    sized = [STATEMENTS[0].replace("value_format", "partitions=8, value_format")]
    assert topics_to_create(case(statements=sized, topics=[{"name": "input"}])) == {"input": 8}  # type: ignore[arg-type]
    listed = case(statements=sized, topics=[{"name": "input", "partitions": 2}])
    assert topics_to_create(listed) == {"input": 2}  # type: ignore[arg-type]


def test_records_of_several_partitions_come_out_in_the_order_they_went_in() -> None:
    """Inputs are processed one partition's piece after the other, and the sink is read back in
    the order its records were appended, whichever partitions they went to."""
    keys = [7, 1, 9, 2, 8, 3, 6, 4, 5, 0]
    inputs = [{"topic": "input", "key": k, "value": {"V": 10 + k}, "timestamp": 100 - k} for k in keys]
    outputs = [{"topic": "OUTPUT", "key": k, "value": {"D": 2 * (10 + k)}, "timestamp": 100 - k} for k in keys]
    sized = [STATEMENTS[0].replace("value_format", "partitions=4, value_format"), STATEMENTS[1]]
    post = {"topics": {"topics": [{"name": "OUTPUT", "partitions": 4}]}}
    result = run_case(case(statements=sized, inputs=inputs, outputs=outputs, post=post))
    assert result.status == "passed", result.error
    assert [r.key for r in result.outputs] == keys
    assert len({r.partition for r in result.outputs}) > 1


def test_tool_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s.sql").write_text("\n".join(STATEMENTS))
    (tmp_path / "in.json").write_text(json.dumps({"inputs": [{"topic": "input", "key": 4, "value": {"V": 5}}]}))
    (tmp_path / "out.json").write_text(json.dumps({"outputs": [{"topic": "OUTPUT", "key": 4, "value": {"D": 10}}]}))
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = ["-s", str(tmp_path / "s.sql"), "-i", str(tmp_path / "in.json"), "-o", str(tmp_path / "out.json")]
    assert cli.run(parser.parse_args(args)) == 0
    assert "Test passed!" in capsys.readouterr().out
    (tmp_path / "out.json").write_text(json.dumps({"outputs": [{"topic": "OUTPUT", "key": 4, "value": {"D": 11}}]}))
    assert cli.run(parser.parse_args(args)) == 1
    assert "Test failed" in capsys.readouterr().out
