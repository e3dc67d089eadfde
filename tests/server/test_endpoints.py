"""Every endpoint end to end: real HTTP/1.1 and HTTP/2 clients, real server, real engine."""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.parse
from typing import Any

import httpx
import orjson
import pytest

from tests.server.conftest import RunningServer

_names = itertools.count()
EARLIEST = {"ksql.streams.auto.offset.reset": "earliest"}


def fresh(prefix: str = "S") -> str:
    return f"{prefix}{next(_names)}_{int(time.time() * 1000) % 100000}"


def ksql(server: RunningServer, text: str, **extra: Any) -> httpx.Response:
    body = orjson.dumps({"ksql": text, "streamsProperties": {}, **extra})
    return httpx.post(f"{server.url}/ksql", content=body, timeout=30,
                      headers={"Content-Type": "application/vnd.ksql.v1+json; charset=utf-8"})


def make_stream(server: RunningServer, rows: int = 0) -> str:
    name = fresh()
    r = ksql(server, f"CREATE STREAM {name} (ID VARCHAR KEY, V INT) "
                     f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1);")
    assert r.status_code == 200, r.text
    for i in range(rows):
        assert ksql(server, f"INSERT INTO {name} (ID, V) VALUES ('k{i}', {i});").json() == []
    return name


# --- server info -----------------------------------------------------------------------------


def test_info_health_metadata(ksql_server: RunningServer) -> None:
    info = httpx.get(f"{ksql_server.url}/info").json()["KsqlServerInfo"]
    assert set(info) == {"version", "kafkaClusterId", "ksqlServiceId", "serverStatus"}
    service_id = ksql_server.engine.config.service_id
    assert info["ksqlServiceId"] == service_id
    health = httpx.get(f"{ksql_server.url}/healthcheck").json()
    assert health["isHealthy"] is True and health["serverState"] == "READY"
    assert set(health["details"]) == {"metastore", "kafka", "commandRunner"}
    meta = httpx.get(f"{ksql_server.url}/v1/metadata").json()
    assert meta["clusterId"]["scope"]["clusters"]["ksql-cluster"] == service_id
    assert httpx.get(f"{ksql_server.url}/v1/metadata/id").json() == meta["clusterId"]


def test_is_valid_property(ksql_server: RunningServer) -> None:
    ok = httpx.get(f"{ksql_server.url}/is_valid_property/ksql.streams.auto.offset.reset")
    assert ok.status_code == 200 and ok.json() is True
    bad = httpx.get(f"{ksql_server.url}/is_valid_property/ksql.service.id")
    assert bad.status_code == 400 and bad.json()["error_code"] == 40000


# --- /ksql -----------------------------------------------------------------------------------


def test_create_show_describe_and_status(ksql_server: RunningServer) -> None:
    name = fresh("PV")
    r = ksql(ksql_server, f"CREATE STREAM {name} (USERID VARCHAR KEY, PAGEID VARCHAR, DURATION INT) "
                          f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1); SHOW STREAMS;")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    created, shown = r.json()
    assert created["@type"] == "currentStatus"
    assert created["commandId"] == f"stream/`{name}`/create"
    assert created["commandStatus"] == {"status": "SUCCESS", "message": "Stream created", "queryId": None}
    assert isinstance(created["commandSequenceNumber"], int) and created["warnings"] == []
    assert shown["@type"] == "streams"
    assert {"type": "STREAM", "name": name, "topic": name.lower(), "keyFormat": "KAFKA",
            "valueFormat": "JSON", "isWindowed": False} in shown["streams"]

    desc = ksql(ksql_server, f"DESCRIBE {name};").json()[0]
    assert desc["@type"] == "sourceDescription"
    fields = desc["sourceDescription"]["fields"]
    assert fields[0] == {"name": "USERID", "schema": {"type": "STRING", "fields": None, "memberSchema": None},
                         "type": "KEY"}
    assert fields[2] == {"name": "DURATION", "schema": {"type": "INTEGER", "fields": None, "memberSchema": None}}

    status = httpx.get(f"{ksql_server.url}/status/stream/{urllib.parse.quote(f'`{name}`')}/create")
    assert status.json() == {"status": "SUCCESS", "message": "Stream created", "queryId": None}
    assert httpx.get(f"{ksql_server.url}/status").json()["commandStatuses"][f"stream/`{name}`/create"] == "SUCCESS"


