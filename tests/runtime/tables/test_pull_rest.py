"""Pull queries over HTTP: the /query and /query-stream shapes ksqlDB clients read."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ksqlpy.runtime.engine import Engine
from ksqlpy.server.app import create_app
from ksqlpy.server.config import ServerConfig
from ksqlpy.server.main import serve_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    config = ServerConfig.load(
        environ={},
        overrides={
            "listeners": f"http://127.0.0.1:{port}",
            "ksql.streams.state.dir": str(tmp_path / "data"),
            "ksql.streams.auto.offset.reset": "earliest",
        },
    )
    engine = Engine.open(config.engine_properties())
    loop = asyncio.new_event_loop()
    stop: list[asyncio.Event] = []
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            stop.append(asyncio.Event())
            started.set()
            await serve_app(create_app(engine, config), config, stop[0])

        loop.run_until_complete(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            threading.Event().wait(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(15)
        engine.close()


def test_pull_query_over_rest(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        statements = (
            "CREATE TABLE users (id VARCHAR PRIMARY KEY, age INT) WITH (kafka_topic='users', value_format='JSON', partitions=1);"
            "CREATE TABLE q_users AS SELECT * FROM users;"
            "INSERT INTO users (id, age) VALUES ('a', 3);"
            "INSERT INTO users (id, age) VALUES ('b', 4);"
        )
        assert client.post("/ksql", json={"ksql": statements}).status_code == 200
        body = client.post("/query", json={"ksql": "SELECT * FROM q_users WHERE id IN ('b', 'a');"}).text
        items = json.loads(body)
        assert items[0]["header"]["schema"] == "`ID` STRING KEY, `AGE` INTEGER"
        assert items[0]["header"]["queryId"].startswith("query_")
        assert items[1:] == [{"row": {"columns": ["b", 4]}}, {"row": {"columns": ["a", 3]}}]
        lines = client.post(
            "/query-stream",
            json={"sql": "SELECT id, age FROM q_users ORDER BY age DESC;"},
            headers={"Accept": "application/vnd.ksqlapi.delimited.v1"},
        ).text.splitlines()
        meta = json.loads(lines[0])
        assert meta["columnNames"] == ["ID", "AGE"] and meta["columnTypes"] == ["STRING", "INTEGER"]
        assert [json.loads(line) for line in lines[1:]] == [["b", 4], ["a", 3]]


def test_pull_query_over_a_table_whose_query_started_at_latest(server: str) -> None:
    latest = {"ksql.streams.auto.offset.reset": "latest"}
    with httpx.Client(base_url=server, timeout=30) as client:
        statements = (
            "CREATE STREAM clicks (page VARCHAR KEY, n INT) WITH (kafka_topic='clicks', value_format='JSON', partitions=1);"
            "INSERT INTO clicks (page, n) VALUES ('a', 1);"
            "CREATE TABLE counts AS SELECT page, COUNT(*) AS c FROM clicks GROUP BY page;"
        )
        assert client.post("/ksql", json={"ksql": statements, "streamsProperties": latest}).status_code == 200
        pulled = client.post("/query", json={"ksql": "SELECT * FROM counts WHERE page = 'a';"})
        assert pulled.status_code == 200
        assert json.loads(pulled.text)[1:] == []
        bad = client.post("/query", json={"ksql": "SELECT nope FROM counts WHERE page = 'a';"})
        assert bad.status_code == 400
        assert bad.json()["message"] == "line 1:8: SELECT column 'NOPE' cannot be resolved."
