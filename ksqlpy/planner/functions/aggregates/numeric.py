"""COUNT, SUM and AVG: ksqlDB's CountKudaf, SumKudaf (INT, BIGINT, DOUBLE, DECIMAL) and AverageUdaf.

All three are ksqlDB ``TableUdaf``s (undoable), and their vector forms are signed window sums:
a retracted row (sign -1) subtracts what adding it contributed. INT and BIGINT sums wrap on
overflow as Java's ``int``/``long`` do; a DECIMAL sum raises ksqlDB's "Numeric field overflow"
once it no longer fits the argument's precision.

Float caveat: the vector form sums a batch's DOUBLE values as ``prior + (v1 + v2 + ...)`` while
the sequential form folds ``((prior + v1) + v2) ...``; the two may differ in the last bits.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
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
    decimal_overflow,
    decimal_overflow_sql,
    field_sql,
    register,
    sql_literal_struct,
    struct_type,
    wrap,
    wrap_sql,
)

# --------------------------------------------------------------------------------------------
# COUNT


class Count(BaseAccumulator):
    """COUNT(col) counts non-null values; COUNT(*) (no column arguments) counts rows."""

    def __init__(self, resolved: Resolved) -> None:
        star = resolved.star
        super().__init__(
            name="COUNT",
            return_type=st.BIGINT,
            state_type=st.BIGINT,
            column_args=() if star else (0,),
            supports_undo=True,
            vector=VectorForm(
                running=lambda a, sign, over: (
                    f"CAST(sum({sign}) {over} AS BIGINT)"
                    if star
                    else f"CAST(sum(CASE WHEN {a[0]} IS NULL THEN 0 ELSE {sign} END) {over} AS BIGINT)"
                ),
                combine=lambda prior, partial: f"(COALESCE({prior}, 0) + {partial})",
                result=lambda state: state,
                supports_undo=True,
            ),
        )
        self.star = star

    def initial(self) -> int:
        return 0

    def add(self, state: int, args: tuple[Any, ...]) -> int:
        return state if not self.star and args[0] is None else state + 1

    def undo(self, state: int, args: tuple[Any, ...]) -> int:
        return state if not self.star and args[0] is None else state - 1

    def merge(self, a: int, b: int) -> int:
        return a + b


# --------------------------------------------------------------------------------------------
# SUM


class _Adder:
    """Java addition in one numeric type: wrapping ints, IEEE doubles, bounded decimals."""

    def __init__(self, t: st.SqlType) -> None:
        self.t = t
        self.bits = BITS.get(t.base)

    def zero(self) -> Any:
        match self.t:
            case st.Decimal(scale=s):
                return decimal.Decimal(0).scaleb(-s)
            case _ if self.t == st.DOUBLE:
                return 0.0
        return 0

    def add(self, a: Any, b: Any, *, check: bool = True) -> Any:
        if self.bits is not None:
            return wrap(a + b, self.bits)
        if isinstance(self.t, st.Decimal):
            total = decimal.Context(prec=self.t.precision + 38, rounding=decimal.ROUND_HALF_UP).add(a, b)
            if check:
                decimal_overflow(self.t, total)
            return total
        return a + b

    def neg(self, v: Any) -> Any:
        # Decimal's unary minus rounds to the context's 28 digits; copy_negate is exact
        return v.copy_negate() if isinstance(v, decimal.Decimal) else -v

    # SQL: a running signed sum in a wide type, and folding it into a prior state
    def running_sql(self, arg: str, sign: str, over: str) -> str:
        match self.t:
            case st.Decimal(scale=s):
                wide = f"DECIMAL(38, {s})"
                return f"COALESCE(sum(CAST({arg} AS {wide}) * {sign}) {over}, CAST(0 AS {wide}))"
            case _ if self.bits is not None:
                return wrap_sql(f"COALESCE(sum(CAST({arg} AS HUGEINT) * {sign}) {over}, 0)", self.bits)
        return f"COALESCE(sum({arg} * {sign}) {over}, 0.0)"

    def combine_sql(self, prior: str, partial: str) -> str:
        match self.t:
            case st.Decimal(scale=s):
                wide = f"DECIMAL(38, {s})"
                return decimal_overflow_sql(self.t, f"(COALESCE(CAST({prior} AS {wide}), 0) + {partial})")
            case _ if self.bits is not None:
                return wrap_sql(f"(COALESCE(CAST({prior} AS HUGEINT), 0) + {partial})", self.bits)
        return f"(COALESCE({prior}, 0.0) + {partial})"


class Sum(BaseAccumulator):
    def __init__(self, resolved: Resolved) -> None:
        self.t = resolved.column_type(0)
        self.actual = resolved.arg_types[0]
        self.adder = _Adder(self.t)
        adder, t, actual = self.adder, self.t, self.actual
        super().__init__(
            name="SUM",
            return_type=t,
            state_type=t,
            supports_undo=True,
            vector=VectorForm(
                running=lambda a, sign, over: adder.running_sql(coerce_sql(a[0], actual, t), sign, over),
                combine=adder.combine_sql,
                result=lambda state: state,
                supports_undo=True,
            ),
        )

    def initial(self) -> Any:
        return self.adder.zero()

    def add(self, state: Any, args: tuple[Any, ...]) -> Any:
        v = coerce_value(args[0], self.actual, self.t)
        return state if v is None else self.adder.add(state, v)

    def undo(self, state: Any, args: tuple[Any, ...]) -> Any:
        v = coerce_value(args[0], self.actual, self.t)
        return state if v is None else self.adder.add(state, self.adder.neg(v), check=False)

    def merge(self, a: Any, b: Any) -> Any:
        return self.adder.add(a, b, check=False)


# --------------------------------------------------------------------------------------------
# AVG


class Avg(BaseAccumulator):
    """AverageUdaf: a STRUCT<SUM T, COUNT BIGINT> state; 0.0 for a group without values."""

    def __init__(self, resolved: Resolved) -> None:
        self.t = resolved.column_type(0)
        self.actual = resolved.arg_types[0]
        self.adder = _Adder(self.t)
        adder, t, actual = self.adder, self.t, self.actual

        def running(a: Sequence[str], sign: str, over: str) -> str:
            arg = coerce_sql(a[0], actual, t)
            return sql_literal_struct(
                SUM=adder.running_sql(arg, sign, over),
                COUNT=f"CAST(COALESCE(sum(CASE WHEN {arg} IS NULL THEN 0 ELSE {sign} END) {over}, 0) AS BIGINT)",
            )

        def combine(prior: str, partial: str) -> str:
            return sql_literal_struct(
                SUM=adder.combine_sql(field_sql(prior, "SUM"), field_sql(partial, "SUM")),
                COUNT=f"(COALESCE({field_sql(prior, 'COUNT')}, 0) + {field_sql(partial, 'COUNT')})",
            )

        def result(state: str) -> str:
            count = field_sql(state, "COUNT")
            return (
                f"(CASE WHEN {count} = 0 THEN 0.0 ELSE "
                f"CAST({field_sql(state, 'SUM')} AS DOUBLE) / CAST({count} AS DOUBLE) END)"
            )

        super().__init__(
            name="AVG",
            return_type=st.DOUBLE,
            state_type=struct_type(SUM=t, COUNT=st.BIGINT),
            supports_undo=True,
            vector=VectorForm(running=running, combine=combine, result=result, supports_undo=True),
        )

    def initial(self) -> dict[str, Any]:
        return {"SUM": self.adder.zero(), "COUNT": 0}

    def add(self, state: dict[str, Any], args: tuple[Any, ...]) -> dict[str, Any]:
        v = coerce_value(args[0], self.actual, self.t)
        if v is None:
            return state
        return {"SUM": self.adder.add(state["SUM"], v), "COUNT": state["COUNT"] + 1}

    def undo(self, state: dict[str, Any], args: tuple[Any, ...]) -> dict[str, Any]:
        v = coerce_value(args[0], self.actual, self.t)
        if v is None:
            return state
        return {"SUM": self.adder.add(state["SUM"], self.adder.neg(v)), "COUNT": state["COUNT"] - 1}

    def merge(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {"SUM": self.adder.add(a["SUM"], b["SUM"]), "COUNT": a["COUNT"] + b["COUNT"]}

    def result(self, state: dict[str, Any]) -> float:
        count = state["COUNT"]
        return 0.0 if count == 0 else float(state["SUM"]) / float(count)


register(
    Udaf(
        name="COUNT",
        description="Counts records by key.",
        table_udaf=True,
        signatures=(Signature("val T", "BIGINT", Count, description="Counts records by key."),),
    )
)

_SUM = "Computes the sum for a key."
register(
    Udaf(
        name="SUM",
        description=_SUM,
        table_udaf=True,
        signatures=(
            Signature(
                "val DECIMAL",
                "DECIMAL",
                Sum,
                description="Computes the sum of decimal values for a key, resulting in a decimal "
                "with the same precision and scale.",
            ),
            Signature("val DOUBLE", "DOUBLE", Sum, description=_SUM),
            Signature("val BIGINT", "BIGINT", Sum, description=_SUM),
            Signature("val INT", "INT", Sum, description=_SUM),
        ),
    )
)

register(
    Udaf(
        name="avg",
        description="Returns the average value of the column computed as the sum divided by the"
        "count. Applicable only to numeric types.",
        table_udaf=True,
        signatures=(
            Signature("val BIGINT", "DOUBLE", Avg, description="Compute average of column with type Long."),
            Signature("val INT", "DOUBLE", Avg, description="Compute average of column with type Integer."),
            Signature("val DOUBLE", "DOUBLE", Avg, description="Compute average of column with type Double."),
        ),
    )
)


# --------------------------------------------------------------------------------------------
# SUM_LIST


class SumList(BaseAccumulator):
    """ListSumUdaf: adds each list's non-null elements (a NULL list adds nothing)."""

    def __init__(self, resolved: Resolved) -> None:
        list_type = resolved.column_type(0)
        assert isinstance(list_type, st.Array)
        self.t = list_type.element
        self.adder = _Adder(self.t)
        adder = self.adder

        def running(a: Sequence[str], sign: str, over: str) -> str:
            element = st.to_duckdb(self.t)
            # the list's own sum in the element type (Java wraps there too), then signed running sum
            total = f"list_reduce(list_filter({a[0]}, lambda x: x IS NOT NULL), lambda acc, x: acc + x, CAST(0 AS {element}))"
            if adder.bits is not None:
                total = f"list_reduce(list_filter({a[0]}, lambda x: x IS NOT NULL), lambda acc, x: {wrap_sql('CAST(acc AS HUGEINT) + x', adder.bits)}, CAST(0 AS {element}))"
            return adder.running_sql(total, sign, over)

        super().__init__(
            name="SUM_LIST",
            return_type=self.t,
            state_type=self.t,
            supports_undo=True,
            vector=VectorForm(
                running=running, combine=adder.combine_sql, result=lambda s: s, supports_undo=True
            ),
        )

    def _total(self, values: list[Any] | None) -> Any:
        total = self.adder.zero()
        for v in values or ():
            if v is not None:
                total = self.adder.add(total, v)
        return total

    def initial(self) -> Any:
        return self.adder.zero()

    def add(self, state: Any, args: tuple[Any, ...]) -> Any:
        return state if args[0] is None else self.adder.add(state, self._total(args[0]))

    def undo(self, state: Any, args: tuple[Any, ...]) -> Any:
        return state if args[0] is None else self.adder.add(state, -self._total(args[0]))

    def merge(self, a: Any, b: Any) -> Any:
        return self.adder.add(a, b)


register(
    Udaf(
        name="sum_list",
        description="Returns the sum of elements contained in the list.",
        table_udaf=True,
        signatures=(
            Signature(
                "list ARRAY<DOUBLE>",
                "DOUBLE",
                SumList,
                description="sum double values in a list into a single double",
            ),
            Signature(
                "list ARRAY<INT>", "INT", SumList, description="sum int values in a list into a single int"
            ),
            Signature(
                "list ARRAY<BIGINT>",
                "BIGINT",
                SumList,
                description="sum long values in a list into a single long",
            ),
        ),
    )
)
