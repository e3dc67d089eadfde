"""A minimal HTTP/2 cleartext (prior knowledge) client for the benchmarks, on asyncio streams.

httpx (through h2) spends tens of microseconds of Python on each DATA frame it receives, and a
ksqlpy server writes each row of a push query, and each ack of ``/inserts-stream``, as a DATA
frame of its own (as ksqlDB's clients expect): a benchmark client built on it measures itself
before the server. This one parses frame headers by hand, reads the socket in large chunks,
hands a stream's bytes out as they came (the caller splits lines and decodes them, with orjson,
in bulk), and opens flow-control windows of a gigabyte so that it never waits on its own
WINDOW_UPDATEs. It speaks just enough HTTP/2 for that: HPACK headers (the ``hpack`` package h2
uses), DATA both ways with the server's flow control honoured on requests, SETTINGS, PING,
WINDOW_UPDATE, RST_STREAM and GOAWAY; no priorities, no push promises, no TLS.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
#: The receive window this client opens for the connection and each stream, and re-opens when
#: half of it is used.
WINDOW = 1 << 30
READ_BYTES = 1 << 20


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload


class H2Error(Exception):
    pass


class Stream:
    """One request's response: its status, then its body's bytes as they arrive."""

    def __init__(self, conn: H2Client, stream_id: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._data = bytearray()
        self._event = asyncio.Event()
        self.ended = False
        self.error: BaseException | None = None
        self.send_window = conn.peer_initial_window
        self.unacked = 0

    def _feed(self, data: bytes) -> None:
        self._data += data
        self._event.set()

    def _end(self, error: BaseException | None = None) -> None:
        self.ended = True
        self.error = self.error or error
        if not self.status.done():
            self.status.set_exception(error or H2Error("stream ended without headers"))
        self._event.set()
        self.conn._window_event.set()

    async def read(self) -> bytes:
        """The body bytes received since the last call (waiting for some); b"" at its end."""
        while not self._data:
            if self.ended:
                if self.error is not None:
                    raise self.error
                return b""
            self._event.clear()
            await self._event.wait()
        data = bytes(self._data)
        self._data.clear()
        return data

    async def send(self, data: bytes, end: bool = False) -> None:
        await self.conn._send_data(self, data, end)


class H2Client:
    """One HTTP/2 connection; requests are :class:`Stream`\\ s on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authority: str) -> None:
        self.reader = reader
        self.writer = writer
        self.authority = authority
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.peer_initial_window = 65_535
        self.peer_max_frame = 16_384
        self.send_window = 65_535
        self.unacked = 0
        self._window_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.closed: BaseException | None = None

    @classmethod
    async def connect(cls, url: str) -> H2Client:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port, limit=READ_BYTES * 4)
        client = cls(reader, writer, f"{host}:{port}")
        settings = (4).to_bytes(2, "big") + WINDOW.to_bytes(4, "big")  # SETTINGS_INITIAL_WINDOW_SIZE
        writer.write(
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, (WINDOW - 65_535).to_bytes(4, "big"))
        )
        client._task = asyncio.create_task(client._read_loop())
        return client

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass

    async def request(
        self, method: str, path: str, body: bytes | None = None, *, end: bool = True,
        content_type: str = "application/json", accept: str = "*/*",
    ) -> Stream:
        """Start a request; with ``end`` its body is ``body`` (sent now), else more follows."""
        if self.closed is not None:
            raise self.closed
        stream_id = self.next_id
        self.next_id += 2
        stream = self.streams[stream_id] = Stream(self, stream_id)
        block = self.encoder.encode(
            [
                (":method", method),
                (":scheme", "http"),
                (":authority", self.authority),
                (":path", path),
                ("content-type", content_type),
                ("accept", accept),
            ]
        )
        no_body = end and not body
        self.writer.write(frame(HEADERS, END_HEADERS | (END_STREAM if no_body else 0), stream_id, block))
        if body or (end and not no_body):
            await self._send_data(stream, body or b"", end)
        return stream

    async def _send_data(self, stream: Stream, data: bytes, end: bool) -> None:
        view = memoryview(data)
        while True:
            if stream.ended:
                raise stream.error or H2Error("stream closed")
            if self.closed is not None:
                raise self.closed
            room = min(len(view), self.peer_max_frame, self.send_window, stream.send_window)
            if room <= 0 and len(view):
                self._window_event.clear()
                await self._window_event.wait()
                continue
            piece, view = view[:room], view[room:]
            last = end and not len(view)
            self.writer.write(frame(DATA, END_STREAM if last else 0, stream.id, bytes(piece)))
            self.send_window -= room
            stream.send_window -= room
            if not len(view):
                break
        await self.writer.drain()

    async def _read_loop(self) -> None:
        buf = b""
        headers_block: tuple[int, int, bytearray] | None = None  # stream, flags, block so far
        try:
            while True:
                chunk = await self.reader.read(READ_BYTES)
                if not chunk:
                    raise H2Error("connection closed by the server")
                buf = buf + chunk if buf else chunk
                pos, size = 0, len(buf)
                out: list[bytes] = []
                touched: set[Stream] = set()
                while size - pos >= 9:
                    length = int.from_bytes(buf[pos : pos + 3], "big")
                    if size - pos - 9 < length:
                        break
                    kind, flags = buf[pos + 3], buf[pos + 4]
                    sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
                    payload = buf[pos + 9 : pos + 9 + length]
                    pos += 9 + length
                    if kind == DATA:
                        stream = self.streams.get(sid)
                        self.unacked += length
                        if flags & PADDED:
                            payload = payload[1 : len(payload) - payload[0]]
                        if stream is not None:
                            stream._data += payload
                            touched.add(stream)
                            stream.unacked += length
                            if stream.unacked > WINDOW // 2:
                                out.append(frame(WINDOW_UPDATE, 0, sid, stream.unacked.to_bytes(4, "big")))
                                stream.unacked = 0
                            if flags & END_STREAM:
                                stream._end()
                                del self.streams[sid]
                    elif kind in (HEADERS, CONTINUATION):
                        if kind == HEADERS:
                            start = 0
                            pad = 0
                            if flags & PADDED:
                                pad, start = payload[0], 1
                            if flags & PRIORITY:
                                start += 5
                            headers_block = (sid, flags, bytearray(payload[start : len(payload) - pad]))
                        elif headers_block is not None:
                            headers_block[2].extend(payload)
                            flags = headers_block[1] | (flags & END_HEADERS)
                        if flags & END_HEADERS and headers_block is not None:
                            hsid, hflags, block = headers_block
                            headers_block = None
                            decoded = self.decoder.decode(bytes(block))
                            stream = self.streams.get(hsid)
                            if stream is not None:
                                status = next((int(v) for k, v in decoded if k == ":status"), 0)
                                if not stream.status.done():
                                    stream.status.set_result(status)
                                if hflags & END_STREAM:
                                    touched.add(stream)
                                    stream._end()
                                    del self.streams[hsid]
                    elif kind == SETTINGS:
                        if not flags & ACK:
                            for i in range(0, len(payload) - 5, 6):
                                key = int.from_bytes(payload[i : i + 2], "big")
                                value = int.from_bytes(payload[i + 2 : i + 6], "big")
                                if key == 4:
                                    delta = value - self.peer_initial_window
                                    self.peer_initial_window = value
                                    for s in self.streams.values():
                                        s.send_window += delta
                                    self._window_event.set()
                                elif key == 5:
                                    self.peer_max_frame = value
                            out.append(frame(SETTINGS, ACK, 0))
                    elif kind == PING:
                        if not flags & ACK:
                            out.append(frame(PING, ACK, 0, payload))
                    elif kind == WINDOW_UPDATE:
                        increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                        if sid == 0:
                            self.send_window += increment
                        elif (stream := self.streams.get(sid)) is not None:
                            stream.send_window += increment
                        self._window_event.set()
                    elif kind == RST_STREAM:
                        stream = self.streams.pop(sid, None)
                        if stream is not None:
                            code = int.from_bytes(payload[:4], "big")
                            stream._end(H2Error(f"stream {sid} reset by the server (error code {code})"))
                    elif kind == GOAWAY:
                        code = int.from_bytes(payload[4:8], "big")
                        if code:
                            raise H2Error(f"GOAWAY from the server (error code {code}): {payload[8:]!r}")
                buf = buf[pos:]
                if self.unacked > WINDOW // 2:
                    out.append(frame(WINDOW_UPDATE, 0, 0, self.unacked.to_bytes(4, "big")))
                    self.unacked = 0
                if out:
                    self.writer.write(b"".join(out))
                for stream in touched:
                    stream._event.set()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - every stream fails with the connection
            self.closed = e if isinstance(e, H2Error) else H2Error(f"{type(e).__name__}: {e}")
            for stream in list(self.streams.values()):
                stream._end(self.closed)
            self.streams.clear()
            self._window_event.set()


def split_lines(pending: bytes, data: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines of ``pending + data`` (without their ends) and the rest."""
    data = pending + data if pending else data
    end = data.rfind(b"\n")
    if end < 0:
        return [], data
    return data[:end].split(b"\n"), data[end + 1 :]
