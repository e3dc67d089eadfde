"""Server state and health: ``/healthcheck``, ``/chc/live``, ``/chc/ready``, as ksqlDB has them.

The server goes INITIALIZING -> READY (serving has begun, the engine replayed its commands)
-> TERMINATING (a shutdown signal came; open connections get their grace period) ->
TERMINATED. While not READY, every endpoint except the probes and ``/metrics`` answers 503
with ksqlDB's error (:class:`ServerStateMiddleware`).

``ksqlpy server`` listens before it replays the command log (``server/main.py``), so clients
see INITIALIZING for as long as the replay takes, as ksqlDB's do while its preconditions and
command replay run; the replay's end makes the server READY.

``/healthcheck`` runs ksqlDB's three checks (``HealthCheckAgent``) and keeps the answer for
``ksql.healthcheck.interval.ms`` (default 5 s), since each check does real work:

* ``metastore``: ``LIST STREAMS; LIST TABLES; LIST QUERIES;`` through a session;
* ``kafka``: describe the command topic in the topic store (embedded or Kafka);
* ``commandRunner``: the engine replayed the command log and runs statements (on a cluster, its
  command runner still tails the command topic).

The answer is 200 whether healthy or not (ksqlDB's ``EndpointResponse.ok``); before READY
and while shutting down it is 503 with the same body, so load balancers stop sending work.
``/chc/live`` answers 200 ``{}`` whenever the process serves HTTP; ``/chc/ready`` answers
200 ``{}`` when READY and 503 ``{}`` otherwise (ksqlDB always answers 200; a readiness probe
that never fails cannot keep traffic from a starting server).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ksqlpy.server.wire import dumps

log = logging.getLogger("ksqlpy.server")

HEALTHCHECK_INTERVAL = "ksql.healthcheck.interval.ms"
DEFAULT_INTERVAL_MS = 5000

#: Paths served whatever the state: probes and monitoring.
ALWAYS_SERVED = frozenset({"/chc/live", "/chc/ready", "/healthcheck", "/metrics"})

#: Seconds the metastore check waits for a running statement before calling the metastore busy.
METASTORE_WAIT = 10.0


class State(enum.Enum):
    INITIALIZING = "INITIALIZING"
    READY = "READY"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"


#: ksqlDB's answers while not READY (``ServerState.checkReady``, ``Errors``).
NOT_READY: dict[State, tuple[int, str]] = {
    State.INITIALIZING: (50302, "KSQL is not yet ready to serve requests."),
    State.TERMINATING: (50303, "The server is shutting down"),
    State.TERMINATED: (50303, "The server is shutting down"),
}


class ServerState:
    """The server's lifecycle state; set from the serving loop, read by every request."""

    def __init__(self) -> None:
        self.state = State.INITIALIZING

    def set(self, state: State) -> None:
        if state is not self.state:
            log.info("ksqlpy server state: %s -> %s", self.state.value, state.value)
        self.state = state

    def started(self) -> None:
        """The engine has started: READY, unless a shutdown began meanwhile."""
        if self.state is State.INITIALIZING:
            self.set(State.READY)

    @property
    def ready(self) -> bool:
        return self.state is State.READY


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReport:
    details: dict[str, bool]
    server_state: State

    @property
    def is_healthy(self) -> bool:
        return all(self.details.values())

    def json(self) -> dict[str, Any]:
        return {
            "isHealthy": self.is_healthy,
            "details": {name: {"isHealthy": ok} for name, ok in self.details.items()},
            "serverState": self.server_state.value,
        }


