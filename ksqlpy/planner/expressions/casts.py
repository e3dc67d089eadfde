"""CAST between ksqlDB types, compiled to DuckDB with ksqlDB's (Java's) results.

The table of supported casts is ksqlDB's ``CastEvaluator``; any other pair raises
``Cast of X to Y is not supported``. A value that cannot be converted (``CAST('x' AS INT)``, a
DECIMAL that does not fit) becomes NULL, as ksqlDB's evaluation error does. Java conversions are
reproduced where DuckDB's differ: narrowing truncates toward zero, ``BIGINT -> INT`` wraps,
``STRING -> INT`` accepts only integer text, ``STRING -> BOOLEAN`` is true for prefixes of
``true``/``yes``, DOUBLE prints like ``Double.toString`` and TIMESTAMP as ``yyyy-MM-ddTHH:mm:ss.SSS``.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError, Position
from ksqlpy.planner.expressions import sqlbuild as sb
from ksqlpy.planner.expressions.scope import struct_field_name, struct_field_names

B = st.BaseType

# DuckDB helper installed by ksqlpy.planner.functions.builtins_core (Java scientific notation).
DOUBLE_SCI_UDF = "ksql_double_sci_string"

_Rule = Callable[[exp.Expression, st.SqlType, st.SqlType], exp.Expression]


def _plain(e: exp.Expression, _src: st.SqlType, to: st.SqlType) -> exp.Expression:
    return sb.cast(e, to)


def _try(e: exp.Expression, _src: st.SqlType, to: st.SqlType) -> exp.Expression:
    return sb.try_cast(e, to)


def _truncating(e: exp.Expression, _src: st.SqlType, to: st.SqlType) -> exp.Expression:
    # Java's intValue()/longValue() truncate toward zero; DuckDB's casts round.
    return sb.try_cast(sb.call("trunc", e), to)


def _bigint_to_int(e: exp.Expression, _src: st.SqlType, to: st.SqlType) -> exp.Expression:
    return sb.wrap_integer(sb.widen_for_wrap(e, st.BIGINT), st.INTEGER)


def _to_string(e: exp.Expression, _src: st.SqlType, _to: st.SqlType) -> exp.Expression:
    return sb.cast(e, st.STRING)


def _struct_to_string(e: exp.Expression, src: st.SqlType, _to: st.SqlType) -> exp.Expression:
    """Java's ``Struct.toString()``: ``Struct{A=1,B=x}``, fields whose value is null left out."""
    assert isinstance(src, st.Struct)
    parts: list[exp.Expression] = []
    for f, name in zip(src.fields, struct_field_names([f.name for f in src.fields]), strict=True):
        value = sb.call("struct_extract", e, exp.Literal.string(name))
        text = cast_value(value, f.type, st.STRING) if f.type.base is not B.STRING else value
        parts.append(exp.DPipe(this=exp.Literal.string(f"{f.name}="), expression=text))
    body = sb.call("concat_ws", exp.Literal.string(","), *parts) if parts else exp.Literal.string("")
    text = exp.DPipe(this=exp.DPipe(this=exp.Literal.string("Struct{"), expression=body), expression=exp.Literal.string("}"))
    return sb.case([(exp.Is(this=e, expression=exp.Null()), sb.cast(exp.Null(), st.STRING))], text)


def _double_to_string(e: exp.Expression, _src: st.SqlType, _to: st.SqlType) -> exp.Expression:
    magnitude = sb.call("abs", e)
    plain = exp.or_(
        exp.EQ(this=e, expression=sb.num(0)),
        exp.and_(
            exp.GTE(this=magnitude, expression=sb.num("1e-3")),
            exp.LT(this=magnitude, expression=sb.num("1e7")),
        ),
    )
    return sb.case(
        [
            (sb.call("isnan", e), exp.Literal.string("NaN")),
            (exp.EQ(this=e, expression=sb.cast(exp.Literal.string("inf"), st.DOUBLE)), exp.Literal.string("Infinity")),
            (exp.EQ(this=e, expression=sb.cast(exp.Literal.string("-inf"), st.DOUBLE)), exp.Literal.string("-Infinity")),
            (plain, sb.cast(e, st.STRING)),
        ],
        sb.call(DOUBLE_SCI_UDF, e),
    )


