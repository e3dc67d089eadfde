"""Deeply nested expressions on a real server: a 50-term ``V + V + ...`` runs, as a persistent
and as a push query; a 500-term one is a 400 that says where the expression is, never a 500 nor
an error without a position."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.server.conftest import RunningServer, ServerThread, open_engine, server_config
from tests.server.test_endpoints import EARLIEST, ksql, make_stream

POSITIONED = re.compile(r"^line 1:(\d+): ")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    from ksqlpy.server.app import create_app

    config = server_config()
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    port = config.listeners[0].port
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", port=port, engine=engine)
    finally:
        thread.stop()
        engine.close()


def terms(n: int) -> str:
    return " + ".join(["V"] * n)


def push_rows(server: RunningServer, sql: str) -> list[list[object]]:
    response = httpx.post(f"{server.url}/query-stream", json={"sql": sql, "properties": EARLIEST}, timeout=60)
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.text.splitlines()[1:]]


def test_fifty_terms_run(server: RunningServer) -> None:
    source = make_stream(server, rows=2)  # V is 0, then 1
    sink = f"{source}_SUM"
    created = ksql(
        server,
        f"CREATE STREAM {sink} AS SELECT ID, {terms(50)} AS X FROM {source};",
        streamsProperties=EARLIEST,
    )
    assert created.status_code == 200, created.text
    assert push_rows(server, f"SELECT * FROM {sink} EMIT CHANGES LIMIT 2;") == [["k0", 0], ["k1", 50]]
    pushed = push_rows(server, f"SELECT {terms(50)} - 1 AS Y FROM {source} EMIT CHANGES LIMIT 2;")
    assert pushed == [[-1], [49]]


@pytest.mark.parametrize("endpoint", ["/ksql", "/query", "/query-stream"])
def test_five_hundred_terms_are_refused_at_their_position(server: RunningServer, endpoint: str) -> None:
    source = make_stream(server)
    select = f"SELECT ID, {terms(500)} AS X FROM {source}"
    text = f"CREATE STREAM {source}_SUM AS {select};" if endpoint == "/ksql" else f"{select} EMIT CHANGES;"
    body = {"sql": text} if endpoint == "/query-stream" else {"ksql": text}
    response = httpx.post(f"{server.url}{endpoint}", json=body, timeout=60)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    where = POSITIONED.match(message)
    assert where is not None, message
    # the position falls inside the expression, not at the statement's start
    start = text.index("V + V")
    assert start < int(where.group(1)) <= start + len(terms(500)), message
    assert "nested" in message
