"""Rows of key lookups kept while their table is unchanged, so that a repeated lookup skips DuckDB.

A key lookup answered on the server's event loop (:func:`ksqlpy.runtime.pull.start_ready_pull`)
reads a table nothing was written to since it last caught up: on the embedded store every commit
(records, positions, state) bumps the store's version, and the lookup runs only while the version
and the set of persistent queries are those the table caught up with (its *stamp*). The same
statement over the same state gives the same rows, as long as nothing in it can change between
two runs (a clock, a random number): :func:`deterministic` admits only statements whose words are
all keywords of plain reads, comparisons and casts.

Rows are kept per table (materializer) and statement with the stamp they were read at; they
answer only while the table's stamp is still that one, so the first write after them makes
every entry of the table stale (replaced as lookups come, or dropped when the table holds
:data:`MAX_KEYS`).
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from ksqlpy.runtime.rows import Row

#: Statements (keys) kept per table at most; past it the table's entries are dropped at once.
MAX_KEYS = 4096

#: Words of a statement outside its string literals and quoted names (a word right after a
#: digit is part of a number, ``1e5``).
_WORD = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|(?<![0-9A-Za-z_$])([A-Za-z_][A-Za-z0-9_$]*)""")

#: Words a statement may hold and still give the same rows on every run over the same state:
#: no function whose value changes by itself (NOW, RANDOM, UUID ...) is among them.
_STABLE_WORDS = frozenset(
    {
        "SELECT", "FROM", "AS", "WHERE", "AND", "OR", "NOT", "IS", "NULL", "TRUE", "FALSE", "LIMIT",
        "CAST", "COALESCE", "VARCHAR", "INTEGER", "INT", "BIGINT", "DOUBLE", "BOOLEAN",
        "MAT", "INPUT", "T",
    }
)  # fmt: skip


def deterministic(sql: str) -> bool:
    """Whether ``sql`` reads the same rows on every run over the same state (conservatively:
    False for any word not known to be stable)."""
    return all(m.group(1) is None or m.group(1).upper() in _STABLE_WORDS for m in _WORD.finditer(sql))


Stamp = tuple[int, tuple[str, ...]]

#: Per materializer: statement -> (stamp it was read at, output fields, rows).
_kept: weakref.WeakKeyDictionary[Any, dict[str, tuple[Stamp, Any, list[Row]]]] = weakref.WeakKeyDictionary()


def kept_rows(materializer: Any, stamp: Stamp, sql: str, fields: Any) -> list[Row] | None:
    """The rows ``sql`` read at ``stamp`` with these output ``fields``, if kept."""
    entries = _kept.get(materializer)
    if entries is None:
        return None
    entry = entries.get(sql)
    if entry is None or entry[0] != stamp or entry[1] != fields:
        return None
    return entry[2]


def keep_rows(materializer: Any, stamp: Stamp, sql: str, fields: Any, rows: list[Row]) -> None:
    """Keep the rows ``sql`` read while the table's stamp was ``stamp`` throughout."""
    entries = _kept.get(materializer)
    if entries is None:
        entries = _kept.setdefault(materializer, {})
    if len(entries) >= MAX_KEYS and sql not in entries:
        entries.clear()
    entries[sql] = (stamp, fields, rows)


__all__ = ["MAX_KEYS", "deterministic", "keep_rows", "kept_rows"]
