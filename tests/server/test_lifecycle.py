"""Failures and shutdown: internal errors answer 500 in ksqlDB's shape; SIGTERM stops cleanly.

The shutdown tests run ``ksqlpy server`` as a real process on a durable data directory, send it
SIGTERM with a push query still streaming, and restart it on the same directory.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from tests.server.conftest import RunningServer, free_port

EARLIEST = {"ksql.streams.auto.offset.reset": "earliest"}


# --- internal failures -----------------------------------------------------------------------


def test_internal_failure_is_500_generic_error_and_logged(
    transport_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The transport-only server has no engine: every engine call fails inside the server.
    with caplog.at_level(logging.ERROR, logger="ksqlpy.server"):
        r = httpx.get(f"{transport_server.url}/info", timeout=10)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "@type": "generic_error",
        "error_code": 50000,
        "message": "The server encountered an internal error when processing the query. "
        "Please consult the server logs for more information.",
    }
    logged = [rec for rec in caplog.records if "GET /info" in rec.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_internal_failure_on_a_streaming_endpoint_answers(transport_server: RunningServer) -> None:
    body = orjson.dumps({"sql": "SELECT * FROM X EMIT CHANGES;"})
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        r = client.post(f"{transport_server.url}/query-stream", content=body)
    assert r.status_code == 500 and r.json()["error_code"] == 50000


# --- SIGTERM ---------------------------------------------------------------------------------


@contextmanager
def server_process(data_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "ksqlpy.main", "server", "--listeners", url, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthcheck", timeout=2).json()["isHealthy"]:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {process.communicate()[0]}")
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def ksql(url: str, text: str) -> list[dict[str, object]]:
    r = httpx.post(f"{url}/ksql", content=orjson.dumps({"ksql": text}), timeout=30)
    assert r.status_code == 200, r.text
    result: list[dict[str, object]] = r.json()
    return result


def sink_rows(url: str, sink: str, at_least: int) -> list[list[object]]:
    """The sink's rows (a pull query over the stream), once it holds ``at_least`` of them."""
    deadline = time.monotonic() + 60
    while True:
        body = orjson.dumps({"sql": f"SELECT * FROM {sink};"})
        lines = httpx.post(f"{url}/query-stream", content=body, timeout=30).content.splitlines()
        rows = [orjson.loads(line) for line in lines[1:]]
        if len(rows) >= at_least or time.monotonic() > deadline:
            return sorted(rows)
        time.sleep(0.1)


def test_sigterm_stops_cleanly_and_a_restart_resumes(tmp_path: Path) -> None:
    with server_process(tmp_path) as (url, process):
        ksql(url, "CREATE STREAM SRC (ID VARCHAR KEY, V INT) WITH (kafka_topic='src', value_format='JSON', "
                  "partitions=1); CREATE STREAM SINK AS SELECT ID, V * 10 AS W FROM SRC EMIT CHANGES;")
        for i in range(3):
            ksql(url, f"INSERT INTO SRC (ID, V) VALUES ('k{i}', {i});")
        assert sink_rows(url, "SINK", 3) == [["k0", 0], ["k1", 10], ["k2", 20]]

        # A push query is streaming when the signal arrives: its response must end, not hang.
        lines: list[bytes] = []
        ended = threading.Event()

        def follow() -> None:
            body = orjson.dumps({"sql": "SELECT * FROM SRC EMIT CHANGES;", "properties": EARLIEST})
            try:
                with httpx.stream("POST", f"{url}/query-stream", content=body, timeout=60) as r:
                    for line in r.iter_lines():
                        lines.append(line.encode())
            except httpx.HTTPError:
                pass  # the connection closing is an acceptable end too
            ended.set()

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        deadline = time.monotonic() + 30
        while len(lines) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(lines) == 4  # metadata and the three rows

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        assert "closing the engine" in output
        assert "Traceback" not in output and " ERROR " not in output, output
        assert ended.wait(30)

    with server_process(tmp_path) as (url, process):
        shown = ksql(url, "SHOW STREAMS;")[0]["streams"]
        assert {s["name"] for s in shown} == {"KSQL_PROCESSING_LOG", "SRC", "SINK"}  # type: ignore[union-attr]
        ksql(url, "INSERT INTO SRC (ID, V) VALUES ('k3', 3);")
        # The persistent query resumed after the committed positions: nothing is processed twice.
        assert sink_rows(url, "SINK", 4) == [["k0", 0], ["k1", 10], ["k2", 20], ["k3", 30]]
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        assert process.returncode == 0
