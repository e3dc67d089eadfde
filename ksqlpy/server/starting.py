"""The server's front while it opens: ``/info`` and the probes answer at once, the rest waits.

``ksqlpy server`` listens as soon as its settings are checked. Importing and opening the engine
(DuckDB, Arrow, sqlglot, the grammar, the Kafka client) and building the FastAPI app take most
of a second of CPU, so :func:`~ksqlpy.server.main.serve` does that on a worker thread while
hypercorn serves :class:`StartingApp`. Until the full app is in place, this answers

* ``GET /info`` with the server's ``KsqlServerInfo`` (``serverStatus`` RUNNING: no query runs
  yet), computed from the settings as the engine computes it;
* ``GET /chc/live`` 200 ``{}`` and ``GET /chc/ready`` 503 ``{}``, as the full app does while
  INITIALIZING;

and holds every other request. Once the full app is in place, it answers them: probes and
monitoring at once (``/healthcheck`` says INITIALIZING until the command log is replayed),
anything else (statements, queries) once the server is READY, so a client that sent a
statement as soon as ``/info`` answered sees it run rather than fail. Requests that arrive
after the full app is in place go straight to it (while it replays its command log it answers
503 with ksqlDB's ``50302``, see ``server/health.py``).

With authentication configured, ``/info`` is not an open path: it waits for the full app,
which checks credentials. Nothing here imports the engine, FastAPI or Arrow.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from ksqlpy import __version__
from ksqlpy.server import wire
from ksqlpy.server.config import ServerConfig

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths the full app serves whatever its state (``health.ALWAYS_SERVED``, kept in step): held
#: requests for these go to the full app as soon as it exists.
PROBES = frozenset({"/chc/live", "/chc/ready", "/healthcheck", "/metrics"})

SHUTTING_DOWN = {"@type": "generic_error", "error_code": 50303, "message": "The server is shutting down"}


def cluster_id(service_id: str) -> str:
    """The ``kafkaClusterId`` a server reports (``Engine.cluster_id``): derived from the service id."""
    return "ksqlpy-" + uuid.uuid5(uuid.NAMESPACE_DNS, service_id).hex[:16]


class StartingApp:
    """The ASGI app hypercorn serves; the full app once :meth:`opened`, and until then the
    answers above (see the module docstring)."""

    def __init__(self, config: ServerConfig, *, authenticated: bool) -> None:
        self.app: AsgiApp | None = None
        self.answers_info = not authenticated
        self.info = orjson.dumps(
            {
                "KsqlServerInfo": {
                    "version": __version__,
                    "kafkaClusterId": cluster_id(config.service_id),
                    "ksqlServiceId": config.service_id,
                    "serverStatus": "RUNNING",
                }
            }
        )
        #: requests held now, waiting for the full app or for READY
        self.waiting = 0
        self._opened = asyncio.Event()
        self._ready = asyncio.Event()

    @property
    def state(self) -> Any:
        """The full app's ``state`` (``begin_shutdown`` reads the server from it), else None."""
        return getattr(self.app, "state", None)

    def opened(self, app: AsgiApp) -> None:
        """The full app is built: requests go to it from now on (call on the serving loop)."""
        self.app = app
        self._opened.set()

    def ready(self) -> None:
        """The server is READY (or will never be): held statements go on (serving loop)."""
        self._opened.set()
        self._ready.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.app is not None:
            await self.app(scope, receive, send)
            return
        path = scope.get("path")
        if scope["type"] == "http" and scope.get("method") == "GET":
            if path == "/chc/live":
                await _answer(send, 200, b"{}")
                return
            if path == "/chc/ready":
                await _answer(send, 503, b"{}")
                return
            if path == "/info" and self.answers_info and _accepts_json(scope):
                await _answer(send, 200, self.info)
                return
        self.waiting += 1
        try:
            await self._opened.wait()
            if path not in PROBES:
                await self._ready.wait()
        finally:
            self.waiting -= 1
        if self.app is None:  # the server could not open its engine and is stopping
            if scope["type"] == "http":
                await _answer(send, 503, orjson.dumps(SHUTTING_DOWN))
            return
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Serving starts at once; at its end the full app's server is TERMINATED, as the full
        app's own lifespan (``health.lifespan``) would have it."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.app is not None:
                    from ksqlpy.server.health import serving_ended

                    serving_ended(self)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _accepts_json(scope: Scope) -> bool:
    accept = None
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            accept = value.decode("latin-1")
    return wire.negotiate(accept, wire.PRODUCES["plain"]) is not None


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
