"""Expressions: precedence, literals, operators, constructors, lambdas."""

from __future__ import annotations

import pytest

from ksqlpy.errors import ParseError
from ksqlpy.parser import ast, parse_expression


def col(name: str, source: str | None = None) -> ast.ColumnRef:
    return ast.ColumnRef(name=name, source=source)


def lit(value: int) -> ast.IntegerLiteral:
    return ast.IntegerLiteral(value=value)


def test_multiplication_binds_tighter_than_addition() -> None:
    assert parse_expression("a + b * c") == ast.ArithmeticBinary(
        op=ast.ArithmeticOp.ADD,
        left=col("A"),
        right=ast.ArithmeticBinary(op=ast.ArithmeticOp.MULTIPLY, left=col("B"), right=col("C")),
    )


def test_arithmetic_is_left_associative() -> None:
    assert parse_expression("a - b - c") == ast.ArithmeticBinary(
        op=ast.ArithmeticOp.SUBTRACT,
        left=ast.ArithmeticBinary(op=ast.ArithmeticOp.SUBTRACT, left=col("A"), right=col("B")),
        right=col("C"),
    )


def test_and_binds_tighter_than_or_and_not_tighter_than_and() -> None:
    tree = parse_expression("NOT a OR b AND c")
    assert tree == ast.LogicalBinary(
        op=ast.LogicalOp.OR,
        left=ast.Not(operand=col("A")),
        right=ast.LogicalBinary(op=ast.LogicalOp.AND, left=col("B"), right=col("C")),
    )


def test_comparison_binds_looser_than_arithmetic() -> None:
    assert parse_expression("a + 1 >= b") == ast.Comparison(
        op=ast.ComparisonOp.GREATER_THAN_OR_EQUAL,
        left=ast.ArithmeticBinary(op=ast.ArithmeticOp.ADD, left=col("A"), right=lit(1)),
        right=col("B"),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", ast.IntegerLiteral(value=42)),
        ("-42", ast.IntegerLiteral(value=-42)),
        ("1.50", ast.DecimalLiteral(text="1.50")),
        ("-1.50", ast.DecimalLiteral(text="-1.50")),
        ("1.5E3", ast.DoubleLiteral(value=1500.0)),
        ("'it''s'", ast.StringLiteral(value="it's")),
        ("TRUE", ast.BooleanLiteral(value=True)),
        ("false", ast.BooleanLiteral(value=False)),
        ("NULL", ast.NullLiteral()),
        ("-9223372036854775808", ast.IntegerLiteral(value=-(2**63))),
    ],
)
def test_literals(text: str, expected: ast.Expr) -> None:
    assert parse_expression(text) == expected


def test_parenthesised_number_keeps_unary_minus() -> None:
    assert parse_expression("-(1)") == ast.ArithmeticUnary(negative=True, operand=lit(1))


def test_numeric_overflow_is_rejected() -> None:
    with pytest.raises(ParseError, match="Invalid numeric literal: 9223372036854775808"):
        parse_expression("9223372036854775808")
    with pytest.raises(ParseError, match="Number overflows DOUBLE"):
        parse_expression("1.7976931348623159E308")


def test_predicates() -> None:
    assert parse_expression("a NOT LIKE 'x!%' ESCAPE '!'") == ast.Like(
        value=col("A"), pattern=ast.StringLiteral(value="x!%"), escape="!", negated=True
    )
    assert parse_expression("a NOT BETWEEN 1 AND 2") == ast.Between(
        value=col("A"), low=lit(1), high=lit(2), negated=True
    )
    assert parse_expression("a IN (1, 2)") == ast.InList(value=col("A"), items=(lit(1), lit(2)))
    assert parse_expression("a IS NOT NULL") == ast.IsNull(operand=col("A"), negated=True)
    assert parse_expression("a IS NOT DISTINCT FROM b") == ast.Comparison(
        op=ast.ComparisonOp.IS_NOT_DISTINCT_FROM, left=col("A"), right=col("B")
    )
    assert parse_expression("a != b") == parse_expression("a <> b")


def test_struct_map_array_access() -> None:
    assert parse_expression("s->f[1]") == ast.Subscript(
        base=ast.Dereference(base=col("S"), field="F"), index=lit(1)
    )
    assert parse_expression("t.c") == col("C", "T")


def test_constructors_and_cast() -> None:
    assert parse_expression("ARRAY[1, 2]") == ast.CreateArray(items=(lit(1), lit(2)))
    assert parse_expression("MAP('k' := 1)") == ast.CreateMap(entries=((ast.StringLiteral(value="k"), lit(1)),))
    assert parse_expression("STRUCT(f := 1)") == ast.CreateStruct(fields=(("F", lit(1)),))
    assert parse_expression("CAST(a AS DECIMAL(4, 2))") == ast.Cast(
        operand=col("A"), type=ast.DecimalType(precision=4, scale=2)
    )


def test_case_expressions() -> None:
    assert parse_expression("CASE a WHEN 1 THEN 'x' END") == ast.SimpleCase(
        operand=col("A"), whens=(ast.WhenClause(condition=lit(1), result=ast.StringLiteral(value="x")),)
    )
    assert parse_expression("CASE WHEN a THEN 1 ELSE 2 END") == ast.SearchedCase(
        whens=(ast.WhenClause(condition=col("A"), result=lit(1)),), default=lit(2)
    )


def test_function_calls() -> None:
    assert parse_expression("count(*)") == ast.FunctionCall(name="COUNT", star=True)
    assert parse_expression("count(DISTINCT a)") == ast.FunctionCall(name="COUNT", args=(col("A"),), distinct=True)
    assert parse_expression("TIMESTAMPADD(SECONDS, 1, ts)") == ast.FunctionCall(
        name="TIMESTAMPADD", args=(ast.IntervalUnit(unit="SECONDS"), lit(1), col("TS"))
    )
    assert parse_expression("a || b") == ast.FunctionCall(name="CONCAT", args=(col("A"), col("B")))


def test_lambdas() -> None:
    assert parse_expression("TRANSFORM(xs, x => x + 1)") == ast.FunctionCall(
        name="TRANSFORM",
        args=(col("XS"), ast.Lambda(params=("X",), body=ast.ArithmeticBinary(op=ast.ArithmeticOp.ADD, left=col("X"), right=lit(1)))),
    )
    reduce = parse_expression("REDUCE(m, 0, (s, k, v) => s + v)")
    assert isinstance(reduce, ast.FunctionCall)
    assert reduce.args[2] == ast.Lambda(
        params=("S", "K", "V"), body=ast.ArithmeticBinary(op=ast.ArithmeticOp.ADD, left=col("S"), right=col("V"))
    )


def test_identifiers_and_quoting() -> None:
    assert parse_expression("abc") == col("ABC")
    assert parse_expression("`abc`") == col("abc")
    assert parse_expression('"abc"') == col("abc")
    assert parse_expression("`a``b`") == col("a`b")
    # non-reserved keywords are valid column names
    for word in ("KEY", "TIMESTAMP", "DATE", "TIME", "TYPE", "ID", "SESSION", "VALUE", "ROWTIME"):
        assert parse_expression(word.lower()) == col(word)


def test_positions_are_one_based() -> None:
    tree = parse_expression("a +\n  b")
    assert isinstance(tree, ast.ArithmeticBinary)
    assert tree.right.pos is not None and (tree.right.pos.line, tree.right.pos.column) == (2, 3)
