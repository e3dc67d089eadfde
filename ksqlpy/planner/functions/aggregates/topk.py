"""TOPK and TOPKDISTINCT: the k greatest values of a group, greatest first.

``TOPK(val, k)`` keeps the k greatest values with repeats; ``TOPK(val, other..., k)`` keeps
``STRUCT<sort_col, col0, col1, ...>`` entries ordered by ``sort_col``, the other columns travelling
with it. A value equal to the smallest kept one does not displace it once k are kept, so among
equal values the earlier ones stay, earlier first (ksqlDB's stable sort). ``TOPKDISTINCT`` keeps
distinct values. Neither is undoable. Ordering follows :func:`comparable.sort_key`.

Vector forms: TOPK over a plain value is DuckDB's ``max(val, k)`` over the window merged with
the prior list (equal values are indistinguishable); with other columns, a stable sort by
(``sort_col`` descending, position) of the window's entries and of prior ++ partial; TOPKDISTINCT
sorts the distinct values (not BYTES, which DuckDB orders unsigned).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.aggregate import VectorForm
from ksqlpy.planner.functions.aggregates.accumulator import BaseAccumulator
from ksqlpy.planner.functions.aggregates.base import (
    Resolved,
    Signature,
    Udaf,
    coerce_sql,
    coerce_value,
    int_literal,
    register,
)
from ksqlpy.planner.functions.aggregates.comparable import sort_key

SORT_FIELD = "sort_col"


def _other(i: int) -> str:
    return f"col{i}"


class TopK(BaseAccumulator):
    def __init__(self, resolved: Resolved) -> None:
        self.k = k = int_literal(resolved, 0, "k")
        n = resolved.column_count
        t = resolved.column_type(0)
        self.t, self.actual = t, resolved.arg_types[0]
        self.value_key = sort_key(t)
        self.with_others = n > 1
        element: st.SqlType = t
        if self.with_others:
            fields = [st.Field(SORT_FIELD, t)] + [
                st.Field(_other(i - 1), resolved.arg_types[i] or st.STRING) for i in range(1, n)
            ]
            element = st.Struct(tuple(fields))
        self.key: Callable[[Any], Any] = (
            (lambda e: self.value_key(e[SORT_FIELD])) if self.with_others else self.value_key
        )
        array = st.to_duckdb(st.Array(element))
        empty = f"CAST([] AS {array})"
        if self.with_others:

            def running(a: Sequence[str], sign: str, over: str) -> str:
                fields = [f"{SORT_FIELD} := {coerce_sql(a[0], self.actual, t)}"]
                fields += [f"{_other(i)} := {arg}" for i, arg in enumerate(a[1:])]
                entries = f"list(struct_pack({', '.join(fields)})) FILTER (WHERE {a[0]} IS NOT NULL) {over}"
                return f"list_slice({_greatest_first(f'COALESCE({entries}, {empty})', SORT_FIELD)}, 1, {k})"

            def combine(prior: str, partial: str) -> str:
                both = f"list_concat(COALESCE({prior}, {empty}), {partial})"
                return f"list_slice({_greatest_first(both, SORT_FIELD)}, 1, {k})"

        else:

            def running(a: Sequence[str], sign: str, over: str) -> str:
                return f"max({coerce_sql(a[0], self.actual, t)}, {k}) {over}"

            def combine(prior: str, partial: str) -> str:
                # the k greatest of prior ++ partial (equal values are interchangeable)
                both = f"list_concat(COALESCE({prior}, {empty}), COALESCE({partial}, {empty}))"
                return f"list_slice(list_reverse_sort({both}), 1, {k})"

        vector = VectorForm(running=running, combine=combine, result=lambda s: s)
        super().__init__(
            name="TOPK",
            return_type=st.Array(element),
            state_type=st.Array(element),
            column_args=tuple(range(n)),
            vector=vector,
        )

    def initial(self) -> list[Any]:
        return []

    def add(self, state: list[Any], args: tuple[Any, ...]) -> list[Any]:
        value = coerce_value(args[0], self.actual, self.t)
        if value is None or self.k <= 0:
            return state
        if len(state) == self.k and self.value_key(value) <= self.key(state[-1]):
            return state
        entry = (
            {SORT_FIELD: value, **{_other(i): v for i, v in enumerate(args[1:])}}
            if self.with_others
            else value
        )
        kept = state[:-1] if len(state) == self.k else state
        # ksqlDB's stable sort, greatest first: the new entry goes after entries equal to it
        return _insert(kept, entry, self.key)

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        out: list[Any] = []
        i = j = 0
        while len(out) < self.k and (i < len(a) or j < len(b)):
            if j >= len(b) or (i < len(a) and self.key(a[i]) >= self.key(b[j])):
                out.append(a[i])
                i += 1
            else:
                out.append(b[j])
                j += 1
        return out


def _greatest_first(entries: str, field: str | None) -> str:
    """SQL sorting a list greatest first by ``field`` (or the value), equal ones in list order."""
    key = f"struct_extract(x, '{field}')" if field else "x"
    # sort (key, -position, entry) descending: positions are unique, so entries never compare;
    # ``entries`` appears once, so a window function in it is evaluated once
    order = (
        f"list_sort(list_transform({entries}, lambda x, i: struct_pack(k := {key}, i := -i, e := x)), 'DESC')"
    )
    return f"list_transform({order}, lambda y: y.e)"


def _insert(kept: Sequence[Any], entry: Any, key: Callable[[Any], Any]) -> list[Any]:
    """``kept`` (greatest first) with ``entry`` placed after every entry not smaller than it."""
    k = key(entry)
    at = len(kept)
    while at > 0 and key(kept[at - 1]) < k:
        at -= 1
    return [*kept[:at], entry, *kept[at:]]


class TopKDistinct(BaseAccumulator):
    def __init__(self, resolved: Resolved) -> None:
        self.k = k = int_literal(resolved, 0, "k")
        t = resolved.column_type(0)
        self.t, self.actual = t, resolved.arg_types[0]
        self.key = sort_key(t)
        empty = f"CAST([] AS {st.to_duckdb(st.Array(t))})"

        def distinct_greatest(values: str) -> str:
            # list_distinct drops NULLs, which TOPKDISTINCT ignores anyway
            return f"list_slice(list_reverse_sort(list_distinct({values})), 1, {k})"

        vector = (
            None  # DuckDB orders BLOBs unsigned, ksqlDB signed
            if t.base == st.BaseType.BYTES
            else VectorForm(
                running=lambda a, sign, over: (
                    f"COALESCE(max(DISTINCT {coerce_sql(a[0], self.actual, t)}, {k}) {over}, {empty})"
                ),
                combine=lambda prior, partial: distinct_greatest(
                    f"list_concat(COALESCE({prior}, {empty}), {partial})"
                ),
                result=lambda s: s,
            )
        )
        super().__init__(name="TOPKDISTINCT", return_type=st.Array(t), state_type=st.Array(t), vector=vector)

    def initial(self) -> list[Any]:
        return []

    def add(self, state: list[Any], args: tuple[Any, ...]) -> list[Any]:
        value = coerce_value(args[0], self.actual, self.t)
        if value is None or self.k <= 0:
            return state
        if len(state) == self.k and self.key(value) <= self.key(state[-1]):
            return state
        if any(self.key(v) == self.key(value) for v in state):
            return state
        kept = state[:-1] if len(state) == self.k else state
        return _insert(kept, value, self.key)

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        out: list[Any] = []
        i = j = 0
        while len(out) < self.k and (i < len(a) or j < len(b)):
            ka = self.key(a[i]) if i < len(a) else None
            kb = self.key(b[j]) if j < len(b) else None
            if kb is None or (ka is not None and ka > kb):
                out.append(a[i])
                i += 1
            elif ka is None or kb > ka:
                out.append(b[j])
                j += 1
            else:
                out.append(a[i])
                i += 1
                j += 1
        return out


_TOPK_TYPES = (("INT", "an integer"), ("BIGINT", "a bigint"), ("DOUBLE", "a double"), ("STRING", "a string"))
_TOPKDISTINCT_TYPES = (
    ("INT", "an integer"),
    ("BIGINT", "a long"),
    ("DOUBLE", "a double"),
    ("STRING", "a string"),
    ("DECIMAL", "a decimal"),
    ("DATE", "a date"),
    ("TIME", "a time"),
    ("TIMESTAMP", "a timestamp"),
    ("BYTES", "a bytes"),
)

register(
    Udaf(
        name="TOPK",
        description="Returns the top k values for a column and other values in those records.",
        signatures=tuple(
            Signature(
                f"val {t}, otherCols ANY..., k INT",
                f"ARRAY<{t}>",
                TopK,
                literals=1,
                description=f"Returns the top k values for {d} column and other values in those records.",
            )
            for t, d in _TOPK_TYPES
        ),
    )
)
register(
    Udaf(
        name="TOPKDISTINCT",
        description="Computes the top k distinct values for a column, per key.",
        signatures=tuple(
            Signature(
                f"val {t}, k INT",
                f"ARRAY<{t}>",
                TopKDistinct,
                literals=1,
                description=f"Calculates the top k distinct values for {d} column, per key.",
            )
            for t, d in _TOPKDISTINCT_TYPES
        ),
    )
)
