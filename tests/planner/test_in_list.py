"""IN lists: ksqlDB's coercion of the list to the value's type (QTT in.json)."""

from __future__ import annotations

import duckdb
import pytest

from ksqlpy.errors import AnalysisError
from ksqlpy.parser import parse_expression
from ksqlpy.planner.expressions import compile_expression
from ksqlpy.planner.expressions.scope import ColumnScope


def _value(text: str) -> object:
    compiled = compile_expression(parse_expression(text), ColumnScope([]))
    return duckdb.connect().execute("SELECT " + compiled.sql.sql(dialect="duckdb")).fetchone()[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CAST(4 AS BIGINT) IN (1, '4.000')", True),  # string literals parse as numbers
        ("CAST(5 AS BIGINT) IN (5.10)", False),
        ("TRUE IN ('TrUe')", True),
        ("FALSE IN ('n')", True),
        ("CAST('10.30' AS STRING) IN (true, 10, 10.30)", True),  # other literals become their text
        ("CAST('10.3' AS STRING) IN (10.30)", False),
        ("ARRAY[CAST(3 AS BIGINT), NULL] IN (ARRAY['3', NULL])", None),  # NULL elements: SQL equality
        ("STRUCT(A := 4, B := 2) IN (STRUCT(B := 2, A := 4))", True),  # by field name
        ("STRUCT(A := 3, B := 2) IN (STRUCT(A := 3, B := 2, C := 4))", False),  # other fields never match
        ("STRUCT(F0 := 20) IN (STRUCT(`f0` := 20))", False),  # field names are case sensitive
        ("CAST(NULL AS INT) IN (1, NULL)", False),
    ],
)
def test_in_list_coercion(text: str, expected: object) -> None:
    if expected is None:
        _value(text)  # compiles and runs
    else:
        assert _value(text) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("TRUE IN (true, 10)", "operator does not exist: BOOLEAN = INTEGER (10)"),
        ("10 IN (1, 'ten')", 'invalid input syntax for type INTEGER: "ten"'),
        ("CAST('a' AS STRING) IN (10, CAST(1.5 AS DOUBLE))", "operator does not exist: STRING = DOUBLE"),
        ("ARRAY[1] IN (ARRAY[true])", "operator does not exist: ARRAY<INTEGER> = ARRAY<BOOLEAN>"),
    ],
)
def test_in_list_type_errors(text: str, message: str) -> None:
    with pytest.raises(AnalysisError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_expression(parse_expression(text), ColumnScope([]))


def test_duplicate_struct_fields_are_rejected() -> None:
    with pytest.raises(AnalysisError, match="Duplicate field names found in STRUCT"):
        compile_expression(parse_expression("STRUCT(A := 1, A := 2)"), ColumnScope([]))


def test_substring_with_a_null_position_or_length_is_null() -> None:
    assert _value("SUBSTRING('some_string', CAST(NULL AS INT))") is None
    assert _value("SUBSTRING('some_string', 6, CAST(NULL AS INT))") is None
    assert _value("SUBSTRING('some_string', 6, 3)") == "str"


def test_constructors_coerce_string_literals_to_the_element_type() -> None:
    compiled = compile_expression(parse_expression("ARRAY[NULL, 10, '2e1', CAST(30 AS BIGINT)]"), ColumnScope([]))
    assert str(compiled.type) == "ARRAY<DECIMAL(19, 0)>"
    assert [int(v) if v is not None else None for v in _value("ARRAY[NULL, 10, '2e1', CAST(30 AS BIGINT)]")] == [
        None, 10, 20, 30
    ]
    assert _value("MAP(CAST('a' AS STRING) := TRUE, 10 := 'no')") == {"a": True, "10": False}
    with pytest.raises(AnalysisError, match='invalid input syntax for type INTEGER: "hello"'):
        compile_expression(parse_expression("MAP('a' := 1, 'b' := 'hello')"), ColumnScope([]))
