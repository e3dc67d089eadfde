"""Real servers for the REST tests: hypercorn in a background thread on a free loopback port.

``transport_server`` serves the app without an engine (for endpoints and transport behaviour
that never reach it); ``ksql_server`` serves it over a real engine, once on the in-memory
embedded store and once on the Kafka store (the session's Tansu broker). Clients talk real
HTTP/1.1 and HTTP/2 to them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kafka_broker import FAST_CLIENT_CONFIG

from ksqlpy.runtime.engine import Engine
from ksqlpy.server.app import create_app
from ksqlpy.server.config import ServerConfig
from ksqlpy.server.main import serve_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    port: int
    engine: Any


class ServerThread:
    """hypercorn serving ``app`` on its own event loop thread until :meth:`stop`."""

    def __init__(self, app: Any, config: ServerConfig) -> None:
        self.app = app
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.shutdown: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.shutdown = asyncio.Event()
            self.ready.set()
            await serve_app(self.app, self.config, self.shutdown)

        self.loop.run_until_complete(main())

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(10)
        port = self.config.listeners[0].port
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                threading.Event().wait(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        assert self.shutdown is not None
        self.loop.call_soon_threadsafe(self.shutdown.set)
        self.thread.join(15)


def server_config(**extra: str) -> ServerConfig:
    port = free_port()
    return ServerConfig.load(
        environ={},
        overrides={"listeners": f"http://127.0.0.1:{port}", "ksql.streams.state.dir": ":memory:", **extra},
    )


@pytest.fixture(scope="module")
def transport_server() -> Iterator[RunningServer]:
    config = server_config()
    thread = ServerThread(create_app(None, config), config)
    thread.start()
    port = config.listeners[0].port
    yield RunningServer(url=f"http://127.0.0.1:{port}", port=port, engine=None)
    thread.stop()


def open_engine(config: ServerConfig) -> Engine:
    """The server's engine; an engine that does not open fails the tests that need it."""
    return Engine.open(config.engine_properties())


def store_settings(request: pytest.FixtureRequest, store: str) -> dict[str, str]:
    """Server properties selecting ``store``: nothing for the embedded store; the session broker
    (with client settings that keep its group joins and fetches quick) for Kafka."""
    if store == "embedded":
        return {}
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    # a service id of its own: servers of other test modules share the broker, and a server
    # applies every command of its service's command topic when it starts
    service_id = f"srv_{uuid.uuid4().hex[:8]}_"
    return {
        "bootstrap.servers": bootstrap,
        "ksql.service.id": service_id,
        **{f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()},
    }


@pytest.fixture(scope="module", params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def ksql_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    config = server_config(**store_settings(request, request.param))
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    port = config.listeners[0].port
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", port=port, engine=engine)
    finally:
        thread.stop()
        engine.close()
