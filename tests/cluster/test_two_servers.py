"""Two ``ksqlpy server`` processes with one service id on one Kafka broker are one cluster:
statements run on either show on both with the same query ids, each lists the other in
``/clusterStatus``, and a server killed with SIGKILL is marked dead by the other."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka_broker import FAST_CLIENT_CONFIG

pytestmark = pytest.mark.kafka


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_name(setting: str) -> str:
    return "KSQL_" + setting.upper().replace(".", "_")


def _eventually(check: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


class Server:
    def __init__(self, bootstrap: str, service_id: str, data_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self.log = data_dir.with_suffix(".log")
        settings = {
            "bootstrap.servers": bootstrap,
            "ksql.service.id": service_id,
            "ksql.heartbeat.enable": "true",
            "ksql.lag.reporting.enable": "true",
            "ksql.streams.auto.offset.reset": "earliest",
            **{f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()},
        }
        env = {**os.environ, **{_env_name(k): v for k, v in settings.items()}}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ksqlpy", "server", "--listeners", self.url, "--data-dir", str(data_dir)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"server exited: {self.log.read_text()[-3000:]}"
            try:
                return httpx.get(f"{self.url}/healthcheck", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert _eventually(ready, 60), f"server did not start: {self.log.read_text()[-3000:]}"

    def ksql(self, statement: str) -> Any:
        response = httpx.post(f"{self.url}/ksql", json={"ksql": statement, "streamsProperties": {}}, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def names(self, what: str) -> set[str]:
        (listing,) = self.ksql(f"SHOW {what.upper()};")
        return {s["name"] for s in listing[what]}

    def query_ids(self) -> set[str]:
        (listing,) = self.ksql("SHOW QUERIES;")
        return {q["id"] for q in listing["queries"]}

    def cluster(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/clusterStatus", timeout=10)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()["clusterStatus"]
        return status

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def servers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    service = f"two_{uuid.uuid4().hex[:8]}_"
    a = Server(kafka_bootstrap, service, tmp_path / "a")
    b = Server(kafka_bootstrap, service, tmp_path / "b")
    try:
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_two_servers_are_one_cluster(servers: tuple[Server, Server]) -> None:
    a, b = servers
    run = uuid.uuid4().hex[:8]
    a.ksql(
        f"CREATE STREAM views (id INT KEY, page STRING) WITH (kafka_topic='views_{run}', "
        "value_format='JSON', partitions=2);"
    )
    (created,) = a.ksql("CREATE STREAM upper_views AS SELECT id, UCASE(page) AS page FROM views;")
    query_id = created["commandStatus"]["queryId"]
    assert query_id.startswith("CSAS_UPPER_VIEWS_")
    # a request naming the command's sequence number sees it on the other server at once
    listed = httpx.post(
        f"{b.url}/ksql", json={"ksql": "SHOW QUERIES;", "commandSequenceNumber": created["commandSequenceNumber"]}
    )
    assert listed.status_code == 200 and query_id in {q["id"] for q in listed.json()[0]["queries"]}
    # the other server applied both statements from the command topic, under the same id
    assert _eventually(lambda: {"VIEWS", "UPPER_VIEWS"} <= b.names("streams"), 10)
    assert query_id in b.query_ids()
    # and goes on from there: a statement on it sees what the first one created
    (second,) = b.ksql("CREATE STREAM short_views AS SELECT id, page FROM upper_views WHERE id < 10;")
    second_id = second["commandStatus"]["queryId"]
    assert _eventually(lambda: {query_id, second_id} <= a.query_ids(), 10)
    # every server answers the status of every command it applied, whichever server ran it
    for server, command_id, status in (
        (b, "stream/%60VIEWS%60/create", {"status": "SUCCESS", "message": "Stream created", "queryId": None}),
        (b, "stream/%60UPPER_VIEWS%60/create",
         {"status": "SUCCESS", "message": f"Created query with ID {query_id}", "queryId": query_id}),
        (a, "stream/%60SHORT_VIEWS%60/create",
         {"status": "SUCCESS", "message": f"Created query with ID {second_id}", "queryId": second_id}),
    ):
        answer = httpx.get(f"{server.url}/status/{command_id}", timeout=10)
        assert answer.status_code == 200 and answer.json() == status, (command_id, answer.text)
    listed_statuses = httpx.get(f"{b.url}/status", timeout=10).json()["commandStatuses"]
    assert listed_statuses["stream/`UPPER_VIEWS`/create"] == "SUCCESS", listed_statuses
    unknown = httpx.get(f"{b.url}/status/stream/%60NOPE%60/create", timeout=10)
    assert unknown.status_code == 404
    assert unknown.json() == {"@type": "generic_error", "error_code": 40400, "message": "Command not found"}
    failed = httpx.post(
        f"{a.url}/ksql", json={"ksql": "CREATE STREAM short_views AS SELECT * FROM views;"}, timeout=60
    )
    assert failed.status_code == 400 and "A stream with the same name already exists" in failed.json()["message"]

    # each lists both, alive, with what each one's consumers of the query hold
    def both_alive(server: Server) -> bool:
        status = server.cluster()
        return set(status) == {a.host, b.host} and all(h["hostAlive"] for h in status.values())

    assert _eventually(lambda: both_alive(a) and both_alive(b), 20), (a.cluster(), b.cluster())

    def partitions_held() -> set[int]:
        status = a.cluster()
        return {
            p["partition"]
            for host in status.values()
            for p in host["activeStandbyPerQuery"].get(query_id, {}).get("activePartitions", [])
            if p["topic"] == f"views_{run}"
        }

    assert _eventually(lambda: partitions_held() == {0, 1}, 30), a.cluster()

    # each server's command runner tails the command topic
    for server in (a, b):
        health = httpx.get(f"{server.url}/healthcheck", timeout=10).json()
        assert health["details"]["commandRunner"]["isHealthy"] is True, health

    # a server killed without a word stops heartbeating: the other marks it dead
    b.process.send_signal(signal.SIGKILL)
    b.process.wait(10)
    assert _eventually(lambda: a.cluster()[b.host]["hostAlive"] is False, 15), a.cluster()
    assert a.cluster()[a.host]["hostAlive"] is True
