"""LATEST_BY_OFFSET and EARLIEST_BY_OFFSET, with ksqlDB's ``n`` and ``ignoreNulls`` forms.

As in ksqlDB, the state pairs each kept value with a sequence number: ``STRUCT<SEQ BIGINT, VAL T>``
for the single-value forms, ``ARRAY<STRUCT<SEQ BIGINT, VAL T>>`` for the ``n`` forms. The
sequence orders values when session windows merge. ksqlDB draws it from a process-wide counter;
here it is the value's ordinal among the values its group has taken (1, 2, ...), which both the
sequential and the vectorized forms compute identically and which survives restarts. Session
windows merge in window-time order, so at a merge the later window is the later one by offset:
LATEST keeps the later window's value (unless it is only an ignored NULL), EARLIEST the earlier's.

``ignoreNulls`` defaults to true. ``LATEST_BY_OFFSET(x)`` starts from a non-null state holding
NULL; ``EARLIEST_BY_OFFSET(x)`` from a NULL state (ksqlDB's initializers). Neither is undoable.
Merging two ``n`` states keeps the first ``n`` by sequence, as ksqlDB's merge does for both.
All forms have vector forms: ``last_value``/``first_value`` windows, and for ``n`` the n values
from ``lag``/``nth_value`` lookups, so a row costs O(n) however large its group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError
from ksqlpy.planner.functions.aggregate import VectorForm
from ksqlpy.planner.functions.aggregates.accumulator import BaseAccumulator
from ksqlpy.planner.functions.aggregates.base import (
    Resolved,
    Signature,
    Udaf,
    field_sql,
    int_literal,
    register,
    sql_literal_struct,
    struct_type,
    typed_null,
)

Entry = dict[str, Any]


def _entry(seq: int, val: Any) -> Entry:
    return {"SEQ": seq, "VAL": val}


def _options(resolved: Resolved) -> tuple[int | None, bool]:
    """(n, ignoreNulls) from the literal arguments: (), (ignoreNulls), (n), (n, ignoreNulls)."""
    match resolved.literals:
        case ():
            return None, True
        case (bool() as ignore,):
            return None, ignore
        case (_,):
            return _n(resolved, 0), True
        case (_, ignore):
            return _n(resolved, 0), bool(ignore)
    raise AnalysisError(f"{resolved.name}: unexpected arguments {resolved.literals!r}")


def _n(resolved: Resolved, index: int) -> int:
    n = int_literal(resolved, index, "n")
    if n <= 0:
        what = "latestN" if resolved.name == "LATEST_BY_OFFSET" else "earliestN"
        raise AnalysisError(f"{what} must be 1 or greater")
    return n


class _Single(BaseAccumulator):
    def __init__(self, resolved: Resolved, name: str, ignore_nulls: bool, vector: VectorForm) -> None:
        t = resolved.column_type(0)
        self.ignore_nulls = ignore_nulls
        self.entry_type = struct_type(SEQ=st.BIGINT, VAL=t)
        super().__init__(name=name, return_type=t, state_type=self.entry_type, vector=vector)

    def result(self, state: Entry | None) -> Any:
        return None if state is None else state["VAL"]


class Latest(_Single):
    def __init__(self, resolved: Resolved, ignore_nulls: bool) -> None:
        t = resolved.column_type(0)
        empty = sql_literal_struct(SEQ="CAST(0 AS BIGINT)", VAL=typed_null(t))

        def running(a: Sequence[str], sign: str, over: str) -> str:
            if ignore_nulls:
                return sql_literal_struct(
                    SEQ=f"count({a[0]}) {over}", VAL=f"last_value({a[0]} IGNORE NULLS) {over}"
                )
            return sql_literal_struct(SEQ=f"count(*) {over}", VAL=a[0])

        def combine(prior: str, partial: str) -> str:
            seq = field_sql(partial, "SEQ")
            return (
                f"(CASE WHEN {seq} = 0 THEN COALESCE({prior}, {empty}) ELSE "
                + sql_literal_struct(
                    SEQ=f"COALESCE({field_sql(prior, 'SEQ')}, 0) + {seq}", VAL=field_sql(partial, "VAL")
                )
                + " END)"
            )

        vector = VectorForm(running=running, combine=combine, result=lambda s: field_sql(s, "VAL"))
        super().__init__(resolved, "LATEST_BY_OFFSET", ignore_nulls, vector)

    def initial(self) -> Entry:
        return _entry(0, None)

    def add(self, state: Entry, args: tuple[Any, ...]) -> Entry:
        current = args[0]
        if current is None and self.ignore_nulls:
            return state
        return _entry(state["SEQ"] + 1, current)

    def merge(self, a: Entry, b: Entry) -> Entry:
        # ksqlDB's comparator with ignoreNulls: a NULL value loses whatever its sequence
        later_is_empty = self.ignore_nulls and b["VAL"] is None and a["VAL"] is not None
        return _entry(a["SEQ"] + b["SEQ"], a["VAL"] if later_is_empty else b["VAL"])


class Earliest(_Single):
    def __init__(self, resolved: Resolved, ignore_nulls: bool) -> None:
        def running(a: Sequence[str], sign: str, over: str) -> str:
            entry = sql_literal_struct(
                SEQ="CAST(1 AS BIGINT)", VAL=f"first_value({a[0]} IGNORE NULLS) {over}"
            )
            if ignore_nulls:
                return f"(CASE WHEN count({a[0]}) {over} > 0 THEN {entry} END)"
            return sql_literal_struct(SEQ="CAST(1 AS BIGINT)", VAL=f"first_value({a[0]}) {over}")

        vector = VectorForm(
            running=running,
            combine=lambda prior, partial: f"COALESCE({prior}, {partial})",
            result=lambda s: field_sql(s, "VAL"),
        )
        super().__init__(resolved, "EARLIEST_BY_OFFSET", ignore_nulls, vector)

    def initial(self) -> Entry | None:
        return None

    def add(self, state: Entry | None, args: tuple[Any, ...]) -> Entry | None:
        if state is not None:
            return state
        current = args[0]
        if current is None and self.ignore_nulls:
            return None
        return _entry(1, current)

    def merge(self, a: Entry | None, b: Entry | None) -> Entry | None:
        return b if a is None else a


class _Many(BaseAccumulator):
    """The ``n`` forms: a list of (SEQ, VAL) entries in sequence order.

    Vector form: the partial is ``STRUCT<C BIGINT, L T[]>``, the count of values the batch's rows
    so far took and the last (LATEST) or first (EARLIEST) n of them; ``combine`` numbers them on
    from the prior state's last sequence and keeps the last or first n.
    """

    latest: bool

    def __init__(self, resolved: Resolved, name: str, n: int, ignore_nulls: bool) -> None:
        t = resolved.column_type(0)
        self.n = n
        self.ignore_nulls = ignore_nulls
        state = st.Array(struct_type(SEQ=st.BIGINT, VAL=t))
        empty = f"CAST([] AS {st.to_duckdb(state)})"
        latest = self.latest

        def running(a: Sequence[str], sign: str, over: str) -> str:
            # n window lookups per row, never the whole frame as a list
            x = a[0]
            nulls = " IGNORE NULLS" if ignore_nulls else ""
            count = f"count({x}) {over}" if ignore_nulls else f"count(*) {over}"
            if latest:
                # lag() looks back from the current row (whatever the frame): the n-1 values
                # taken before it, then its own; a NULL row taken nothing when ignoring NULLs
                before = [f"lag({x}, {k}{nulls}) {over}" for k in range(n - 1, 0, -1)]
                values = "[" + ", ".join([*before, x]) + "]"
                if ignore_nulls:
                    shifted = "[" + ", ".join(f"lag({x}, {k}{nulls}) {over}" for k in range(n, 0, -1)) + "]"
                    values = f"(CASE WHEN {x} IS NULL THEN {shifted} ELSE {values} END)"
                # both lists hold n values: keep the last min(count, n) (none when nothing was taken)
                kept = f"list_slice({values}, {n} - least({count}, {n}) + 1, {n})"
            else:
                firsts = "[" + ", ".join(f"nth_value({x}, {k}{nulls}) {over}" for k in range(1, n + 1)) + "]"
                kept = f"list_slice({firsts}, 1, least({count}, {n}))"
            return sql_literal_struct(C=count, L=kept)

        def combine(prior: str, partial: str) -> str:
            before = f"COALESCE({prior}, {empty})"
            last_seq = f"COALESCE(struct_extract({before}[-1], 'SEQ'), 0)"
            values, count = field_sql(partial, "L"), field_sql(partial, "C")
            # the kept values are the count's last (LATEST) or first (EARLIEST) ones
            first_seq = f"({last_seq} + {count} - len({values}))" if latest else last_seq
            numbered = f"list_transform({values}, lambda x, i: struct_pack(SEQ := {first_seq} + i, VAL := x))"
            both = f"list_concat({before}, {numbered})"
            return f"list_slice({both}, -{n}, -1)" if latest else f"list_slice({both}, 1, {n})"

        vector = VectorForm(
            running=running,
            combine=combine,
            result=lambda s: f"list_transform({s}, lambda e: struct_extract(e, 'VAL'))",
        )
        super().__init__(name=name, return_type=st.Array(t), state_type=state, vector=vector)

    def initial(self) -> list[Entry]:
        return []

    def add(self, state: list[Entry], args: tuple[Any, ...]) -> list[Entry]:
        current = args[0]
        if current is None and self.ignore_nulls:
            return state
        if not self.latest and len(state) >= self.n:
            return state
        seq = state[-1]["SEQ"] + 1 if state else 1
        return (state + [_entry(seq, current)])[-self.n :]

    def merge(self, a: list[Entry], b: list[Entry]) -> list[Entry]:
        # b's values came after a's: continue a's sequence, then keep the first n (ksqlDB's subList)
        offset = a[-1]["SEQ"] if a else 0
        return (a + [_entry(e["SEQ"] + offset, e["VAL"]) for e in b])[: self.n]

    def result(self, state: list[Entry]) -> list[Any]:
        return [e["VAL"] for e in state]


class LatestN(_Many):
    latest = True


class EarliestN(_Many):
    latest = False


def _latest(resolved: Resolved) -> BaseAccumulator:
    n, ignore = _options(resolved)
    return Latest(resolved, ignore) if n is None else LatestN(resolved, "LATEST_BY_OFFSET", n, ignore)


def _earliest(resolved: Resolved) -> BaseAccumulator:
    n, ignore = _options(resolved)
    return Earliest(resolved, ignore) if n is None else EarliestN(resolved, "EARLIEST_BY_OFFSET", n, ignore)


def _signatures(build: Any, which: str) -> tuple[Signature, ...]:
    return (
        Signature("val T", "T", build, description=f"return the {which} value of a column"),
        Signature(
            "val T, ignoreNulls BOOLEAN",
            "T",
            build,
            literals=1,
            description=f"return the {which} value of a column",
        ),
        Signature(
            f"val T, {which}N INT",
            "ARRAY<T>",
            build,
            literals=1,
            description=f"return the {which} N values of a column",
        ),
        Signature(
            f"val T, {which}N INT, ignoreNulls BOOLEAN",
            "ARRAY<T>",
            build,
            literals=2,
            description=f"return the {which} N values of a column",
        ),
    )


register(
    Udaf(
        name="LATEST_BY_OFFSET",
        description="This function returns the oldest N values for the column, computed by offset.",
        signatures=_signatures(_latest, "latest"),
    )
)
register(
    Udaf(
        name="EARLIEST_BY_OFFSET",
        description="This function returns the oldest N values for the column, computed by offset.",
        signatures=_signatures(_earliest, "earliest"),
    )
)
