"""Small builders for the DuckDB SQL that expressions compile to (sqlglot trees).

Java integer arithmetic wraps on overflow where DuckDB raises, so integer results are computed
one size wider and wrapped back to two's complement (:func:`wrap_integer`); values stay vectorized.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.planner.expressions.scope import struct_field_names

MAX_DECIMAL_PRECISION = 38  # DuckDB's limit; ksqlDB types may name more, values are capped here


def duck_type(t: st.SqlType) -> exp.DataType:
    """The DuckDB type of ``t`` as a sqlglot DataType (DECIMAL precision capped at 38, struct
    fields by their DuckDB names)."""
    return exp.DataType.build(st.to_duckdb(_for_duckdb(t)), dialect="duckdb")


def _for_duckdb(t: st.SqlType) -> st.SqlType:
    match t:
        case st.Decimal(precision=p, scale=s) if p > MAX_DECIMAL_PRECISION:
            return st.Decimal(MAX_DECIMAL_PRECISION, min(s, MAX_DECIMAL_PRECISION))
        case st.Array(element=e):
            return st.Array(_for_duckdb(e))
        case st.Map(key=k, value=v):
            return st.Map(_for_duckdb(k), _for_duckdb(v))
        case st.Struct(fields=fs):
            names = struct_field_names([f.name for f in fs])
            return st.Struct(tuple(st.Field(n, _for_duckdb(f.type)) for n, f in zip(names, fs, strict=True)))
    return t


def cast(e: exp.Expression, t: st.SqlType | exp.DataType) -> exp.Expression:
    return exp.Cast(this=e, to=t if isinstance(t, exp.DataType) else duck_type(t))


def try_cast(e: exp.Expression, t: st.SqlType | exp.DataType) -> exp.Expression:
    """A cast that yields NULL where ksqlDB's evaluation would fail (and log) instead."""
    return exp.TryCast(this=e, to=t if isinstance(t, exp.DataType) else duck_type(t))


def call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def num(value: float | str) -> exp.Expression:
    return exp.Literal.number(value)


def paren(e: exp.Expr) -> exp.Expression:
    return exp.Paren(this=e)


# Conditions are typed exp.Expr: sqlglot types and_/or_/Binary as the Condition trait, not as Expression.
def case(whens: Sequence[tuple[exp.Expr, exp.Expression]], default: exp.Expression | None = None) -> exp.Expression:
    return exp.Case(
        ifs=[exp.If(this=c, true=r) for c, r in whens],
        default=default,
    )


# Wider type to compute in, and the modulus to wrap by, per Java integer width.
_WRAP: dict[st.BaseType, tuple[str, int]] = {
    st.BaseType.INTEGER: ("BIGINT", 32),
    st.BaseType.BIGINT: ("HUGEINT", 64),
}


def widen_for_wrap(e: exp.Expression, t: st.SqlType) -> exp.Expression:
    """``e`` (INTEGER or BIGINT) cast to the type its Java arithmetic is computed in here."""
    return exp.Cast(this=e, to=exp.DataType.build(_WRAP[t.base][0]))


def wrap_integer(wide: exp.Expression, t: st.SqlType) -> exp.Expression:
    """Two's-complement wrap of a wide integer back to INTEGER/BIGINT, as Java arithmetic does."""
    bits = _WRAP[t.base][1]
    half, mask = 1 << (bits - 1), (1 << bits) - 1
    wide_type = exp.DataType.build(_WRAP[t.base][0])
    shifted = exp.Add(this=paren(wide), expression=exp.Cast(this=num(half), to=wide_type))
    masked = exp.BitwiseAnd(this=paren(shifted), expression=exp.Cast(this=num(mask), to=wide_type))
    return cast(exp.Sub(this=paren(masked), expression=exp.Cast(this=num(half), to=wide_type)), t)
