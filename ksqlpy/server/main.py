"""Running the server: listen, open the engine, serve HTTP/1.1 + h2c on the listeners, stop cleanly.

:func:`serve` first claims the listeners' ports, on Kafka checks that a bootstrap server
answers, and creates the data directory; then it serves at once. Importing and opening the
engine and building the app take most of a second, so they run on a worker thread while
:class:`~ksqlpy.server.starting.StartingApp` answers ``/info`` and the probes and holds other
requests (``server/starting.py``). Once the engine is open it replays the command log, so
clients see ``serverState`` INITIALIZING (503 with ksqlDB's ``50302`` for statements,
``/chc/ready`` 503, ``/chc/live`` 200) until the replay ends and the server is READY. A server
that cannot start raises :class:`StartupError` with one line to show, leaving nothing on disk
(a data directory it created for an engine that failed to open or replay is removed again).

It then blocks until SIGTERM or SIGINT, stops accepting requests, lets hypercorn close
connections (push queries see a disconnect and close their engine queries) and closes the
engine, which commits positions and closes the store. A signal during the start lets the
engine open and replay first: the engine closes from a consistent state.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import signal
import socket
import ssl
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app

from ksqlpy.runtime.memory import MallocTrimmer, release_library_pages, tune_malloc
from ksqlpy.server import tls, transport
from ksqlpy.server.config import ServerConfig
from ksqlpy.server.starting import StartingApp

log = logging.getLogger("ksqlpy.server")

#: Seconds open connections (running push queries) get to finish after a shutdown signal.
GRACEFUL_TIMEOUT = 3.0
#: Seconds to wait for each bootstrap server to accept a connection at start.
KAFKA_CONNECT_TIMEOUT = 3.0


class StartupError(Exception):
    """The server cannot start; the message is the one line to show."""


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
    secure = [listener.bind for listener in config.bound_listeners if listener.scheme == "https"]
    plain = [listener.bind for listener in config.bound_listeners if listener.scheme != "https"]
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
    # ksqlDB clients keep one connection for the life of the client; hypercorn would close it
    # after 1,000 requests (failing the request in flight on HTTP/2).
    hc.keep_alive_max_requests = 2**31 - 1
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


async def serve_app(
    app: Any, config: ServerConfig, shutdown: asyncio.Event, sockets: Sockets | None = None
) -> None:
    """Serve ``app`` on ``config``'s listeners (or the already bound ``sockets``) until
    ``shutdown`` is set."""
    transport.install()
    tls.install()
    asyncio.get_running_loop().set_exception_handler(_ignore_cancelled)
    hc = hypercorn_config(config)

    async def shutdown_trigger() -> None:
        await shutdown.wait()
        from ksqlpy.server.health import begin_shutdown

        begin_shutdown(app)

    await worker_serve(
        wrap_app(app, hc.wsgi_max_body_size, None), hc, sockets=sockets, shutdown_trigger=shutdown_trigger
    )


def bind_listeners(config: ServerConfig) -> Sockets:
    """The listening sockets of every listener, or :class:`StartupError` (port in use ...)."""
    try:
        return hypercorn_config(config).create_sockets()
    except OSError as e:
        urls = ", ".join(listener.url for listener in config.bound_listeners)
        raise StartupError(f"Cannot listen on {urls}: {e.strerror or e}") from None


def _close(sockets: Sockets) -> None:
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
        sock.close()


def _host_port(server: str) -> tuple[str, int]:
    """``host:port`` of a bootstrap server, which may carry a listener name (``SSL://h:9093``)."""
    parts = urlsplit(server if "://" in server else f"kafka://{server}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise StartupError(f"Invalid bootstrap server {server!r} in bootstrap.servers: expected host:port")
    return parts.hostname, port


def check_kafka(bootstrap: str, timeout: float = KAFKA_CONNECT_TIMEOUT) -> None:
    """Return once some bootstrap server accepts a TCP connection; else :class:`StartupError`
    naming them all (the Kafka client itself would retry quietly for a minute)."""
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    problems = []
    for server in servers:
        host, port = _host_port(server)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return
        except OSError as e:
            problems.append(f"{server}: {e.strerror or e}")
    raise StartupError(
        f"Cannot reach the Kafka cluster at bootstrap.servers={bootstrap} ({'; '.join(problems)})"
    )


def _first_missing(path: Path) -> Path | None:
    """The outermost directory of ``path`` that does not exist yet (what opening creates)."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def create_data_dir(config: ServerConfig) -> Path | None:
    """Create the data directory (before serving, so that one that cannot be created stops the
    start with one line); return the outermost directory this created, None when it existed."""
    if config.state_dir == ":memory:":
        return None
    path = Path(config.state_dir).absolute()
    created = _first_missing(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove(created)
        raise StartupError(f"Cannot start: {e}") from e
    return created


def use_system_allocator() -> None:
    """Arrow allocates from the C library's malloc unless ``ARROW_DEFAULT_MEMORY_POOL`` says
    otherwise. Its default (mimalloc) keeps the pages of freed batches for reuse: a server that
    runs queries batch after batch held ~40 MiB more at its peak, at no gain in throughput.

    ``set_memory_pool`` reaches only what pyarrow allocates itself; Arrow's own default pool,
    which its conversions to NumPy use (``np.asarray`` of a mask, ``to_numpy``), is chosen from
    the environment variable when pyarrow is loaded. Set only through ``set_memory_pool``, every
    decoded batch's masks went to a mimalloc arena that held ~20 MiB at a windowed count's peak."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # read once, when pyarrow is first loaded
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def open_app(config: ServerConfig) -> Any:
    """The engine over its opened store, not started, and the full app over it (blocking: the
    imports and the store's opening take most of the start-up's CPU)."""
    use_system_allocator()
    from ksqlpy.runtime.engine import Engine
    from ksqlpy.server.app import create_app

    engine = Engine.create(config.engine_properties())
    try:
        return create_app(engine, config)
    except BaseException:
        engine.close()
        raise


def _raise_startup_error(e: BaseException) -> None:
    """:class:`StartupError` for a setting or state the engine refuses; other errors are bugs and
    go on as they are."""
    from ksqlpy.errors import KsqlpyError

    if isinstance(e, (KsqlpyError, ValueError, OSError)):
        raise StartupError(f"Cannot start: {e}") from e


def _remove(created: Path | None) -> None:
    if created is not None and created.exists():
        shutil.rmtree(created, ignore_errors=True)


def release_start_up_pages(engine: Any) -> None:
    """Once the engine's background set-up has ended, give back the library pages start-up
    touched (see ``ksqlpy.runtime.memory``): a query brings back the code it runs."""
    engine.warmed_up()
    try:
        released = release_library_pages()
    except Exception:  # only memory is at stake: the server serves on
        log.debug("Releasing the library pages failed", exc_info=True)
        return
    log.debug("Released the resident pages of %d MiB of library mappings.", released >> 20)


def start_engine(engine: Any, lock: threading.Lock) -> None:
    """Replay the command log, under the statement lock (requests are refused meanwhile; this
    keeps anything that slips past from seeing a half-built metastore)."""
    with lock:
        engine.start()


def serve(config: ServerConfig) -> None:
    """Serve while the engine opens and starts, then until SIGTERM/SIGINT; always closes the
    engine. Until the engine is open, :class:`StartingApp` answers ``/info`` and the probes."""
    tune_malloc()  # before any thread allocates: arenas made before it stay
    trimmer = MallocTrimmer(config.malloc_trim_interval)
    trimmer.start()
    sockets = bind_listeners(config)
    try:
        if config.bootstrap_servers:
            check_kafka(config.bootstrap_servers)
        created = create_data_dir(config)
    except BaseException:
        trimmer.stop()
        _close(sockets)
        raise
    from ksqlpy.server.auth import auth_settings

    front = StartingApp(config, authenticated=auth_settings(config) is not None)
    failed: list[BaseException] = []
    opened: list[Any] = []  # the full app, once open
    urls = ", ".join(listener.url for listener in config.bound_listeners)
    log.info("ksqlpy server listening on %s; opening the engine.", urls)

    async def main() -> None:
        shutdown = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, shutdown.set)

        async def start() -> None:
            try:
                app = await asyncio.to_thread(open_app, config)
            except Exception as e:  # noqa: BLE001 - reported as the server's start-up error
                failed.append(e)
                shutdown.set()
                front.ready()
                return
            opened.append(app)
            server = app.state.ksql
            front.opened(app)
            if shutdown.is_set():  # stopped while opening: nothing to replay for
                front.ready()
                return
            log.info("Using %s; replaying the command log.", describe_store(server.engine, config))
            try:
                await asyncio.to_thread(start_engine, server.engine, server.statement_lock)
            except Exception as e:  # noqa: BLE001 - reported as the server's start-up error
                failed.append(e)
                shutdown.set()
                front.ready()
                return
            server.server_state.started()
            # What start-up built (modules, the app, the engine and its queries) lives as long
            # as the server: out of the collector's sight, a full collection walks only what
            # came after, instead of pausing the event loop ~100 ms under a stream of rows.
            gc.freeze()
            front.ready()
            try:
                await asyncio.to_thread(server.cluster.start)
            except Exception:  # the server serves on, alone
                log.exception(
                    "Could not join the cluster: heartbeats and /clusterStatus show this server only."
                )
            if config.release_library_pages:
                await asyncio.to_thread(release_start_up_pages, server.engine)

        starting = asyncio.create_task(start())
        await serve_app(front, config, shutdown, sockets)
        await starting  # a signal during the start: the engine opens (and replays) before it closes

    try:
        asyncio.run(main())
    finally:
        if opened:
            server = opened[0].state.ksql
            log.info("ksqlpy server stopping: closing the engine.")
            server.cluster.stop()
            server.engine.close()
        trimmer.stop()
        if failed:
            _remove(created)
    if failed:
        _raise_startup_error(failed[0])
        raise failed[0]
