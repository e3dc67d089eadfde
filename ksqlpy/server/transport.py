"""HTTP transport details ksqlDB clients depend on, fixed below the ASGI application.

The server runs on hypercorn, which speaks HTTP/1.1 and cleartext HTTP/2 (prior knowledge and
``Upgrade: h2c``) on one port, as ksqlDB's Vert.x server does. Three client expectations need
help:

* **Reason phrases.** hypercorn hands h11 responses without a reason, so status lines read
  ``HTTP/1.1 200 ``; the ``hyper`` parser of the ``ksql`` PyPI client crashes on that.
  :class:`ReasonPhraseH11Protocol` fills in the standard phrase (``200 OK``).
* **One DATA frame per row.** hypercorn's HTTP/2 stream buffer coalesces body chunks written
  in quick succession into one DATA frame; the npm ``ksqldb-client`` JSON-parses each frame on
  its own. :class:`FramePerSendH2Protocol` waits until each body chunk left the buffer before
  taking the next one, so every ASGI ``send`` becomes its own frame(s).
* **Absolute-form request targets** (``POST http://host:8088/query HTTP/1.1``, sent by
  ``hyper``): :class:`AbsoluteTargetMiddleware` rewrites the ASGI path to its path part so the
  router matches it.

:func:`install` swaps the two protocol classes into hypercorn's protocol wrapper; it is
idempotent and only affects hypercorn servers in this process.
"""

from __future__ import annotations

import http
from typing import Any
from urllib.parse import urlsplit

import h11
import hypercorn.protocol as hypercorn_protocol
from hypercorn.protocol.events import Body, Event as StreamEvent
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import H11SendableEvent

ASGIApp = Any  # (scope, receive, send) -> Awaitable[None]; typed loosely as ASGI has no stdlib type


def reason_phrase(status_code: int) -> bytes:
    """The standard reason phrase for a status code (``b"OK"``), or ``b"Unknown"``."""
    try:
        return http.HTTPStatus(status_code).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


class ReasonPhraseH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, writing status lines with a reason phrase."""

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        match event:
            case h11.Response(reason=b"") | h11.InformationalResponse(reason=b""):
                event = type(event)(
                    status_code=event.status_code,
                    headers=list(event.headers.raw_items()),
                    reason=reason_phrase(event.status_code),
                    http_version=event.http_version,
                )
        await super()._send_h11_event(event)


class FramePerSendH2Protocol(H2Protocol):
    """hypercorn's HTTP/2 protocol, sending each response body chunk as its own DATA frame.

    Waiting for the stream buffer to drain also gives per-stream back-pressure: a slow reader
    holds up its own query's writer, not the connection.
    """

    async def stream_send(self, event: StreamEvent) -> None:
        await super().stream_send(event)
        if isinstance(event, Body):
            buffer = self.stream_buffers.get(event.stream_id)
            if buffer is not None:
                await buffer.drain()


def install() -> None:
    """Make hypercorn's protocol wrapper build the classes above (idempotent)."""
    hypercorn_protocol.H11Protocol = ReasonPhraseH11Protocol  # type: ignore[misc]
    hypercorn_protocol.H2Protocol = FramePerSendH2Protocol  # type: ignore[misc]


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
