"""The vector form of every aggregate that has one agrees with folding its sequential methods.

For each call, hypothesis draws two batches: the first is folded sequentially into prior states,
which are stored in DuckDB through Arrow; the second runs both ways, through the SQL templates
with a window clause over real DuckDB and through ``add``/``undo``. States and results must match
row by row (DOUBLE sums within float re-association, see ``aggregates/numeric.py``).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest
from harness import Row, same, sequential, stored, vectorized
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as hs
from strategies import batches, exact_doubles, small_values, values

from ksqlpy import sqltypes as st
from ksqlpy.errors import ExecutionError
from ksqlpy.planner.functions.aggregate import Accumulator, AggregateArg, resolve_aggregate

DEC = st.Decimal(6, 2)


def _call(name: str, types: tuple[st.SqlType, ...], literals: tuple[Any, ...] = ()) -> Accumulator:
    args = [AggregateArg(t) for t in types] + [
        AggregateArg(st.BOOLEAN if isinstance(v, bool) else st.INTEGER, constant=v) for v in literals
    ]
    return resolve_aggregate(name, args)


# (function, column argument types, literal arguments, how to draw values: "any", "few", "exact")
CASES: list[tuple[str, tuple[st.SqlType, ...], tuple[Any, ...], str]] = [
    ("COUNT", (st.STRING,), (), "any"),
    ("SUM", (st.INTEGER,), (), "any"),
    ("SUM", (st.BIGINT,), (), "any"),
    ("SUM", (st.DOUBLE,), (), "exact"),
    ("SUM", (DEC,), (), "any"),
    ("AVG", (st.INTEGER,), (), "any"),
    ("AVG", (st.BIGINT,), (), "any"),
    ("AVG", (st.DOUBLE,), (), "exact"),
    ("AVG", (DEC,), (), "exact"),
    ("SUM_LIST", (st.Array(st.INTEGER),), (), "any"),
    ("SUM_LIST", (st.Array(st.BIGINT),), (), "any"),
    ("SUM_LIST", (st.Array(st.DOUBLE),), (), "exact"),
    ("CORRELATION", (st.DOUBLE, st.DOUBLE), (), "eighths"),
    ("CORRELATION", (st.INTEGER, st.BIGINT), (), "small"),
    ("COLLECT_LIST", (st.STRING,), (), "any"),
    ("COLLECT_LIST", (st.Decimal(4, 1),), (), "any"),
    ("COLLECT_LIST", (st.Array(st.INTEGER),), (), "any"),
    ("COLLECT_SET", (st.STRING,), (), "few"),
    ("COLLECT_SET", (st.Array(st.INTEGER),), (), "few"),
    ("TOPK", (st.INTEGER, st.STRING), (2,), "few"),
    ("TOPK", (st.STRING, st.INTEGER, st.Map(st.STRING, st.INTEGER)), (3,), "few"),
    ("TOPKDISTINCT", (st.INTEGER,), (3,), "few"),
    ("TOPKDISTINCT", (st.Decimal(4, 1),), (2,), "few"),
    ("TOPKDISTINCT", (st.TIMESTAMP,), (2,), "few"),
    ("TOPK", (st.INTEGER,), (3,), "few"),
    ("TOPK", (st.STRING,), (2,), "few"),
    ("TOPK", (st.DOUBLE,), (1,), "any"),
    ("TOPK", (st.Decimal(4, 1),), (2,), "few"),
    *[
        (fn, (t,), literals, "few")
        for fn in ("LATEST_BY_OFFSET", "EARLIEST_BY_OFFSET")
        for t in (st.INTEGER, st.STRING, st.Array(st.DOUBLE))
        for literals in ((), (True,), (False,), (2,), (1, True), (3, False))
    ],
    *[
        (fn, (t,), (), "few")
        for fn in ("MIN", "MAX")
        for t in (st.INTEGER, st.BIGINT, st.DOUBLE, DEC, st.STRING, st.DATE, st.TIME, st.TIMESTAMP)
    ],
]


def _check(acc: Accumulator, types: tuple[st.SqlType, ...], first: list[Row], second: list[Row]) -> None:
    priors: dict[int, Any] = {}
    try:
        for g, state, _ in sequential(acc, first, {}):
            priors[g] = state
    except ExecutionError:
        reject()  # the first batch already overflows a DECIMAL sum
    for g, state in priors.items():
        assert same(stored(acc, state), state), f"state does not round-trip: {state!r}"
    try:
        expected = sequential(acc, second, priors)
    except ExecutionError as e:
        # a DECIMAL sum overflowed: the vector form fails the batch with the same message
        with pytest.raises(duckdb.Error, match="Numeric field overflow"):
            vectorized(acc, second, priors, types)
        assert "Numeric field overflow" in str(e)
        return
    actual = vectorized(acc, second, priors, types)
    for row, exp, act in zip(second, expected, actual, strict=True):
        assert same(act[1], exp[1]), f"state after {row}: vector {act[1]!r}, sequential {exp[1]!r}"
        assert same(act[2], exp[2]), f"result after {row}: vector {act[2]!r}, sequential {exp[2]!r}"


def _strategy(draw_kind: str, t: st.SqlType) -> hs.SearchStrategy[Any]:
    match draw_kind, t:
        case "few", _:
            return small_values(t)
        case "exact", st.Array(element=e) if e == st.DOUBLE:
            return hs.lists(hs.none() | exact_doubles(), max_size=4)
        case "exact", _ if t == st.DOUBLE:
            return exact_doubles()
        case "eighths", _:
            # squares and products of these, and sums of a few dozen of them, are exact
            return hs.integers(-4096, 4096).map(lambda n: n / 8)
        case "small", _:
            # products and squares of these stay exact in DOUBLE
            return hs.integers(-1000, 1000)
    return values(t)


@pytest.mark.parametrize(("name", "types", "literals", "kind"), CASES, ids=lambda v: str(v))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=hs.data())
def test_vector_form_matches_sequential(
    name: str, types: tuple[st.SqlType, ...], literals: tuple[Any, ...], kind: str, data: hs.DataObject
) -> None:
    acc = _call(name, types, literals)
    assert acc.vector is not None
    first, second = data.draw(batches([_strategy(kind, t) for t in types], undo=acc.vector.supports_undo))
    _check(acc, types, first, second)


@settings(max_examples=25, deadline=None)
@given(data=hs.data())
def test_count_star_matches_sequential(data: hs.DataObject) -> None:
    acc = resolve_aggregate("COUNT", [AggregateArg(None, star=True)])
    assert acc.column_args == () and acc.vector is not None
    first, second = data.draw(batches([], undo=True))
    _check(acc, (), first, second)
