"""Compiled integer arithmetic, comparison and logic agree with a small Java-semantics evaluator."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as hs

from ksqlpy import sqltypes as st

INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def _wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def _java_div(a: int, b: int) -> int | None:
    if b == 0:
        return None
    q = abs(a) // abs(b)
    return _wrap32(q if (a >= 0) == (b >= 0) else -q)


def _java_mod(a: int, b: int) -> int | None:
    if b == 0:
        return None
    r = abs(a) % abs(b)
    return r if a >= 0 else -r


ARITHMETIC: dict[str, Callable[[int, int], int | None]] = {
    "+": lambda a, b: _wrap32(a + b),
    "-": lambda a, b: _wrap32(a - b),
    "*": lambda a, b: _wrap32(a * b),
    "/": _java_div,
    "%": _java_mod,
}

COMPARISON: dict[str, Callable[[int, int], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}

ints = hs.one_of(hs.integers(INT_MIN, INT_MAX), hs.sampled_from([0, 1, -1, INT_MIN, INT_MAX]), hs.none())
pairs = hs.lists(hs.tuples(ints, ints), min_size=1, max_size=20)
COLUMNS = {"A": st.INTEGER, "B": st.INTEGER}


@settings(max_examples=40, deadline=None)
@given(op=hs.sampled_from(sorted(ARITHMETIC)), rows=pairs)
def test_integer_arithmetic_matches_java(evaluate, op: str, rows: list[tuple[int | None, int | None]]) -> None:  # type: ignore[no-untyped-def]
    _, values = evaluate(f"A {op} B", COLUMNS, [{"A": a, "B": b} for a, b in rows])
    expected = [None if a is None or b is None else ARITHMETIC[op](a, b) for a, b in rows]
    assert values == expected


@settings(max_examples=30, deadline=None)
@given(op=hs.sampled_from(sorted(COMPARISON)), rows=pairs)
def test_comparison_is_false_on_null(evaluate, op: str, rows: list[tuple[int | None, int | None]]) -> None:  # type: ignore[no-untyped-def]
    _, values = evaluate(f"A {op} B", COLUMNS, [{"A": a, "B": b} for a, b in rows])
    expected = [False if a is None or b is None else COMPARISON[op](a, b) for a, b in rows]
    assert values == expected


bools = hs.one_of(hs.booleans(), hs.none())


def _java_and(a: bool | None, b: bool | None) -> bool | None:
    return None if a is None else (b if a else False)


def _java_or(a: bool | None, b: bool | None) -> bool | None:
    return None if a is None else (True if a else b)


@settings(max_examples=20, deadline=None)
@given(rows=hs.lists(hs.tuples(bools, bools, bools), min_size=1, max_size=12))
def test_logic_matches_java_short_circuit(evaluate, rows: list[tuple[bool | None, ...]]) -> None:  # type: ignore[no-untyped-def]
    columns = {"A": st.BOOLEAN, "B": st.BOOLEAN, "C": st.BOOLEAN}
    _, values = evaluate("A AND (B OR NOT C)", columns, [{"A": a, "B": b, "C": c} for a, b, c in rows])
    expected = [_java_and(a, _java_or(b, None if c is None else not c)) for a, b, c in rows]
    assert values == expected
