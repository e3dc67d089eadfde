"""AND/OR chains: Java's null rules, and compiled size linear in the number of conditions."""

from __future__ import annotations

import duckdb
import pytest

from ksqlpy.parser import parse_expression
from ksqlpy.planner.expressions import compile_expression
from ksqlpy.planner.expressions.scope import ColumnScope


def _value(text: str) -> object:
    compiled = compile_expression(parse_expression(text), ColumnScope([]))
    return duckdb.connect().execute("SELECT " + compiled.sql.sql(dialect="duckdb")).fetchone()[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CAST(NULL AS BOOLEAN) OR TRUE", None),  # a NULL left operand gives NULL, as in Java
        ("CAST(NULL AS BOOLEAN) AND FALSE", None),
        ("TRUE OR CAST(NULL AS BOOLEAN)", True),  # short-circuit
        ("FALSE AND CAST(NULL AS BOOLEAN)", False),
        ("FALSE OR CAST(NULL AS BOOLEAN)", None),
        ("CAST(NULL AS INT) = 1 OR TRUE", True),  # comparisons with NULL are FALSE
    ],
)
def test_java_null_rules(text: str, expected: object) -> None:
    assert _value(text) == expected


def test_long_chain_compiles_linearly_and_runs() -> None:
    terms = [f"'{i}' = '{i + 1}'" for i in range(60)] + ["'x' = 'x'"]
    text = " OR ".join(terms)
    compiled = compile_expression(parse_expression(text), ColumnScope([]))
    sql = compiled.sql.sql(dialect="duckdb")
    assert len(sql) < 100 * len(text)
    assert duckdb.connect().execute("SELECT " + sql).fetchone()[0] is True
