"""Key lookups of a table being written, answered from a copy of its rows kept current in memory.

``pullcache`` answers a lookup without DuckDB only while nothing was written to its table since
it last caught up; a table written to all the time is read with a statement per lookup. Such a
statement, run on the server's event loop beside busy writer threads, waits for the GIL each
time DuckDB hands it back (up to the interpreter's switch interval, 5 ms, per hand-back): under
writes that, not DuckDB, made a lookup take tens of milliseconds.

A *live snapshot* is the table read whole for one lookup shape (the statement of
``pullcache.snapshot_sql``: each row as the lookup projects it, with its key), then kept equal to
the table's committed rows: it watches the table's materializer (``RowWatcher``), and every
transaction that upserts rows reads the new rows of the changed keys, as the lookup projects
them, in the transaction itself; the snapshot takes them when the transaction commits, while
the store publishes it. A lookup that finds its key settled (read-your-writes) after that
publication reads the committed rows; an unchanged one reads the rows it would read in DuckDB.

It is read whole on a thread of its own holding the store's write lock (:func:`build`), so no
transaction commits between the read and the watch; lookups read DuckDB meanwhile. It is made
once lookups of a shape read DuckDB :data:`LIVE_AFTER` times, and stops being kept (the writers
stop paying a statement per batch for it) when no lookup used it for :data:`IDLE_SECONDS`, or
when the table grows past :data:`MAX_KEYS` or changes in a way its materializer does not tell.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from ksqlpy.runtime import pullcache
from ksqlpy.runtime.materialize import Materializer
from ksqlpy.runtime.relations import from_duckdb
from ksqlpy.runtime.rows import Row, table_to_rows

log = logging.getLogger("ksqlpy.pull")

#: Lookups of a shape read from DuckDB before its live snapshot is made.
LIVE_AFTER = 16
#: A live snapshot no lookup used for this long is dropped.
IDLE_SECONDS = 60.0
#: Keys a live snapshot may hold, deleted ones included: a table that grows past it is dropped
#: (and, too large to be read whole, not made again).
MAX_KEYS = 2 * pullcache.SNAPSHOT_ROWS


class LiveSnapshot:
    """One lookup shape's rows of one table by key, kept current by the table's writers."""

    def __init__(
        self, changed_sql: str, schema: pa.Schema, types: Sequence[Any], by_key: dict[str, list[Row]]
    ) -> None:
        self._changed_sql = changed_sql
        self._schema = schema
        self._types = list(types)
        self._by_key = by_key
        #: False once the snapshot is no longer kept current
        self.live = True
        self.used = time.monotonic()

    def rows_of(self, key: str) -> list[Row] | None:
        """The rows of ``key`` (None: the snapshot is no longer kept current)."""
        if not self.live:
            return None
        self.used = time.monotonic()
        return self._by_key.get(key, [])

    def changed(self, con: duckdb.DuckDBPyConnection, keys: Sequence[object]) -> Callable[[], object] | None:
        """(A ``RowWatcher``.) The new rows of ``keys``, read in the writer's transaction, go
        into the snapshot when it commits; None when the snapshot is to be dropped."""
        if (
            not self.live
            or time.monotonic() - self.used > IDLE_SECONDS
            or len(self._by_key) + len(keys) > MAX_KEYS
        ):
            return None
        try:
            # plain columns of the changed keys: a statement that cannot fail (see snapshot_sql)
            result = con.sql(self._changed_sql).to_arrow_table()
            fresh = rows_by_key(result, self._schema, self._types)
        except Exception:  # the writer's batch goes on; lookups read DuckDB again
            log.warning("A live snapshot of a table could not read its changed rows", exc_info=True)
            return None
        if fresh is None:
            return None
        update: dict[str, list[Row]] = {str(key): [] for key in keys}  # gone unless read again
        update.update(fresh)
        by_key = self._by_key

        def take() -> None:
            by_key.update(update)

        return take

    def dropped(self) -> None:
        self.live = False


def rows_by_key(result: pa.Table, schema: pa.Schema, types: Sequence[Any]) -> dict[str, list[Row]] | None:
    """A snapshot statement's rows (each with its key last) by key; None when a key has more
    than one row (a table holds one per key; anything else is read from DuckDB)."""
    keys = result.column(result.num_columns - 1).to_pylist()
    table = from_duckdb(result.remove_column(result.num_columns - 1))
    if table.schema != schema:
        table = table.cast(schema)
    by_key: dict[str, list[Row]] = {}
    for key, row in zip(keys, table_to_rows(table, list(types)), strict=True):
        if key in by_key:
            return None
        by_key[key] = [row]
    return by_key


#: Per materializer: lookup shape -> its live snapshot.
_live: weakref.WeakKeyDictionary[Materializer, dict[Any, LiveSnapshot]] = weakref.WeakKeyDictionary()
#: Per materializer: lookup shape -> lookups read from DuckDB, or None while its snapshot is made.
_misses: weakref.WeakKeyDictionary[Materializer, dict[Any, int | None]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def live_snapshot(materializer: Materializer, shape: Any) -> LiveSnapshot | None:
    """The live snapshot of ``shape``'s lookups of the table, if one is kept."""
    found = _live.get(materializer, {}).get(shape)
    if found is not None and not found.live:
        with _lock:
            if _live.get(materializer, {}).get(shape) is found:
                del _live[materializer][shape]
        return None
    return found


def wants_live(materializer: Materializer, shape: Any) -> bool:
    """Count a lookup of ``shape`` read from DuckDB; whether its live snapshot is to be made now
    (once: later calls say False until it is made, or failed)."""
    with _lock:
        counts = _misses.setdefault(materializer, {})
        seen = counts.get(shape, 0)
        if seen is None:
            return False
        if seen + 1 < LIVE_AFTER:
            counts[shape] = seen + 1
            return False
        counts[shape] = None
        return True


def build(
    store: Any,
    materializer: Materializer,
    shape: Any,
    whole_sql: str,
    changed_sql: str,
    schema: pa.Schema,
    types: Sequence[Any],
) -> None:
    """Read the table whole for ``shape`` and keep it current (see the module docstring), on a
    thread of its own: it waits for the store's write lock."""

    def run() -> None:
        snapshot = None
        try:
            with store.transaction() as tx:
                result = tx.state.sql(whole_sql).to_arrow_table()
                by_key = (
                    None if result.num_rows > pullcache.SNAPSHOT_ROWS else rows_by_key(result, schema, types)
                )
                if by_key is not None:
                    snapshot = LiveSnapshot(changed_sql, schema, types, by_key)
                    if not materializer.watch(snapshot):
                        snapshot = None
        except Exception:  # lookups go on reading DuckDB
            log.debug("Making a live snapshot of %s failed", materializer.name, exc_info=True)
        with _lock:
            if snapshot is not None:
                _live.setdefault(materializer, {})[shape] = snapshot
            # once dropped, it is made again after as many lookups; a table too large never is
            _misses.setdefault(materializer, {})[shape] = 0 if snapshot is not None else None

    threading.Thread(target=run, name=f"live-snapshot-{materializer.name}", daemon=True).start()


__all__ = [
    "IDLE_SECONDS",
    "LIVE_AFTER",
    "LiveSnapshot",
    "build",
    "live_snapshot",
    "rows_by_key",
    "wants_live",
]
