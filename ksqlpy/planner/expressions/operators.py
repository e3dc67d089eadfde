"""Arithmetic and comparison operators: ksqlDB's typing rules and their DuckDB compilation.

Typing follows ksqlDB's ``Operator`` and ``SqlDecimal`` (result precision/scale of DECIMAL
arithmetic) and ``ComparisonUtil`` (which types compare). Evaluation follows the Java code ksqlDB
generates:

* INTEGER/BIGINT ``+ - *`` wrap around on overflow; ``/`` truncates toward zero; ``%`` takes the
  dividend's sign; an integer division or modulus by zero is NULL (ksqlDB logs the error and
  yields NULL);
* DOUBLE follows IEEE 754 (``1.0 / 0`` is Infinity, ``0.0 / 0`` NaN), as Java does;
* DECIMAL results are rounded to the result type's scale; by-zero is NULL;
* a comparison with a NULL operand is FALSE (not NULL), except IS [NOT] DISTINCT FROM;
* STRING + STRING concatenates, printing a NULL operand as ``null`` as Java's ``+`` does.
"""

from __future__ import annotations

from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError
from ksqlpy.parser import ast
from ksqlpy.planner.expressions import sqlbuild as sb
from ksqlpy.planner.expressions.casts import cast_value
from ksqlpy.planner.expressions.formatter import format_expr
from ksqlpy.planner.functions.registry import Compiled

B = st.BaseType
Op = ast.ArithmeticOp

# Java's implicit numeric widening: a type widens to every type at or after it.
_NUMERIC_ORDER = (B.INTEGER, B.BIGINT, B.DECIMAL, B.DOUBLE)


def can_widen(source: B, target: B) -> bool:
    return (
        source in _NUMERIC_ORDER
        and target in _NUMERIC_ORDER
        and _NUMERIC_ORDER.index(source) <= _NUMERIC_ORDER.index(target)
    )


def _decimal_result(op: Op, a: st.Decimal, b: st.Decimal) -> st.Decimal:
    """ksqlDB's SqlDecimal.add/subtract/multiply/divide/modulus."""
    match op:
        case Op.ADD | Op.SUBTRACT:
            scale = max(a.scale, b.scale)
            return st.Decimal(scale + max(a.precision - a.scale, b.precision - b.scale) + 1, scale)
        case Op.MULTIPLY:
            return st.Decimal(a.precision + b.precision + 1, a.scale + b.scale)
        case Op.DIVIDE:
            scale = max(6, a.scale + b.precision + 1)
            return st.Decimal(a.precision - a.scale + b.scale + scale, scale)
        case Op.MODULUS:
            scale = max(a.scale, b.scale)
            return st.Decimal(min(a.precision - a.scale, b.precision - b.scale) + scale, scale)
    raise AssertionError(op)


def arithmetic_type(node: ast.ArithmeticBinary, left: st.SqlType | None, right: st.SqlType | None) -> st.SqlType:
    """The result type of ``left op right``, or ksqlDB's error for types that do not combine."""

    def fail(reason: str) -> AnalysisError:
        return AnalysisError(f"Error processing expression: {format_expr(node)}. {reason}", pos=node.pos)

    if left is None or right is None:

        def shown(t: st.SqlType | None) -> str:
            return "null" if t is None else str(t)

        raise fail(f"Arithmetic on types {shown(left)} and {shown(right)} are not supported.")
    if node.op is Op.ADD and left == st.STRING and right == st.STRING:
        return st.STRING
    if st.is_numeric(left) and st.is_numeric(right):
        if can_widen(left.base, right.base):
            if right.base is not B.DECIMAL:
                return right
            return _decimal_result(node.op, st.decimal_of(left), st.decimal_of(right))
        if left.base is not B.DECIMAL:
            return left
        return _decimal_result(node.op, st.decimal_of(left), st.decimal_of(right))
    raise fail(f"Unsupported arithmetic types. {left.base.value} {right.base.value}")


_SQL_ARITHMETIC: dict[Op, type[exp.Expression]] = {
    Op.ADD: exp.Add,
    Op.SUBTRACT: exp.Sub,
    Op.MULTIPLY: exp.Mul,
    Op.DIVIDE: exp.IntDiv,  # replaced by exp.Div for DOUBLE and DECIMAL below
    Op.MODULUS: exp.Mod,
}


def _nonzero(e: exp.Expression) -> exp.Expression:
    return exp.Nullif(this=e, expression=sb.num(0))


