"""HTTP transport details ksqlDB clients depend on, fixed below the ASGI application.

The server runs on hypercorn, which speaks HTTP/1.1 and cleartext HTTP/2 (prior knowledge and
``Upgrade: h2c``) on one port, as ksqlDB's Vert.x server does. Three client expectations need
help:

* **Reason phrases.** hypercorn hands h11 responses without a reason, so status lines read
  ``HTTP/1.1 200 ``; the ``hyper`` parser of the ``ksql`` PyPI client crashes on that.
  :class:`ReasonPhraseH11Protocol` fills in the standard phrase (``200 OK``).
* **One DATA frame per row.** hypercorn's HTTP/2 stream buffer coalesces body chunks written
  in quick succession into one DATA frame; the npm ``ksqldb-client`` JSON-parses each frame on
  its own. :class:`FramePerSendH2Protocol` writes each ASGI ``send`` as its own frame(s), and
  each line of a delimited-format response as its own frame, so a batch of rows can be one
  ``send`` and still reach the client a row a frame.
* **Absolute-form request targets** (``POST http://host:8088/query HTTP/1.1``, sent by
  ``hyper``): :class:`AbsoluteTargetMiddleware` rewrites the ASGI path to its path part so the
  router matches it.
* **``Upgrade: h2c`` on a request with a body.** ``hyper`` (the ``ksql`` PyPI client) opens
  every connection with an HTTP/1.1 request offering the upgrade, its body included; hypercorn
  only upgrades body-less requests, so ``/inserts-stream`` (HTTP/2 only) answered 40004.
  :class:`ReasonPhraseH11Protocol` reads such a body in HTTP/1.1, answers ``101 Switching
  Protocols`` and hands the whole request to HTTP/2 as stream 1, as RFC 7540 section 3.2 has it.
* **Request data after the response** (HTTP/2): :class:`FramePerSendH2Protocol` drops the rest
  of a request body whose stream already answered, where hypercorn would fail the connection.
* **A bad ``HTTP2-Settings`` header** on an ``h2c`` upgrade: hypercorn answered 101 and then
  failed decoding it, leaving the client with a dead connection. The header is checked first,
  and a bad one gets ``400`` with ksqlDB's error body, in HTTP/1.1, and the connection closed.

:func:`install` swaps the two protocol classes into hypercorn's protocol wrapper; it is
idempotent and only affects hypercorn servers in this process.
"""

from __future__ import annotations

import asyncio
import bisect
import http
import itertools
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11
import hypercorn.protocol as hypercorn_protocol
import orjson
from hypercorn.events import Closed, RawData
from hypercorn.protocol.events import Body, EndBody, Response, StreamClosed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H2CProtocolRequiredError, H11Protocol
from hypercorn.typing import H11SendableEvent

from ksqlpy.server.errors import BAD_REQUEST, generic_error

#: The delimited format's media type: its lines are rows, each sent as a DATA frame of its own.
DELIMITED_MEDIA = b"application/vnd.ksqlapi.delimited.v1"

ASGIApp = Any  # (scope, receive, send) -> Awaitable[None]; typed loosely as ASGI has no stdlib type


def reason_phrase(status_code: int) -> bytes:
    """The standard reason phrase for a status code (``b"OK"``), or ``b"Unknown"``."""
    try:
        return http.HTTPStatus(status_code).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


def _header(request: h11.Request, name: bytes) -> bytes | None:
    for key, value in request.headers:
        if key.lower() == name:
            return bytes(value)
    return None


def settings_problem(settings: bytes | None) -> str | None:
    """Why an ``HTTP2-Settings`` header value cannot start an HTTP/2 connection, or ``None``."""
    if settings is None:
        return None  # no header: hypercorn upgrades with default settings, as it always did
    try:
        h2.connection.H2Connection(h2.config.H2Configuration(client_side=False)).initiate_upgrade_connection(
            settings
        )
    except Exception as e:  # noqa: BLE001 - base64, length and value errors all mean "bad header"
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return None


