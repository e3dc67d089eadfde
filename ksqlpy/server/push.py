"""Streaming a query's rows to an HTTP client without blocking the event loop.

The engine runs queries on its own threads and signals new rows through
``StreamingQuery.set_listener``; :class:`QueryFeed` turns that signal into an
:class:`asyncio.Event` (one ``loop.call_soon_threadsafe`` for the feeds signalled together,
see :class:`_Waker`) and hands out row batches with the
non-blocking ``drain()``. No thread waits on a query, so hundreds of push queries cost one
asyncio task each.

:func:`stream_query` writes a started query to an ASGI response in a :class:`QueryFormat`,
ends at LIMIT / completion / failure, and stops when the client disconnects or the query is
closed (``/close-query``). The caller closes the query afterwards in every case.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, cast

from ksqlpy.errors import KsqlpyError
from ksqlpy.server.errors import INTERNAL, generic_error, message_of
from ksqlpy.server.formats import FINAL_MESSAGES, QueryFormat

log = logging.getLogger("ksqlpy.server")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

#: Re-check a query this often even without a listener call: a lost wake-up costs a delay, not
#: a hung response.
RECHECK_SECONDS = 2.0


class QueryLike(Protocol):
    """The part of ``ksqlpy.runtime.streaming.StreamingQuery`` the server streams from."""

    query_id: str
    columns: Any
    key_columns: tuple[str, ...]
    header_columns: tuple[tuple[str, str | None], ...]
    is_pull: bool
    is_print: bool
    table_pull: bool
    done: bool
    end_reason: str | None
    error: Any

    def drain(self) -> list[Any]: ...

    def set_listener(self, callback: Callable[[], None]) -> None: ...

    def close(self) -> None: ...


class _Waker:
    """Sets, on one event loop, the wake events of feeds signalled from engine threads, with one
    wake-up of the loop for every feed signalled before it runs. A hub hands a batch to each of
    its queries in turn: a wake-up each (a write to the loop's self-pipe) let the loop take the
    GIL from the hub after the first query and stream it while the others waited."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._due: list[asyncio.Event] = []

    def signal(self, event: asyncio.Event) -> None:
        """Set ``event`` on the loop soon (any thread)."""
        with self._lock:
            self._due.append(event)
            if len(self._due) > 1:
                return  # a wake-up is on its way and sets this one too
        try:
            self._loop.call_soon_threadsafe(self._run)
        except RuntimeError:
            pass  # the loop is closed: the server is shutting down, nobody is waiting

    def _run(self) -> None:
        with self._lock:
            due, self._due = self._due, []
        for event in due:
            event.set()


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waker] = weakref.WeakKeyDictionary()
_wakers_lock = threading.Lock()


def _waker(loop: asyncio.AbstractEventLoop) -> _Waker:
    with _wakers_lock:
        waker = _wakers.get(loop)
        if waker is None:
            waker = _wakers[loop] = _Waker(loop)
        return waker


