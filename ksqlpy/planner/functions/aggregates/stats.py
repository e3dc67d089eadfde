"""STDDEV_SAMP, STDDEV_SAMPLE, CORRELATION, and the variance extensions STDDEV_POP, VAR_SAMP, VAR_POP.

The deviations keep ksqlDB's ``STRUCT<SUM T, COUNT BIGINT, M2 DOUBLE>`` state updated with the
Youngs-Cramer recurrence in Java arithmetic (INT/BIGINT sums wrap; ``STDDEV_SAMP``'s merge divides
sums by counts in integer arithmetic, as ksqlDB's does). ksqlDB's ``STDDEV_SAMP`` returns the
sample *variance* (``M2 / (n - 1)``) and ``STDDEV_SAMPLE`` its square root; both return 0.0
below two values. Their recurrence has no batch-wise SQL equivalent, so they run sequentially.

STDDEV_POP, VAR_SAMP and VAR_POP are not ksqlDB functions; ksqlpy adds them over the same state.

CORRELATION (Pearson) sums x, y, x², y², xy over rows where both are non-null; its vector form
is a signed window sum of those (DOUBLE re-association applies, see ``numeric.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.aggregate import VectorForm
from ksqlpy.planner.functions.aggregates.accumulator import BaseAccumulator
from ksqlpy.planner.functions.aggregates.base import (
    BITS,
    Resolved,
    Signature,
    Udaf,
    coerce_sql,
    coerce_value,
    field_sql,
    register,
    sql_literal_struct,
    struct_type,
    wrap,
)

State = dict[str, Any]


def java_div(a: float, b: float) -> float:
    """IEEE division as Java's doubles do it: x/0 is ±Infinity or NaN, never an exception."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def java_div_sql(a: str, b: str) -> str:
    """:func:`java_div` in DuckDB SQL (DuckDB's own x/0 is NULL)."""
    return (
        f"(CASE WHEN {b} <> 0 THEN {a} / {b} WHEN {a} = 0 OR isnan({a}) THEN CAST('NaN' AS DOUBLE) "
        f"WHEN ({a} > 0) <> signbit({b}) THEN CAST('Infinity' AS DOUBLE) "
        "ELSE CAST('-Infinity' AS DOUBLE) END)"
    )


def _sqrt_sql(x: str) -> str:
    return f"(CASE WHEN {x} < 0 OR isnan({x}) THEN CAST('NaN' AS DOUBLE) ELSE sqrt({x}) END)"


