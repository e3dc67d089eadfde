"""AND/OR chains: Java's null rules, and compiled size linear in the number of conditions."""

from __future__ import annotations

import itertools

import duckdb
import pytest

from ksqlpy import sqltypes as st
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


# Chains of nullable operands: Java's short-circuit operators are associative, so a chain
# compiles as a right fold that repeats each nullable operand once (a statement of a few hundred
# bytes used to take the planner minutes: the left fold doubled the SQL at every level).
NULLABLE = ColumnScope.of({"A": st.BOOLEAN, "B": st.BOOLEAN, "C": st.BOOLEAN})


def _nullable_sql(text: str) -> str:
    return str(compile_expression(parse_expression(text), NULLABLE).sql.sql(dialect="duckdb"))


def test_a_long_chain_of_nullable_operands_stays_linear() -> None:
    sizes = [len(_nullable_sql(" OR ".join(["B"] * n))) for n in (10, 20, 40)]
    assert sizes[2] - sizes[1] == 2 * (sizes[1] - sizes[0])  # each operand adds the same length


def _java_or(a: bool | None, b: bool | None) -> bool | None:
    return None if a is None else True if a else b


def _java_and(a: bool | None, b: bool | None) -> bool | None:
    return None if a is None else b if a else False


def test_chains_of_nullable_operands_give_javas_results() -> None:
    con = duckdb.connect()
    cases = {
        "A OR B OR C": lambda a, b, c: _java_or(_java_or(a, b), c),
        "A AND B AND C": lambda a, b, c: _java_and(_java_and(a, b), c),
        "A OR B AND C": lambda a, b, c: _java_or(a, _java_and(b, c)),
        "(A OR B) AND C": lambda a, b, c: _java_and(_java_or(a, b), c),
    }
    for text, expected in cases.items():
        sql = _nullable_sql(text)
        for a, b, c in itertools.product([True, False, None], repeat=3):
            row = ", ".join(f"{'NULL' if v is None else v}::BOOLEAN AS \"{n}\"" for n, v in zip("ABC", (a, b, c)))
            (got,) = con.sql(f"SELECT {sql} FROM (SELECT {row})").fetchall()[0]
            assert got == expected(a, b, c), (text, a, b, c)
