"""Pull queries from any server of a cluster (ksqlDB's HA routing), with real server processes on
one Kafka broker: each server's state holds the partitions it runs (and, with standbys, warm
copies of those placed on it: one per partition, on the server after its active one), a key
lookup goes to a server holding the key's partition, a scan to the holders of every partition,
over ``POST /query`` and ``/ws/query`` alike, and after ``kill -9`` of one server the others
answer for every key."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka_broker import FAST_CLIENT_CONFIG
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = pytest.mark.kafka

KEYS = [f"u{i}" for i in range(12)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _eventually(check: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


class Server:
    def __init__(
        self,
        bootstrap: str,
        service_id: str,
        data_dir: Path,
        extra: dict[str, str],
        auth: tuple[str, str] | None = None,
    ) -> None:
        #: BASIC credentials every request of the test carries (None: no authentication)
        self.auth = auth
        self.service = service_id
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self.log = data_dir.with_suffix(".log")
        settings = {
            "bootstrap.servers": bootstrap,
            "ksql.service.id": service_id,
            "ksql.heartbeat.enable": "true",
            "ksql.lag.reporting.enable": "true",
            "ksql.lag.reporting.send.interval.ms": "500",
            "ksql.heartbeat.discover.interval.ms": "300",
            "ksql.streams.auto.offset.reset": "earliest",
            **{f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()},
            **extra,
        }
        env = {**os.environ, **{"KSQL_" + k.upper().replace(".", "_"): v for k, v in settings.items()}}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ksqlpy", "server", "--listeners", self.url, "--data-dir", str(data_dir)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"server exited: {self.log.read_text()[-3000:]}"
            try:
                return httpx.get(f"{self.url}/healthcheck", timeout=1, auth=self.auth).status_code == 200
            except httpx.HTTPError:
                return False

        assert _eventually(ready, 60), f"server did not start: {self.log.read_text()[-3000:]}"

    def ksql(self, statement: str) -> Any:
        response = httpx.post(
            f"{self.url}/ksql", json={"ksql": statement, "streamsProperties": {}}, timeout=60, auth=self.auth
        )
        assert response.status_code == 200, response.text
        return response.json()

    def query(self, sql: str, request: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[list[Any]]]:
        body: dict[str, Any] = {"ksql": sql, "streamsProperties": {}}
        if request is not None:
            body["requestProperties"] = request
        response = httpx.post(f"{self.url}/query", json=body, timeout=60, auth=self.auth)
        assert response.status_code == 200, response.text
        header, *rest = response.json()
        return header["header"], [item["row"]["columns"] for item in rest if "row" in item]

    def tables(self) -> dict[str, Any]:
        """What this server's cluster status says each host holds (its announced partitions)."""
        response = httpx.get(f"{self.url}/clusterStatus", timeout=10, auth=self.auth)
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


def _start(
    bootstrap: str, tmp_path: Path, extra: dict[str, str], auth: tuple[str, str] | None = None
) -> tuple[Server, Server]:
    service = f"pull_{uuid.uuid4().hex[:8]}_"
    a = Server(bootstrap, service, tmp_path / "a", extra, auth)
    b = Server(bootstrap, service, tmp_path / "b", extra, auth)
    a.wait_ready()
    b.wait_ready()
    return a, b


def _expected() -> dict[str, list[Any]]:
    # key u<i> gets i+1 records of amount 10 each
    return {k: [k, i + 1, 10 * (i + 1)] for i, k in enumerate(KEYS)}


def _create(a: Server) -> str:
    run = uuid.uuid4().hex[:8]
    a.ksql(
        f"CREATE STREAM pv (user_id STRING KEY, amount INT) WITH (kafka_topic='pv_{run}', "
        "value_format='JSON', partitions=4);"
    )
    (created,) = a.ksql(
        "CREATE TABLE totals AS SELECT user_id, COUNT(*) AS n, SUM(amount) AS total FROM pv GROUP BY user_id;"
    )
    for i, k in enumerate(KEYS):
        for _ in range(i + 1):
            a.ksql(f"INSERT INTO pv (user_id, amount) VALUES ('{k}', 10);")
    return str(created["commandStatus"]["queryId"])


def _lookups(server: Server) -> dict[str, list[Any]]:
    """The row of every key that answers; a key whose partition no live server holds yet fails
    (ksqlDB's "failed to find valid host") and is left out."""
    found = {}
    for key in KEYS:
        body = {"ksql": f"SELECT * FROM totals WHERE user_id = '{key}';", "streamsProperties": {}}
        response = httpx.post(f"{server.url}/query", json=body, timeout=60, auth=server.auth)
        if response.status_code == 200:
            rows = [item["row"]["columns"] for item in response.json()[1:] if "row" in item]
            if len(rows) == 1:
                found[key] = rows[0]
        else:
            message = response.json()["message"]
            assert "failed to find valid host" in message or "Exhausted standby hosts" in message, message
    return found


