"""REST suite responses: entities as ksqlDB's ``/ksql`` JSON, queries as ``/query`` rows.

The JSON mapping is the server's own (:mod:`ksqlpy.server.entities`), so the REST suite checks
what clients would receive. A query's response is the list of streamed rows ksqlDB's client
collects: a ``header`` (``queryId``, ``schema``), ``row`` objects and, for push queries and
pull queries on streams, a ``finalMessage``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ksqlpy.server import entities, wire
from ksqlpy.server.errors import code_of

#: Seconds without a new row after which a push query is taken to have produced all it will.
QUIET_SECONDS = 2.0

#: The engine's end reasons -> ksqlDB's final messages.
FINAL_MESSAGES = {"LIMIT": "Limit Reached", "COMPLETED": "Query Completed"}


def entity_json(entity: Any) -> dict[str, Any]:
    """An engine result entity as the plain JSON ksqlDB's ``/ksql`` returns for it."""
    import orjson

    data: dict[str, Any] = orjson.loads(wire.dumps(entities.entity_json(entity)))
    return data


def error_status(error: BaseException) -> int:
    """The HTTP status the server answers an engine error with."""
    return code_of(error).status


def _row_json(values: Any, tombstone: bool) -> dict[str, Any]:
    import orjson

    row: dict[str, Any] = {"columns": orjson.loads(wire.dumps(list(values)))}
    if tombstone:
        row["tombstone"] = True
    return {"row": row}


def run_query(
    session: Any,
    text: str,
    *,
    after_header: Callable[[], None] | None = None,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Run one SELECT and collect its streamed rows (header first).

    Pull queries end by themselves; push queries end at their LIMIT, or are closed after
    ``timeout`` seconds. ``after_header`` runs once the query is started (the case produces
    its inputs then)."""
    query = session.execute_query(text)
    try:
        rows: list[dict[str, Any]] = [
            {
                "header": {
                    "queryId": query.query_id,
                    "schema": entities.schema_text(query.columns, query.key_columns, query.header_columns),
                }
            }
        ]
        if after_header is not None:
            after_header()
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while True:
            batch = query.drain()
            if batch:
                quiet_since = time.monotonic()
            rows.extend(_row_json(r.values, getattr(r, "tombstone", False)) for r in batch)
            if query.done:
                break
            now = time.monotonic()
            # A push query that stays quiet this long will not reach its LIMIT.
            if now >= deadline or now - quiet_since >= QUIET_SECONDS:
                return rows
            polled = query.poll(min(0.2, max(0.0, deadline - now)))
            if polled:
                quiet_since = time.monotonic()
            rows.extend(_row_json(r.values, getattr(r, "tombstone", False)) for r in polled)
        if query.error is not None:
            raise query.error
        final = FINAL_MESSAGES.get(query.end_reason or "")
        # Pull queries on tables end without a final message in ksqlDB's responses.
        table_pull = query.is_pull and query.table_pull
        if final is not None and not table_pull:
            rows.append({"finalMessage": final})
        return rows
    finally:
        query.close()