def _trunc_div(a: int, b: int) -> int:
    """Java's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


class _Deviation(BaseAccumulator):
    """Youngs-Cramer M2 in Java arithmetic; ``finish(m2, count)`` gives the result."""

    def __init__(
        self, resolved: Resolved, name: str, finish: Callable[[float, int], float], *, integer_merge: bool
    ) -> None:
        self.t = resolved.column_type(0)
        self.actual = resolved.arg_types[0]
        self.bits = BITS.get(self.t.base)
        self.finish = finish
        self.integer_merge = integer_merge and self.bits is not None
        super().__init__(
            name=name,
            return_type=st.DOUBLE,
            state_type=struct_type(SUM=self.t, COUNT=st.BIGINT, M2=st.DOUBLE),
            supports_undo=True,
        )

    def _sum(self, a: Any, b: Any) -> Any:
        return a + b if self.bits is None else wrap(a + b, self.bits)

    def _delta(self, state: State, v: Any) -> float:
        count = state["COUNT"]
        if self.bits is None:
            return float(v * (count + 1) - (state["SUM"] + v))
        return float(wrap(wrap(v * (count + 1), 64) - self._sum(state["SUM"], v), 64))

    def initial(self) -> State:
        return {"SUM": 0.0 if self.bits is None else 0, "COUNT": 0, "M2": 0.0}

    def add(self, state: State, args: tuple[Any, ...]) -> State:
        v = coerce_value(args[0], self.actual, self.t)
        if v is None:
            return state
        count = state["COUNT"] + 1
        m2 = 0.0
        if count - 1 > 0:
            delta = self._delta(state, v)
            m2 = delta * delta / float(count * (count - 1))
        return {"SUM": self._sum(state["SUM"], v), "COUNT": count, "M2": m2 + state["M2"]}

    def undo(self, state: State, args: tuple[Any, ...]) -> State:
        v = coerce_value(args[0], self.actual, self.t)
        if v is None:
            return state
        count = state["COUNT"] - 1
        m2 = 0.0
        if count > 0:
            delta = self._delta(state, v)
            m2 = delta * delta / float(count * (count + 1))
        return {"SUM": self._sum(state["SUM"], -v), "COUNT": count, "M2": state["M2"] - m2}

    def merge(self, a: State, b: State) -> State:
        n1, n2 = a["COUNT"], b["COUNT"]
        if n1 == 0 or n2 == 0:
            m2 = a["M2"] + b["M2"]
        else:
            if self.integer_merge:
                inner = float(wrap(_trunc_div(a["SUM"], n1) - _trunc_div(b["SUM"], n2), 64))
            else:
                inner = float(a["SUM"]) / float(n1) - float(b["SUM"]) / float(n2)
            m2 = a["M2"] + b["M2"] + float(wrap(n1 * n2, 64)) * inner * inner / float(n1 + n2)
        return {"SUM": self._sum(a["SUM"], b["SUM"]), "COUNT": n1 + n2, "M2": m2}

    def result(self, state: State) -> float:
        return self.finish(state["M2"], state["COUNT"])


def _sample_variance(m2: float, n: int) -> float:
    return 0.0 if n < 2 else java_div(m2, float(n - 1))


def _population_variance(m2: float, n: int) -> float:
    return 0.0 if n < 1 else java_div(m2, float(n))


def _sqrt(x: float) -> float:
    return math.nan if x < 0 or math.isnan(x) else math.sqrt(x)


_DEVIATIONS: dict[str, tuple[Callable[[float, int], float], bool, str]] = {
    # name: (finish, merge divides in integers, description)
    "STDDEV_SAMP": (
        _sample_variance,
        True,
        "Returns the sample standard deviation of the column. Applicable only to numeric types.",
    ),
    "STDDEV_SAMPLE": (
        lambda m2, n: _sqrt(_sample_variance(m2, n)),
        False,
        "Returns the sample standard deviation of the column. Applicable only to numeric types.",
    ),
    "STDDEV_POP": (
        lambda m2, n: _sqrt(_population_variance(m2, n)),
        False,
        "Returns the population standard deviation of the column. Applicable only to numeric types.",
    ),
    "VAR_SAMP": (
        _sample_variance,
        False,
        "Returns the sample variance of the column. Applicable only to numeric types.",
    ),
    "VAR_POP": (
        _population_variance,
        False,
        "Returns the population variance of the column. Applicable only to numeric types.",
    ),
}


def _deviation_builder(name: str) -> Callable[[Resolved], BaseAccumulator]:
    finish, integer_merge, _ = _DEVIATIONS[name]
    return lambda resolved: _Deviation(resolved, name, finish, integer_merge=integer_merge)


for _name, (_finish, _integer, _description) in _DEVIATIONS.items():
    register(
        Udaf(
            name=_name,
            description=_description,
            table_udaf=True,
            signatures=tuple(
                Signature(
                    f"val {t}",
                    "DOUBLE",
                    _deviation_builder(_name),
                    description=f"Compute sample standard deviation of column with type {java}.",
                )
                for t, java in (("BIGINT", "Long"), ("INT", "Integer"), ("DOUBLE", "Double"))
            ),
        )
    )


# --------------------------------------------------------------------------------------------
# CORRELATION

_SUMS = ("X_SUM", "Y_SUM", "X_SQUARED_SUM", "Y_SQUARED_SUM", "XY_SUM")


class Correlation(BaseAccumulator):
    def __init__(self, resolved: Resolved) -> None:
        self.types = (resolved.column_type(0), resolved.column_type(1))
        self.actual = resolved.arg_types[:2]
        state = struct_type(**{n: st.DOUBLE for n in _SUMS}, COUNT=st.BIGINT)
        types, actual = self.types, self.actual

        def running(a: Sequence[str], sign: str, over: str) -> str:
            x = f"CAST({coerce_sql(a[0], actual[0], types[0])} AS DOUBLE)"
            y = f"CAST({coerce_sql(a[1], actual[1], types[1])} AS DOUBLE)"
            both = f"({a[0]} IS NOT NULL AND {a[1]} IS NOT NULL)"
            terms = {
                "X_SUM": x,
                "Y_SUM": y,
                "X_SQUARED_SUM": f"{x} * {x}",
                "Y_SQUARED_SUM": f"{y} * {y}",
                "XY_SUM": f"{x} * {y}",
            }
            fields = {
                n: f"COALESCE(sum(CASE WHEN {both} THEN ({e}) * {sign} END) {over}, 0.0)"
                for n, e in terms.items()
            }
            fields["COUNT"] = (
                f"CAST(COALESCE(sum(CASE WHEN {both} THEN {sign} ELSE 0 END) {over}, 0) AS BIGINT)"
            )
            return sql_literal_struct(**fields)

        def combine(prior: str, partial: str) -> str:
            fields = {n: f"COALESCE({field_sql(prior, n)}, 0.0) + {field_sql(partial, n)}" for n in _SUMS}
            fields["COUNT"] = f"COALESCE({field_sql(prior, 'COUNT')}, 0) + {field_sql(partial, 'COUNT')}"
            return sql_literal_struct(**fields)

        def result(s: str) -> str:
            n = f"CAST({field_sql(s, 'COUNT')} AS DOUBLE)"
            sx, sy = field_sql(s, "X_SUM"), field_sql(s, "Y_SUM")
            num = f"({n} * {field_sql(s, 'XY_SUM')} - {sx} * {sy})"
            dx = f"({n} * {field_sql(s, 'X_SQUARED_SUM')} - {sx} * {sx})"
            dy = f"({n} * {field_sql(s, 'Y_SQUARED_SUM')} - {sy} * {sy})"
            return java_div_sql(num, _sqrt_sql(f"({dx} * {dy})"))

        super().__init__(
            name="CORRELATION",
            return_type=st.DOUBLE,
            state_type=state,
            column_args=(0, 1),
            supports_undo=True,
            vector=VectorForm(running=running, combine=combine, result=result, supports_undo=True),
        )

    def _xy(self, args: tuple[Any, ...]) -> tuple[float, float] | None:
        x = coerce_value(args[0], self.actual[0], self.types[0])
        y = coerce_value(args[1], self.actual[1], self.types[1])
        return None if x is None or y is None else (float(x), float(y))

    def initial(self) -> State:
        return {**{n: 0.0 for n in _SUMS}, "COUNT": 0}

    def _apply(self, state: State, xy: tuple[float, float], sign: int) -> State:
        x, y = xy
        terms = (x, y, x * x, y * y, x * y)
        out: State = {n: (state[n] + t if sign > 0 else state[n] - t) for n, t in zip(_SUMS, terms)}
        out["COUNT"] = state["COUNT"] + sign
        return out

    def add(self, state: State, args: tuple[Any, ...]) -> State:
        xy = self._xy(args)
        return state if xy is None else self._apply(state, xy, 1)

    def undo(self, state: State, args: tuple[Any, ...]) -> State:
        xy = self._xy(args)
        return state if xy is None else self._apply(state, xy, -1)

    def merge(self, a: State, b: State) -> State:
        return {**{n: a[n] + b[n] for n in _SUMS}, "COUNT": a["COUNT"] + b["COUNT"]}

    def result(self, state: State) -> float:
        n = float(state["COUNT"])
        sx, sy = state["X_SUM"], state["Y_SUM"]
        numerator = n * state["XY_SUM"] - sx * sy
        dx = n * state["X_SQUARED_SUM"] - sx * sx
        dy = n * state["Y_SQUARED_SUM"] - sy * sy
        return java_div(numerator, _sqrt(dx * dy))


register(
    Udaf(
        name="correlation",
        description="Computes the Pearson correlation coefficient between two columns of data.",
        table_udaf=True,
        signatures=tuple(
            Signature(
                f"x {t}, y {t}",
                "DOUBLE",
                Correlation,
                description=f"Computes the Pearson correlation coefficient between two {t} columns.",
            )
            for t in ("DOUBLE", "INT", "BIGINT")
        ),
    )
)
