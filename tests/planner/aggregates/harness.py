"""Run an accumulator both ways over the same rows and return what each computed.

``sequential(acc, rows, priors)`` folds :meth:`Accumulator.add`/``undo`` in row order, per group.
``vectorized(acc, rows, priors)`` stores the priors in a DuckDB table (through Arrow and
``sqltypes``, as the aggregation operator does), loads the batch as an Arrow table and evaluates
``combine(prior, running(args, sign, OVER (...)))`` and ``result(state)`` in one DuckDB query.
Both return, per row in order, ``(group, state, result)``.
"""

from __future__ import annotations

import datetime
import decimal
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.aggregate import Accumulator


@dataclass(frozen=True)
class Row:
    group: int
    args: tuple[Any, ...]  # values of the accumulator's column_args
    sign: int = 1


# one connection for the whole run: connecting is the slow part of a small check
_CON = duckdb.connect()

OVER = "OVER (PARTITION BY b.g ORDER BY b.seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"


def sequential(
    acc: Accumulator, rows: Sequence[Row], priors: Mapping[int, Any]
) -> list[tuple[int, Any, Any]]:
    states = dict(priors)
    out = []
    for r in rows:
        state = states.get(r.group, acc.initial()) if r.group in states else acc.initial()
        state = acc.add(state, r.args) if r.sign > 0 else acc.undo(state, r.args)
        states[r.group] = state
        out.append((r.group, state, acc.result(state)))
    return out


def vectorized(
    acc: Accumulator,
    rows: Sequence[Row],
    priors: Mapping[int, Any],
    arg_types: Sequence[st.SqlType],
    con: duckdb.DuckDBPyConnection | None = None,
) -> list[tuple[int, Any, Any]]:
    assert acc.vector is not None
    con = con or _CON
    state_arrow = st.to_arrow(acc.state_type)
    prior_table = pa.table(
        {
            "g": pa.array(list(priors), pa.int32()),
            "state": pa.array(list(priors.values()), state_arrow),
        }
    )
    con.register("prior_arrow", prior_table)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE prior AS SELECT g, CAST(state AS {st.to_duckdb(acc.state_type)}) AS state "
        "FROM prior_arrow"
    )
    con.unregister("prior_arrow")
    columns: dict[str, pa.Array] = {
        "g": pa.array([r.group for r in rows], pa.int32()),
        "seq": pa.array(range(len(rows)), pa.int64()),
        "sign": pa.array([r.sign for r in rows], pa.int32()),
    }
    for i, t in enumerate(arg_types):
        columns[f"a{i}"] = pa.array([r.args[i] for r in rows], st.to_arrow(t))
    con.register("batch", pa.table(columns))
    args = [f"b.a{i}" for i in range(len(arg_types))]
    v = acc.vector
    partial = v.running(args, "b.sign", OVER)
    query = (
        f"SELECT g, seq, state, {v.result('state')} AS result FROM ("
        f"SELECT b.g AS g, b.seq AS seq, CAST({v.combine('p.state', partial)} AS {st.to_duckdb(acc.state_type)}) "
        "AS state FROM batch b LEFT JOIN prior p ON p.g = b.g) ORDER BY seq"
    )
    table = con.sql(query).to_arrow_table()
    # the templates must produce the declared types themselves (the operator stores them as is)
    types = con.sql(
        f"SELECT typeof({v.combine('p.state', partial)}) AS state_t, typeof({v.result('p.state')}) AS result_t, "
        f"typeof(CAST(NULL AS {st.to_duckdb(acc.state_type)})) AS want_state, "
        f"typeof(CAST(NULL AS {st.to_duckdb(acc.return_type)})) AS want_result "
        "FROM batch b LEFT JOIN prior p ON p.g = b.g LIMIT 1"
    ).fetchall()
    con.unregister("batch")
    for state_t, result_t, want_state, want_result in types:
        assert state_t == want_state, f"combine gives {state_t}, state type is {want_state}"
        assert result_t == want_result, f"result gives {result_t}, return type is {want_result}"
    return [(d["g"], d["state"], d["result"]) for d in table.to_pylist()]


def stored(acc: Accumulator, state: Any) -> Any:
    """A state after a trip through Arrow and a DuckDB table column of the state type."""
    con = _CON
    con.register("s", pa.table({"state": pa.array([state], st.to_arrow(acc.state_type))}))
    con.execute(f"CREATE OR REPLACE TEMP TABLE t (state {st.to_duckdb(acc.state_type)})")
    con.execute("INSERT INTO t SELECT state FROM s")
    value = con.sql("SELECT state FROM t").to_arrow_table().to_pylist()[0]["state"]
    con.unregister("s")
    return value


def same(a: Any, b: Any, *, rel: float = 1e-9) -> bool:
    """Equality of Python values of SQL types; DOUBLEs within ``rel`` (float association)."""
    match a, b:
        case float(), float():
            if math.isnan(a) or math.isnan(b):
                return math.isnan(a) and math.isnan(b)
            return math.isclose(a, b, rel_tol=rel, abs_tol=rel)
        case dict(), dict():
            return a.keys() == b.keys() and all(same(a[k], b[k], rel=rel) for k in a)
        case ((list() | tuple()), (list() | tuple())):
            return len(a) == len(b) and all(same(x, y, rel=rel) for x, y in zip(a, b))
        case decimal.Decimal(), decimal.Decimal():
            return a == b
        case ((datetime.date() | datetime.time()), _):
            return a == b
    return (
        a == b
        and type(a) is type(b)
        or (a is None and b is None)
        or (isinstance(a, int) and isinstance(b, int) and a == b)
    )
