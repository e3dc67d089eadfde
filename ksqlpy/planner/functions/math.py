"""ksqlDB's numeric functions compiled to DuckDB SQL.

DuckDB's DOUBLE functions already follow Java's IEEE rules (``ln(-1)`` is NaN, ``cot(0)`` is
Infinity), so most functions are a direct call. The exceptions are rounding, where ksqlDB rounds
ties towards positive infinity (``Math.round`` and ``BigDecimal`` HALF_UP/HALF_DOWN by sign) and
DuckDB rounds them away from zero, and the DECIMAL variants, whose result types follow ksqlDB's
schema providers (``ROUND(DECIMAL(p, s))`` is ``DECIMAL(p - s, 0)``).

Every function registers itself in the registry on import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import ROUND_DOWN, ROUND_HALF_DOWN, ROUND_HALF_UP, Context, Decimal, InvalidOperation

# DECIMAL(38, s) values need more than the default 28 significant digits.
_EXACT = Context(prec=80)

from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.misc import cast_to, fn, sql, udf
from ksqlpy.planner.functions.registry import (
    REGISTRY,
    Call,
    Category,
    CompileRule,
    ScalarFunction,
    Variant,
    sql_call,
    sql_template,
)

_INT_TYPES = ("INT", "BIGINT", "DOUBLE")


def _double_rule(duckdb_name: str) -> CompileRule:
    """``name(CAST(args AS DOUBLE))``: ksqlDB's INT and BIGINT variants widen to double first."""

    def compile_call(call: Call) -> exp.Expression:
        return fn(duckdb_name, *(cast_to(a, "DOUBLE") for a in call.sql))

    return compile_call


def _unary_double(name: str, duckdb_name: str, what: str) -> ScalarFunction:
    return ScalarFunction(
        name=name,
        category=Category.MATHEMATICAL,
        description=f"Returns the {what} of a value.",
        variants=tuple(
            Variant(f"value {t}", returns="DOUBLE", compile=_double_rule(duckdb_name)) for t in _INT_TYPES
        ),
    )


def _binary_double(name: str, duckdb_name: str, what: str, a: str, b: str) -> ScalarFunction:
    return ScalarFunction(
        name=name,
        category=Category.MATHEMATICAL,
        description=f"Returns the {what}.",
        variants=tuple(
            Variant(f"{a} {t}, {b} {t}", returns="DOUBLE", compile=_double_rule(duckdb_name))
            for t in _INT_TYPES
        ),
    )


# (ksqlDB name, DuckDB function, what it computes). LOG with one argument is the natural logarithm
# in ksqlDB (Math.log), whatever its description says.
_UNARY: tuple[tuple[str, str, str], ...] = (
    ("ACOS", "acos", "inverse (arc) cosine"),
    ("ASIN", "asin", "inverse (arc) sine"),
    ("ATAN", "atan", "inverse (arc) tangent"),
    ("CBRT", "cbrt", "cube root"),
    ("COS", "cos", "cosine"),
    ("COSH", "cosh", "hyperbolic cosine"),
    ("COT", "cot", "cotangent"),
    ("DEGREES", "degrees", "conversion from radians to degrees"),
    ("EXP", "exp", "exponential (e raised to the power)"),
    ("LN", "ln", "natural logarithm"),
    ("RADIANS", "radians", "conversion from degrees to radians"),
    ("SIN", "sin", "sine"),
    ("SINH", "sinh", "hyperbolic sine"),
    ("SQRT", "sqrt", "positive square root"),
    ("TAN", "tan", "tangent"),
    ("TANH", "tanh", "hyperbolic tangent"),
)

for _name, _duck, _what in _UNARY:
    REGISTRY.register(_unary_double(_name.lower(), _duck, _what))

REGISTRY.register(_binary_double("atan2", "atan2", "inverse (arc) tangent of y / x", "y", "x"))
REGISTRY.register(_binary_double("power", "pow", "base raised to the exponent", "base", "exponent"))


def _log_base(call: Call) -> exp.Expression:
    # Java: a base <= 0 or of exactly 1 gives NaN; otherwise ln(value) / ln(base).
    base, value = (cast_to(a, "DOUBLE") for a in call.sql)
    return exp.Case(
        ifs=[exp.If(this=exp.or_(exp.LTE(this=base.copy(), expression=exp.Literal.number(0)),
                                 exp.EQ(this=base.copy(), expression=exp.Literal.number(1))),
                    true=sql("CAST('NaN' AS DOUBLE)"))],
        default=exp.Div(this=fn("ln", value), expression=fn("ln", base)),
    )


