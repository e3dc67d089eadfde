"""MIN and MAX (ksqlDB's BaseComparableKudaf) and the ordering rules shared with TOPK.

ksqlDB compares with Java's ``compareTo``: numbers numerically (a DOUBLE NaN above everything),
DATE/TIME/TIMESTAMP chronologically, BYTES as *signed* bytes (``ByteBuffer.compareTo``).
Strings compare by code point here, as DuckDB does, so both forms agree; Java compares UTF-16
code units, which differs only between characters above U+FFFF and those in U+E000..U+FFFF.

MIN and MAX are not undoable (ksqlDB's ``Udaf``, not ``TableUdaf``): they cannot aggregate tables.
BYTES has no vector form (DuckDB compares blobs unsigned).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.aggregate import VectorForm
from ksqlpy.planner.functions.aggregates.accumulator import BaseAccumulator
from ksqlpy.planner.functions.aggregates.base import Resolved, Signature, Udaf, register


def _signed(b: bytes) -> tuple[int, ...]:
    return tuple(x - 256 if x > 127 else x for x in b)


def _double_key(x: float) -> tuple[int, float]:
    # Double.compareTo: NaN above +Infinity, -0.0 below 0.0
    if math.isnan(x):
        return (2, 0.0)
    if x == 0.0:
        return (1, -0.5 if math.copysign(1.0, x) < 0 else 0.0)
    return (1, x)


def sort_key(t: st.SqlType) -> Callable[[Any], Any]:
    """A Python sort key reproducing ksqlDB's ``compareTo`` for values of ``t``."""
    match t.base:
        case st.BaseType.BYTES:
            return _signed
        case st.BaseType.DOUBLE:
            return _double_key
    return lambda v: v


class _Extreme(BaseAccumulator):
    """MIN or MAX: the state is the extreme value so far (NULL until a non-null value)."""

    def __init__(self, resolved: Resolved, *, name: str, pick_max: bool) -> None:
        t = resolved.column_type(0)
        self.key = sort_key(t)
        self.pick_max = pick_max
        fn = "max" if pick_max else "min"
        cmp = ">" if pick_max else "<"
        vector = (
            None
            if t.base == st.BaseType.BYTES
            else VectorForm(
                running=lambda a, sign, over: f"{fn}({a[0]}) {over}",
                combine=lambda prior, partial: (
                    f"(CASE WHEN {prior} IS NULL THEN {partial} WHEN {partial} IS NULL THEN {prior} "
                    f"WHEN {partial} {cmp} {prior} THEN {partial} ELSE {prior} END)"
                ),
                result=lambda state: state,
            )
        )
        super().__init__(name=name, return_type=t, state_type=t, vector=vector)

    def initial(self) -> Any:
        return None

    def add(self, state: Any, args: tuple[Any, ...]) -> Any:
        current = args[0]
        if current is None:
            return state
        if state is None:
            return current
        c, s = self.key(current), self.key(state)
        # MaxKudaf: current if current > aggregate; MinKudaf: aggregate unless current < it
        return current if (c > s if self.pick_max else c < s) else state

    def merge(self, a: Any, b: Any) -> Any:
        return self.add(b, (a,))


def _min(resolved: Resolved) -> _Extreme:
    return _Extreme(resolved, name="MIN", pick_max=False)


def _max(resolved: Resolved) -> _Extreme:
    return _Extreme(resolved, name="MAX", pick_max=True)


_COMPARABLE = (
    ("INT", "an integer"),
    ("BIGINT", "a long"),
    ("DOUBLE", "a double"),
    ("DECIMAL", "a decimal"),
    ("DATE", "a date"),
    ("TIME", "a time"),
    ("TIMESTAMP", "a timestamp"),
    ("STRING", "a string"),
    ("BYTES", "a bytes"),
)

register(
    Udaf(
        name="MAX",
        description="Computes the maximum value for a key.",
        signatures=tuple(
            Signature(f"val {t}", t, _max, description=f"Computes the maximum value for {d} key.")
            for t, d in _COMPARABLE
        ),
    )
)
register(
    Udaf(
        name="MIN",
        description="Computes the minimum value for a key.",
        signatures=tuple(
            Signature(f"val {t}", t, _min, description=f"Computes the minimum value for {d} key.")
            for t, d in _COMPARABLE
        ),
    )
)
