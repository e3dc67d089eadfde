"""Request size limits, enforced while a request arrives rather than after it is in memory.

Three limits, each a server setting (see ``server/config.py``):

* a request body (``ksqlpy.request.max.bytes``): a declared ``Content-Length`` over it is
  refused before a byte of the body is read, a body without one when it grows past the limit;
  either way 413 with ``error_code`` 41300 and the connection closed;
* the statement text of one request (``ksqlpy.statement.max.chars``): 400, as the parser's
  memory grows with the text's length by a factor of some hundreds;
* one ``/inserts-stream`` line (``ksqlpy.inserts.max.record.bytes``): :class:`LineReader` fails
  as soon as an unfinished line grows past it, and finds line ends in time linear in the
  stream's length (each byte is scanned once, the buffer grows in place).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio

from ksqlpy.server.config import MAX_RECORD_BYTES, MAX_REQUEST_BYTES, MAX_STATEMENT_CHARS
from ksqlpy.server.errors import BAD_REQUEST, PAYLOAD_TOO_LARGE, RestError

Receive = Callable[[], Awaitable[Mapping[str, Any]]]


class ClientGone(Exception):
    """The client disconnected before its request was read."""


class PayloadTooLarge(RestError):
    """A request body over the limit: answered 413, and the connection is not reused."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            PAYLOAD_TOO_LARGE,
            f"Request body is too large: the limit is {limit} bytes ({MAX_REQUEST_BYTES}).",
        )


class RecordTooLarge(RestError):
    """An ``/inserts-stream`` line over the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            BAD_REQUEST,
            f"Record is too large: the limit is {limit} bytes per line ({MAX_RECORD_BYTES}).",
        )


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The request's ``Content-Length``, when it declares a valid one."""
    for key, value in headers:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(receive: Receive, headers: Iterable[tuple[bytes, bytes]], limit: int) -> bytes:
    """The whole request body, refused (:class:`PayloadTooLarge`) as soon as it is known to be
    longer than ``limit`` bytes."""
    declared = declared_length(headers)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def check_statement(text: str, limit: int) -> None:
    """Refuse statement text longer than ``limit`` characters before it is parsed."""
    if len(text) > limit:
        raise RestError(
            BAD_REQUEST,
            f"Statement is too long: {len(text)} characters, the limit is {limit} "
            f"({MAX_STATEMENT_CHARS}). Send long scripts as several requests.",
        )


class LineReader:
    """Lines of a streamed request body; an unterminated last line counts as a line.

    A line longer than ``max_line`` bytes raises :class:`RecordTooLarge` once that many bytes of
    it have arrived, without waiting for its end.
    """

    def __init__(self, receive: Receive, max_line: int) -> None:
        self._receive = receive
        self._max_line = max_line
        self._buffer = bytearray()
        self._scanned = 0  # the buffer holds no line end before this offset
        self._ended = False
        self._too_large = False

    async def _more(self) -> None:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        self._buffer += message.get("body", b"")
        self._ended = not message.get("more_body", False)

    def _take_lines(self, end: int) -> list[bytes]:
        """The non-blank lines before offset ``end`` (a line end), up to an oversized one."""
        lines = bytes(self._buffer[:end]).split(b"\n")
        del self._buffer[: end + 1]
        self._scanned = len(self._buffer)
        taken: list[bytes] = []
        for line in lines:
            if len(line) > self._max_line:
                self._too_large = True  # raised once the lines before it are handed out
                break
            if line.strip():
                taken.append(line)
        return taken

    async def drain(self, timeout: float = 2.0) -> None:
        """Read (and drop) what is left of the body before answering early: a response that
        ends while the client is still sending makes some HTTP/2 clients drop the connection."""

        async def rest() -> None:
            while not self._ended:
                await self._more()
                self._buffer.clear()
                self._scanned = 0

        with anyio.move_on_after(timeout):
            try:
                await rest()
            except ClientGone:
                pass

    async def next_line(self) -> bytes | None:
        """The first line (the request's arguments), or ``None`` for an empty body."""
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._scanned = 0
                if len(line) > self._max_line:
                    raise RecordTooLarge(self._max_line)
                return line
            self._scanned = len(self._buffer)
            if len(self._buffer) > self._max_line:
                raise RecordTooLarge(self._max_line)
            if self._ended:
                line = bytes(self._buffer)
                self._buffer.clear()
                self._scanned = 0
                return line if line.strip() else None
            await self._more()

    async def available_lines(self) -> list[bytes] | None:
        """Every complete non-blank line received so far (waiting for at least one), or
        ``None`` at the end of the body."""
        while True:
            if self._too_large:
                raise RecordTooLarge(self._max_line)
            end = self._buffer.rfind(b"\n", self._scanned)
            self._scanned = len(self._buffer)
            if end >= 0:
                lines = self._take_lines(end)
                if lines:
                    return lines
                continue
            if len(self._buffer) > self._max_line:
                raise RecordTooLarge(self._max_line)
            if self._ended:
                tail = bytes(self._buffer)
                self._buffer.clear()
                self._scanned = 0
                return [tail] if tail.strip() else None
            await self._more()