class QueryFeed:
    """Row batches of a running query, awaited on the event loop."""

    def __init__(self, query: QueryLike, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.query = query
        self._loop = loop or asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._waker = _waker(self._loop)
        self._stopped = False
        query.set_listener(self._on_engine_event)

    def _on_engine_event(self) -> None:
        # Called on an engine thread.
        self._waker.signal(self._wake)

    def stop(self) -> None:
        """Stop iterating (client went away); safe to call from the event loop only."""
        self._stopped = True
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return self._stopped

    async def batches(self) -> AsyncIterator[list[Any]]:
        """Yield non-empty row batches until the query is done or :meth:`stop` is called."""
        while not self._stopped:
            self._wake.clear()
            finished = self.query.done  # read before drain(): then drain() returns the rest
            rows = self.query.drain()
            if rows:
                yield rows
            # Done again after draining: a query whose rows were all there from the start (a
            # pull) reads as not done until drained and never signals again, and its one
            # listener call may have been spent before the clear() above. Done means ended
            # with nothing buffered, so no row can come after this read.
            if finished or self._stopped or self.query.done:
                return
            # A timer rather than asyncio.wait_for, which wraps each wait in a task of its own:
            # with a hundred push queries that was some 4% of the server's CPU.
            recheck = self._loop.call_later(RECHECK_SECONDS, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                recheck.cancel()


#: Rows encoded lately, by the row's identity: (the row, kept alive so its id is not reused
#: while it is here; the id of the format's class; its encoding). Two generations: when the newer
#: is full it becomes the older and the older is dropped. The class goes in by id: a tuple of a
#: row, an int and bytes holds nothing the garbage collector follows, so it stops tracking it,
#: and thirty thousand cached rows do not ride into the oldest generation to set off full
#: collections. (Evicting a dict's oldest key one at a time makes ``next(iter(d))`` walk the
#: dead slots at its front: it cost more than encoding.)
_encoded: dict[int, tuple[Any, int, bytes | None]] = {}
_encoded_before: dict[int, tuple[Any, int, bytes | None]] = {}
#: Rows remembered in a generation: enough for a batch to reach every client of its push query.
ENCODED_ROWS = 16_384


def encode(fmt: QueryFormat, row: Any) -> bytes | None:
    """``row`` framed in ``fmt``. Push queries of one plan share their rows (the same objects,
    see ``runtime/fanout.py``), so a row is encoded once per format, not once per client. The
    event loop is the only caller, so the cache needs no lock."""
    global _encoded, _encoded_before
    kind = id(type(fmt))
    key = id(row)
    seen = _encoded.get(key)
    if seen is None:
        seen = _encoded_before.get(key)
    if seen is not None and seen[0] is row and seen[1] == kind:
        return seen[2]
    chunk = fmt.row(row.values, row.tombstone)
    if len(_encoded) >= ENCODED_ROWS:
        _encoded_before, _encoded = _encoded, {}
    _encoded[key] = (row, kind, chunk)
    return chunk


#: Batches joined lately, by their first row's identity, length and the format's class id: (the
#: rows, their lines joined). The push queries of one plan mostly drain the same batches, so
#: the second to tenth client of a batch takes its body whole instead of looking up each row.
_joined: dict[tuple[int, int, int], tuple[list[Any], bytes]] = {}
#: Batches remembered at most (then forgotten all at once): a batch reaches all its clients
#: within a few of the hub's deliveries.
JOINED_BATCHES = 256


def encode_batch(fmt: QueryFormat, rows: list[Any]) -> bytes:
    """``rows`` (not empty) framed in a line-framed ``fmt`` and joined, as :func:`encode` per
    row. A batch is taken from the cache only when it holds the very same row objects."""
    key = (id(rows[0]), len(rows), id(type(fmt)))
    seen = _joined.get(key)
    if seen is not None and all(map(operator.is_, seen[0], rows)):
        return seen[1]
    body = b"".join(c for c in [encode(fmt, row) for row in rows] if c)
    if len(_joined) >= JOINED_BATCHES:
        _joined.clear()
    _joined[key] = (rows, body)
    return body


async def watch_disconnect(receive: Receive, feed: QueryFeed) -> None:
    """Stop ``feed`` when the client disconnects (request body already fully read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            feed.stop()
            return


async def send_chunk(send: Send, chunk: bytes | None) -> None:
    if chunk:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def stream_query(
    query: QueryLike, fmt: QueryFormat, send: Send, receive: Receive, *, headers: list[tuple[bytes, bytes]]
) -> None:
    """Write ``query`` as a 200 response in ``fmt`` until it ends or the client leaves."""
    if query.table_pull and not query.is_print:
        rows = query.drain()
        if query.done:
            # A pull query over a table has its rows from the start: the whole response in one
            # body (each send is a trip through every middleware and a write to the socket).
            parts: list[bytes | None] = [fmt.header(query.query_id, query.columns, query.key_columns, query.header_columns)]
            parts += [fmt.row(row.values, row.tombstone) for row in rows]
            parts.append(_ending(query, fmt))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            body = b"".join(c for c in parts if c)
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        query = cast(QueryLike, _Prepended(query, rows))  # rows still to come: streamed after these
    feed = QueryFeed(query)
    watcher = asyncio.create_task(watch_disconnect(receive, feed))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if not query.is_print:
            await send_chunk(send, fmt.header(query.query_id, query.columns, query.key_columns, query.header_columns))
        async for rows in feed.batches():
            chunks: list[bytes | None]
            if fmt.line_framed and not query.is_print and not query.is_pull:
                # One send for the batch: a send costs a trip through every middleware, and
                # the transport still frames each line (row) on its own.
                await send_chunk(send, encode_batch(fmt, rows))
                continue
            if query.is_print:
                chunks = [fmt.text_line(str(row.values[0])) for row in rows]
            elif query.is_pull:
                chunks = [fmt.row(row.values, row.tombstone) for row in rows]  # this client's own rows
            else:
                chunks = [encode(fmt, row) for row in rows]
            if fmt.line_framed:
                # One send for the batch: a send costs a trip through every middleware, and
                # the transport still frames each line (row) on its own.
                await send_chunk(send, b"".join(c for c in chunks if c))
            else:
                for chunk in chunks:
                    await send_chunk(send, chunk)
        if feed.stopped:
            return  # client gone: nothing more can be written
        await send_chunk(send, _ending(query, fmt))
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()


class _Prepended:
    """``query`` with ``rows`` already drained from it handed out again first."""

    def __init__(self, query: QueryLike, rows: list[Any]) -> None:
        self._query = query
        self._rows = rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._query, name)

    @property
    def done(self) -> bool:
        return not self._rows and bool(self._query.done)

    def drain(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows + self._query.drain()


def _ending(query: QueryLike, fmt: QueryFormat) -> bytes | None:
    if query.is_print:
        return None
    if query.error is not None or query.end_reason == "ERROR":
        error = query.error if query.error is not None else RuntimeError("query failed")
        if not isinstance(error, KsqlpyError):
            log.error("Query %s failed", query.query_id, exc_info=error)
        return fmt.error(generic_error(INTERNAL, message_of(error)))
    if query.table_pull:
        return fmt.end(None)  # pull queries over tables end without a final message
    return fmt.end(FINAL_MESSAGES.get(query.end_reason or "COMPLETED", "Query Completed"))
