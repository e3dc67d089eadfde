"""Syntax errors: position at the offending token, ksqlDB's wording."""

from __future__ import annotations

import pytest

from ksqlpy.errors import ParseError, Position
from ksqlpy.parser import MAX_NUMBER_CHARS, build_lexers, parse, parse_expression


def error_of(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text)
    return info.value


def test_misspelt_keyword_points_at_it() -> None:
    error = error_of("CREATE STREEM s (a INT) WITH (kafka_topic='t');")
    assert error.pos == Position(1, 8)
    assert str(error).startswith("line 1:8: Syntax Error")
    assert error.hint == "Syntax error at or near 'STREEM'"


def test_position_counts_lines_of_the_whole_text() -> None:
    error = error_of("SHOW STREAMS;\nSELECT * FROM s ORDER BY x;")
    assert error.pos == Position(2, 23)


def test_expected_tokens_are_listed_as_ksqldb_lists_them() -> None:
    # the QTT case "fail on STRING with parameter"
    error = error_of("CREATE STREAM INPUT (K STRING (KEY)) WITH (kafka_topic='input',value_format='JSON');")
    assert str(error) == "line 1:32: Syntax Error\nExpecting {'STRING', INTEGER_VALUE}"


@pytest.mark.parametrize(
    ("text", "near"),
    [
        ("ASSERT VALUES foo (id INT) VALUES (123);", "'VALUES' at line 1:8"),
        ("ASSERT NOT VALUES foo;", "'VALUES' at line 1:12"),
        ("SHOW STREAMS;\nCREATE FOO;", "'FOO' at line 2:8"),
    ],
)
def test_a_token_no_kind_of_statement_begun_takes_is_no_viable_alternative(text: str, near: str) -> None:
    """ANTLR reports no viable alternative where the keywords read so far still begin several
    kinds of statement (ASSERT TOPIC and ASSERT SCHEMA); once the kind is known, a mismatch
    lists what was expected."""
    assert str(error_of(text)).endswith("Syntax Error\nSyntax error at or near " + near)


def test_long_expected_lists_are_left_out() -> None:
    error = error_of("SELECT * FROM S1 ORDER BY MYKEY DESC;")
    assert str(error) == "line 1:24: Syntax Error\n"


def test_reserved_word_as_identifier() -> None:
    error = error_of("SELECT a AS from FROM s;")
    assert error.pos == Position(1, 13)
    assert '"FROM" is a reserved keyword' in str(error)
    # quoting makes it a name
    parse("SELECT a AS `from` FROM s;")


@pytest.mark.parametrize(
    "text",
    [
        "CREATE TABLE OUTPUT AS SELECT COUNT(*) FROM TEST GROUP BY DATA AND ID;",
        "CREATE STREAM OUTPUT AS SELECT * FROM INPUT WHERE ID IN ( );",
        "CREATE STREAM INPUT (ROWKEY INT KEY, COL0 NULL) WITH (kafka_topic='t', value_format='JSON');",
        "CREATE STREAM OUTPUT AS SELECT * FROM EXPLODE(MY_ARR);",
        "SELECT * FROM s LIMIT heh;",
        "SELECT 'unterminated FROM s;",
        "SELECT * FROM s WHERE;",
    ],
)
def test_invalid_statements_are_syntax_errors(text: str) -> None:
    assert error_of(text).message.startswith("Syntax Error")


def test_non_integer_limit() -> None:
    error = error_of("SELECT * FROM s LIMIT 2.5;")
    assert error.message == "Failed to prepare statement: Value must be integer for command: LIMIT"
    assert error.pos == Position(1, 23)


def test_persistent_queries_refuse_limit() -> None:
    error = error_of("CREATE TABLE t AS SELECT k, COUNT(*) FROM s GROUP BY k LIMIT 5;")
    assert error.message == "CREATE TABLE AS SELECT statements don't support LIMIT clause."


def test_insert_values_counts_columns_and_values() -> None:
    error = error_of("INSERT INTO t (k, id) VALUES ('10');")
    assert error.message == "Failed to prepare statement: Expected number columns and values to match: 2, 1"


def test_error_at_end_of_input() -> None:
    with pytest.raises(ParseError) as info:
        parse_expression("a +")
    assert info.value.pos == Position(1, 4)


def test_lambda_needs_a_parameter_name() -> None:
    with pytest.raises(ParseError):
        parse_expression("TRANSFORM(xs, 1 => 2)")


# -- input that would exhaust recursion or conversions --------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "SELECT " + "(" * 500 + "1" + ")" * 500 + " FROM s EMIT CHANGES;",
        "SELECT " + "CASE WHEN a THEN " * 400 + "1" + " END" * 400 + " FROM s EMIT CHANGES;",
        "SELECT * FROM s WHERE " + " AND ".join(["a = 1"] * 3000) + " EMIT CHANGES;",
        "CREATE STREAM s (a " + "ARRAY<" * 400 + "INT" + ">" * 400 + ") WITH (kafka_topic='t');",
    ],
    ids=["parentheses", "case", "and-chain", "array-type"],
)
def test_deep_nesting_is_a_syntax_error_with_a_position(text: str) -> None:
    error = error_of(text)
    assert error.pos is not None and error.pos.line == 1
    assert "too deeply nested" in str(error)
    assert str(error).startswith(f"line 1:{error.pos.column}: ")


def test_nesting_within_the_limit_parses() -> None:
    statement = parse("SELECT " + "(" * 60 + "1" + ")" * 60 + " AS x FROM s EMIT CHANGES;")
    assert len(statement) == 1


@pytest.mark.parametrize("literal", ["9" * 5000, "9" * 5000 + ".5", "0." + "9" * 5000, "1e" + "9" * 5000])
def test_huge_numeric_literals_are_rejected_at_their_position(literal: str) -> None:
    error = error_of(f"SELECT k, {literal} FROM s EMIT CHANGES;")
    assert error.pos == Position(1, 11)
    assert "numeric literal" in str(error) or "overflows" in str(error)


def test_lexers_built_ahead_keep_their_checks() -> None:
    """``build_lexers`` compiles every lexer state's scanner ahead of the statements, each with
    the lexer's checks installed: a reserved word as a name and an overlong number are still
    refused in the states they are lexed in."""
    build_lexers()
    error = error_of("CREATE STREAM out AS SELECT a AS select FROM s WHERE b > 1;")
    assert '"SELECT" is a reserved keyword' in str(error)
    error = error_of(f"SELECT * FROM s WHERE b > {'9' * (MAX_NUMBER_CHARS + 1)};")
    assert "Invalid numeric literal" in str(error)
    parse("CREATE TABLE t AS SELECT k, COUNT(*) FROM s WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY k;")
