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

A small table looked up often enough at one stamp (:data:`SNAPSHOT_AFTER` lookups read from
DuckDB) is read whole once instead, per lookup shape: the lookup's statement without its key
condition, each row with its key (:func:`snapshot_sql`). A lookup of key ``v`` then answers the
rows of key ``v`` at the same stamp, which are the rows its own statement selects: the key
condition is equality of a VARCHAR key with a string (DuckDB compares VARCHARs bytewise, as
Python compares ``str``), and the rest of the WHERE clause does not mention the key value.
A table of more than :data:`SNAPSHOT_ROWS` rows is not read whole again.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from ksqlpy.runtime.rows import Row

#: Statements (keys) kept per table at most; past it the table's entries are dropped at once.
MAX_KEYS = 4096
#: Lookups of a table read from DuckDB at one stamp before the table is read whole (a table
#: written to all the time never is: each write starts the count again).
SNAPSHOT_AFTER = 16
#: Rows a table may hold to be read whole.
SNAPSHOT_ROWS = 10_000
#: The name of the key column a snapshot's statement adds to the lookup's columns.
SNAPSHOT_KEY = '"__pull_snapshot_key"'

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


def snapshot_sql(
    items: list[str], key: str, ref: str, where_sql: str | None, sentinel: str, changed: str | None = None
) -> str | None:
    """The statement reading a table whole for lookups of one shape: the lookup's ``items``
    (``expr AS "NAME"``) and the key column (quoted ``key``) as :data:`SNAPSHOT_KEY`, under its
    WHERE clause planned with string ``sentinel`` for the key value, less the key condition
    (``"KEY" = sentinel``, TRUE for the rows of that key). None when the WHERE clause uses the
    key value any other way or the statement is not :func:`deterministic`.

    With ``changed`` (a relation with the key column): only the rows of its keys, all of them;
    None unless the statement cannot fail (it runs inside a writer's transaction, which a failed
    statement would abort): plain columns under the key condition alone."""
    where = (where_sql or "").replace(f"{key} = {sentinel}", "TRUE")
    if sentinel in where or any(SNAPSHOT_KEY in item for item in items):
        return None
    sql = f"SELECT {', '.join(items)}, input.{key} AS {SNAPSHOT_KEY} FROM {ref} input"
    if where:
        sql += f" WHERE COALESCE({where}, FALSE)"
    if not deterministic(sql):
        return None
    if changed is not None:
        if where not in _KEY_CONDITION_ONLY or not all(_PLAIN_ITEM.fullmatch(item) for item in items):
            return None
        keys = f"input.{key} IN (SELECT {key} FROM {changed})"
        return sql + (f" AND {keys}" if where else f" WHERE {keys}")
    return sql + f" LIMIT {SNAPSHOT_ROWS + 1}"


#: A lookup's WHERE clause less its key condition, when that was all of it.
_KEY_CONDITION_ONLY = ("", "COALESCE(TRUE, FALSE)")
#: An item of a lookup that reads a column as it is.
_PLAIN_ITEM = re.compile(r'"(?:[^"]|"")*" AS "(?:[^"]|"")*"')

#: Per materializer: lookup shape -> (stamp the table was read at, rows by key).
_snapshots: weakref.WeakKeyDictionary[Any, dict[Any, tuple[Stamp, dict[str, list[Row]]]]] = (
    weakref.WeakKeyDictionary()
)
#: Per materializer: the stamp lookups were last read from DuckDB at, and how many were.
_misses: weakref.WeakKeyDictionary[Any, tuple[Stamp, int]] = weakref.WeakKeyDictionary()
#: Tables found too large to read whole.
_large: weakref.WeakSet[Any] = weakref.WeakSet()


def snapshot_of(materializer: Any, shape: Any, stamp: Stamp) -> dict[str, list[Row]] | None:
    """The rows by key of the table read whole for ``shape`` at ``stamp``, if it was."""
    found = _snapshots.get(materializer, {}).get(shape)
    return found[1] if found is not None and found[0] == stamp else None


def wants_snapshot(materializer: Any, stamp: Stamp) -> bool:
    """Count a lookup read from DuckDB at ``stamp``; whether the table is now to be read whole."""
    if materializer in _large:
        return False
    seen = _misses.get(materializer)
    count = seen[1] + 1 if seen is not None and seen[0] == stamp else 1
    _misses[materializer] = (stamp, count)
    return count >= SNAPSHOT_AFTER


def keep_snapshot(materializer: Any, shape: Any, stamp: Stamp, rows: dict[str, list[Row]] | None) -> None:
    """Keep the table's rows by key read for ``shape`` at ``stamp``; None: it was too large."""
    if rows is None:
        _large.add(materializer)
        return
    entries = _snapshots.get(materializer)
    if entries is None:
        entries = _snapshots.setdefault(materializer, {})
    entries[shape] = (stamp, rows)


__all__ = [
    "MAX_KEYS",
    "SNAPSHOT_AFTER",
    "SNAPSHOT_KEY",
    "SNAPSHOT_ROWS",
    "deterministic",
    "keep_rows",
    "keep_snapshot",
    "kept_rows",
    "snapshot_of",
    "snapshot_sql",
    "wants_snapshot",
]
