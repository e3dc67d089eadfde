"""Quotas on real servers: ksqlDB's pull-query and push-query limits, and per-user request, push and
insert rates from a quota file, each answered with ksqlDB's 429/42900 body; one user at a limit
leaves another alone.

Rates are set so low (one request per 100 seconds, ten bytes a second against kilobyte
statements) that the second request is over the limit however slow the machine: no timing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ksqlpy.server.app import create_app
from ksqlpy.server.config import ConfigError
from ksqlpy.server.quotas import Quotas, RateLimited, TokenBucket, parse_quotas
from tests.server.conftest import RunningServer, ServerThread, open_engine, server_config
from tests.server.test_websocket import messages_until_close, ws_url

USERS = ("alice", "bob", "carol", "dave")
QUOTAS = """\
quota User:alice push.queries=1
quota User:carol requests.per.second=0.01
quota User:dave  insert.bytes.per.second=10
"""


def start(config_overrides: dict[str, str]) -> tuple[ServerThread, RunningServer]:
    config = server_config(**config_overrides)
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    port = config.listeners[0].port
    return thread, RunningServer(url=f"http://127.0.0.1:{port}", port=port, engine=engine)


def ksql(server: RunningServer, sql: str, user: str | None = None) -> httpx.Response:
    auth = (user, f"{user}-pw") if user else None
    return httpx.post(f"{server.url}/ksql", json={"ksql": sql}, auth=auth, timeout=30)


def rate_limited(response: httpx.Response, message: str) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["@type"] == "generic_error" and body["error_code"] == 42900
    assert message in body["message"]


@pytest.fixture(scope="module")
def limited() -> Iterator[RunningServer]:
    """Server-wide limits: pull queries at 0.01 per second, one push query at a time."""
    thread, server = start({"ksql.query.pull.max.qps": "0.01", "ksql.max.push.queries": "1"})
    try:
        response = ksql(
            server,
            "CREATE SOURCE TABLE t (id VARCHAR PRIMARY KEY, v INT) WITH "
            "(kafka_topic='t', value_format='JSON', partitions=1);",
        )
        assert response.status_code == 200, response.text
        yield server
    finally:
        thread.stop()
        server.engine.close()


@pytest.fixture(scope="module")
def per_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    where = tmp_path_factory.mktemp("quotas")
    (where / "passwords").write_text("".join(f"{u}: {u}-pw, user\n" for u in USERS))
    (where / "quotas").write_text(QUOTAS)
    thread, server = start(
        {
            "authentication.method": "BASIC",
            "authentication.roles": "user",
            "ksqlpy.authentication.password.file": str(where / "passwords"),
            "ksqlpy.quota.file": str(where / "quotas"),
        }
    )
    try:
        response = ksql(
            server,
            "CREATE STREAM s (id VARCHAR KEY, v VARCHAR) WITH "
            "(kafka_topic='s', value_format='JSON', partitions=1);",
            "bob",
        )
        assert response.status_code == 200, response.text
        yield server
    finally:
        thread.stop()
        server.engine.close()


def open_push(stack: ExitStack, server: RunningServer, user: str | None = None) -> httpx.Response:
    """A push query left streaming until ``stack`` closes; its response has started."""
    client = stack.enter_context(httpx.Client(timeout=30))
    auth = (user, f"{user}-pw") if user else None
    return stack.enter_context(
        client.stream(
            "POST", f"{server.url}/query-stream", json={"sql": "SELECT * FROM s EMIT CHANGES;"}, auth=auth
        )
    )


def test_quota_lines_are_checked() -> None:
    assert parse_quotas(QUOTAS)["User:dave"].insert_bytes_per_second == 10
    assert parse_quotas("User:x ALLOW READ TOPIC LITERAL t\n") == {}  # rules are not quotas
    with pytest.raises(ConfigError, match="unknown limit 'bytes'"):
        parse_quotas("quota User:x bytes=3\n")
    with pytest.raises(ConfigError, match="positive number"):
        parse_quotas("quota User:x push.queries=0\n")


def test_token_bucket_overdraws_then_refuses_until_repaid() -> None:
    now = [0.0]
    bucket = TokenBucket(10, clock=lambda: now[0])
    assert bucket.take(100)  # a record larger than a second's budget still goes through
    assert not bucket.take(1)
    now[0] = 9.0  # 90 bytes repaid of the 90 owed: at zero, still short of one
    assert not bucket.take(1)
    now[0] = 9.2
    assert bucket.take(1)


def test_pull_concurrency_limit() -> None:
    quotas = Quotas(server_config(**{"ksql.query.pull.max.concurrent.requests": "1"}))
    first = quotas.admit_pull()
    with pytest.raises(RateLimited, match="concurrency limit for pull queries. Currently set to 1 maximum"):
        quotas.admit_pull()
    first.release()
    first.release()  # a second release gives nothing back twice
    quotas.admit_pull().release()
    assert quotas.pull_running == 0


def test_pull_query_rate_limit(limited: RunningServer) -> None:
    pull = {"sql": "SELECT * FROM t WHERE id = 'a';"}
    first = httpx.post(f"{limited.url}/query-stream", json=pull, timeout=30)
    assert first.status_code == 200, first.text
    second = httpx.post(f"{limited.url}/query-stream", json=pull, timeout=30)
    rate_limited(second, "Host is at rate limit for pull queries. Currently set to 0.01 qps.")
    metrics = httpx.get(f"{limited.url}/metrics", timeout=30).text
    assert 'ksqlpy_quota_refusals_total{limit="ksql.query.pull.max.qps"} 1.0' in metrics


@pytest.fixture(scope="module")
def ws_limited() -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two servers with a table: pull queries at 0.01 per second; one pull query at a time."""
    table = (
        "CREATE SOURCE TABLE t (id VARCHAR PRIMARY KEY, v INT) WITH "
        "(kafka_topic='t', value_format='JSON', partitions=1);"
    )
    with ExitStack() as stack:
        servers = []
        for limit in ({"ksql.query.pull.max.qps": "0.01"}, {"ksql.query.pull.max.concurrent.requests": "1"}):
            thread, server = start(limit)
            stack.callback(server.engine.close)
            stack.callback(thread.stop)
            assert ksql(server, table).status_code == 200
            servers.append(server)
        yield servers[0], servers[1]