def _ws_rows(server: Server, sql: str) -> list[list[Any]]:
    """The rows ``/ws/query`` answers ``sql`` with (after its schema message), ended by a normal close."""
    request = urllib.parse.urlencode({"request": json.dumps({"ksql": sql, "streamsProperties": {}})})
    headers = {}
    if server.auth is not None:
        token = base64.b64encode(":".join(server.auth).encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    received = []
    with connect(f"ws://{server.host}/ws/query?{request}", additional_headers=headers, open_timeout=30) as ws:
        try:
            while True:
                received.append(json.loads(ws.recv(timeout=60)))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1000, (sql, closed.rcvd, received)
    assert received and isinstance(received[0], list), received  # the schema comes first
    return [item["row"]["columns"] for item in received[1:]]


def _split_between(a: Server, query_id: str) -> bool:
    """Both servers alive, each running some of the four partitions."""
    status = a.tables()
    if len(status) != 2 or not all(h["hostAlive"] for h in status.values()):
        return False
    held = [
        {p["partition"] for p in h["activeStandbyPerQuery"].get(query_id, {}).get("activePartitions", [])}
        for h in status.values()
    ]
    return all(held) and set().union(*held) == {0, 1, 2, 3}


def _placed(server: Server, query_id: str, hosts: list[str]) -> bool:
    """All ``hosts`` alive, each partition active on one of them, and its one standby on the
    next host after that one in the order of their ids (one replica), as every server derives it."""
    status = server.tables()
    if set(status) != set(hosts) or not all(h["hostAlive"] for h in status.values()):
        return False
    active: dict[int, list[str]] = {}
    standby: dict[int, list[str]] = {}
    for host, held in status.items():
        entry = held["activeStandbyPerQuery"].get(query_id, {})
        for tp in entry.get("activePartitions", []):
            active.setdefault(tp["partition"], []).append(host)
        for tp in entry.get("standByPartitions", []):
            standby.setdefault(tp["partition"], []).append(host)
    ring = sorted(hosts)
    return sorted(active) == [0, 1, 2, 3] and all(
        len(on) == 1 and standby.get(p) == [ring[(ring.index(on[0]) + 1) % len(ring)]] for p, on in active.items()
    )


@pytest.fixture
def standby_cluster(
    kafka_bootstrap: str, tmp_path: Path
) -> Iterator[tuple[Server, Server, Callable[[], Server]]]:
    """Two servers, and a way to have a third join them."""
    extra = {"ksql.streams.num.standby.replicas": "1", "ksql.query.pull.enable.standby.reads": "true"}
    a, b = _start(kafka_bootstrap, tmp_path, extra)
    started = [a, b]

    def join() -> Server:
        c = Server(kafka_bootstrap, a.service, tmp_path / "c", extra)
        started.append(c)
        c.wait_ready()
        return c

    try:
        yield a, b, join
    finally:
        for server in started:
            server.stop()


def test_pull_queries_from_either_server_and_after_a_kill(
    standby_cluster: tuple[Server, Server, Callable[[], Server]],
) -> None:
    a, b, join = standby_cluster
    query_id = _create(a)
    expected = _expected()
    assert _eventually(lambda: _split_between(a, query_id), 30), a.tables()

    # every key from each server, each row as a local pull query's
    for server in (a, b):
        assert _eventually(lambda s=server: _lookups(s) == expected, 40), (_lookups(server), a.tables())
        header, rows = server.query("SELECT * FROM totals;")
        assert header["schema"] == "`USER_ID` STRING KEY, `N` BIGINT, `TOTAL` INTEGER"
        assert sorted(rows) == sorted(expected.values())

    # a forwarded request answers from the partitions it names only, and is not forwarded again
    internal = {
        "request.ksql.query.pull.skip.forwarding": True,
        "request.ksql.internal.request": True,
    }
    _, part0 = a.query("SELECT * FROM totals;", {**internal, "request.ksql.query.pull.partition": "0"})
    _, rest = a.query("SELECT * FROM totals;", {**internal, "request.ksql.query.pull.partition": "1,2,3"})
    assert part0 and rest and sorted(part0 + rest) == sorted(expected.values())

    # standby copies are placed and announced: with one replica and two servers, each server
    # keeps the partitions the other runs, and never one it runs itself
    def standbys_announced() -> bool:
        for host in a.tables().values():
            entry = host["activeStandbyPerQuery"].get(query_id, {})
            active = {p["partition"] for p in entry.get("activePartitions", [])}
            standby = {p["partition"] for p in entry.get("standByPartitions", [])}
            if not active or standby != {0, 1, 2, 3} - active:
                return False
        return True

    assert _eventually(standbys_announced, 20), a.tables()

    # a third server joins: partitions move, and every server follows the new placement, one
    # standby per partition on the server after its active one (no longer every other server)
    c = join()
    assert _eventually(lambda: _placed(a, query_id, [a.host, b.host, c.host]), 60), a.tables()

    # SHOW QUERIES EXTENDED and DESCRIBE EXTENDED say which host runs which partitions
    def described() -> dict[str, Any]:
        (listing,) = b.ksql("SHOW QUERIES EXTENDED;")
        (found,) = [d for d in listing["queryDescriptions"] if d["id"] == query_id]
        return found

    def all_tasks() -> bool:
        return {t["taskId"] for t in described()["tasksMetadata"]} == {"0_0", "0_1", "0_2", "0_3"}

    assert _eventually(all_tasks, 20), described()
    assert described()["ksqlHostQueryStatus"] == {a.host: "RUNNING", b.host: "RUNNING", c.host: "RUNNING"}
    (source,) = a.ksql("DESCRIBE totals EXTENDED;")
    statistics = source["sourceDescription"]["statistics"]
    assert f"{a.host} active partitions" in statistics and f"{b.host} active partitions" in statistics
    assert source["sourceDescription"]["writeQueries"][0]["statusCount"] == {"RUNNING": 3}

    # a push query on either server sees the records of every partition
    total = sum(i + 1 for i in range(len(KEYS)))
    response = httpx.post(
        f"{b.url}/query",
        json={"ksql": f"SELECT * FROM pv EMIT CHANGES LIMIT {total};",
              "streamsProperties": {"auto.offset.reset": "earliest"}},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    pushed = [item["row"]["columns"] for item in response.json()[1:] if "row" in item]
    assert len(pushed) == total and {row[0] for row in pushed} == set(KEYS)

    # one server dies without a word: the other answers for every key
    b.process.send_signal(signal.SIGKILL)
    b.process.wait(10)
    assert _eventually(lambda: _lookups(a) == expected, 40), (_lookups(a), a.tables())
    _, rows = a.query("SELECT * FROM totals;")
    assert sorted(rows) == sorted(expected.values())


@pytest.fixture
def cluster(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two servers with BASIC authentication: heartbeats and lag reports go to the skipped
    paths ksqlDB's docs name, and a forwarded pull query carries its caller's credentials."""
    passwords = tmp_path / "password-file"
    passwords.write_text("alice: secret, admin\n")
    extra = {
        "authentication.method": "BASIC",
        "authentication.realm": "KsqlServer-Props",
        "authentication.roles": "admin",
        "authentication.skip.paths": "/heartbeat,/lag",
        "ksqlpy.authentication.password.file": str(passwords),
    }
    a, b = _start(kafka_bootstrap, tmp_path, extra, auth=("alice", "secret"))
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_state_follows_owned_partitions_and_queries_are_routed(cluster: tuple[Server, Server]) -> None:
    a, b = cluster
    refused = httpx.post(f"{a.url}/query", json={"ksql": "SELECT * FROM totals;"}, timeout=10)
    assert refused.status_code == 401
    query_id = _create(a)
    expected = _expected()
    assert _eventually(lambda: _split_between(a, query_id), 30), a.tables()
    # without ksql.streams.num.standby.replicas no server keeps a standby copy
    for host in a.tables().values():
        assert host["activeStandbyPerQuery"][query_id]["standByPartitions"] == [], host
    for server in (a, b):
        assert _eventually(lambda s=server: _lookups(s) == expected, 40), (_lookups(server), a.tables())
        _, rows = server.query("SELECT * FROM totals;")
        assert sorted(rows) == sorted(expected.values())

    # each server's own state holds only the partitions it runs: asked for all of them locally
    # (as a forwarded request is), each answers its part, and the parts make the table
    internal = {
        "request.ksql.query.pull.skip.forwarding": True,
        "request.ksql.internal.request": True,
        "request.ksql.query.pull.partition": "0,1,2,3",
    }
    _, mine_a = a.query("SELECT * FROM totals;", internal)
    _, mine_b = b.query("SELECT * FROM totals;", internal)
    assert mine_a and mine_b
    assert sorted(mine_a + mine_b) == sorted(expected.values())

    # /ws/query routes a pull query as /query does: keys only the other server holds, and a scan
    others = sorted(row[0] for row in mine_b)
    for key in others[:3]:
        assert _ws_rows(a, f"SELECT * FROM totals WHERE user_id = '{key}';") == [expected[key]]
    assert sorted(_ws_rows(a, "SELECT * FROM totals;")) == sorted(expected.values())

    # without standbys, the survivor of a kill takes the partitions over and reads them in
    b.process.send_signal(signal.SIGKILL)
    b.process.wait(10)
    assert _eventually(lambda: _lookups(a) == expected, 40), (_lookups(a), a.tables())