REGISTRY.register(
    ScalarFunction(
        name="log",
        category=Category.MATHEMATICAL,
        description="Returns the natural logarithm of a value, or the logarithm with the given base.",
        variants=tuple(Variant(f"value {t}", returns="DOUBLE", compile=_double_rule("ln")) for t in _INT_TYPES)
        + tuple(Variant(f"base {t}, value {t}", returns="DOUBLE", compile=_log_base) for t in _INT_TYPES),
    )
)

REGISTRY.register(
    ScalarFunction(
        name="pi",
        category=Category.MATHEMATICAL,
        description="Returns an approximate value of PI.",
        variants=(Variant("", returns="DOUBLE", compile=sql_template("pi()")),),
    )
)


# ---------------------------------------------------------------------------------------------
# ABS, CEIL, FLOOR, SIGN


def _same_decimal(types: Sequence[st.SqlType | None]) -> st.SqlType:
    t = types[0]
    assert t is not None
    return t


def _decimal_rule(duckdb_name: str) -> CompileRule:
    def compile_call(call: Call) -> exp.Expression:
        return cast_to(fn(duckdb_name, call.sql[0]), call.return_type)

    return compile_call


def _identity(call: Call) -> exp.Expression:
    return call.sql[0].copy()


def _int_preserving(name: str, duckdb_name: str, description: str, int_rule: CompileRule) -> ScalarFunction:
    return ScalarFunction(
        name=name,
        category=Category.MATHEMATICAL,
        description=description,
        variants=(
            Variant("value INT", returns="INT", compile=int_rule),
            Variant("value BIGINT", returns="BIGINT", compile=int_rule),
            Variant("value DOUBLE", returns="DOUBLE", compile=sql_call(duckdb_name)),
            Variant("value DECIMAL", returns=_same_decimal, compile=_decimal_rule(duckdb_name),
                    returns_text="DECIMAL"),
        ),
    )


REGISTRY.register(_int_preserving("Abs", "abs", "Returns the absolute value of its argument.", sql_call("abs")))
REGISTRY.register(_int_preserving(
    "Ceil", "ceil", "Returns the smallest integer greater than or equal to the specified numeric expression.",
    _identity))
REGISTRY.register(_int_preserving(
    "Floor", "floor", "Returns the largest integer less than or equal to the specified numeric expression.",
    _identity))


def _sign_double(call: Call) -> exp.Expression:
    # (int) Math.signum(NaN) is 0 in Java.
    x = call.sql[0]
    return exp.Case(
        ifs=[exp.If(this=fn("isnan", x), true=exp.Literal.number(0))],
        default=cast_to(fn("sign", x), "INTEGER"),
    )


REGISTRY.register(
    ScalarFunction(
        name="sign",
        category=Category.MATHEMATICAL,
        description="Returns the sign of its argument: -1 if negative, 0 if zero, 1 if positive.",
        variants=(
            Variant("value INT", returns="INT", compile=sql_template("CAST(sign({0}) AS INTEGER)")),
            Variant("value BIGINT", returns="INT", compile=sql_template("CAST(sign({0}) AS INTEGER)")),
            Variant("value DOUBLE", returns="INT", compile=_sign_double),
        ),
    )
)


# ---------------------------------------------------------------------------------------------
# ROUND, TRUNC

# Math.round / (long) casts of doubles saturate and send NaN to 0; DuckDB would raise instead.
_LONG_OF_DOUBLE = (
    "CASE WHEN isnan({x}) THEN 0 WHEN {x} >= 9.223372036854776e18 THEN 9223372036854775807 "
    "WHEN {x} <= -9.223372036854776e18 THEN -9223372036854775808 ELSE CAST({f} AS BIGINT) END"
)


def _long_of_double(inner: str) -> str:
    return _LONG_OF_DOUBLE.format(x="{0}", f=inner)


def _decimal_places_dropped(types: Sequence[st.SqlType | None]) -> st.SqlType:
    t = types[0]
    assert isinstance(t, st.Decimal)
    return st.Decimal(max(t.precision - t.scale, 1), 0)


def _java_decimal(value: float) -> Decimal:
    """``BigDecimal.valueOf(double)``: the decimal digits of the double's shortest text."""
    return Decimal(repr(value))


def _round_double(value: float, places: int) -> float:
    if math.isnan(value) or math.isinf(value):
        raise InvalidOperation("Infinite or NaN")  # BigDecimal.valueOf throws: NULL result
    d = _java_decimal(value)
    mode = ROUND_HALF_UP if d > 0 else ROUND_HALF_DOWN
    return float(d.quantize(Decimal(1).scaleb(-places), rounding=mode, context=_EXACT))


