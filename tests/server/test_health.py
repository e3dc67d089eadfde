"""``/healthcheck``, ``/chc/live``, ``/chc/ready`` and the server state, on real servers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ksqlpy.server.app import create_app
from ksqlpy.server.health import State
from tests.server.conftest import RunningServer, ServerThread, open_engine, server_config


@pytest.fixture
def own_server() -> Iterator[tuple[RunningServer, ServerThread]]:
    """A server of this test's own (its state and store get broken), health not cached."""
    config = server_config(**{"ksql.healthcheck.interval.ms": "0"})
    engine = open_engine(config)
    app = create_app(engine, config)
    assert app.state.ksql.server_state.state is State.INITIALIZING
    thread = ServerThread(app, config)
    thread.start()
    port = config.listeners[0].port
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", port=port, engine=engine), thread
    finally:
        thread.stop()
        engine.close()


def test_healthy_server_reports_every_check(ksql_server: RunningServer) -> None:
    r = httpx.get(f"{ksql_server.url}/healthcheck", timeout=30)
    assert r.status_code == 200
    assert r.json() == {
        "isHealthy": True,
        "details": {
            "metastore": {"isHealthy": True},
            "kafka": {"isHealthy": True},
            "commandRunner": {"isHealthy": True},
        },
        "serverState": "READY",
    }
    for probe in ("/chc/live", "/chc/ready"):
        r = httpx.get(f"{ksql_server.url}{probe}", timeout=30)
        assert (r.status_code, r.json()) == (200, {})


def test_a_broken_topic_store_is_unhealthy_but_answered(
    own_server: tuple[RunningServer, ServerThread],
) -> None:
    server, _ = own_server
    assert httpx.get(f"{server.url}/healthcheck", timeout=30).json()["isHealthy"] is True
    server.engine.store.close()
    r = httpx.get(f"{server.url}/healthcheck", timeout=30)
    assert r.status_code == 200  # unhealthy is an answer, not a failure
    body = r.json()
    assert body["isHealthy"] is False and body["details"]["kafka"] == {"isHealthy": False}
    assert body["details"]["commandRunner"] == {"isHealthy": True}
    assert body["serverState"] == "READY"


def test_states_gate_requests(own_server: tuple[RunningServer, ServerThread]) -> None:
    server, thread = own_server
    state = thread.app.state.ksql.server_state
    assert state.state is State.READY  # serving began with the engine open

    state.set(State.INITIALIZING)
    r = httpx.post(f"{server.url}/ksql", json={"ksql": "SHOW STREAMS;"}, timeout=30)
    assert r.status_code == 503 and r.headers["retry-after"] == "10"
    assert r.json() == {
        "@type": "generic_error",
        "error_code": 50302,
        "message": "KSQL is not yet ready to serve requests.",
    }
    health = httpx.get(f"{server.url}/healthcheck", timeout=30)
    assert health.status_code == 503 and health.json()["serverState"] == "INITIALIZING"
    assert httpx.get(f"{server.url}/chc/ready", timeout=30).status_code == 503
    assert httpx.get(f"{server.url}/chc/live", timeout=30).status_code == 200
    assert httpx.get(f"{server.url}/metrics", timeout=30).status_code == 200

    state.set(State.TERMINATING)
    r = httpx.get(f"{server.url}/info", timeout=30)
    assert r.status_code == 503 and r.json()["error_code"] == 50303
    assert httpx.get(f"{server.url}/healthcheck", timeout=30).json()["serverState"] == "TERMINATING"

    state.set(State.READY)
    assert httpx.post(f"{server.url}/ksql", json={"ksql": "SHOW STREAMS;"}, timeout=30).status_code == 200


def test_shutdown_ends_terminated(own_server: tuple[RunningServer, ServerThread]) -> None:
    server, thread = own_server
    thread.stop()
    assert thread.app.state.ksql.server_state.state is State.TERMINATED
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/chc/live", timeout=5)
