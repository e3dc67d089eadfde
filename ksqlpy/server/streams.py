"""The streaming endpoints as raw ASGI apps: ``/query``, ``/query-stream``, ``/inserts-stream``.

They read and write the ASGI channel themselves: the request body is read from raw bytes
whatever the ``Content-Type``, each row is its own ``send`` (its own HTTP/2 DATA frame), and
``/inserts-stream`` acknowledges rows while the request is still arriving, which a
request-then-response framework cannot do.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING, Any

import anyio

from ksqlpy.runtime import results as r
from ksqlpy.server import wire
from ksqlpy.server.errors import (
    BAD_REQUEST,
    BAD_STATEMENT,
    HTTP2_ONLY,
    INTERNAL,
    RestError,
    code_of,
    describe_failure,
    message_of,
)
from ksqlpy.server.formats import DelimitedFormat, LegacyFormat, QueryFormat, query_format
from ksqlpy.server.limits import (
    ClientGone,
    LineReader,
    PayloadTooLarge,
    RecordTooLarge,
    check_statement,
    read_body,
)
from ksqlpy.server.push import Receive, Send, stream_query
from ksqlpy.server.wire import dumps

if TYPE_CHECKING:
    from ksqlpy.server.app import KsqlServer

Scope = dict[str, Any]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes | None = b"application/json",
    *,
    close: bool = False,
) -> None:
    """A whole response; ``close`` ends an HTTP/1.1 connection after it (the request body was
    left unread, so the connection cannot carry another request; HTTP/2 ends just the stream)."""
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def not_found(send: Send) -> None:
    await respond(send, 404, b"Not Found", b"text/plain; charset=utf-8")


async def respond_error(
    send: Send, error: BaseException, *, context: str, statement_text: str, close: bool = False
) -> None:
    """An error before any row: ``statement_error`` for statements, ``generic_error`` otherwise."""
    statement = not isinstance(error, RestError) and code_of(error) is not INTERNAL
    code, body = describe_failure(
        error, context=context, statement_text=statement_text, entities=[] if statement else None
    )
    await respond(send, code.status, dumps(body), close=close)


class QueryEndpoint:
    """``POST /query`` (``legacy``: ``ksql``/``streamsProperties`` body, JSON-array answer) and
    ``POST /query-stream`` (``sql``/``properties`` body, delimited answer by default)."""

    def __init__(self, server: KsqlServer, *, legacy: bool) -> None:
        self.server = server
        self.legacy = legacy
        self.produces = wire.PRODUCES["query" if legacy else "query-stream"]

    def _format(self, media: str) -> QueryFormat:
        if self.legacy:
            return DelimitedFormat() if media == wire.DELIMITED else LegacyFormat()
        return query_format(media)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        media = wire.negotiate(header(scope, b"accept"), self.produces)
        if media is None:
            await not_found(send)
            return
        text = ""
        try:
            config = self.server.config
            body = wire.parse_object(await read_body(receive, scope["headers"], config.max_request_bytes))
            if self.legacy:
                text = wire.optional_str(body, "ksql")
                props = wire.properties(body, "streamsProperties")
                # a pull query forwarded by another server of the cluster: which partitions to read
                request = wire.properties(body, "requestProperties")
                props.update({k: v for k, v in request.items() if k.startswith("request.ksql.")})
                seq = wire.command_sequence_number(body)
                if seq is not None:  # only a wait needs a worker thread; most requests carry none
                    await self.server.call(self.server.await_command, seq)
            else:
                text = wire.required_str(body, "sql")
                props = wire.properties(body, "properties")
            check_statement(text, config.max_statement_chars)
            variables = wire.properties(body, "sessionVariables")
            if self.server.authorizer is not None:  # without access control there is nothing to check
                await self.server.call(self.server.authorize, scope, text, variables)
            ticket = self.server.quotas.admit_query(text)
        except ClientGone:
            return
        except Exception as e:  # noqa: BLE001 - every failure becomes an error response
            context = f"{scope['path']} running {text[:200]!r}"
            close = isinstance(e, PayloadTooLarge) and scope.get("http_version") != "2"
            await respond_error(send, e, context=context, statement_text=text, close=close)
            return
        try:
            try:
                query = self.server.start_ready_query(text, props, variables)
                if query is None:
                    query = await self.server.call(
                        self.server.start_query, text, props, variables, header(scope, b"authorization")
                    )
            except Exception as e:  # noqa: BLE001 - every failure becomes an error response
                await respond_error(
                    send, e, context=f"{scope['path']} running {text[:200]!r}", statement_text=text
                )
                return
            await self._stream(query, media, scope, receive, send)
        finally:
            ticket.release()

    async def _stream(self, query: Any, media: str, scope: Scope, receive: Receive, send: Send) -> None:
        registered = False
        user = scope.get("ksqlpy.user")
        try:
            if query.is_print and not self.legacy and media != wire.DELIMITED:
                await respond(send, 406, b"Not Acceptable", b"text/plain; charset=utf-8")
                return
            if not query.is_pull:
                try:
                    self.server.register_push(query.query_id, user)
                except RestError as error:  # past the server's or the user's push-query limit
                    await respond(send, error.code.status, dumps(error.body()))
                    return
                registered = True
            fmt = self._format(media)
            content_type = fmt.media_type if not self.legacy or media == wire.DELIMITED else wire.KSQL_V1_JSON
            await stream_query(query, fmt, send, receive, headers=[(b"content-type", content_type.encode())])
        finally:
            if registered:
                self.server.unregister_push(query.query_id, user)
            if query.table_pull:
                query.close()  # rows answered from state, nothing running: no worker thread needed
            else:
                with anyio.CancelScope(shield=True):
                    await self.server.call(query.close)


#: ``pv`` or ```pv``` - anything else cannot name a stream.
_TARGET = re.compile(r"^(?:`(?P<quoted>(?:[^`]|``)+)`|(?P<plain>[A-Za-z_][A-Za-z0-9_@$]*))$")


def normalize_target(target: str) -> str | None:
    """Stored name of an ``/inserts-stream`` target: upper-case unless back-quoted."""
    m = _TARGET.match(target.strip())
    if m is None:
        return None
    if m["quoted"] is not None:
        return m["quoted"].replace("``", "`")
    return m["plain"].upper()


class InsertsEndpoint:
    """``POST /inserts-stream``: newline-delimited rows in, one ack per row out (HTTP/2 only)."""

    def __init__(self, server: KsqlServer) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        media = wire.negotiate(header(scope, b"accept"), wire.PRODUCES["inserts-stream"])
        if media is None:
            await not_found(send)
            return
        if scope.get("http_version") != "2":
            error = RestError(HTTP2_ONLY, "This endpoint is only available when using HTTP2")
            await respond(send, 400, dumps(error.body()))
            return
        lines = LineReader(receive, self.server.config.max_record_bytes)
        first: bytes | None = None
        try:
            first = await lines.next_line()
            args = wire.parse_object(first or b"")
            target = wire.required_str(args, "target")
            properties = wire.properties(args, "properties")
            name = await self.server.call(self.server.check_insert_target, target)
            await self.server.call(self.server.authorize_insert, scope, name)
        except ClientGone:
            return
        except Exception as e:  # noqa: BLE001
            code, body = describe_failure(e, context=f"/inserts-stream opening {first!r}")
            await lines.drain()
            await respond(send, code.status, dumps(body))
            return
        as_array = media == wire.JSON
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", media.encode())]}
        )
        seq = 0
        ok = 0  # rows of the last batch that went in: acked before ``acks`` (a failed row's)
        failed = False
        # The next rows are read while a batch goes into the store, so that rows arriving
        # meanwhile make one larger batch (one transaction) rather than many small ones.
        reading: asyncio.Task[tuple[list[bytes] | None, BaseException | None]] | None = None
        deferred: BaseException | None = None  # what ended the rows, once they are in
        batch: list[bytes] | None
        problem: BaseException | None
        try:
            while not failed:
                if deferred is not None:
                    batch, problem, deferred = None, deferred, None
                else:
                    if reading is None:
                        reading = asyncio.ensure_future(_read_lines(lines, None))
                    batch, problem = await reading
                    reading = None
                    if batch and problem is not None:
                        deferred, problem = problem, None
                if isinstance(problem, ClientGone):
                    return
                if problem is not None:  # RecordTooLarge: the rows before it were handed out
                    acks, failed = [insert_ack(seq, problem)], True
                elif batch is None:
                    break
                else:
                    try:
                        self.server.quotas.admit_insert(
                            scope.get("ksqlpy.user"), sum(len(line) for line in batch)
                        )
                    except RestError as e:  # the user's insert byte rate: this row fails, the stream ends
                        acks, failed = [insert_ack(seq, e)], True
                    else:
                        inserted = asyncio.Event()
                        if deferred is None:
                            reading = asyncio.ensure_future(_read_lines(lines, inserted))
                        try:
                            ok, row_error = await self.server.call(
                                self.server.insert_rows, name, batch, properties
                            )
                        finally:
                            inserted.set()
                        failed = row_error is not None
                        acks = [insert_ack(seq + ok, row_error)] if row_error is not None else []
                # One ack per row, as ksqlDB writes them, but the acks of one batch of rows go
                # out in one write: a send per ack cost more than the insert itself (on HTTP/2
                # each ack line is still a DATA frame of its own, see transport.py).
                chunk = bytearray()
                if ok:
                    chunk += _ok_acks(seq, ok, as_array)
                    seq += ok
                    ok = 0
                for ack in acks:
                    if as_array:
                        chunk += (b"[" if seq == 0 else b",") + dumps(ack)
                    else:
                        chunk += dumps(ack) + b"\n"
                    seq += 1
                if chunk:
                    await send({"type": "http.response.body", "more_body": True, "body": bytes(chunk)})
        finally:
            if reading is not None:
                # Stopped on a failed row: what is still arriving is drained (dropped) below.
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
        if failed:
            await lines.drain()
        tail = (b"]" if seq else b"[]") if as_array else b""
        await send({"type": "http.response.body", "body": tail, "more_body": False})


#: Rows gathered into one batch (one store transaction) at most.
MAX_BATCH_ROWS = 20_000


async def _read_lines(
    lines: LineReader, inserted: asyncio.Event | None
) -> tuple[list[bytes] | None, BaseException | None]:
    """The next rows of an inserts stream (waiting for one at least), and what stopped them (the
    client left, a row too long) or ``None``; ``None`` rows at the end of the body.

    With ``inserted`` (the previous batch is going into the store), rows keep being gathered
    until it is set: they go in next as one batch."""
    got: list[bytes] = []
    read: asyncio.Future[list[bytes] | None] | None = None
    try:
        while True:
            if got and (inserted is None or inserted.is_set() or len(got) >= MAX_BATCH_ROWS):
                return got, None
            read = asyncio.ensure_future(lines.available_lines())
            if got and inserted is not None:
                waiting = asyncio.ensure_future(inserted.wait())
                try:
                    await asyncio.wait({read, waiting}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiting.cancel()
                if not read.done():
                    # Safe to cancel: a message not yet taken stays in the queue, one taken is
                    # in the reader's buffer.
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await read
                    read = None
                    return got, None
            more = await read
            read = None
            if more is None:
                return got or None, None
            got += more
    except (ClientGone, RecordTooLarge) as e:
        return got or None, e
    finally:
        if read is not None and not read.done():
            read.cancel()


def _ok_acks(first: int, n: int, as_array: bool) -> bytes:
    """The acks of rows ``first`` to ``first + n - 1``, as ``dumps(insert_ack(seq, None))`` writes
    each, formatted directly: an ack built and encoded per row cost as much as its insert."""
    if as_array:
        head = b"[" if first == 0 else b","
        return head + b",".join(b'{"seq":%d,"status":"ok"}' % i for i in range(first, first + n))
    return b"".join(b'{"seq":%d,"status":"ok"}\n' % i for i in range(first, first + n))


def insert_ack(seq: int, error: BaseException | None) -> dict[str, Any]:
    if error is None:
        return {"seq": seq, "status": "ok"}
    code = BAD_REQUEST if code_of(error) is not INTERNAL else INTERNAL
    if isinstance(error, RestError) and error.code.status == 429:
        code = error.code
    return {
        "@type": "InsertError",
        "error_code": code.code,
        "message": message_of(error),
        "status": "error",
        "seq": seq,
    }


def target_problem(description: Any, target: str) -> str | None:
    """Why a DESCRIBEd source cannot take inserts, or ``None``."""
    if not isinstance(description, r.SourceDescription):
        return f"{target} does not exist."
    if description.kind is not r.SourceKind.STREAM:
        return f"Cannot insert into a table: {description.name}"
    if description.window_type is not None:
        return f"Cannot insert values into windowed stream: {description.name}"
    return None


def bad_target(message: str) -> RestError:
    return RestError(BAD_STATEMENT, message)
