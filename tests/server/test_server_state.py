"""``ksqlpy server`` serves while it replays its command log: clients see INITIALIZING until the
replay ends, then READY, on a real server process.

The process is the real command, with one test hook: the engine's start (the replay) waits until
the test creates a gate file, so the INITIALIZING state lasts as long as the test needs and no
answer depends on timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ksqlpy.runtime.commandlog import Command
from ksqlpy.runtime.engine import Engine
from tests.server.conftest import free_port

HELD_SERVER = """
import sys, threading
from pathlib import Path
from ksqlpy.main import main
from ksqlpy.runtime.commandlog import Command
from ksqlpy.runtime.engine import Engine

gate, argv = Path(sys.argv[1]), sys.argv[2:]
start = Engine.start

def held_start(engine):
    while not gate.exists():
        threading.Event().wait(0.02)
    start(engine)

Engine.start = held_start
sys.exit(main(argv))
"""

NOT_READY = {
    "@type": "generic_error",
    "error_code": 50302,
    "message": "KSQL is not yet ready to serve requests.",
}


@contextmanager
def held_server(data_dir: Path, gate: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    url = f"http://127.0.0.1:{free_port()}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                HELD_SERVER,
                str(gate),
                "server",
                "--listeners",
                url,
                "--data-dir",
                str(data_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until(check: object, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Poll ``check()`` until it holds; fail if the process exits or a minute passes (a hang
    guard, not a timing assertion)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what}; server output:\n{log.read_text()}")
        time.sleep(0.05)


def test_clients_see_initializing_until_the_command_log_is_replayed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with Engine.open({"ksql.streams.state.dir": str(data_dir)}) as engine:
        engine.session().execute_all(
            "CREATE STREAM kept (id VARCHAR KEY, v INT) WITH (kafka_topic='kept', value_format='JSON', partitions=1);"
        )
    gate = tmp_path / "gate"
    log = tmp_path / "server.log"
    with held_server(data_dir, gate, log) as (url, process):
        wait_until(
            lambda: httpx.get(f"{url}/chc/live", timeout=5).status_code == 200, process, log, "never live"
        )

        health = httpx.get(f"{url}/healthcheck", timeout=30)
        assert health.status_code == 503
        assert health.json()["serverState"] == "INITIALIZING"
        assert health.json()["isHealthy"] is False
        assert health.json()["details"]["commandRunner"] == {"isHealthy": False}
        ready = httpx.get(f"{url}/chc/ready", timeout=30)
        assert (ready.status_code, ready.json()) == (503, {})
        statement = httpx.post(f"{url}/ksql", json={"ksql": "LIST STREAMS;"}, timeout=30)
        assert (statement.status_code, statement.json()) == (503, NOT_READY)
        assert statement.headers["retry-after"] == "10"
        query = httpx.post(
            f"{url}/query-stream", json={"sql": "SELECT * FROM kept EMIT CHANGES;"}, timeout=30
        )
        assert (query.status_code, query.json()) == (503, NOT_READY)
        assert httpx.get(f"{url}/metrics", timeout=30).status_code == 200

        gate.touch()  # the replay may run now
        wait_until(
            lambda: httpx.get(f"{url}/chc/ready", timeout=5).status_code == 200, process, log, "never ready"
        )

        health = httpx.get(f"{url}/healthcheck", timeout=30)
        assert health.status_code == 200
        assert health.json()["serverState"] == "READY" and health.json()["isHealthy"] is True
        listed = httpx.post(f"{url}/ksql", json={"ksql": "LIST STREAMS;"}, timeout=30)
        assert listed.status_code == 200
        assert "KEPT" in [s["name"] for s in listed.json()[0]["streams"]]  # the replay restored it
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    assert "INITIALIZING -> READY" in log.read_text()


def test_a_command_log_that_cannot_be_replayed_stops_the_listening_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with Engine.open({"ksql.streams.state.dir": str(data_dir)}) as engine:
        # a stored plan with a DDL command this build does not know
        plan = {
            "@type": "ksqlPlanV1",
            "statementText": "CREATE STREAM later ...;",
            "ddlCommand": {"@type": "futureV9"},
        }
        engine.commands.append(Command("CREATE STREAM later ...;", {}, None, plan))
    log = tmp_path / "server.log"
    gate = tmp_path / "gate"
    with held_server(data_dir, gate, log) as (url, process):
        wait_until(
            lambda: httpx.get(f"{url}/chc/live", timeout=5).status_code == 200, process, log, "never live"
        )
        assert httpx.get(f"{url}/chc/ready", timeout=30).status_code == 503
        gate.touch()
        assert process.wait(60) == 1
    output = log.read_text()
    assert "ksqlpy server: Cannot start: Command 0 of the command log" in output, output