class UpgradeHeaders(list[tuple[bytes, bytes]]):
    """Stream 1's request headers after an ``h2c`` upgrade, carrying the request body read in
    HTTP/1.1 (hypercorn's protocol switch passes only headers and settings along)."""

    body: bytes = b""


class _UpgradeBody:
    """Stands in for the HTTP stream while the body of an ``h2c`` upgrade request arrives."""

    def __init__(self, protocol: ReasonPhraseH11Protocol, request: h11.Request) -> None:
        self.protocol = protocol
        self.request = request
        self.chunks: list[bytes] = []
        self.idle = False

    async def handle(self, event: StreamEvent) -> None:
        match event:
            case Body(data=data):
                self.chunks.append(bytes(data))
            case EndBody():
                await self.protocol.switch_to_h2c(self.request, b"".join(self.chunks))
            case StreamClosed():
                pass


class _Discard:
    """Stands in for the HTTP stream of a request already answered by the protocol itself."""

    idle = True

    async def handle(self, event: StreamEvent) -> None:
        pass


class ReasonPhraseH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, writing status lines with a reason phrase, upgrading
    requests with a body to ``h2c`` and refusing upgrades with bad settings."""

    _upgrading: h11.Request | None = None
    _refused: tuple[h11.Request, str] | None = None
    #: the head of a response not yet written (see :meth:`_send_h11_event`)
    _held: bytes = b""

    async def _check_protocol(self, event: h11.Request) -> None:
        offers_h2c = (_header(event, b"upgrade") or b"").strip().lower() == b"h2c"
        if offers_h2c:
            problem = settings_problem(_header(event, b"http2-settings"))
            if problem is not None:
                self._refused = (event, problem)  # answered in _create_stream
                return
        has_body = _header(event, b"content-length") not in (None, b"0") or (
            _header(event, b"transfer-encoding") is not None
        )
        if offers_h2c and has_body:
            self._upgrading = event  # the switch happens once the body is in (switch_to_h2c)
            return
        await super()._check_protocol(event)

    async def _create_stream(self, request: h11.Request) -> None:
        if request is self._upgrading:
            self.stream = _UpgradeBody(self, request)  # type: ignore[assignment]
            return
        if self._refused is not None and request is self._refused[0]:
            await self._refuse_upgrade(self._refused[1])
            self.stream = _Discard()  # type: ignore[assignment]
            return
        await super()._create_stream(request)

    async def _refuse_upgrade(self, problem: str) -> None:
        body = orjson.dumps(generic_error(BAD_REQUEST, f"Invalid HTTP2-Settings header: {problem}"))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await self._send_h11_event(
            h11.Response(
                status_code=BAD_REQUEST.status, headers=headers + self.config.response_headers("h11")
            )
        )
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())
        await self.send(Closed())

    async def switch_to_h2c(self, request: h11.Request, body: bytes) -> None:
        """Answer 101 and continue in HTTP/2 with ``request`` (and ``body``) as stream 1."""
        await self._send_h11_event(
            h11.InformationalResponse(
                status_code=101,
                headers=self.config.response_headers("h11")
                + [(b"connection", b"upgrade"), (b"upgrade", b"h2c")],
            )
        )
        switch = H2CProtocolRequiredError(self.connection.trailing_data[0], request)
        headers = UpgradeHeaders(switch.headers)
        headers.body = body
        switch.headers = headers
        raise switch

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        match event:
            case h11.Response(reason=b"") | h11.InformationalResponse(reason=b""):
                event = type(event)(
                    status_code=event.status_code,
                    headers=list(event.headers.raw_items()),
                    reason=reason_phrase(event.status_code),
                    http_version=event.http_version,
                )
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        if self._held:
            data, self._held = self._held + data, b""
        if isinstance(event, h11.Response) and data:
            # The head of a response goes out with its body's first bytes, which an endpoint
            # mostly sends straight after (a pull query's whole answer): one socket write, not
            # two. Held until the loop has run what is ready now at most.
            self._held = data
            asyncio.get_running_loop().call_soon(self._release_held)
            return
        if data:
            await self.send(RawData(data=data))

    def _release_held(self) -> None:
        if self._held:
            self.task_group.spawn(self._send_held)

    async def _send_held(self) -> None:
        # Taken now, not when scheduled: a send since then took it along, in order.
        data, self._held = self._held, b""
        if data:
            await self.send(RawData(data=data))


class FramePerSendH2Protocol(H2Protocol):
    """hypercorn's HTTP/2 protocol, sending each response body chunk as its own DATA frame.

    Waiting for the stream buffer to drain also gives per-stream back-pressure: a slow reader
    holds up its own query's writer, not the connection.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: streams answering in the delimited format: each line (row) is a DATA frame of its own
        self._line_framed: set[int] = set()
        #: set when a window opens or a stream closes: lines waiting for flow control retry
        self._window_opened = asyncio.Event()
        #: a write of what h2 has queued is due once the loop ran what is ready
        self._flush_scheduled = False

    async def initiate(
        self, headers: list[tuple[bytes, bytes]] | None = None, settings: bytes | None = None
    ) -> None:
        if not isinstance(headers, UpgradeHeaders) or settings is None:
            await super().initiate(headers, settings)
            return
        # hypercorn's own upgrade path, with the request body delivered before its end.
        self.connection.initiate_upgrade_connection(settings)
        await self._flush()
        await self._create_stream(h2.events.RequestReceived(stream_id=1, headers=list(headers)))
        stream = self.streams[1]
        if headers.body:
            await stream.handle(Body(stream_id=1, data=headers.body))
        await stream.handle(EndBody(stream_id=1))
        self.task_group.spawn(self.send_task)

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        # A response may end its stream before the request body is all in (a 413 for a body
        # over the limit, an early error); hypercorn then fails the whole connection on the
        # next DATA frame of that stream. Such data is dropped and its flow-control credit
        # returned, so the client can finish sending and read the answer already there.
        # One event at a time: a stream is only known once its RequestReceived is handled.
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                await super()._handle_events([event])
        await self._flush()

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, Response) and _delimited(event.headers):
            self._line_framed.add(event.stream_id)
        elif isinstance(event, StreamClosed):
            self._line_framed.discard(event.stream_id)
        if isinstance(event, Response):
            # The HEADERS frame goes out with the body's first DATA frames, which an endpoint
            # mostly sends straight after (a pull query's whole answer): one socket write, not
            # two. h2 queues frames in order, so the write only waits for the loop to run what
            # is ready now, whoever makes it.
            try:
                self.connection.send_headers(
                    event.stream_id,
                    [
                        (b":status", b"%d" % event.status_code),
                        *event.headers,
                        *self.config.response_headers("h2"),
                    ],
                )
            except (KeyError, h2.exceptions.ProtocolError):
                return  # the stream is gone, as hypercorn has it
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_queued)
            return
        if not isinstance(event, Body):
            await super().stream_send(event)
            return
        frames = [event.data]
        sent = False
        i = 0
        if event.stream_id in self._line_framed:
            framing = _framing_of(event.data)
            i = self._send_framed(event.stream_id, framing)
            sent = i > 0
            frames = framing.lines
        while i < len(frames):
            taken = self._send_now(event.stream_id, frames, i)
            if taken:
                sent = True
                i += taken
                continue
            if sent:
                await self._flush()
                sent = False
            if self._window_bound(event.stream_id, frames[i]):
                # hypercorn's stream buffer would cut the line at the window's edge, and a
                # client reading a row a frame would get two halves: wait for the window.
                self._window_opened.clear()
                await self._window_opened.wait()
                continue
            await super().stream_send(Body(stream_id=event.stream_id, data=frames[i]))
            i += 1
            buffer = self.stream_buffers.get(event.stream_id)
            if buffer is not None:
                await buffer.drain()
        if sent:
            await self._flush_with_peers()

    def _flush_queued(self) -> None:
        self._flush_scheduled = False
        if self.connection._data_to_send:  # not written along with later frames meanwhile
            self.task_group.spawn(self._flush)

    def _window_bound(self, stream_id: int, frame: bytes) -> bool:
        """Whether ``frame`` (that :meth:`_send_now` did not write) waits for flow control
        only: its stream is open with nothing queued and it fits a frame."""
        buffer = self.stream_buffers.get(stream_id)
        return (
            not self.closed
            and buffer is not None
            and not buffer.buffer
            and stream_id in self._line_framed
            and 0 < len(frame) <= self.connection.max_outbound_frame_size
        )

    async def _window_updated(self, stream_id: int | None) -> None:
        await super()._window_updated(stream_id)
        self._window_opened.set()

    async def _close_stream(self, stream_id: int) -> None:
        await super()._close_stream(stream_id)
        self._window_opened.set()

    async def _flush_with_peers(self) -> None:
        """Write what h2 has to send once the other tasks ready now ran: the push queries of one
        connection are woken together by the same batch, and each one's frames would otherwise
        be a socket write of its own (a write costs more than framing a batch). The first task
        to get here writes them all; the others find nothing left. Back-pressure holds: each
        still waits for the socket to drain what it found. A connection with one stream (a
        pull query's) writes at once."""
        if len(self.streams) > 1:
            await asyncio.sleep(0)
        await self._flush()

    def _send_framed(self, stream_id: int, framing: _Framing) -> int:
        """Write a line-framed body's lines as DATA frames of their own straight away, as many
        as flow control allows, when nothing of the stream is queued (see :meth:`_send_now`);
        how many lines were written (all of them when the stream is gone)."""
        lines = framing.lines
        buffer = self.stream_buffers.get(stream_id)
        if buffer is None or buffer.buffer or not framing.data:
            return 0
        connection = self.connection
        stream = (stream_id & 0x7FFFFFFF).to_bytes(4, "big")
        first = 0
        try:
            while first < len(lines):
                room = min(
                    connection.local_flow_control_window(stream_id), connection.max_outbound_frame_size
                )
                # the lines up to ``end`` fit in one frame's room: h2 accounts for their bytes
                # (stream state, both windows) as one frame, replaced by the same bytes framed
                # per line, the frame headers joined around this stream's id
                end = bisect.bisect_right(framing.ends, framing.starts[first] + room, first)
                if end == first:
                    return first
                mark = len(connection._data_to_send)
                connection.send_data(stream_id, framing.data[framing.starts[first] : framing.ends[end - 1]])
                if end - first > 1:
                    out = connection._data_to_send
                    del out[mark:]
                    out += stream.join(framing.pieces(first, end))
                first = end
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            return len(lines)  # the stream is gone: as hypercorn does, drop what was sent to it
        return first

    def _send_now(self, stream_id: int, frames: list[bytes], first: int) -> int:
        """Write ``frames[first:]`` (as many as flow control and the frame size allow) as DATA
        frames of their own straight away when nothing of their stream is queued; how many were
        written (0: none, the first does not fit or the stream has data queued).

        Going through hypercorn's stream buffer costs a wake-up of its send task and one of the
        writer per chunk, the most of a push query's cost per row. Order holds: the buffer is
        empty, and hypercorn's send task takes data from it and hands it to h2 with no await in
        between, so nothing taken earlier can still be on its way.

        h2 spends ~10 us on each ``send_data`` (state machine, frame objects), more than a row
        costs everywhere else, so frames that fit in one frame's room go to h2 as one
        ``send_data`` (which does the stream's and connection's state and flow-control
        accounting for all their bytes) and the frame it serialized is replaced by the same
        bytes cut into one unpadded DATA frame per piece: what separate calls would write."""
        buffer = self.stream_buffers.get(stream_id)
        if buffer is None or buffer.buffer or not frames[first]:
            return 0
        connection = self.connection
        try:
            room = min(connection.local_flow_control_window(stream_id), connection.max_outbound_frame_size)
            size = len(frames[first])
            if size > room:
                return 0
            end = first + 1
            while end < len(frames) and frames[end] and size + len(frames[end]) <= room:
                size += len(frames[end])
                end += 1
            pieces = frames[first:end]
            if len(pieces) == 1:
                connection.send_data(stream_id, bytes(pieces[0]))
                return 1
            out = connection._data_to_send
            mark = len(out)
            connection.send_data(stream_id, b"".join(pieces))
            out = connection._data_to_send
            del out[mark:]
            tail = b"\x00\x00" + (stream_id & 0x7FFFFFFF).to_bytes(4, "big")  # type DATA, no flags
            for piece in pieces:
                out += len(piece).to_bytes(3, "big") + tail + piece
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            return len(frames) - first  # the stream is gone: as hypercorn does, drop what was sent to it
        return end - first