def ws_refusal(server: RunningServer, sql: str) -> httpx.Response:
    """The HTTP answer that refused a websocket upgrade for ``sql``, as an httpx response."""
    with pytest.raises(InvalidStatus) as refused, connect(ws_url(server, {"ksql": sql}), open_timeout=30):
        pass
    answer = refused.value.response
    assert answer.headers["content-type"] == "application/json"
    return httpx.Response(answer.status_code, content=bytes(answer.body or b""))


def test_websocket_pull_queries_have_the_pull_query_limits(
    ws_limited: tuple[RunningServer, RunningServer],
) -> None:
    by_rate, by_concurrency = ws_limited
    pull = "SELECT * FROM t WHERE id = 'a';"
    received, code, _ = messages_until_close(ws_url(by_rate, {"ksql": pull}))
    assert (received[0][0]["name"], code) == ("ID", 1000)
    refused = ws_refusal(by_rate, pull)
    rate_limited(refused, "Host is at rate limit for pull queries. Currently set to 0.01 qps.")
    # one budget for both endpoints: /query is refused the same way, with the same body
    over_http = httpx.post(f"{by_rate.url}/query", json={"ksql": pull}, timeout=30)
    rate_limited(over_http, "Host is at rate limit for pull queries.")
    assert orjson.loads(refused.content) == over_http.json()
    # a push query is no pull query: the pull budget does not refuse it
    push = {"ksql": "SELECT * FROM nope EMIT CHANGES;"}
    received, code, reason = messages_until_close(ws_url(by_rate, push))
    assert code == 1003 and "NOPE" in reason
    metrics = httpx.get(f"{by_rate.url}/metrics", timeout=30).text
    assert 'ksqlpy_quota_refusals_total{limit="ksql.query.pull.max.qps"} 2.0' in metrics
    # each websocket pull query gives its place back when it ends, so one at a time all run
    for _ in range(3):
        received, code, _ = messages_until_close(ws_url(by_concurrency, {"ksql": pull}))
        assert code == 1000
    assert httpx.post(f"{by_concurrency.url}/query-stream", json={"sql": pull}, timeout=30).status_code == 200


def test_push_query_limit(limited: RunningServer) -> None:
    ksql(limited, "CREATE STREAM s (v INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);")
    with ExitStack() as stack:
        first = open_push(stack, limited)
        assert first.status_code == 200
        second = httpx.post(
            f"{limited.url}/query-stream", json={"sql": "SELECT * FROM s EMIT CHANGES;"}, timeout=30
        )
        rate_limited(second, "Not executing query since there are already 1 running push queries.")
        # a websocket push query counts too, and is refused with a close reason
        received, code, reason = messages_until_close(
            ws_url(limited, {"ksql": "SELECT * FROM s EMIT CHANGES;"})
        )
        assert (received, code) == ([], 1003)
        assert "already 1 running push queries" in reason


def test_user_request_rate_does_not_slow_others(per_user: RunningServer) -> None:
    assert ksql(per_user, "SHOW STREAMS;", "carol").status_code == 200
    rate_limited(ksql(per_user, "SHOW STREAMS;", "carol"), "User carol is at its rate limit of 0.01 requests")
    for _ in range(3):  # bob has no quota of his own, and carol's is hers
        assert ksql(per_user, "SHOW STREAMS;", "bob").status_code == 200


def test_user_push_query_limit(per_user: RunningServer) -> None:
    with ExitStack() as stack:
        assert open_push(stack, per_user, "alice").status_code == 200
        second = httpx.post(
            f"{per_user.url}/query-stream",
            json={"sql": "SELECT * FROM s EMIT CHANGES;"},
            auth=("alice", "alice-pw"),
            timeout=30,
        )
        rate_limited(second, "User alice is at its limit of 1 concurrent push queries.")
        assert open_push(stack, per_user, "bob").status_code == 200  # bob is not counted as alice
    # alice's query closed: her place is free again once the server has seen it go
    for _ in range(200):
        with ExitStack() as stack:
            if open_push(stack, per_user, "alice").status_code == 200:
                break
    else:
        pytest.fail("alice's push query place was never given back")


def test_user_insert_byte_rate(per_user: RunningServer) -> None:
    big = "x" * 2000  # 200 seconds of dave's 10 bytes a second
    insert = f"INSERT INTO s (id, v) VALUES ('k', '{big}');"
    assert ksql(per_user, insert, "dave").status_code == 200  # overdraws the bucket
    rate_limited(
        ksql(per_user, insert, "dave"), "User dave is at its insert rate limit of 10 bytes per second."
    )
    assert ksql(per_user, insert, "bob").status_code == 200  # bob's inserts go on
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        acks: Any = client.post(
            f"{per_user.url}/inserts-stream",
            content=b'{"target":"S"}\n{"ID":"k","V":"y"}\n',
            auth=("dave", "dave-pw"),
            headers={"accept": "application/vnd.ksqlapi.delimited.v1"},
        )
    assert acks.status_code == 200
    first = httpx.Response(200, content=acks.content.splitlines()[0]).json()
    assert first["status"] == "error" and first["error_code"] == 42900
    assert "insert rate limit" in first["message"]