def test_insert_values_returns_empty_array(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server)
    r = ksql(ksql_server, f"INSERT INTO {name} (ID, V) VALUES ('a', 1);")
    assert r.status_code == 200 and r.json() == []


def test_errors_carry_codes_and_earlier_entities(ksql_server: RunningServer) -> None:
    syntax = ksql(ksql_server, "CREATE STREEM x (a INT) WITH (kafka_topic='x', value_format='JSON');")
    assert syntax.status_code == 400
    assert syntax.json()["@type"] == "statement_error" and syntax.json()["error_code"] == 40001

    partial = ksql(ksql_server, "SHOW STREAMS; DESCRIBE NOPE_NOT_THERE;")
    body = partial.json()
    assert partial.status_code == 400 and body["error_code"] == 40001
    assert "NOPE_NOT_THERE" in body["message"]
    assert body["statementText"].startswith("DESCRIBE NOPE_NOT_THERE")
    assert [e["@type"] for e in body["entities"]] == ["streams"]

    select = ksql(ksql_server, f"SELECT * FROM {make_stream(ksql_server)} EMIT CHANGES;")
    assert select.status_code == 400 and select.json()["error_code"] == 40002

    unknown = httpx.get(f"{ksql_server.url}/status/stream/NOPE/create")
    assert unknown.status_code == 404
    assert unknown.json() == {"@type": "generic_error", "error_code": 40400, "message": "Command not found"}


def test_persistent_query_terminate_and_drop(ksql_server: RunningServer) -> None:
    source = make_stream(ksql_server, rows=1)
    sink = fresh("SINK")
    created = ksql(ksql_server, f"CREATE STREAM {sink} AS SELECT * FROM {source} EMIT CHANGES;").json()[0]
    query_id = created["commandStatus"]["queryId"]
    assert created["commandId"] == f"stream/`{sink}`/create" and query_id
    queries = ksql(ksql_server, "SHOW QUERIES;").json()[0]
    assert queries["@type"] == "queries"
    listed = {q["id"]: q for q in queries["queries"]}
    assert listed[query_id]["sinks"] == [sink] and listed[query_id]["queryType"] == "PERSISTENT"

    term = ksql(ksql_server, f"TERMINATE {query_id};").json()[0]
    assert term["commandId"] == f"terminate/{query_id}/execute"
    assert term["commandStatus"]["status"] == "SUCCESS"
    dropped = ksql(ksql_server, f"DROP STREAM {sink};").json()[0]
    assert dropped["commandId"] == f"stream/{sink}/drop"
    shown = ksql(ksql_server, "SHOW STREAMS;").json()[0]["streams"]
    assert sink not in {s["name"] for s in shown}


# --- /query ----------------------------------------------------------------------------------