def _delimited(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"content-type" and value.startswith(DELIMITED_MEDIA) for name, value in headers
    )


class _Framing:
    """A line-framed body cut into DATA frames for any stream. The frames of lines ``a`` to
    ``b - 1`` are :meth:`pieces` joined with the stream's 4-byte id: each line's frame header,
    less the stream id, ends the piece before it. Push queries of one plan share their batch
    bodies (``push.py``), so a body is cut once, not once per client."""

    __slots__ = ("data", "ends", "heads", "inner", "lines", "starts")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.lines = _lines(data)
        #: per line: its frame header up to the stream id (length, type DATA, no flags)
        self.heads = [len(line).to_bytes(3, "big") + b"\x00\x00" for line in self.lines]
        #: per line but the last: the line, then the next line's header
        self.inner = [line + head for line, head in zip(self.lines, self.heads[1:])]
        self.ends = list(itertools.accumulate(len(line) for line in self.lines))
        self.starts = [0, *self.ends[:-1]]

    def pieces(self, first: int, end: int) -> list[bytes]:
        return [self.heads[first], *self.inner[first : end - 1], self.lines[end - 1]]


#: Bodies cut lately, by identity (the body is kept, so its id is not reused while here).
_framings: dict[int, _Framing] = {}
#: Bodies remembered at most (then forgotten all at once): a batch reaches all its clients at once.
FRAMED_BODIES = 64


