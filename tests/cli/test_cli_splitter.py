"""The statement splitter: where statements end, and when the prompt's input is complete."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.splitter import is_complete, split_statements, strip_leading_comments


def test_splits_on_semicolons_and_strips_whitespace() -> None:
    split = split_statements("SHOW STREAMS;\n  SHOW TABLES ;  DESCRIBE pv")
    assert split.statements == ("SHOW STREAMS;", "SHOW TABLES ;")
    assert split.rest.strip() == "DESCRIBE pv"
    assert split.open_mode is None


@pytest.mark.parametrize(
    ("text", "statement"),
    [
        ("INSERT INTO s VALUES ('a;b');", "INSERT INTO s VALUES ('a;b');"),
        ("INSERT INTO s VALUES ('it''s; fine');", "INSERT INTO s VALUES ('it''s; fine');"),
        ('SELECT "a;b" FROM s;', 'SELECT "a;b" FROM s;'),
        ("SELECT `a;b` FROM s;", "SELECT `a;b` FROM s;"),
        ("SELECT a -- not; the end\nFROM s;", "SELECT a -- not; the end\nFROM s;"),
        ("SELECT a /* ; */ FROM s;", "SELECT a /* ; */ FROM s;"),
    ],
)
def test_semicolons_inside_quotes_and_comments_do_not_split(text: str, statement: str) -> None:
    assert split_statements(text).statements == (statement,)


def test_leading_comments_are_dropped_and_empty_statements_skipped() -> None:
    text = "-- make the stream\n/* block */ CREATE STREAM s (a INT) WITH (kafka_topic='s');\n;\n-- only a comment;\n"
    split = split_statements(text)
    assert split.statements == ("CREATE STREAM s (a INT) WITH (kafka_topic='s');",)
    assert split.rest_is_blank


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("SELECT 'abc;", "string"),
        ("SELECT `abc;", "back"),
        ('SELECT "a;', "double"),
        ("SELECT /* x;", "block_comment"),
    ],
)
def test_open_quote_or_comment_is_reported(text: str, mode: str) -> None:
    split = split_statements(text)
    assert split.statements == ()
    assert split.open_mode == mode
    assert not is_complete(text)


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("SHOW STREAMS;", True),
        ("SHOW STREAMS", False),
        ("SELECT *\nFROM s\nEMIT CHANGES;", True),
        ("SHOW STREAMS; SHOW", False),
        ("SHOW STREAMS; -- done", True),
        ("", False),
        ("-- just a comment", False),
        ("SELECT 'a;'", False),
    ],
)
def test_is_complete(text: str, complete: bool) -> None:
    assert is_complete(text) is complete


def test_strip_leading_comments() -> None:
    assert strip_leading_comments("  -- a\n /* b */ -- c\nSELECT 1") == "SELECT 1"
    assert strip_leading_comments("/* never closed") == ""


_plain = st.text(alphabet="abc XYZ01=()*,\n", min_size=1).filter(lambda s: s.strip())
_literal = st.text(alphabet="ab;'-/*\"` \n", max_size=8).map(lambda s: "'" + s.replace("'", "''") + "'")


@given(st.lists(st.tuples(_plain, _literal), min_size=1, max_size=5))
def test_statements_built_from_parts_come_back_whole(parts: list[tuple[str, str]]) -> None:
    statements = [f"{plain.strip()} {literal};" for plain, literal in parts]
    split = split_statements("\n".join(statements))
    assert split.statements == tuple(statements)
    assert split.rest_is_blank and split.open_mode is None
