"""``GET /ws/query`` over a real websocket connection (the ``websockets`` client)."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.server.conftest import RunningServer
from tests.server.test_endpoints import EARLIEST, make_stream


def ws_url(server: RunningServer, request: dict[str, Any] | str | None, **params: str) -> str:
    query = dict(params)
    if request is not None:
        query["request"] = request if isinstance(request, str) else json.dumps(request)
    return f"ws://127.0.0.1:{server.port}/ws/query?{urllib.parse.urlencode(query)}"


def messages_until_close(url: str) -> tuple[list[Any], int, str]:
    """Every message the server sends, then the close code and reason it closed with."""
    received: list[Any] = []
    with connect(url, open_timeout=30) as ws:
        try:
            while True:
                received.append(orjson.loads(ws.recv(timeout=30)))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the server must close the socket, not drop it"
            return received, closed.rcvd.code, closed.rcvd.reason


def test_push_query_schema_rows_then_normal_close(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server, rows=3)
    request = {"ksql": f"SELECT * FROM {name} EMIT CHANGES LIMIT 2;", "streamsProperties": EARLIEST}
    received, code, reason = messages_until_close(ws_url(ksql_server, request, version="1"))
    schema, *rows = received
    assert schema == [
        {"name": "ID", "schema": {"type": "STRING", "fields": None, "memberSchema": None}},
        {"name": "V", "schema": {"type": "INTEGER", "fields": None, "memberSchema": None}},
    ]
    assert rows == [{"row": {"columns": ["k0", 0]}}, {"row": {"columns": ["k1", 1]}}]
    assert (code, reason) == (1000, "done")


def test_pull_query_over_a_stream_ends_with_normal_close(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server, rows=2)
    received, code, _ = messages_until_close(ws_url(ksql_server, {"ksql": f"SELECT V FROM {name};"}))
    assert received[0][0]["name"] == "V"
    assert received[1:] == [{"row": {"columns": [0]}}, {"row": {"columns": [1]}}]
    assert code == 1000


@pytest.mark.parametrize(
    ("request_param", "params", "in_reason"),
    [
        (None, {}, "missing request"),
        ("{not json", {}, ""),
        ({"ksql": "SELECT * FROM NOPE_NOT_THERE EMIT CHANGES;"}, {}, "NOPE_NOT_THERE"),
        ({"ksql": "SELEC nonsense;"}, {}, ""),
        ({"ksql": "SHOW STREAMS;"}, {"version": "2"}, "version"),
    ],
)
def test_bad_requests_close_with_1003(
    ksql_server: RunningServer, request_param: Any, params: dict[str, str], in_reason: str
) -> None:
    received, code, reason = messages_until_close(ws_url(ksql_server, request_param, **params))
    assert received == [] and code == 1003
    assert in_reason in reason and reason


def test_client_close_stops_the_push_query(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server, rows=1)
    request = {"ksql": f"SELECT * FROM {name} EMIT CHANGES;", "streamsProperties": EARLIEST}
    before = set(ksql_server.engine.transient)
    with connect(ws_url(ksql_server, request), open_timeout=30) as ws:
        assert orjson.loads(ws.recv(timeout=30))[0]["name"] == "ID"
        assert orjson.loads(ws.recv(timeout=30)) == {"row": {"columns": ["k0", 0]}}
        running = set(ksql_server.engine.transient) - before
        assert len(running) == 1
    # Closing the socket closes the query; wait for the server to notice (no fixed sleep).
    deadline = time.monotonic() + 20
    while running & set(ksql_server.engine.transient) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running & set(ksql_server.engine.transient)
