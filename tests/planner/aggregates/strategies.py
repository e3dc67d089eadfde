"""Hypothesis strategies: values of SQL types (as Arrow gives them back) and signed row batches."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable, Sequence
from typing import Any

from harness import Row
from hypothesis import strategies as hs

from ksqlpy import sqltypes as st

_EPOCH = datetime.datetime(1970, 1, 1)


def values(t: st.SqlType) -> hs.SearchStrategy[Any]:
    """Non-null values of ``t`` that survive Arrow and DuckDB unchanged."""
    match t:
        case st.Decimal(precision=p, scale=s):
            bound = 10**p - 1
            return hs.integers(-bound, bound).map(
                lambda n: decimal.Decimal(f"{n}E-{s}")
            )  # exact, no context rounding
        case st.Array(element=e):
            return hs.lists(hs.none() | values(e), max_size=4)
        case st.Map(key=k, value=v):
            # pyarrow gives maps back as lists of (key, value) pairs
            return hs.dictionaries(values(k), hs.none() | values(v), max_size=3).map(
                lambda d: list(d.items())
            )
    match t.base:
        case st.BaseType.BOOLEAN:
            return hs.booleans()
        case st.BaseType.INTEGER:
            return hs.integers(-(2**31), 2**31 - 1)
        case st.BaseType.BIGINT:
            return hs.integers(-(2**63), 2**63 - 1)
        case st.BaseType.DOUBLE:
            # -0.0 and NaN order differently in Java and DuckDB; they are covered by unit tests
            return hs.floats(allow_nan=False, allow_infinity=False, width=64).map(lambda f: f + 0.0)
        case st.BaseType.STRING:
            return hs.text(max_size=6)
        case st.BaseType.BYTES:
            return hs.binary(max_size=6)
        case st.BaseType.DATE:
            return hs.dates(datetime.date(1900, 1, 1), datetime.date(2200, 1, 1))
        case st.BaseType.TIME:
            return hs.integers(0, 86_399_999).map(
                lambda ms: (datetime.datetime(2000, 1, 1) + datetime.timedelta(milliseconds=ms)).time()
            )
        case st.BaseType.TIMESTAMP:
            return hs.integers(-(2**40), 2**42).map(lambda ms: _EPOCH + datetime.timedelta(milliseconds=ms))
    raise NotImplementedError(t)


def exact_doubles() -> hs.SearchStrategy[float]:
    """DOUBLEs whose sums (of a few dozen) are exact, so summation order cannot matter."""
    return hs.integers(-(2**30), 2**30).map(lambda n: n / 1024)


def small_values(t: st.SqlType) -> hs.SearchStrategy[Any]:
    """Values drawn from a few, so that ties and repeats are common."""
    return hs.lists(values(t), min_size=1, max_size=4, unique_by=repr).flatmap(hs.sampled_from)


@hs.composite
def batches(
    draw: Callable[[hs.SearchStrategy[Any]], Any],
    arg_values: Sequence[hs.SearchStrategy[Any]],
    *,
    undo: bool,
    groups: int = 3,
) -> tuple[list[Row], list[Row]]:
    """Two batches of rows over a few groups: the first builds prior states, the second is checked.

    With ``undo``, some rows of the second batch retract (sign -1) a row added earlier to the same
    group, as a table's old value is retracted.
    """

    def row() -> Row:
        g = draw(hs.integers(0, groups - 1))
        args = tuple(draw(hs.none() | s) for s in arg_values)
        return Row(g, args)

    first = [row() for _ in range(draw(hs.integers(0, 8)))]
    added: dict[int, list[tuple[Any, ...]]] = {}
    for r in first:
        added.setdefault(r.group, []).append(r.args)
    second: list[Row] = []
    for _ in range(draw(hs.integers(1, 12))):
        r = row()
        if undo and added.get(r.group) and draw(hs.booleans()):
            i = draw(hs.integers(0, len(added[r.group]) - 1))
            r = Row(r.group, added[r.group].pop(i), -1)
        else:
            added.setdefault(r.group, []).append(r.args)
        second.append(r)
    return first, second
