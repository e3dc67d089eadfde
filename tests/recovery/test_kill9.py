"""Exactly-once across crashes: a server killed with SIGKILL mid-stream, restarted, ends with the
same sink topics and tables as a run that was never interrupted.

Each run is a real ``ksqlpy server`` process over its own data directory. The input goes in
through ``/inserts-stream`` in chunks; in the crash run the server is killed (``kill -9``) at a
random moment after each chunk and restarted. Outputs are read back through pull queries over
streams declared on the sink topics, in (partition, offset) order, so a record lost or written
twice shows as a difference. One input partition keeps the reference run's output order
deterministic (ksqlDB makes no order promise across partitions either).

On Kafka the server is killed only once its queries have committed what they were sent, between
transactions: the test broker (Tansu) hands read-committed readers the records of a transaction
that a killed server left open and its successor aborted, which Kafka never does, so a kill
inside a transaction would show that transaction's records twice here. Kills at any moment of a
batch are covered by the embedded store's run.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

ROWS = 20_000
CHUNKS = 8
PAGES = 37


def _setup(run: str) -> list[str]:
    """The statements of one run; topics are named per run, as runs may share a Kafka cluster."""
    return [
        ("CREATE STREAM PAGEVIEWS (USERID STRING KEY, PAGE STRING, BYTES INT) "
         f"WITH (KAFKA_TOPIC='{run}_pageviews', PARTITIONS=1, VALUE_FORMAT='JSON');"),
        (f"CREATE STREAM BIG WITH (KAFKA_TOPIC='{run}_big') AS "
         "SELECT USERID, PAGE, BYTES * 2 AS DOUBLED FROM PAGEVIEWS WHERE BYTES > 500;"),
        (f"CREATE TABLE PER_PAGE WITH (KAFKA_TOPIC='{run}_per_page') AS "
         "SELECT PAGE, COUNT(*) AS VIEWS, SUM(BYTES) AS TOTAL FROM PAGEVIEWS GROUP BY PAGE;"),
        # Streams over the sink topics, to read every record written to them.
        ("CREATE STREAM BIG_OUT (USERID STRING KEY, PAGE STRING, DOUBLED INT) "
         f"WITH (KAFKA_TOPIC='{run}_big', VALUE_FORMAT='JSON');"),
        ("CREATE STREAM PER_PAGE_OUT (PAGE STRING KEY, VIEWS BIGINT, TOTAL BIGINT) "
         f"WITH (KAFKA_TOPIC='{run}_per_page', VALUE_FORMAT='JSON');"),
    ]


def _rows(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"USERID": f"user_{rng.randrange(500)}", "PAGE": f"page_{rng.randrange(PAGES)}", "BYTES": rng.randrange(1000)}
        for _ in range(ROWS)
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``ksqlpy server`` in a child process over a data directory that outlives it."""

    def __init__(self, data_dir: Path, log: Path, settings: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.log = log
        self.settings = settings
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        #: the server's --log-level (DEBUG logs each group member's assignments, seeks and commits)
        self.log_level = os.environ.get("KSQLPY_TEST_SERVER_LOG_LEVEL", "INFO")

    def start(self) -> None:
        env = {
            **os.environ,
            "KSQL_KSQL_STREAMS_CACHE_MAX_BYTES_BUFFERING": "0",
            "KSQL_KSQL_STREAMS_AUTO_OFFSET_RESET": "earliest",
            "KSQL_KSQL_SERVICE_ID": self.data_dir.name,
            **{_env_name(k): v for k, v in self.settings.items()},
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ksqlpy", "server", "--listeners", self.url,
                 "--data-dir", str(self.data_dir), "--log-level", self.log_level],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{self.url}/healthcheck", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not start: {self.log.read_text()[-2000:]}")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()

    # -- REST ------------------------------------------------------------------------------------

    def ksql(self, statement: str) -> Any:
        response = httpx.post(f"{self.url}/ksql", json={"ksql": statement, "streamsProperties": {}}, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def insert(self, rows: list[dict[str, Any]]) -> None:
        body = orjson.dumps({"target": "PAGEVIEWS", "properties": {}}) + b"\n"
        body += b"\n".join(orjson.dumps(r) for r in rows)
        # /inserts-stream is served over HTTP/2 only, as in ksqlDB (prior knowledge, cleartext).
        with httpx.Client(http1=False, http2=True, timeout=120) as client:
            response = client.post(f"{self.url}/inserts-stream", content=body)
        assert response.status_code == 200, response.text
        acks = [orjson.loads(line) for line in response.text.splitlines() if line.strip()]
        assert len(acks) == len(rows) and all(a.get("status") == "ok" for a in acks), response.text[-500:]

    def read(self, stream: str) -> list[list[Any]]:
        """Every record of ``stream``'s topic (one partition: in offset order)."""
        response = httpx.post(
            f"{self.url}/query-stream",
            json={"sql": f"SELECT * FROM {stream};", "properties": {}},
            headers={"Accept": "application/json"},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        data = response.json()
        rows = [r for r in data[1:] if isinstance(r, list)]
        return rows


def _wait_for(server: ServerProcess, stream: str, count: int, timeout: float = 180) -> list[list[Any]]:
    deadline = time.monotonic() + timeout
    rows = server.read(stream)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = server.read(stream)
    return rows


def _wait_for_more(server: ServerProcess, stream: str, seen: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    count = len(server.read(stream))
    while count <= seen and time.monotonic() < deadline:
        time.sleep(0.05)
        count = len(server.read(stream))
    return count


def _wait_committed(server: ServerProcess, topic: str, count: int, timeout: float = 120) -> None:
    """Wait until every persistent query's consumer group committed ``count`` records of the
    one-partition input ``topic``: their transactions ended, none is left open."""
    from confluent_kafka import Consumer, TopicPartition

    service = server.data_dir.name
    ids = [q["id"] for q in server.ksql("SHOW QUERIES;")[0]["queries"]]
    assert ids
    deadline = time.monotonic() + timeout
    for query_id in ids:
        consumer = Consumer(
            {"bootstrap.servers": server.settings["bootstrap.servers"], "group.id": f"_confluent-ksql-{service}query_{query_id}"}
        )
        try:
            while True:
                (committed,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
                if committed.offset >= count or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            consumer.close()
        assert committed.offset >= count, (query_id, committed.offset, count)


def _outputs(server: ServerProcess, rows: list[dict[str, Any]]) -> tuple[list[list[Any]], list[list[Any]]]:
    big = sum(1 for r in rows if r["BYTES"] > 500)
    # One aggregate change per input record (caching off).
    return _wait_for(server, "BIG_OUT", big), _wait_for(server, "PER_PAGE_OUT", len(rows))


def _env_name(prop: str) -> str:
    """A property as the ``KSQL_*`` variable the server maps back to it."""
    return "KSQL_" + prop.replace("_", "__").replace(".", "_").upper()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def store_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "embedded":
        return {}
    from kafka_broker import FAST_CLIENT_CONFIG

    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return {
        "bootstrap.servers": bootstrap,
        "processing.guarantee": "exactly_once_v2",
        **{f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()},
    }


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


@pytest.mark.timeout(900)
def test_kill9_mid_stream_equals_uninterrupted_run(
    tmp_path: Path, servers: list[ServerProcess], store_settings: dict[str, str]
) -> None:
    run = f"run{random.randrange(10**9)}"
    rows = _rows(seed=7)
    chunks = [rows[i * ROWS // CHUNKS:(i + 1) * ROWS // CHUNKS] for i in range(CHUNKS)]

    reference = ServerProcess(tmp_path / f"{run}_reference", tmp_path / "reference.log", store_settings)
    servers.append(reference)
    reference.start()
    for statement in _setup(f"{run}_reference"):
        reference.ksql(statement)
    for chunk in chunks:
        reference.insert(chunk)
    expected_big, expected_changes = _outputs(reference, rows)
    reference.stop()

    crashed = ServerProcess(tmp_path / f"{run}_crashed", tmp_path / "crashed.log", store_settings)
    servers.append(crashed)
    crashed.start()
    for statement in _setup(f"{run}_crashed"):
        crashed.ksql(statement)
    rng = random.Random(11)
    seen = 0
    sent = 0
    for chunk in chunks:
        crashed.insert(chunk)
        sent += len(chunk)
        # Kill once the queries are under way on this chunk (they must have written something
        # since the last restart), at a random moment after that; on Kafka between transactions
        # (see the module's docstring).
        seen = _wait_for_more(crashed, "BIG_OUT", seen)
        if "bootstrap.servers" in store_settings:
            _wait_committed(crashed, f"{run}_crashed_pageviews", sent)
        time.sleep(rng.uniform(0.0, 0.2))
        crashed.kill9()
        crashed.start()
    actual_big, actual_changes = _outputs(crashed, rows)

    # The reference run is itself checked against the input, so that both runs being equally
    # wrong cannot pass.
    assert len(expected_big) == sum(1 for r in rows if r["BYTES"] > 500)
    assert len(expected_changes) == len(rows)
    assert [list(r) for r in actual_big] == [list(r) for r in expected_big]
    assert [list(r) for r in actual_changes] == [list(r) for r in expected_changes]
    finals = {r[0]: r[1:] for r in actual_changes}
    assert sum(v[0] for v in finals.values()) == len(rows)
    assert sum(v[1] for v in finals.values()) == sum(r["BYTES"] for r in rows)