class HealthCheck:
    """ksqlDB's health checks over a :class:`~ksqlpy.server.app.KsqlServer`, cached."""

    def __init__(self, server: Any, state: ServerState) -> None:
        self.server = server
        self.state = state
        try:
            interval = int(server.config.get(HEALTHCHECK_INTERVAL) or DEFAULT_INTERVAL_MS)
        except ValueError:
            interval = DEFAULT_INTERVAL_MS
        self.interval = max(0, interval) / 1000
        self._cached: tuple[float, dict[str, bool]] | None = None
        self._lock = threading.Lock()

    def report(self) -> HealthReport:
        """The checks' results (blocking: run on a worker thread)."""
        engine = self.server.engine
        if engine is not None and engine.state == "INITIALIZING":
            # The replay owns the metastore until it ends: its checks fail without touching it,
            # and nothing is cached, so the first check after the start is a real one.
            details = {
                "metastore": False,
                "kafka": self._check("kafka", self._topic_store),
                "commandRunner": False,
            }
            return HealthReport(details=details, server_state=self.state.state)
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.interval:
                self._cached = (now, self._run())
            details = dict(self._cached[1])
        return HealthReport(details=details, server_state=self.state.state)

    def _run(self) -> dict[str, bool]:
        return {
            "metastore": self._check("metastore", self._metastore),
            "kafka": self._check("kafka", self._topic_store),
            "commandRunner": self._check("commandRunner", self._command_runner),
        }

    @staticmethod
    def _check(name: str, check: Any) -> bool:
        try:
            return bool(check())
        except Exception as e:  # noqa: BLE001 - a failed check is an unhealthy answer, not an error
            log.warning("Health check %s failed: %s", name, e)
            return False

    def _metastore(self) -> bool:
        engine = self.server.engine
        if engine is None:
            return False
        lock = self.server.statement_lock
        if not lock.acquire(timeout=METASTORE_WAIT):
            raise TimeoutError("a statement has held the metastore for too long")
        try:
            list(engine.session().execute("LIST STREAMS; LIST TABLES; LIST QUERIES;"))
        finally:
            lock.release()
        return True

    def _topic_store(self) -> bool:
        engine = self.server.engine
        if engine is None:
            return False
        engine.store.ping(engine.commands.topic)
        return True

    def _command_runner(self) -> bool:
        engine = self.server.engine
        if engine is None or engine.state != "READY":
            return False
        runner = getattr(engine, "runner", None)  # on a cluster: it still tails the command topic
        return runner is None or bool(runner.running)


def lifespan(server: Any, state: ServerState) -> Any:
    """The ASGI lifespan: READY once serving starts if the engine has started by then (else
    when it has: :meth:`ServerState.started`), TERMINATED after the last connection closed."""

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        engine = server.engine
        if engine is None or engine.state == "READY":
            state.started()
        yield
        state.set(State.TERMINATED)

    return run


def serving_ended(app: Any) -> None:
    """Called when the last connection closed (the lifespan's end): TERMINATED."""
    server = getattr(getattr(app, "state", None), "ksql", None)
    state = getattr(server, "server_state", None)
    if isinstance(state, ServerState):
        state.set(State.TERMINATED)


def begin_shutdown(app: Any) -> None:
    """Called when a shutdown signal arrives: TERMINATING while connections drain."""
    server = getattr(getattr(app, "state", None), "ksql", None)
    state = getattr(server, "server_state", None)
    if isinstance(state, ServerState):
        state.set(State.TERMINATING)


class ServerStateMiddleware:
    """503 with ksqlDB's error for requests that arrive while the server is not READY."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or self.state.ready
            or scope.get("path") in ALWAYS_SERVED
        ):
            await self.app(scope, receive, send)
            return
        code, message = NOT_READY[self.state.state]
        body = dumps({"@type": "generic_error", "error_code": code, "message": message})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if self.state.state is State.INITIALIZING:
            headers.append((b"retry-after", b"10"))
        start = "http.response.start" if scope["type"] == "http" else "websocket.http.response.start"
        body_type = "http.response.body" if scope["type"] == "http" else "websocket.http.response.body"
        await send({"type": start, "status": 503, "headers": headers})
        await send({"type": body_type, "body": body, "more_body": False})