def _timestamp_to_string(e: exp.Expression, _src: st.SqlType, _to: st.SqlType) -> exp.Expression:
    return sb.call("strftime", e, exp.Literal.string("%Y-%m-%dT%H:%M:%S.%g"))


def _time_to_string(e: exp.Expression, _src: st.SqlType, _to: st.SqlType) -> exp.Expression:
    # java.time.LocalTime.toString of whole seconds: HH:mm, or HH:mm:ss when seconds are set.
    full = sb.call("left", sb.cast(e, st.STRING), sb.num(8))
    no_seconds = exp.EQ(this=sb.call("second", e), expression=sb.num(0))
    return sb.case([(no_seconds, sb.call("left", full, sb.num(5)))], full)


def _string_to_integer(e: exp.Expression, _src: st.SqlType, to: st.SqlType) -> exp.Expression:
    trimmed = sb.call("trim", e)
    is_integer = sb.call("regexp_full_match", trimmed, exp.Literal.string(r"[+-]?[0-9]+"))
    return sb.case([(is_integer, sb.try_cast(trimmed, to))], exp.Null())


def _string_to_double(e: exp.Expression, _src: st.SqlType, to: st.SqlType) -> exp.Expression:
    # SqlDoubles.parseDouble rejects NaN and Infinity.
    parsed = sb.try_cast(sb.call("trim", e), to)
    finite = exp.and_(exp.Not(this=sb.call("isnan", parsed)), exp.Not(this=sb.call("isinf", parsed)))
    return sb.case([(finite, parsed)], exp.Null())


def _string_to_boolean(e: exp.Expression, _src: st.SqlType, _to: st.SqlType) -> exp.Expression:
    word = sb.call("lower", sb.call("trim", e))

    def prefix_of(full: str) -> exp.Expression:
        return sb.call("starts_with", exp.Literal.string(full), word)

    truthy = exp.and_(
        exp.GT(this=sb.call("length", word), expression=sb.num(0)),
        exp.or_(prefix_of("true"), prefix_of("yes")),
    )
    return sb.case([(exp.Is(this=e, expression=exp.Null()), exp.Null()), (truthy, exp.true())], exp.false())


def _trimmed_try(e: exp.Expression, _src: st.SqlType, to: st.SqlType) -> exp.Expression:
    return sb.try_cast(sb.call("trim", e), to)


def _string_to_bytes(e: exp.Expression, _src: st.SqlType, _to: st.SqlType) -> exp.Expression:
    return sb.call("from_base64", sb.call("trim", e))


def _array_to_array(e: exp.Expression, src: st.SqlType, to: st.SqlType) -> exp.Expression:
    assert isinstance(src, st.Array) and isinstance(to, st.Array)
    if src.element == to.element:
        return e
    param = exp.to_identifier("__cast_e")
    body = cast_value(exp.column("__cast_e"), src.element, to.element)
    return sb.call("list_transform", e, exp.Lambda(this=body, expressions=[param]))


def _map_to_map(e: exp.Expression, src: st.SqlType, to: st.SqlType) -> exp.Expression:
    assert isinstance(src, st.Map) and isinstance(to, st.Map)
    if src == to:
        return e
    entry = exp.column("__cast_kv")
    key = cast_value(sb.call("struct_extract", entry, exp.Literal.string("key")), src.key, to.key)
    value = cast_value(sb.call("struct_extract", entry, exp.Literal.string("value")), src.value, to.value)
    pair = sb.call("struct_pack", exp.PropertyEQ(this=exp.to_identifier("key"), expression=key),
                   exp.PropertyEQ(this=exp.to_identifier("value"), expression=value))
    entries = sb.call("list_transform", sb.call("map_entries", e),
                      exp.Lambda(this=pair, expressions=[exp.to_identifier("__cast_kv")]))
    return sb.case([(exp.Is(this=e, expression=exp.Null()), sb.cast(exp.Null(), to))],
                   sb.call("map_from_entries", entries))


def _struct_to_struct(e: exp.Expression, src: st.SqlType, to: st.SqlType) -> exp.Expression:
    assert isinstance(src, st.Struct) and isinstance(to, st.Struct)
    fields = []
    for f, name in zip(to.fields, struct_field_names([f.name for f in to.fields]), strict=True):
        have = src.field(f.name)
        if have is None:
            value = sb.cast(exp.Null(), f.type)
        else:
            field = sb.call("struct_extract", e, exp.Literal.string(struct_field_name(src, have.name)))
            value = cast_value(field, have.type, f.type)
        fields.append(exp.PropertyEQ(this=exp.to_identifier(name, quoted=True), expression=value))
    return sb.case([(exp.Is(this=e, expression=exp.Null()), sb.cast(exp.Null(), to))],
                   sb.call("struct_pack", *fields))