def _trunc_double(value: float, places: int) -> float:
    if math.isnan(value) or math.isinf(value):
        raise InvalidOperation("Infinite or NaN")
    return float(_java_decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN, context=_EXACT))


def _scaled_text(round_mode_positive: str, round_mode_negative: str) -> Callable[[str, int], str]:
    """Round a DECIMAL (as text) to ``places``, keeping its scale; returns text for the cast back."""

    def apply(text: str, places: int) -> str:
        d = Decimal(text)
        exponent = d.as_tuple().exponent
        scale = -exponent if isinstance(exponent, int) else 0
        mode = round_mode_positive if d > 0 else round_mode_negative
        rounded = d.quantize(Decimal(1).scaleb(-places), rounding=mode, context=_EXACT)
        return str(rounded.quantize(Decimal(1).scaleb(-max(scale, 0)), context=_EXACT))

    return apply


_ROUND_DOUBLE_PLACES = udf("ksql_round_double", ("DOUBLE", "INTEGER"), "DOUBLE", _round_double)
_TRUNC_DOUBLE_PLACES = udf("ksql_trunc_double", ("DOUBLE", "INTEGER"), "DOUBLE", _trunc_double)
udf("ksql_round_decimal_text", ("VARCHAR", "INTEGER"), "VARCHAR",
                          _scaled_text(ROUND_HALF_UP, ROUND_HALF_DOWN))
udf("ksql_trunc_decimal_text", ("VARCHAR", "INTEGER"), "VARCHAR",
                          _scaled_text(ROUND_DOWN, ROUND_DOWN))


def _decimal_places_rule(udf_name: str) -> CompileRule:
    """DECIMAL rounding with places runs in Python on the exact text, then casts back."""

    def compile_call(call: Call) -> exp.Expression:
        value, places = call.sql
        return cast_to(fn(udf_name, cast_to(value, "VARCHAR"), places), call.return_type)

    return compile_call


def _round_decimal(call: Call) -> exp.Expression:
    # ties go towards +infinity: HALF_UP for positives, HALF_DOWN for negatives
    return cast_to(fn("floor", exp.Add(this=call.sql[0].copy(), expression=sql("0.5"))), call.return_type)


def _trunc_decimal(call: Call) -> exp.Expression:
    return cast_to(fn("trunc", call.sql[0]), call.return_type)


REGISTRY.register(
    ScalarFunction(
        name="Round",
        category=Category.MATHEMATICAL,
        description="Round a value to the number of decimal places as specified by scale to the right "
        "of the decimal point. If scale is negative then value is rounded to the right of the decimal "
        "point. Numbers equidistant to the nearest value are rounded up (in the positive direction). "
        "If the number of decimal places is not provided it defaults to zero.",
        variants=(
            Variant("val BIGINT", returns="BIGINT", compile=_identity),
            Variant("val INT", returns="BIGINT", compile=sql_template("CAST({0} AS BIGINT)")),
            Variant("val DOUBLE", returns="BIGINT", compile=sql_template(_long_of_double("floor({0} + 0.5)"))),
            Variant("val DOUBLE, decimalPlaces INT", returns="DOUBLE", compile=_ROUND_DOUBLE_PLACES),
            Variant("val DECIMAL", returns=_decimal_places_dropped, compile=_round_decimal, returns_text="DECIMAL"),
            Variant("val DECIMAL, decimalPlaces INT", returns=_same_decimal,
                    compile=_decimal_places_rule("ksql_round_decimal_text"), returns_text="DECIMAL"),
        ),
    )
)

REGISTRY.register(
    ScalarFunction(
        name="trunc",
        category=Category.MATHEMATICAL,
        description="Truncates a value to the number of decimal places as specified by scale to the "
        "right of the decimal point. If scale is negative then value is truncated to the right of the "
        "decimal point.",
        variants=(
            Variant("val BIGINT", returns="BIGINT", compile=_identity),
            Variant("val INT", returns="BIGINT", compile=sql_template("CAST({0} AS BIGINT)")),
            Variant("val DOUBLE", returns="BIGINT", compile=sql_template(_long_of_double("trunc({0})"))),
            Variant("val DOUBLE, decimalPlaces INT", returns="DOUBLE", compile=_TRUNC_DOUBLE_PLACES),
            Variant("val DECIMAL", returns=_decimal_places_dropped, compile=_trunc_decimal, returns_text="DECIMAL"),
            Variant("val DECIMAL, decimalPlaces INT", returns=_same_decimal,
                    compile=_decimal_places_rule("ksql_trunc_decimal_text"), returns_text="DECIMAL"),
        ),
    )
)