def _framing_of(data: bytes) -> _Framing:
    found = _framings.get(id(data))
    if found is not None and found.data is data:
        return found
    framing = _Framing(data)
    if len(_framings) >= FRAMED_BODIES:
        _framings.clear()
    _framings[id(data)] = framing
    return framing


def _lines(data: bytes) -> list[bytes]:
    """``data`` cut after each line end (a last piece without one stays whole)."""
    if data.count(b"\n") <= 1:
        return [data]
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def install() -> None:
    """Make hypercorn's protocol wrapper build the classes above (idempotent)."""
    hypercorn_protocol.H11Protocol = ReasonPhraseH11Protocol  # type: ignore[attr-defined]
    hypercorn_protocol.H2Protocol = FramePerSendH2Protocol  # type: ignore[attr-defined]


class AbsoluteTargetMiddleware:
    """Route ``http://host:port/path?query`` request targets by their path, as Vert.x does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope.get("path", "")
            if path.startswith(("http://", "https://")):
                raw: bytes = scope.get("raw_path") or path.encode("latin-1")
                scope = dict(scope)
                scope["path"] = urlsplit(path).path or "/"
                scope["raw_path"] = urlsplit(raw.decode("latin-1")).path.encode("latin-1") or b"/"
        await self.app(scope, receive, send)
