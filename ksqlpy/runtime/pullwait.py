"""Which of a table writer's pending records a key lookup has to wait for.

Read-your-writes (``pull.catch_up``) waits until the persistent query writing a table has
committed everything its source held when the lookup started. For a key lookup that is more
than it needs when the table is an unwindowed aggregation grouped by its source stream's own
key: the table's row for key ``k`` is a function of the source records whose key is ``k`` and of
nothing else (no repartition, no window whose stream time other keys' records move on, no
table source whose updates move a row between groups). Once the writer has committed the last
pending record of ``k``, the row is what it will be when it has committed them all, so the
lookup waits for that record only, and a lookup of a key nothing wrote meanwhile not at all.

Only keys whose bytes in the source topic are known exactly qualify: the KAFKA key format of a
single STRING or INTEGER column, whose encodings are one-to-one (a string with U+FFFD is left
out: invalid UTF-8 decodes to it). Anything else waits for everything, as before.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from typing import Any

from ksqlpy import sqltypes
from ksqlpy.planner.physical import AggregateStep, QueryPlan

_STRING = re.compile(r"CAST\('((?:[^']|'')*)' AS VARCHAR\)")
_INTEGER = re.compile(r"CAST\(CAST\((-?\d{1,9}) AS INT\) AS INTEGER\)")


def lookup_values(keys: Sequence[Sequence[str]]) -> tuple[str | int, ...] | None:
    """The values of a lookup's keys (one key column each, as DuckDB literals the planner
    wrote), or None when one is not a plain string or integer literal."""
    values: list[str | int] = []
    for key in keys:
        if len(key) != 1:
            return None
        if (m := _STRING.fullmatch(key[0])) is not None:
            values.append(m.group(1).replace("''", "'"))
        elif (m := _INTEGER.fullmatch(key[0])) is not None:
            values.append(int(m.group(1)))
        else:
            return None
    return tuple(values)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def source_keys(plan: QueryPlan, values: Sequence[str | int]) -> list[bytes] | None:
    """The source record keys of the table rows with key ``values``, when ``plan`` writes a
    table whose row for a key depends on its source's records of that key alone (see the
    module's docstring); else None."""
    step = plan.step
    if plan.join is not None or not isinstance(step, AggregateStep) or plan.sink is None:
        return None
    source = step.source
    if step.window is not None or step.repartition is not None or source.is_table or source.window is not None:
        return None
    if source.key_format.format != "KAFKA" or len(source.key_columns) != 1 or len(step.group_keys) != 1:
        return None
    key = source.key_columns[0]
    sink_keys = step.key_columns
    if (
        step.group_keys[0].sql != _quoted(key.name)
        or len(sink_keys) != 1
        or sink_keys[0].sql != _quoted(step.group_keys[0].name)
        or sink_keys[0].type != key.type
    ):
        return None
    encoded: list[bytes] = []
    for value in values:
        if key.type == sqltypes.Primitive(sqltypes.BaseType.STRING) and isinstance(value, str):
            if "\ufffd" in value:
                return None
            encoded.append(value.encode("utf-8"))
        elif key.type == sqltypes.Primitive(sqltypes.BaseType.INTEGER) and isinstance(value, int):
            encoded.append(struct.pack(">i", value))
        else:
            return None
    return encoded


def pending_ends(
    store: Any,
    topic: str,
    settled: dict[int, int],
    ends: dict[int, int],
    keys: Sequence[bytes],
    *,
    read_log: bool = True,
) -> dict[int, int] | None:
    """Per partition, the offset the writer must have committed for a lookup of ``keys``: just
    past the last record of one of them between ``settled`` and ``ends`` (``settled`` where there
    is none). None when ``store`` cannot tell (then the lookup waits for ``ends``), or, without
    ``read_log``, could tell only by reading the log (the store's memory of recent keys is
    not enough: the writer is far behind)."""
    last_offsets_of = getattr(store, "last_offsets_of", None)
    if last_offsets_of is None:
        return None
    ranges = {p: (settled.get(p, 0), end) for p, end in ends.items() if settled.get(p, 0) < end}
    # asked even when nothing is pending: the store keeps the keys written from then on
    found: dict[int, int] | None = last_offsets_of(topic, ranges, keys, read_log=read_log)
    if found is None:
        return None
    return {p: (found[p] + 1 if p in found else settled.get(p, 0)) for p in ends}