# ---------------------------------------------------------------------------------------------
# GREATEST, LEAST


def _widest_decimal(types: Sequence[st.SqlType | None]) -> st.SqlType:
    result: st.SqlType | None = None
    for t in types:
        if t is None:
            continue
        d = st.decimal_of(t) if t.base != st.BaseType.DECIMAL else t
        result = d if result is None else st.widen(result, d)
    assert result is not None
    return result


def _extreme(duckdb_name: str, decimal: bool) -> CompileRule:
    # DuckDB's greatest/least skip NULLs, as ksqlDB's filter(Objects::nonNull) does.
    def compile_call(call: Call) -> exp.Expression:
        args = [cast_to(a, call.return_type) if decimal else a for a in call.sql]
        return fn(duckdb_name, *args)

    return compile_call


_ORDERED_TYPES = ("INT", "BIGINT", "DOUBLE", "STRING", "BYTES", "DATE", "TIME", "TIMESTAMP")


def _extreme_function(name: str, duckdb_name: str, what: str) -> ScalarFunction:
    return ScalarFunction(
        name=name.lower(),  # ksqlDB names these in lower case in its error messages
        category=Category.MATHEMATICAL,
        description=f"Returns the {what} value among the arguments, ignoring NULLs.",
        variants=tuple(
            Variant(f"val {t}, vals {t}...", returns=t, compile=_extreme(duckdb_name, False))
            for t in _ORDERED_TYPES
        )
        + (Variant("val DECIMAL, vals DECIMAL...", returns=_widest_decimal,
                   compile=_extreme(duckdb_name, True), returns_text="DECIMAL"),),
    )


REGISTRY.register(_extreme_function("GREATEST", "greatest", "highest"))
REGISTRY.register(_extreme_function("LEAST", "least", "lowest"))


# ---------------------------------------------------------------------------------------------
# GEO_DISTANCE

_EARTH_RADIUS = {"mi": 3959.0, "mile": 3959.0, "miles": 3959.0, "km": 6371.0, "kilometer": 6371.0,
                 "kilometers": 6371.0, "kilometre": 6371.0, "kilometres": 6371.0}


def _geo_distance(lat1: float, lon1: float, lat2: float, lon2: float, units: str | None) -> float:
    if not all(-90 <= v <= 90 for v in (lat1, lat2)):
        raise ValueError("valid latitude values for GeoDistance function are in the range of -90 to 90")
    if not all(-180 <= v <= 180 for v in (lon1, lon2)):
        raise ValueError("valid longitude values for GeoDistance function are in the range of -180 to +180")
    radius = 6371.0
    if units is not None and units.strip():
        unit = units.strip().lower()
        if unit not in _EARTH_RADIUS:
            raise ValueError("GeoDistance function units parameter must be one of "
                             "mi, mile, miles, km, kilometer, kilometers, kilometre, or kilometres")
        radius = _EARTH_RADIUS[unit]
    d_lat, d_lon = _to_radians(lat2 - lat1), _to_radians(lon2 - lon1)
    a = math.sin(d_lat / 2) ** 2 + math.sin(d_lon / 2) ** 2 * math.cos(_to_radians(lat1)) * math.cos(
        _to_radians(lat2))
    return 2 * math.asin(math.sqrt(a)) * radius


def _to_radians(degrees: float) -> float:
    # Java 8's Math.toRadians divides first; math.radians multiplies by pi/180, an ulp apart at times
    return degrees / 180.0 * math.pi


def _geo_none_unit(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return _geo_distance(lat1, lon1, lat2, lon2, None)


_GEO4 = udf("ksql_geo_distance4", ("DOUBLE",) * 4, "DOUBLE", _geo_none_unit)
_GEO5 = udf("ksql_geo_distance5", ("DOUBLE",) * 4 + ("VARCHAR",), "DOUBLE", _geo_distance)

REGISTRY.register(
    ScalarFunction(
        name="geo_distance",
        category=Category.MATHEMATICAL,
        description="The 2 input points should be specified as (lat, lon) pairs, measured in decimal "
        "degrees. An optional fifth parameter allows to specify either \"MI\" (miles) or \"KM\" "
        "(kilometers) as the desired unit for the output measurement. Default is KM.",
        variants=(
            Variant("lat1 DOUBLE, lon1 DOUBLE, lat2 DOUBLE, lon2 DOUBLE, units STRING", returns="DOUBLE",
                    compile=_GEO5),
            Variant("lat1 DOUBLE, lon1 DOUBLE, lat2 DOUBLE, lon2 DOUBLE", returns="DOUBLE", compile=_GEO4),
        ),
    )
)
