"""Arrow's hash aggregation and hash join, without importing ``pyarrow.acero``.

``Table.group_by(...).aggregate(...)`` and ``Table.join(...)`` build Acero plans through the
``pyarrow.acero`` module, whose import also imports ``pyarrow.dataset`` and with it the Parquet,
Substrait and S3 libraries, which a server never uses: ~8 MiB more resident memory once a process
has run an aggregation (a windowed count over 1 M events on Kafka peaked 257-262 instead of
263-267 MiB, three rounds back to back). These functions build the same plans from
``pyarrow._acero``, the compiled module ``pyarrow.acero`` re-exports, which loads none of that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from pyarrow import _acero


def _source(table: pa.Table) -> Any:
    return _acero.Declaration("table_source", _acero.TableSourceNodeOptions(table))


def aggregate_by(
    table: pa.Table,
    keys: str | Sequence[str],
    aggregations: Sequence[tuple[Any, ...]],
    *,
    use_threads: bool = False,
) -> pa.Table:
    """``table.group_by(keys, use_threads=use_threads).aggregate(aggregations)``: each aggregation
    is ``(column, function)`` or ``(column, function, options)``, its result named
    ``<column>_<function>``; without aggregations, one row per group."""
    names = [keys] if isinstance(keys, str) else list(keys)
    specs = []
    for aggregation in aggregations:
        column, function = aggregation[0], aggregation[1]
        options = aggregation[2] if len(aggregation) > 2 else None
        specs.append(([column], f"hash_{function}", options, f"{column}_{function}"))
    plan = _acero.Declaration.from_sequence(
        [_source(table), _acero.Declaration("aggregate", _acero.AggregateNodeOptions(specs, keys=names))]
    )
    result: pa.Table = plan.to_table(use_threads=use_threads)
    return result


def inner_join(left: pa.Table, right: pa.Table, keys: Sequence[str]) -> pa.Table:
    """``left.join(right, keys=keys, join_type="inner")``: left's columns, then right's other
    columns, in no particular row order."""
    keys = list(keys)
    right_output = [c for c in right.column_names if c not in keys]
    options = _acero.HashJoinNodeOptions("inner", keys, keys, left.column_names, right_output)
    plan = _acero.Declaration("hashjoin", options, inputs=[_source(left), _source(right)])
    result: pa.Table = plan.to_table(use_threads=True)
    return result
