"""Variable substitution and statement splitting."""

from __future__ import annotations

import pytest

from ksqlpy.errors import ParseError
from ksqlpy.parser import split_statements, substitute_variables


def test_substitutes_names_ignoring_case() -> None:
    text = "CREATE STREAM ${Name} WITH (kafka_topic='${topic}', partitions=${N});"
    out = substitute_variables(text, {"name": "s1", "TOPIC": "it's", "n": "3"})
    assert out == "CREATE STREAM s1 WITH (kafka_topic='it''s', partitions=3);"


def test_unknown_variables_and_comments_are_left_alone() -> None:
    text = "SELECT ${missing} FROM s; -- ${name}\n"
    assert substitute_variables(text, {"name": "x"}) == text


def test_value_outside_quotes_must_be_identifier_or_literal() -> None:
    with pytest.raises(ParseError, match="Illegal argument at Line: 1, Col: 8"):
        substitute_variables("SELECT ${v} FROM s;", {"v": "a b"})
    assert substitute_variables("SELECT ${v} FROM s;", {"v": "'a b'"}) == "SELECT 'a b' FROM s;"


def test_split_statements_respects_quotes_and_comments() -> None:
    text = "SELECT ';' FROM `a;b`; -- x; y\n/* c; */ SHOW STREAMS ;\n INSERT INTO t VALUES ('x''; y')"
    assert split_statements(text) == [
        "SELECT ';' FROM `a;b`;",
        "SHOW STREAMS;",
        "INSERT INTO t VALUES ('x''; y');",
    ]


def test_split_statements_ignores_empty_ones() -> None:
    assert split_statements(" ; ;\n") == []
