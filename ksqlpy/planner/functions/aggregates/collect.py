"""COLLECT_LIST, COLLECT_SET, HISTOGRAM and ATTR: aggregates whose state is a collection.

* COLLECT_LIST keeps every value, NULLs included, up to ``ksql.functions.collect_list.limit``
  (default 1000; a negative limit means none). Undo removes the last equal value (ksqlDB's
  ``lastIndexOf``). Its vector form appends the batch's values (stream input only).
* COLLECT_SET keeps distinct values in arrival order up to ``ksql.functions.collect_set.limit``;
  not undoable, as in ksqlDB. Its vector form keeps first occurrences (``list_position``).
* HISTOGRAM counts each distinct string, up to 1000 distinct entries. A NULL string is not
  counted (a map key cannot be NULL in ksqlpy's Arrow maps; ksqlDB's output would fail on it).
* ATTR returns the single value of a group, or NULL once the group has seen two different
  values (a NULL counts as a value); its state counts each value, so undo restores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.aggregate import VectorForm
from ksqlpy.planner.functions.aggregates.accumulator import BaseAccumulator
from ksqlpy.planner.functions.aggregates.base import (
    COLLECT_LIST_LIMIT,
    COLLECT_SET_LIMIT,
    DEFAULT_COLLECT_LIMIT,
    Resolved,
    Signature,
    Udaf,
    register,
    struct_type,
)

HISTOGRAM_LIMIT = 1000
_NO_LIMIT = 2**31 - 1  # Java's Integer.MAX_VALUE


def _limit(resolved: Resolved, key: str) -> int:
    raw = resolved.config.get(key, DEFAULT_COLLECT_LIMIT)
    limit = int(raw)
    return _NO_LIMIT if limit < 0 else limit


class CollectList(BaseAccumulator):
    def __init__(self, resolved: Resolved) -> None:
        t = resolved.column_type(0)
        self.limit = limit = _limit(resolved, COLLECT_LIST_LIMIT)
        empty = f"CAST([] AS {st.to_duckdb(st.Array(t))})"
        vector = VectorForm(
            running=lambda a, sign, over: f"list({a[0]}) {over}",
            combine=lambda prior, partial: (
                f"list_slice(list_concat(COALESCE({prior}, {empty}), {partial}), 1, {limit})"
            ),
            result=lambda s: s,
        )
        super().__init__(
            name="COLLECT_LIST",
            return_type=st.Array(t),
            state_type=st.Array(t),
            supports_undo=True,
            vector=vector,
        )

    def initial(self) -> list[Any]:
        return []

    def add(self, state: list[Any], args: tuple[Any, ...]) -> list[Any]:
        return state + [args[0]] if len(state) < self.limit else state

    def undo(self, state: list[Any], args: tuple[Any, ...]) -> list[Any]:
        for i in range(len(state) - 1, -1, -1):
            if state[i] == args[0]:
                return state[:i] + state[i + 1 :]
        return state  # never added: the limit had been reached

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return a + b[: max(self.limit - len(a), 0)]


class CollectSet(BaseAccumulator):
    def __init__(self, resolved: Resolved) -> None:
        t = resolved.column_type(0)
        self.limit = limit = _limit(resolved, COLLECT_SET_LIMIT)
        empty = f"CAST([] AS {st.to_duckdb(st.Array(t))})"

        def first_distinct(values: str) -> str:
            # keep each value's first occurrence (NULL included), then the first `limit` of them
            kept = f"list_filter({values}, lambda x, i: list_position({values}, x) = i)"
            return f"list_slice({kept}, 1, {limit})"

        vector = VectorForm(
            running=lambda a, sign, over: first_distinct(f"list({a[0]}) {over}"),
            combine=lambda prior, partial: first_distinct(
                f"list_concat(COALESCE({prior}, {empty}), {partial})"
            ),
            result=lambda s: s,
        )
        super().__init__(name="COLLECT_SET", return_type=st.Array(t), state_type=st.Array(t), vector=vector)

    def initial(self) -> list[Any]:
        return []

    def add(self, state: list[Any], args: tuple[Any, ...]) -> list[Any]:
        if len(state) < self.limit and args[0] not in state:
            return state + [args[0]]
        return state

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        out = list(a)
        for v in b:
            if len(out) == self.limit:
                break
            if v not in out:
                out.append(v)
        return out


# A MAP state is a list of (key, value) pairs, as pyarrow gives maps back.
Pairs = list[tuple[Any, int]]


class Histogram(BaseAccumulator):
    def __init__(self, resolved: Resolved) -> None:
        t = st.Map(st.STRING, st.BIGINT)
        super().__init__(name="HISTOGRAM", return_type=t, state_type=t, supports_undo=True)

    def initial(self) -> Pairs:
        return []

    def add(self, state: Pairs, args: tuple[Any, ...]) -> Pairs:
        return self._count(state, args[0], 1)

    def undo(self, state: Pairs, args: tuple[Any, ...]) -> Pairs:
        return self._count(state, args[0], -1)

    def merge(self, a: Pairs, b: Pairs) -> Pairs:
        for key, n in b:
            a = self._count(a, key, n)
        return a

    @staticmethod
    def _count(state: Pairs, key: Any, n: int) -> Pairs:
        if key is None:
            return state
        counts = dict(state)
        if key in counts:
            counts[key] += n
            if counts[key] < 1:
                del counts[key]
        elif n > 0 and len(counts) < HISTOGRAM_LIMIT:
            counts[key] = n
        return list(counts.items())


Entry = dict[str, Any]


class Attr(BaseAccumulator):
    def __init__(self, resolved: Resolved) -> None:
        t = resolved.column_type(0)
        state = st.Array(struct_type(VALUE=t, COUNT=st.INTEGER))
        super().__init__(name="ATTR", return_type=t, state_type=state, supports_undo=True)

    def initial(self) -> list[Entry]:
        return []

    def add(self, state: list[Entry], args: tuple[Any, ...]) -> list[Entry]:
        return _update(state, args[0], 1)

    def undo(self, state: list[Entry], args: tuple[Any, ...]) -> list[Entry]:
        return _update(state, args[0], -1)

    def merge(self, a: list[Entry], b: list[Entry]) -> list[Entry]:
        for e in b:
            a = _update(a, e["VALUE"], e["COUNT"])
        return a

    def result(self, state: list[Entry]) -> Any:
        present = [e for e in state if e["COUNT"] > 0]
        return present[0]["VALUE"] if len(present) == 1 else None


def _update(state: Sequence[Entry], value: Any, count: int) -> list[Entry]:
    out = [dict(e) for e in state]
    for e in out:
        if e["VALUE"] == value:
            e["COUNT"] = max(0, e["COUNT"] + count)
            return out
    if count > 0:
        out.append({"VALUE": value, "COUNT": count})
    return out


_LIST_DESCRIPTION = (
    "Gather all of the values from an input grouping into a single Array field."
    "\nAlthough this aggregate works on both Stream and Table inputs, the order of entries"
    " in the result array is not guaranteed when working on Table input data."
    "\nYou may limit the size of the resultant Array to N entries, beyond which"
    " any further values will be silently ignored, by setting the"
    " ksql.functions.collect_list.limit configuration to N."
)
_SET_DESCRIPTION = (
    "Gather all of the distinct values from an input grouping into a single Array."
    "\nNot available for aggregating values from an input Table."
    "\nYou may limit the size of the resultant Array to N entries, beyond which"
    " any further values will be silently ignored, by setting the"
    " ksql.functions.collect_list.limit configuration to N."
)

register(
    Udaf(
        name="collect_list",
        description=_LIST_DESCRIPTION,
        table_udaf=True,
        signatures=(
            Signature(
                "val T", "ARRAY<T>", CollectList, description="collect values of a field into a single Array"
            ),
        ),
    )
)
register(
    Udaf(
        name="collect_set",
        description=_SET_DESCRIPTION,
        signatures=(
            Signature(
                "val T",
                "ARRAY<T>",
                CollectSet,
                description="collect distinct values of a Bigint field into a single Array",
            ),
        ),
    )
)
register(
    Udaf(
        name="histogram",
        description="Returns a map of each distinct String from the input Stream or Table and how many times"
        " each occurs. \nThis version limits the size of the resultant Map to 1000 entries. Any entries"
        " added beyond this limit will be ignored.",
        table_udaf=True,
        signatures=(
            Signature(
                "val STRING",
                "MAP<STRING, BIGINT>",
                Histogram,
                description="Build a value-to-count histogram of input Strings",
            ),
        ),
    )
)
register(
    Udaf(
        name="ATTR",
        description="The ATTR() aggregation indicates there are multiple values, but only one was expected. For"
        " example, if aggregating against a table that semantically should have only one value for a column"
        " given a key, this aggregation enables users to indicate that they expect only a single value.\n\n"
        "If the aggregation encounters more than a single value for the expected singular column, the entire"
        " aggregation will return null.",
        table_udaf=True,
        signatures=(Signature("val T", "T", Attr, description="Collect as a singleton"),),
    )
)
