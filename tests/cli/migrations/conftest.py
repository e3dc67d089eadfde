"""A real ksqlpy server (embedded store, in-memory state) in this process for migrations tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server.conftest import ServerThread, open_engine, server_config

from ksqlpy.server.app import create_app


@pytest.fixture
def memory_server_url() -> Iterator[str]:
    """URL of a fresh server per test, so each test starts without migrations metadata."""
    config = server_config()
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    try:
        yield f"http://127.0.0.1:{config.listeners[0].port}"
    finally:
        thread.stop()
        engine.close()
