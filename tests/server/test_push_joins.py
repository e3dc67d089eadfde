"""Push queries over joins through the REST API: real server, real engine, real HTTP."""

from __future__ import annotations

import time

import httpx
import orjson

from tests.server.conftest import RunningServer
from tests.server.test_endpoints import EARLIEST, fresh, ksql


def _users_and_clicks(server: RunningServer) -> tuple[str, str]:
    users, clicks = fresh("USERS"), fresh("CLICKS")
    for text in (
        (
            f"CREATE TABLE {users} (UID VARCHAR PRIMARY KEY, NAME VARCHAR) "
            f"WITH (kafka_topic='{users.lower()}', value_format='JSON', partitions=1);"
        ),
        (
            f"CREATE STREAM {clicks} (UID VARCHAR KEY, URL VARCHAR) "
            f"WITH (kafka_topic='{clicks.lower()}', value_format='JSON', partitions=1);"
        ),
    ):
        r = ksql(server, text)
        assert r.status_code == 200, r.text
    return users, clicks


def _insert(server: RunningServer, text: str) -> None:
    r = ksql(server, text)
    assert r.status_code == 200 and r.json() == [], r.text


def test_push_query_over_stream_table_join_sees_inserts(ksql_server: RunningServer) -> None:
    users, clicks = _users_and_clicks(ksql_server)
    sql = (
        f"SELECT C.UID, U.NAME, C.URL FROM {clicks} C JOIN {users} U ON C.UID = U.UID EMIT CHANGES;"
    )
    body = orjson.dumps({"sql": sql, "properties": {}})  # from the latest offsets: only new rows
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{ksql_server.url}/query-stream", content=body) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        meta = orjson.loads(next(lines))
        assert meta["columnNames"] == ["C_UID", "NAME", "URL"]
        assert meta["columnTypes"] == ["STRING", "STRING", "STRING"]
        query_id = meta["queryId"]
        # the query has started: these rows arrive while it runs
        _insert(ksql_server, f"INSERT INTO {users} (UID, NAME) VALUES ('u1', 'ann');")
        _insert(ksql_server, f"INSERT INTO {clicks} (UID, URL) VALUES ('u1', '/a');")
        _insert(ksql_server, f"INSERT INTO {clicks} (UID, URL) VALUES ('u2', '/nobody');")
        _insert(ksql_server, f"INSERT INTO {users} (UID, NAME) VALUES ('u1', 'bea');")
        _insert(ksql_server, f"INSERT INTO {clicks} (UID, URL) VALUES ('u1', '/b');")
        assert orjson.loads(next(lines)) == ["u1", "ann", "/a"]
        # u2 has no user: an inner join drops the click; u1's name changed in between
        assert orjson.loads(next(lines)) == ["u1", "bea", "/b"]
        running = {q["id"] for q in ksql(ksql_server, "SHOW QUERIES;").json()[0]["queries"]}
        assert query_id in running
        closed = client.post(f"{ksql_server.url}/close-query", content=orjson.dumps({"queryId": query_id}))
        assert closed.status_code == 200
        assert list(lines) == []  # the response ended
    running = {q["id"] for q in ksql(ksql_server, "SHOW QUERIES;").json()[0]["queries"]}
    assert query_id not in running


def test_push_join_query_with_limit_over_legacy_endpoint(ksql_server: RunningServer) -> None:
    users, clicks = _users_and_clicks(ksql_server)
    _insert(ksql_server, f"INSERT INTO {users} (UID, NAME) VALUES ('u1', 'ann');")
    for url in ("/a", "/b", "/c"):
        _insert(ksql_server, f"INSERT INTO {clicks} (UID, URL) VALUES ('u1', '{url}');")
    sql = f"SELECT * FROM {clicks} C LEFT JOIN {users} U ON C.UID = U.UID EMIT CHANGES LIMIT 2;"
    r = httpx.post(
        f"{ksql_server.url}/query", content=orjson.dumps({"ksql": sql, "streamsProperties": EARLIEST}), timeout=30
    )
    assert r.status_code == 200, r.text
    parsed = orjson.loads(r.content)
    assert parsed[0]["header"]["queryId"].startswith(f"transient_{clicks}_")
    assert parsed[0]["header"]["schema"] == (
        "`C_UID` STRING, `C_URL` STRING, `U_UID` STRING, `U_NAME` STRING"
    )
    rows = [p["row"]["columns"] for p in parsed[1:-1]]
    # the table row may be read after the clicks (its own topic): then they join nothing
    assert [row[:2] for row in rows] == [["u1", "/a"], ["u1", "/b"]]
    assert parsed[-1] == {"finalMessage": "Limit Reached"}
    # the query closed itself at its LIMIT
    deadline = time.monotonic() + 20
    while parsed[0]["header"]["queryId"] in ksql_server.engine.transient:
        assert time.monotonic() < deadline, "the query was never closed"
        time.sleep(0.05)


def test_push_join_query_errors_are_400(ksql_server: RunningServer) -> None:
    users, clicks = _users_and_clicks(ksql_server)
    sql = f"SELECT * FROM {clicks} C JOIN {users} U ON C.URL = U.NOPE EMIT CHANGES;"
    r = httpx.post(f"{ksql_server.url}/query-stream", content=orjson.dumps({"sql": sql}), timeout=30)
    assert r.status_code == 400, r.text
    assert "NOPE" in r.json()["message"]
