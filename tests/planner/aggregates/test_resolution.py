"""Type resolution, ksqlDB's error messages, and the registry entries behind SHOW FUNCTIONS."""

from __future__ import annotations

import decimal

import pytest

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError, ExecutionError, Position
from ksqlpy.planner.functions import REGISTRY
from ksqlpy.planner.functions.aggregate import AggregateArg, is_aggregate, resolve_aggregate
from ksqlpy.planner.functions.registry import FunctionKind
from ksqlpy.runtime.describe import function_description, function_list


def col(t: st.SqlType | None) -> AggregateArg:
    return AggregateArg(t)


def lit(v: object, t: st.SqlType) -> AggregateArg:
    return AggregateArg(t, constant=v)


@pytest.mark.parametrize(
    ("name", "args", "returns", "state"),
    [
        ("SUM", [col(st.INTEGER)], st.INTEGER, st.INTEGER),
        ("sum", [col(st.BIGINT)], st.BIGINT, st.BIGINT),
        ("Sum", [col(st.DOUBLE)], st.DOUBLE, st.DOUBLE),
        ("SUM", [col(st.Decimal(4, 1))], st.Decimal(4, 1), st.Decimal(4, 1)),
        (
            "AVG",
            [col(st.INTEGER)],
            st.DOUBLE,
            st.Struct((st.Field("SUM", st.INTEGER), st.Field("COUNT", st.BIGINT))),
        ),
        # DECIMAL has no AVG signature of its own: it widens to DOUBLE, as in ksqlDB
        (
            "AVG",
            [col(st.Decimal(4, 1))],
            st.DOUBLE,
            st.Struct((st.Field("SUM", st.DOUBLE), st.Field("COUNT", st.BIGINT))),
        ),
        ("COUNT", [col(st.Map(st.STRING, st.INTEGER))], st.BIGINT, st.BIGINT),
        ("MIN", [col(st.TIMESTAMP)], st.TIMESTAMP, st.TIMESTAMP),
        ("MAX", [col(st.BYTES)], st.BYTES, st.BYTES),
        ("MAX", [col(st.Decimal(10, 3))], st.Decimal(10, 3), st.Decimal(10, 3)),
    ],
)
def test_return_and_state_types(
    name: str, args: list[AggregateArg], returns: st.SqlType, state: st.SqlType
) -> None:
    acc = resolve_aggregate(name, args)
    assert acc.return_type == returns
    assert acc.state_type == state
    assert acc.name == name.upper()


def test_count_star_counts_rows_without_column_arguments() -> None:
    acc = resolve_aggregate("COUNT", [AggregateArg(None, star=True)])
    assert acc.column_args == ()
    state = acc.initial()
    for _ in range(3):
        state = acc.add(state, ())
    assert acc.result(state) == 3


def test_count_column_skips_nulls() -> None:
    acc = resolve_aggregate("COUNT", [col(st.STRING)])
    state = acc.initial()
    for v in ("a", None, "b", None):
        state = acc.add(state, (v,))
    assert acc.result(state) == 2
    assert acc.result(acc.undo(state, ("a",))) == 1
    assert acc.result(acc.undo(state, (None,))) == 2


@pytest.mark.parametrize(
    ("name", "undoable"),
    [("COUNT", True), ("SUM", True), ("AVG", True), ("MIN", False), ("MAX", False)],
)
def test_undo_support_follows_ksqldb_table_udafs(name: str, undoable: bool) -> None:
    acc = resolve_aggregate(name, [col(st.INTEGER)])
    assert acc.supports_undo is undoable
    assert acc.vector is not None and acc.vector.supports_undo is undoable
    if not undoable:
        with pytest.raises(NotImplementedError):
            acc.undo(acc.initial(), (1,))


def test_int_sum_wraps_like_java() -> None:
    acc = resolve_aggregate("SUM", [col(st.INTEGER)])
    assert acc.add(2**31 - 1, (1,)) == -(2**31)
    big = resolve_aggregate("SUM", [col(st.BIGINT)])
    assert big.add(2**63 - 1, (2,)) == -(2**63) + 1


def test_avg_of_no_values_is_zero() -> None:
    acc = resolve_aggregate("AVG", [col(st.BIGINT)])
    assert acc.result(acc.add(acc.initial(), (None,))) == 0.0
    assert acc.result(acc.add(acc.add(acc.initial(), (1,)), (2,))) == 1.5


def test_unknown_function() -> None:
    with pytest.raises(AnalysisError, match="Can't find any functions with the name 'NOPE'"):
        resolve_aggregate("NOPE", [col(st.INTEGER)])
    assert not is_aggregate("NOPE")
    assert not is_aggregate("UCASE")
    assert is_aggregate("count") and is_aggregate("Avg")


def test_wrong_argument_type_lists_alternatives_at_position() -> None:
    with pytest.raises(AnalysisError) as err:
        resolve_aggregate("SUM", [col(st.STRING)], pos=Position(1, 8))
    message = err.value.message
    assert message.startswith(
        "Function 'SUM' does not accept parameters (STRING).\nValid alternatives are:\n"
    )
    assert "SUM(INT val)" in message and "SUM(DECIMAL val)" in message
    assert err.value.pos == Position(1, 8)
    with pytest.raises(AnalysisError, match=r"Function 'avg' does not accept parameters \(BOOLEAN\)"):
        resolve_aggregate("AVG", [col(st.BOOLEAN)])


def test_decimal_sum_overflow_uses_ksqldb_wording() -> None:
    acc = resolve_aggregate("SUM", [col(st.Decimal(3, 1))])
    state = acc.add(acc.initial(), (decimal.Decimal("99.9"),))
    with pytest.raises(ExecutionError, match="Numeric field overflow: A field with precision 3 and scale 1"):
        acc.add(state, (decimal.Decimal("0.1"),))


def test_registry_lists_aggregates_for_show_functions() -> None:
    for name in ("COUNT", "SUM", "AVG", "MIN", "MAX"):
        fn = REGISTRY.get(name)
        assert fn is not None and fn.kind == FunctionKind.AGGREGATE, name
        assert REGISTRY.is_aggregate(name)
    listed = {f.name for f in function_list("SHOW FUNCTIONS;").functions}
    assert {"COUNT", "SUM", "AVG", "MIN", "MAX"} <= listed


def test_describe_function_shows_each_signature() -> None:
    described = function_description("DESCRIBE FUNCTION SUM;", "SUM")
    shapes = {(tuple(a.type for a in v.arguments), v.return_type) for v in described.variants}
    assert shapes == {
        (("INT",), "INT"),
        (("BIGINT",), "BIGINT"),
        (("DOUBLE",), "DOUBLE"),
        (("DECIMAL",), "DECIMAL"),
    }


def test_aggregate_is_not_callable_as_a_scalar() -> None:
    with pytest.raises(AnalysisError, match="is an aggregate function"):
        REGISTRY.resolve("SUM", [st.INTEGER])
