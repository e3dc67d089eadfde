"""Running the server: open the engine, serve HTTP/1.1 + h2c on the listeners, stop cleanly.

:func:`serve` blocks until SIGTERM or SIGINT, then stops accepting requests, lets hypercorn
close connections (push queries see a disconnect and close their engine queries) and closes
the engine, which commits positions and closes the store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

from ksqlpy.server import tls, transport
from ksqlpy.server.app import create_app
from ksqlpy.server.config import ServerConfig
from ksqlpy.server.health import begin_shutdown

log = logging.getLogger("ksqlpy.server")

#: Seconds open connections (running push queries) get to finish after a shutdown signal.
GRACEFUL_TIMEOUT = 3.0


class TlsHypercornConfig(HypercornConfig):
    """hypercorn settings with a TLS context built from ksqlDB's ``ssl.*`` properties."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self.tls_context = context

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext:
        return self.tls_context


def hypercorn_config(config: ServerConfig) -> HypercornConfig:
    """hypercorn settings for ksqlDB clients: every listener, HTTP/1.1 and h2c (HTTP/2 by ALPN
    on ``https://`` listeners), no access log."""
    secure = [listener.bind for listener in config.listeners if listener.scheme == "https"]
    plain = [listener.bind for listener in config.listeners if listener.scheme != "https"]
    if secure:
        hc: HypercornConfig = TlsHypercornConfig(tls.server_context(config))
        hc.bind = secure
        hc.insecure_bind = plain
    else:
        hc = HypercornConfig()
        hc.bind = plain
    hc.graceful_timeout = GRACEFUL_TIMEOUT
    hc.keep_alive_timeout = 75.0
    hc.h2_max_concurrent_streams = 1000  # one stream per push query on a shared connection
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


def describe_store(engine: Any, config: ServerConfig) -> str:
    if engine.store_kind == "kafka":
        return f"the Kafka cluster at {config.bootstrap_servers}"
    where = engine.data_dir
    return "the embedded in-memory store" if where == ":memory:" else f"the embedded store in {where}"


def _ignore_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Loop exception handler: connections cancelled by the shutdown itself are not errors.

    When the graceful period ends, hypercorn cancels the connection tasks still open (idle
    keep-alive connections, push queries); asyncio's stream callback then reports each
    CancelledError as "Exception in callback" with a traceback.
    """
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


async def serve_app(app: Any, config: ServerConfig, shutdown: asyncio.Event) -> None:
    """Serve ``app`` on ``config``'s listeners until ``shutdown`` is set."""
    transport.install()
    tls.install()
    asyncio.get_running_loop().set_exception_handler(_ignore_cancelled)

    async def shutdown_trigger() -> None:
        await shutdown.wait()
        begin_shutdown(app)

    await hypercorn_serve(app, hypercorn_config(config), shutdown_trigger=shutdown_trigger)


def serve(config: ServerConfig) -> None:
    """Open the engine and serve until SIGTERM/SIGINT; always closes the engine."""
    from ksqlpy.runtime.engine import Engine

    engine = Engine.open(config.engine_properties())
    try:
        app = create_app(engine, config)
        urls = ", ".join(listener.url for listener in config.listeners)
        log.info("ksqlpy server listening on %s, using %s.", urls, describe_store(engine, config))

        async def main() -> None:
            shutdown = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, shutdown.set)
            await serve_app(app, config, shutdown)

        asyncio.run(main())
    finally:
        log.info("ksqlpy server stopping: closing the engine.")
        engine.close()