# ksqlDB's CastEvaluator.SUPPORTED, by (from, to) base type.
_CASTS: dict[tuple[B, B], _Rule] = {
    (B.BOOLEAN, B.STRING): _to_string,
    (B.INTEGER, B.BIGINT): _plain,
    (B.INTEGER, B.DECIMAL): _try,
    (B.INTEGER, B.DOUBLE): _plain,
    (B.INTEGER, B.STRING): _to_string,
    (B.BIGINT, B.INTEGER): _bigint_to_int,
    (B.BIGINT, B.DECIMAL): _try,
    (B.BIGINT, B.DOUBLE): _plain,
    (B.BIGINT, B.STRING): _to_string,
    (B.DECIMAL, B.INTEGER): _truncating,
    (B.DECIMAL, B.BIGINT): _truncating,
    (B.DECIMAL, B.DECIMAL): _try,
    (B.DECIMAL, B.DOUBLE): _plain,
    (B.DECIMAL, B.STRING): _to_string,
    (B.DOUBLE, B.INTEGER): _truncating,
    (B.DOUBLE, B.BIGINT): _truncating,
    (B.DOUBLE, B.DECIMAL): _try,
    (B.DOUBLE, B.STRING): _double_to_string,
    (B.STRING, B.BOOLEAN): _string_to_boolean,
    (B.STRING, B.INTEGER): _string_to_integer,
    (B.STRING, B.BIGINT): _string_to_integer,
    (B.STRING, B.DECIMAL): _trimmed_try,
    (B.STRING, B.DOUBLE): _string_to_double,
    (B.STRING, B.TIMESTAMP): _trimmed_try,
    (B.STRING, B.TIME): _trimmed_try,
    (B.STRING, B.DATE): _trimmed_try,
    (B.STRING, B.BYTES): _string_to_bytes,
    (B.ARRAY, B.ARRAY): _array_to_array,
    (B.ARRAY, B.STRING): _to_string,
    (B.MAP, B.MAP): _map_to_map,
    (B.MAP, B.STRING): _to_string,
    (B.STRUCT, B.STRUCT): _struct_to_struct,
    (B.STRUCT, B.STRING): _struct_to_string,
    (B.TIMESTAMP, B.STRING): _timestamp_to_string,
    (B.TIMESTAMP, B.TIME): _plain,
    (B.TIMESTAMP, B.DATE): _plain,
    (B.DATE, B.TIMESTAMP): _plain,
    (B.TIME, B.STRING): _time_to_string,
    (B.DATE, B.STRING): _to_string,
}


def unsupported_cast(src: st.SqlType, to: st.SqlType, pos: Position | None = None) -> AnalysisError:
    return AnalysisError(f"Cast of {src} to {to} is not supported", pos=pos)


def check_cast(src: st.SqlType | None, to: st.SqlType, pos: Position | None = None) -> None:
    """Raise ksqlDB's error when ``src`` cannot be cast to ``to`` (recursing into containers)."""
    if src is None or src == to:
        return
    if (src.base, to.base) not in _CASTS:
        raise unsupported_cast(src, to, pos)
    try:
        match src, to:
            case st.Array(element=se), st.Array(element=te):
                check_cast(se, te)
            case st.Map(key=sk, value=sv), st.Map(key=tk, value=tv):
                check_cast(sk, tk)
                check_cast(sv, tv)
            case st.Struct(), st.Struct(fields=tfs):
                for f in tfs:
                    have = src.field(f.name)
                    if have is not None:
                        check_cast(have.type, f.type)
    except AnalysisError:
        raise unsupported_cast(src, to, pos) from None


def cast_value(e: exp.Expression, src: st.SqlType | None, to: st.SqlType) -> exp.Expression:
    """DuckDB SQL converting ``e`` of type ``src`` (None: an untyped NULL) to ``to``."""
    if src is None:
        return sb.cast(e, to)
    if src == to:
        return e
    rule = _CASTS.get((src.base, to.base))
    if rule is None:
        raise unsupported_cast(src, to)
    return rule(e, src, to)
