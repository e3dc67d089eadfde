"""parse -> format -> parse gives an equal tree (hypothesis over generated expressions)."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from ksqlpy.parser import ast, parse_expression, parse_statement
from ksqlpy.parser.formatter import format_expression, format_statement
from tests.parser.conftest import without_text

names = st.one_of(
    st.text(string.ascii_uppercase + "_", min_size=1, max_size=6),
    st.text(string.ascii_letters + string.digits + " `'\"", min_size=1, max_size=6),
    st.sampled_from(["KEY", "TIMESTAMP", "FROM", "SELECT", "MAP", "ARRAY", "DATE", "EMIT"]),
)
literals = st.one_of(
    st.builds(ast.IntegerLiteral, value=st.integers(-(2**63), 2**63 - 1)),
    st.builds(ast.DecimalLiteral, text=st.from_regex(r"-?[0-9]{1,5}\.[0-9]{0,4}", fullmatch=True)),
    st.builds(ast.DoubleLiteral, value=st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(ast.StringLiteral, value=st.text(max_size=8)),
    st.builds(ast.BooleanLiteral, value=st.booleans()),
    st.just(ast.NullLiteral()),
)
columns = st.builds(ast.ColumnRef, name=names, source=st.none() | names)


def _extend(children: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
    return st.one_of(
        st.builds(ast.ArithmeticBinary, op=st.sampled_from(ast.ArithmeticOp), left=children, right=children),
        st.builds(ast.ArithmeticUnary, negative=st.booleans(), operand=children),
        st.builds(ast.Comparison, op=st.sampled_from(ast.ComparisonOp), left=children, right=children),
        st.builds(ast.LogicalBinary, op=st.sampled_from(ast.LogicalOp), left=children, right=children),
        st.builds(ast.Not, operand=children),
        st.builds(ast.IsNull, operand=children, negated=st.booleans()),
        st.builds(ast.Like, value=children, pattern=children, escape=st.none() | st.just("!"), negated=st.booleans()),
        st.builds(ast.Between, value=children, low=children, high=children, negated=st.booleans()),
        st.builds(ast.InList, value=children, items=st.lists(children, min_size=1, max_size=3).map(tuple)),
        st.builds(ast.Dereference, base=children, field=names),
        st.builds(ast.Subscript, base=children, index=children),
        st.builds(ast.FunctionCall, name=st.sampled_from(["ABS", "CONCAT", "X_Y"]), args=st.lists(children, max_size=3).map(tuple)),
        st.builds(ast.Cast, operand=children, type=st.just(ast.DecimalType(precision=4, scale=2))),
        st.builds(ast.CreateArray, items=st.lists(children, max_size=3).map(tuple)),
        st.builds(ast.SearchedCase, whens=st.lists(st.builds(ast.WhenClause, condition=children, result=children), min_size=1, max_size=2).map(tuple), default=st.none() | children),
    )


expressions = st.recursive(literals | columns, _extend, max_leaves=12)


def _unary_plus_free(expr: ast.Expr) -> bool:
    # `+x` is read as x with a unary plus; the tree keeps it, so it round-trips like minus.
    return True


@settings(max_examples=300, deadline=None)
@given(expressions)
def test_expression_round_trip(expr: ast.Expr) -> None:
    text = format_expression(expr)
    assert parse_expression(text) == expr, text
    assert format_expression(parse_expression(text)) == text


STATEMENTS = [
    "CREATE STREAM `s-1` (`id` INT KEY, v STRUCT<`a b` STRING>) WITH (KAFKA_TOPIC='t', 'weird.prop'=-1.5);",
    "CREATE OR REPLACE TABLE t WITH (PARTITIONS=2) AS SELECT a, COUNT(*) AS c FROM s WINDOW SESSION (1 MINUTE, GRACE PERIOD 2 SECONDS) GROUP BY a EMIT CHANGES;",
    "SELECT * FROM a JOIN b WITHIN (1 SECOND, 3 SECONDS) ON a.k = b.k RIGHT JOIN c ON a.k = c.k WHERE a.v IN (1, 2) EMIT CHANGES LIMIT 3;",
    "INSERT INTO t (`a`, b, c, d) VALUES (-1, 'x', ARRAY[1], MAP('k' := 1.0E0));",
    "PRINT 'My-Topic' FROM BEGINNING INTERVAL 2 LIMIT 5;",
    "ASSERT NOT EXISTS SCHEMA SUBJECT 'x' ID 3 TIMEOUT 2 SECONDS;",
    "EXPLAIN INSERT INTO t SELECT * FROM s PARTITION BY a, b;",
    "DEFINE from = 'x';",
    "SELECT TRANSFORM(xs, x => x + 1), REDUCE(m, 0, (s, k, v) => s + v), TIMESTAMPADD(DAYS, 1, ts) FROM s;",
]


def test_statement_round_trip() -> None:
    for text in STATEMENTS:
        stmt = parse_statement(text)
        printed = format_statement(stmt)
        assert without_text(parse_statement(printed)) == without_text(stmt), printed