def compile_arithmetic(op: Op, left: Compiled, right: Compiled, result: st.SqlType) -> exp.Expression:
    assert left.type is not None and right.type is not None
    if result == st.STRING:
        shown = [exp.Coalesce(this=side.sql, expressions=[exp.Literal.string("null")]) for side in (left, right)]
        return exp.DPipe(this=shown[0], expression=shown[1])
    if result.base is B.DOUBLE:
        l, r = (cast_value(side.sql, side.type, st.DOUBLE) for side in (left, right))
        node = exp.Div(this=l, expression=r) if op is Op.DIVIDE else _SQL_ARITHMETIC[op](this=l, expression=r)
        return sb.paren(node)
    if isinstance(result, st.Decimal):
        l = cast_value(left.sql, left.type, st.decimal_of(left.type))
        r = cast_value(right.sql, right.type, st.decimal_of(right.type))
        match op:
            case Op.DIVIDE:
                # DuckDB divides DECIMALs in DOUBLE; the quotient is then rounded to the result scale.
                value: exp.Expression = exp.Div(this=sb.cast(l, st.DOUBLE), expression=sb.cast(_nonzero(r), st.DOUBLE))
            case Op.MODULUS:
                value = exp.Mod(this=l, expression=_nonzero(r))
            case _:
                value = _SQL_ARITHMETIC[op](this=l, expression=r)
        return sb.try_cast(sb.paren(value), result)
    # INTEGER / BIGINT: compute one size wider, then wrap as Java does.
    l = sb.widen_for_wrap(cast_value(left.sql, left.type, result), result)
    r = sb.widen_for_wrap(cast_value(right.sql, right.type, result), result)
    if op in (Op.DIVIDE, Op.MODULUS):
        r = _nonzero(r)
    return sb.wrap_integer(_SQL_ARITHMETIC[op](this=l, expression=r), result)


def compile_negate(value: Compiled) -> exp.Expression:
    t = value.type
    assert t is not None
    if t.base in (B.INTEGER, B.BIGINT):
        return sb.wrap_integer(exp.Neg(this=sb.widen_for_wrap(value.sql, t)), t)
    return exp.Neg(this=sb.paren(value.sql))


# ---- comparisons (ksqlDB's ComparisonUtil)

Cmp = ast.ComparisonOp
_EQUALITY = frozenset({Cmp.EQUAL, Cmp.NOT_EQUAL, Cmp.IS_DISTINCT_FROM, Cmp.IS_NOT_DISTINCT_FROM})
_TIME_BASES = frozenset({B.TIME, B.DATE, B.TIMESTAMP})


def _comparable(left: st.SqlType, op: Cmp, right: st.SqlType) -> bool:
    lb, rb = left.base, right.base
    if st.is_numeric(left):
        return st.is_numeric(right)
    match lb:
        case B.STRING:
            return rb is B.STRING or rb in _TIME_BASES
        case B.BOOLEAN | B.ARRAY | B.MAP | B.STRUCT:
            return rb is lb and op in _EQUALITY
        case B.TIME:
            return rb in (B.TIME, B.STRING)
        case B.DATE | B.TIMESTAMP:
            return rb in (B.DATE, B.TIMESTAMP, B.STRING)
        case B.BYTES:
            return rb is B.BYTES
    return False


def check_comparison(node: ast.Comparison, left: st.SqlType | None, right: st.SqlType | None) -> None:
    if left is None or right is None:

        def shown(t: st.SqlType | None) -> str:
            return "NULL" if t is None else t.base.value

        raise AnalysisError(
            f"Comparison with NULL not supported: {shown(left)} {node.op.value} {shown(right)}\n"
            "Use 'IS NULL' or 'IS NOT NULL' instead.",
            pos=node.pos,
        )
    if not _comparable(left, node.op, right):
        raise AnalysisError(
            f"Cannot compare {format_expr(node.left)} ({left}) to {format_expr(node.right)} ({right}) "
            f"with {node.op.name}.",
            pos=node.pos,
        )


_SQL_COMPARISON: dict[Cmp, type[exp.Expression]] = {
    Cmp.EQUAL: exp.EQ,
    Cmp.NOT_EQUAL: exp.NEQ,
    Cmp.LESS_THAN: exp.LT,
    Cmp.LESS_THAN_OR_EQUAL: exp.LTE,
    Cmp.GREATER_THAN: exp.GT,
    Cmp.GREATER_THAN_OR_EQUAL: exp.GTE,
    Cmp.IS_DISTINCT_FROM: exp.NullSafeNEQ,
    Cmp.IS_NOT_DISTINCT_FROM: exp.NullSafeEQ,
}


def _time_target(left: st.SqlType, right: st.SqlType) -> st.SqlType | None:
    """The type a STRING operand is parsed as when compared with a time type."""
    bases = {left.base, right.base}
    if B.STRING not in bases or not bases & _TIME_BASES:
        return None
    if B.TIME in bases:
        return st.TIME
    return st.TIMESTAMP if B.TIMESTAMP in bases else st.DATE


def compile_comparison(op: Cmp, left: Compiled, right: Compiled) -> exp.Expression:
    assert left.type is not None and right.type is not None
    l, r = left.sql, right.sql
    target = _time_target(left.type, right.type)
    if target is not None:
        if left.type == st.STRING:
            l = sb.try_cast(sb.call("trim", l), target)
        else:
            r = sb.try_cast(sb.call("trim", r), target)
    node = _SQL_COMPARISON[op](this=l, expression=r)
    if op in (Cmp.IS_DISTINCT_FROM, Cmp.IS_NOT_DISTINCT_FROM):
        return node
    return exp.Coalesce(this=node, expressions=[exp.false()])
