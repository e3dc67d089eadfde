"""While the engine opens, ``/info`` and the probes answer and a statement waits for READY.

The front (:class:`StartingApp`) is served by real hypercorn over real HTTP; the test opens the
engine and hands the full app over itself, so each stage lasts as long as the test needs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from ksqlpy.runtime.engine import Engine
from ksqlpy.server.app import create_app
from ksqlpy.server.starting import StartingApp
from tests.server.conftest import ServerThread, server_config


def wait_until(check: Callable[[], bool], what: str) -> None:
    """A hang guard, not a timing assertion."""
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_info_answers_and_a_statement_waits_while_the_engine_opens() -> None:
    config = server_config()
    front = StartingApp(config, authenticated=False)
    thread = ServerThread(front, config)
    thread.start()
    url = f"http://127.0.0.1:{config.listeners[0].port}"
    engine = None
    try:
        early = httpx.get(f"{url}/info", timeout=30)
        assert early.status_code == 200
        assert early.headers["content-type"] == "application/json"
        assert early.json()["KsqlServerInfo"]["serverStatus"] == "RUNNING"
        assert httpx.get(f"{url}/chc/live", timeout=30).status_code == 200
        ready = httpx.get(f"{url}/chc/ready", timeout=30)
        assert (ready.status_code, ready.json()) == (503, {})

        answers: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{url}/ksql", json={"ksql": "LIST STREAMS;"}, timeout=60)
            )
        )
        sender.start()
        wait_until(lambda: front.waiting == 1, "the statement never reached the server")

        engine = Engine.create(config.engine_properties())
        app = create_app(engine, config)
        thread.loop.call_soon_threadsafe(front.opened, app)
        health = httpx.get(f"{url}/healthcheck", timeout=30)
        assert (health.status_code, health.json()["serverState"]) == (503, "INITIALIZING")
        assert answers == [] and front.waiting == 1  # held until READY, not refused

        engine.start()
        app.state.ksql.server_state.started()
        thread.loop.call_soon_threadsafe(front.ready)
        sender.join(60)
        assert answers[0].status_code == 200, answers[0].text
        assert answers[0].json()[0]["@type"] == "streams"
        # the engine reports what the front did
        assert httpx.get(f"{url}/info", timeout=30).json() == early.json()
    finally:
        thread.stop()
        if engine is not None:
            engine.close()
