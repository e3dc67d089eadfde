"""Numeric functions evaluated through DuckDB, against values from ksqlDB's math.json cases."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from conftest import evaluate, lit

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError

NAN, INF = float("nan"), float("inf")


def _same(actual: list[object], expected: list[object]) -> bool:
    def eq(a: object, e: object) -> bool:
        if isinstance(e, float) and math.isnan(e):
            return isinstance(a, float) and math.isnan(a)
        return a == e and type(a) is type(e)

    return len(actual) == len(expected) and all(eq(a, e) for a, e in zip(actual, expected))


@pytest.mark.parametrize("arg_type", [st.INTEGER, st.BIGINT])
def test_ln_and_sqrt_follow_java_for_non_positive_values(arg_type: st.SqlType) -> None:
    assert _same(evaluate("ln", [(arg_type, [None, -1, 0, 1, 2])]), [None, NAN, -INF, 0.0, 0.6931471805599453])
    assert _same(evaluate("sqrt", [(arg_type, [None, -1, 0, 2])]), [None, NAN, 0.0, 1.4142135623730951])


def test_exp_widens_integers_to_double() -> None:
    assert evaluate("exp", [(st.INTEGER, [-1, 0, 1])]) == [0.36787944117144233, 1.0, 2.718281828459045]


def test_log_with_base_returns_nan_for_invalid_bases() -> None:
    result = evaluate("log", [(st.BIGINT, [15, 15, 15, -15, 0, 1]), (st.BIGINT, [13, 0, -13, 13, 13, 5])])
    assert _same(result, [0.9471572411831843, -INF, NAN, NAN, NAN, NAN])


def test_cot_of_zero_is_infinity() -> None:
    assert evaluate("cot", [(st.DOUBLE, [0.0])]) == [INF]


def test_power_of_zero_and_negative_exponent() -> None:
    assert evaluate("power", [(st.INTEGER, [15, 0, 15, -15]), (st.INTEGER, [-1, 0, 13, 2])]) == [
        0.06666666666666667, 1.0, 1946195068359375.0, 225.0]


def test_round_double_sends_ties_towards_positive_infinity() -> None:
    assert evaluate("round", [(st.DOUBLE, [1.5, -2.5, 2.4, -2.6, None, NAN])]) == [2, -2, 2, -3, None, 0]


def test_round_double_with_places_uses_decimal_digits() -> None:
    assert evaluate("round", [(st.DOUBLE, [1.005, -2.25, 2.45, 111.0]), (st.INTEGER, [2, 1, 1, -1])]) == [
        1.01, -2.2, 2.5, 110.0]


def test_round_large_decimal_keeps_scale_with_places() -> None:
    value = Decimal("12345678987654321.2345678987654321")
    t = st.Decimal(33, 16)
    assert evaluate("round", [(t, [value])]) == [Decimal(12345678987654321)]
    assert evaluate("round", [(t, [value] * 4), (st.INTEGER, [0, 2, 10, -2])]) == [
        Decimal("12345678987654321.0000000000000000"),
        Decimal("12345678987654321.2300000000000000"),
        Decimal("12345678987654321.2345678988000000"),
        Decimal("12345678987654300.0000000000000000"),
    ]


@pytest.mark.parametrize("t", [st.DOUBLE, st.Decimal(12, 7)])
def test_trunc(t: st.SqlType) -> None:
    values = [1.7, 1.234567, 111, None]
    col = [None if v is None else (Decimal(str(v)) if isinstance(t, st.Decimal) else float(v)) for v in values]
    assert evaluate("trunc", [(t, col)]) == [1, 1, 111, None] if t == st.DOUBLE else [
        Decimal(1), Decimal(1), Decimal(111), None]
    two = evaluate("trunc", [(t, col), (st.INTEGER, [2, 2, -1, 2])])
    assert [None if v is None else float(v) for v in two] == [1.7, 1.23, 110.0, None]


def test_floor_and_ceil_keep_integer_and_decimal_types() -> None:
    assert evaluate("floor", [(st.INTEGER, [1, -1])]) == [1, -1]
    assert evaluate("floor", [(st.Decimal(2, 1), [Decimal("1.5"), Decimal("-1.5")])]) == [
        Decimal("1.0"), Decimal("-2.0")]
    assert evaluate("ceil", [(st.DOUBLE, [1.1, -1.1])]) == [2.0, -1.0]


def test_abs_of_decimal_keeps_its_scale() -> None:
    assert evaluate("abs", [(st.Decimal(2, 1), [Decimal("-3.2"), None])]) == [Decimal("3.2"), None]


def test_greatest_and_least_skip_nulls() -> None:
    args = [(st.INTEGER, [1, None]), (st.INTEGER, [7, None]), lit(None, None), lit(5, st.INTEGER)]
    assert evaluate("greatest", args) == [7, 5]
    assert evaluate("least", args) == [1, 5]
    assert evaluate("greatest", [(st.STRING, ["a", None]), lit("hello", st.STRING)]) == ["hello", "hello"]


def test_greatest_widens_to_double() -> None:
    result = evaluate("greatest", [(st.INTEGER, [1]), (st.BIGINT, [2]), (st.Decimal(4, 2), [Decimal("3.5")]),
                                   (st.DOUBLE, [0.5])])
    assert result == [3.5]


def test_greatest_widens_decimals() -> None:
    result = evaluate("greatest", [(st.Decimal(4, 2), [Decimal("1.25")]), (st.Decimal(5, 1), [Decimal("1234.5")])])
    assert result == [Decimal("1234.50")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([st.INTEGER, st.BIGINT], "Function 'greatest' cannot be resolved due to ambiguous method parameters (INTEGER, BIGINT)."),
        ([None, None], "Function 'greatest' cannot be resolved due to ambiguous method parameters (null, null)."),
        ([st.STRING, st.INTEGER], "Function 'greatest' does not accept parameters (STRING, INTEGER)."),
        ([], "Function 'greatest' does not accept parameters ()."),
    ],
)
def test_greatest_errors_use_ksqldb_wording(args: list[st.SqlType | None], message: str) -> None:
    from ksqlpy.planner.functions import REGISTRY

    with pytest.raises(AnalysisError) as err:
        REGISTRY.resolve("GREATEST", args)
    assert message in str(err.value)


def test_sign_of_nan_is_zero() -> None:
    assert evaluate("sign", [(st.DOUBLE, [-2.5, NAN, 0.0, 3.0])]) == [-1, 0, 0, 1]


def test_geo_distance_in_km_and_miles() -> None:
    km = evaluate("geo_distance", [(st.DOUBLE, [37.4439]), (st.DOUBLE, [-122.1663]), (st.DOUBLE, [51.5257]),
                                   (st.DOUBLE, [-0.1703])])[0]
    mi = evaluate("geo_distance", [(st.DOUBLE, [37.4439]), (st.DOUBLE, [-122.1663]), (st.DOUBLE, [51.5257]),
                                   (st.DOUBLE, [-0.1703]), lit("MI", st.STRING)])[0]
    assert mi == pytest.approx(km / 6371 * 3959, rel=1e-12)
    small = evaluate("geo_distance", [lit(39.18660374, st.DOUBLE), lit(-76.73262144, st.DOUBLE),
                                      lit(39.18660374, st.DOUBLE), lit(-76.73222145, st.DOUBLE)])[0]
    assert small == pytest.approx(0.03447366811448324, rel=1e-14)  # geodistance.json
    assert evaluate("geo_distance", [(st.DOUBLE, [91.0]), (st.DOUBLE, [0.0]), (st.DOUBLE, [0.0]), (st.DOUBLE, [0.0])]) == [None]


def test_pi_and_random() -> None:
    assert evaluate("pi", []) == [math.pi]
    assert 0.0 <= evaluate("random", [])[0] < 1.0