def test_query_push_limit_http11(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server, rows=3)
    body = orjson.dumps({"ksql": f"SELECT * FROM {name} EMIT CHANGES LIMIT 2;", "streamsProperties": EARLIEST})
    r = httpx.post(f"{ksql_server.url}/query", content=body, timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.ksql.v1+json"
    assert r.headers["transfer-encoding"] == "chunked"
    lines = r.content.split(b",\n")
    assert len(lines) == 4 and not r.content.endswith(b"\n")
    parsed = orjson.loads(r.content)
    assert parsed[0]["header"]["queryId"].startswith(f"transient_{name}_")
    assert parsed[0]["header"]["schema"] == "`ID` STRING, `V` INTEGER"
    assert [p["row"]["columns"] for p in parsed[1:3]] == [["k0", 0], ["k1", 1]]
    assert parsed[3] == {"finalMessage": "Limit Reached"}


def test_query_over_http2_keeps_legacy_format(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server, rows=1)
    body = orjson.dumps({"ksql": f"SELECT * FROM {name} EMIT CHANGES LIMIT 1;", "streamsProperties": EARLIEST})
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.post(f"{ksql_server.url}/query", content=body)
    assert r.http_version == "HTTP/2"
    assert orjson.loads(r.content)[-1] == {"finalMessage": "Limit Reached"}


def test_query_bad_statement_is_400(ksql_server: RunningServer) -> None:
    r = httpx.post(f"{ksql_server.url}/query", content=b'{"ksql":"SELECT * FROM NOPE_NONE EMIT CHANGES;"}')
    assert r.status_code == 400
    assert r.json()["@type"] == "statement_error" and r.json()["error_code"] == 40001


# --- /query-stream ---------------------------------------------------------------------------


@pytest.mark.parametrize("http2", [False, True])
def test_query_stream_delimited(ksql_server: RunningServer, http2: bool) -> None:
    name = make_stream(ksql_server, rows=2)
    body = orjson.dumps({"sql": f"SELECT * FROM {name} EMIT CHANGES LIMIT 2;", "properties": EARLIEST})
    with httpx.Client(http1=not http2, http2=http2, timeout=30) as client:
        with client.stream("POST", f"{ksql_server.url}/query-stream", content=body) as r:
            chunks = list(r.iter_raw())
            assert r.headers["content-type"] == "application/vnd.ksqlapi.delimited.v1"
    data = b"".join(chunks)
    lines = data.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4
    meta = orjson.loads(lines[0])
    assert meta["columnNames"] == ["ID", "V"] and meta["columnTypes"] == ["STRING", "INTEGER"]
    assert [orjson.loads(x) for x in lines[1:3]] == [["k0", 0], ["k1", 1]]
    if http2:
        # one line per DATA frame: the npm client parses each frame on its own
        assert all(c.count(b"\n") == 1 and c.endswith(b"\n") for c in chunks)


def test_query_stream_json_array(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server, rows=1)
    body = orjson.dumps({"sql": f"SELECT * FROM {name} EMIT CHANGES LIMIT 1;", "properties": EARLIEST})
    r = httpx.post(f"{ksql_server.url}/query-stream", content=body, headers={"Accept": "application/json"},
                   timeout=30)
    assert b"\n" not in r.content
    parsed = orjson.loads(r.content)
    assert parsed[0]["columnNames"] == ["ID", "V"] and parsed[1:] == [["k0", 0]]


def test_pull_key_lookup_over_http2_query_stream_ends_with_its_row(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server, rows=3)
    table = fresh("T")
    r = ksql(ksql_server, f"CREATE TABLE {table} AS SELECT ID, COUNT(*) AS C, SUM(V) AS TOTAL "
                          f"FROM {name} GROUP BY ID;", streamsProperties=EARLIEST)
    assert r.status_code == 200, r.text
    lookup = f"SELECT * FROM {table} WHERE ID = 'k1';"
    legacy = orjson.dumps({"ksql": lookup})
    deadline = time.monotonic() + 30
    while b'"k1"' not in httpx.post(f"{ksql_server.url}/query", content=legacy, timeout=30).content:
        assert time.monotonic() < deadline, "the table never materialized k1"
        time.sleep(0.1)
    body = orjson.dumps({"sql": lookup, "properties": {}})
    # A pull's rows are all there when it starts; the response must end with them rather than
    # wait for a wake-up the finished query never sends (the old 2 s re-check): a read timeout
    # well below that fails the test instead of letting the stream close late.
    with httpx.Client(http1=False, http2=True, timeout=httpx.Timeout(30, read=1.0)) as client:
        for _ in range(3):
            with client.stream("POST", f"{ksql_server.url}/query-stream", content=body) as r:
                assert r.http_version == "HTTP/2"
                lines = [orjson.loads(line) for line in r.iter_lines()]
            assert lines[0]["columnNames"] == ["ID", "C", "TOTAL"]
            assert lines[1:] == [["k1", 1, 1]]


def test_repeated_key_lookups_see_each_key_and_the_latest_write(ksql_server: RunningServer) -> None:
    """Lookups of one shape with other keys are answered from the shape's plan (on the event loop
    when nothing was written since the table caught up); a write in between is still read."""
    name = make_stream(ksql_server, rows=3)
    table = fresh("T")
    r = ksql(ksql_server, f"CREATE TABLE {table} AS SELECT ID, COUNT(*) AS C, SUM(V) AS TOTAL "
                          f"FROM {name} GROUP BY ID;", streamsProperties=EARLIEST)
    assert r.status_code == 200, r.text

    def lookup(key: str) -> list[Any]:
        body = orjson.dumps({"ksql": f"SELECT * FROM {table} WHERE ID = '{key}';"})
        answer = httpx.post(f"{ksql_server.url}/query", content=body, timeout=30)
        assert answer.status_code == 200, answer.text
        return [item["row"]["columns"] for item in answer.json()[1:]]

    deadline = time.monotonic() + 30
    while lookup("k2") != [["k2", 1, 2]]:
        assert time.monotonic() < deadline, "the table never materialized k2"
        time.sleep(0.1)
    for _ in range(3):
        assert [lookup(k) for k in ("k0", "k1", "k2", "nope")] == [[["k0", 1, 0]], [["k1", 1, 1]], [["k2", 1, 2]], []]
    assert ksql(ksql_server, f"INSERT INTO {name} (ID, V) VALUES ('k1', 10);").json() == []
    assert lookup("k1") == [["k1", 2, 11]]  # read-your-writes: the lookup waits for the new row
    assert lookup("k0") == [["k0", 1, 0]]


def test_close_query_ends_the_stream(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server, rows=1)
    body = orjson.dumps({"sql": f"SELECT * FROM {name} EMIT CHANGES;", "properties": EARLIEST})
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        with client.stream("POST", f"{ksql_server.url}/query-stream", content=body) as r:
            lines = r.iter_lines()
            query_id = orjson.loads(next(lines))["queryId"]
            assert orjson.loads(next(lines)) == ["k0", 0]
            closed = client.post(f"{ksql_server.url}/close-query", content=orjson.dumps({"queryId": query_id}))
            assert closed.status_code == 200 and closed.content == b""
            assert list(lines) == []  # the response ended
    again = httpx.post(f"{ksql_server.url}/close-query", content=orjson.dumps({"queryId": query_id}))
    assert again.status_code == 400
    assert again.json() == {"@type": "generic_error", "error_code": 40000, "message": f"No query with id {query_id}"}


def test_client_disconnect_stops_push_query(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server, rows=1)
    body = orjson.dumps({"sql": f"SELECT * FROM {name} EMIT CHANGES;", "properties": EARLIEST})
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", f"{ksql_server.url}/query-stream", content=body) as r:
            query_id = orjson.loads(next(r.iter_lines()))["queryId"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        running = {q["id"] for q in ksql(ksql_server, "SHOW QUERIES;").json()[0]["queries"]}
        if query_id not in running:
            break
        time.sleep(0.1)
    assert query_id not in running
    r = httpx.post(f"{ksql_server.url}/close-query", content=orjson.dumps({"queryId": query_id}))
    assert r.status_code == 400


# --- /inserts-stream -------------------------------------------------------------------------


def test_inserts_stream_http2_acks_and_unterminated_last_row(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server)
    body = (orjson.dumps({"target": name.lower()}) + b"\n" + b'{"ID":"a","V":1}\n' + b'{"ID":"b","V":2}')
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.post(f"{ksql_server.url}/inserts-stream", content=body)
        assert r.status_code == 200
        acks = [orjson.loads(x) for x in r.content.splitlines()]
        assert acks == [{"seq": 0, "status": "ok"}, {"seq": 1, "status": "ok"}]
        as_json = client.post(f"{ksql_server.url}/inserts-stream", headers={"Accept": "application/json"},
                              content=orjson.dumps({"target": name}) + b"\n" + b'{"ID":"c","V":3}\n')
        assert as_json.json() == [{"seq": 0, "status": "ok"}]
        bad = client.post(f"{ksql_server.url}/inserts-stream",
                          content=orjson.dumps({"target": name}) + b'\n{"ID":"d","V":4}\n{oops\n')
        acks = [orjson.loads(x) for x in bad.content.splitlines()]
        assert acks[0] == {"seq": 0, "status": "ok"}
        assert acks[1] == {"@type": "InsertError", "error_code": 40000, "message": "Invalid JSON in inserts stream",
                           "status": "error", "seq": 1}
        unknown = client.post(f"{ksql_server.url}/inserts-stream", content=b'{"target":"NOPE_NONE"}\n{}\n')
        assert unknown.status_code == 400 and unknown.json()["error_code"] == 40001
    query = orjson.dumps({"sql": f"SELECT * FROM {name} EMIT CHANGES LIMIT 4;", "properties": EARLIEST})
    rows = httpx.post(f"{ksql_server.url}/query-stream", content=query, timeout=30).content.splitlines()[1:]
    assert [orjson.loads(x) for x in rows] == [["a", 1], ["b", 2], ["c", 3], ["d", 4]]


def test_push_query_from_latest_gets_rows_written_after_it_started(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server, rows=1)
    body = orjson.dumps({"sql": f"SELECT * FROM {name} EMIT CHANGES LIMIT 3;"})
    got = []
    with httpx.Client(timeout=httpx.Timeout(30, read=15)) as client:
        with client.stream("POST", f"{ksql_server.url}/query-stream", content=body) as r:
            lines = r.iter_lines()
            got.append(orjson.loads(next(lines)))  # the metadata: the query has started
            for i in range(3):
                ksql(ksql_server, f"INSERT INTO {name} (ID, V) VALUES ('n{i}', {10 + i});")
            got.extend(orjson.loads(line) for line in lines)
    assert got[1:] == [["n0", 10], ["n1", 11], ["n2", 12]]


# --- many push queries -----------------------------------------------------------------------


def test_hundred_concurrent_push_queries(ksql_server: RunningServer) -> None:
    asyncio.run(hundred_push_queries(ksql_server))


async def hundred_push_queries(server: RunningServer, queries: int = 100) -> None:
    """Start push queries in parallel; once every one has answered with its metadata, rows
    inserted afterwards must reach all of them.

    On the embedded store the queries read from ``latest`` (their start positions are fixed before
    the metadata is sent). The Kafka reader resolves ``latest`` asynchronously, so there they read
    from ``earliest`` and also see the row written before they started.

    One HTTP/1.1 connection per query: httpx's HTTP/2 client reads a shared connection under one
    lock held by whichever stream waits longest, so idle push query streams starve the others (a
    client limitation; the multiplexed case is covered by the Node client tests).
    """
    name = make_stream(server, rows=1)
    embedded = server.engine.store_kind == "embedded"
    properties = {} if embedded else EARLIEST
    body = orjson.dumps({"sql": f"SELECT * FROM {name} EMIT CHANGES LIMIT 2;", "properties": properties})
    limits = httpx.Limits(max_connections=queries + 5, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = asyncio.Queue[None]()

        async def one() -> list[Any]:
            async with client.stream("POST", f"{server.url}/query-stream", content=body) as r:
                assert r.status_code == 200
                got = []
                async for line in r.aiter_lines():
                    got.append(orjson.loads(line))
                    if len(got) == 1:
                        started.put_nowait(None)
                return got

        tasks = [asyncio.create_task(one()) for _ in range(queries)]
        for _ in range(queries):
            await asyncio.wait_for(started.get(), 120)
        await asyncio.to_thread(ksql, server, f"INSERT INTO {name} (ID, V) VALUES ('y', 8);")
        await asyncio.to_thread(ksql, server, f"INSERT INTO {name} (ID, V) VALUES ('z', 9);")
        results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    expected = [["y", 8], ["z", 9]] if embedded else [["k0", 0], ["y", 8]]
    assert [r[1:] for r in results] == [expected] * queries
