"""Access control on a real server: rules in the shape of Kafka ACLs from a file, checked on
every statement and endpoint, with ksqlDB's 403/40301 body, filtered SHOW lists, logs and metrics."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ksqlpy.server.acl import Authorizer, Operation, ResourceType, Rule, cluster, parse_rules, topic
from ksqlpy.server.app import create_app
from ksqlpy.server.config import ConfigError
from tests.server.conftest import RunningServer, ServerThread, open_engine, server_config

PASSWORDS = {"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw"}

RULES = """\
# principal   permission  operation  resource  pattern   name
Role:admin    ALLOW       ALL        CLUSTER
Role:admin    ALLOW       ALL        TOPIC     LITERAL   *
User:alice    ALLOW       CREATE     CLUSTER
User:alice    ALLOW       ALTER      CLUSTER
User:alice    ALLOW       ALL        TOPIC     PREFIXED  alice_
User:alice    DENY        READ       TOPIC     LITERAL   alice_secret
User:alice    ALLOW       READ       TOPIC     LITERAL   shared
User:alice    ALLOW       WRITE      TOPIC     LITERAL   deletable
User:bob      ALLOW       READ       TOPIC     LITERAL   shared
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    where = tmp_path_factory.mktemp("acl")
    (where / "password-file").write_text("admin: admin-pw, admin\nalice: alice-pw, user\nbob: bob-pw, user\n")
    (where / "acl").write_text(RULES)
    config = server_config(
        **{
            "authentication.method": "BASIC",
            "authentication.roles": "admin,user",
            "ksqlpy.authentication.password.file": str(where / "password-file"),
            "ksqlpy.access.control.file": str(where / "acl"),
        }
    )
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    port = config.listeners[0].port
    server = RunningServer(url=f"http://127.0.0.1:{port}", port=port, engine=engine)
    try:
        for sql in (
            "CREATE STREAM shared_s (id VARCHAR KEY, v INT) WITH (kafka_topic='shared', value_format='JSON', partitions=1);",
            "CREATE STREAM secret_s (id VARCHAR KEY, v INT) WITH (kafka_topic='alice_secret', value_format='JSON', partitions=1);",
            "CREATE STREAM admin_s (id VARCHAR KEY, v INT) WITH (kafka_topic='admin_only', value_format='JSON', partitions=1);",
            "CREATE STREAM del_s (id VARCHAR KEY, v INT) WITH (kafka_topic='deletable', value_format='JSON', partitions=1);",
            "INSERT INTO shared_s (id, v) VALUES ('a', 1);",
        ):
            status, body = ksql(server, "admin", sql)
            assert status == 200, body
        yield server, where / "acl"
    finally:
        thread.stop()
        engine.close()


def ksql(server: RunningServer, user: str, sql: str) -> tuple[int, Any]:
    response = httpx.post(
        f"{server.url}/ksql",
        json={"ksql": sql, "streamsProperties": {}},
        auth=(user, PASSWORDS[user]),
        timeout=30,
    )
    return response.status_code, response.json()


def query(server: RunningServer, user: str, sql: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/query",
        json={"ksql": sql, "streamsProperties": {"auto.offset.reset": "earliest"}},
        auth=(user, PASSWORDS[user]),
        timeout=30,
    )


def denied(body: Any, operation: str, *topics: str) -> None:
    assert body["@type"] == "generic_error"
    assert body["error_code"] == 40301
    if topics:
        assert body["message"] == f"Authorization denied to {operation} on topic(s): [{', '.join(topics)}]"
    else:
        assert body["message"] == f"Authorization denied to {operation} on Kafka cluster"


def test_rules_parse_kafka_acl_columns() -> None:
    rules = parse_rules(RULES)
    assert rules[4] == Rule(
        "User:alice", True, Operation.ALL, ResourceType.TOPIC, name="alice_", pattern=rules[4].pattern
    )
    assert rules[4].pattern.value == "PREFIXED"
    with pytest.raises(ConfigError, match="Line 1 .*MAYBE"):
        parse_rules("User:x MAYBE READ TOPIC LITERAL t\n")
    with pytest.raises(ConfigError, match="needs a pattern and a name"):
        parse_rules("User:x ALLOW READ TOPIC\n")


def test_read_allowed_on_granted_topic(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    response = query(server, "bob", "SELECT * FROM shared_s EMIT CHANGES LIMIT 1;")
    assert response.status_code == 200, response.text
    assert orjson.loads(response.content)[1]["row"]["columns"] == ["a", 1]


def test_read_denied_names_the_topic(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    response = query(server, "bob", "SELECT * FROM admin_s EMIT CHANGES LIMIT 1;")
    assert response.status_code == 403
    denied(response.json(), "Read", "admin_only")
    stream = httpx.post(
        f"{server.url}/query-stream",
        json={"sql": "SELECT * FROM admin_s EMIT CHANGES;"},
        auth=("bob", "bob-pw"),
        timeout=30,
    )
    assert stream.status_code == 403
    denied(stream.json(), "Read", "admin_only")


def test_deny_wins_over_allow(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    response = query(server, "alice", "SELECT * FROM secret_s EMIT CHANGES LIMIT 1;")
    assert response.status_code == 403
    denied(response.json(), "Read", "alice_secret")
    # DENY READ leaves the other operations of the PREFIXED rule alone
    status, body = ksql(server, "alice", "INSERT INTO secret_s (id, v) VALUES ('s', 1);")
    assert status == 200, body


def test_print_needs_read(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    response = query(server, "bob", "PRINT 'admin_only' FROM BEGINNING LIMIT 1;")
    assert response.status_code == 403
    denied(response.json(), "Read", "admin_only")


def test_insert_values_needs_write(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    status, body = ksql(server, "bob", "INSERT INTO shared_s (id, v) VALUES ('b', 2);")
    assert status == 403
    denied(body, "Write", "shared")


def test_inserts_stream_needs_write(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        response = client.post(
            f"{server.url}/inserts-stream",
            content=b'{"target":"shared_s"}\n{"ID":"c","V":3}\n',
            auth=("bob", "bob-pw"),
        )
    assert response.status_code == 403
    denied(response.json(), "Write", "shared")


def test_create_as_select_needs_cluster_create_and_sink_write(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    status, body = ksql(server, "bob", "CREATE STREAM bob_out AS SELECT * FROM shared_s;")
    assert status == 403
    denied(body, "Create")
    status, body = ksql(server, "alice", "CREATE STREAM other_out AS SELECT * FROM shared_s;")
    assert status == 403
    denied(body, "Write", "OTHER_OUT")
    status, body = ksql(
        server, "alice", "CREATE STREAM alice_out WITH (kafka_topic='alice_out') AS SELECT * FROM shared_s;"
    )
    assert status == 200, body
    assert body[0]["commandStatus"]["status"] == "SUCCESS"


def test_create_source_over_a_new_topic_needs_topic_create(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    status, body = ksql(
        server,
        "bob",
        "CREATE STREAM s2 (v INT) WITH (kafka_topic='shared', value_format='JSON');",
    )
    assert status == 403
    denied(body, "Create")
    status, body = ksql(
        server,
        "alice",
        "CREATE STREAM s3 (v INT) WITH (kafka_topic='elsewhere', value_format='JSON', partitions=1);",
    )
    assert status == 403
    assert body["error_code"] == 40301 and "[elsewhere]" in body["message"]


def test_drop_delete_topic_needs_delete(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    status, body = ksql(server, "alice", "DROP STREAM del_s DELETE TOPIC;")
    assert status == 403
    denied(body, "Delete", "deletable")
    status, body = ksql(server, "admin", "DESCRIBE del_s;")
    assert status == 200, body  # still there


def test_terminate_needs_cluster_alter(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    status, body = ksql(server, "bob", "TERMINATE ALL;")
    assert status == 403
    denied(body, "Alter")
    response = httpx.post(f"{server.url}/ksql/terminate", json={}, auth=("bob", "bob-pw"), timeout=30)
    assert response.status_code == 403
    denied(response.json(), "Alter")
    response = httpx.post(f"{server.url}/ksql/terminate", json={}, auth=("admin", "admin-pw"), timeout=30)
    assert response.status_code == 200, response.text


def test_show_lists_only_what_the_user_may_describe(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    status, body = ksql(server, "bob", "SHOW STREAMS;")
    assert status == 200, body
    assert {s["topic"] for s in body[0]["streams"]} == {"shared"}
    status, body = ksql(server, "bob", "SHOW TOPICS;")
    assert status == 200, body
    assert [t["name"] for t in body[0]["topics"]] == ["shared"]
    status, body = ksql(server, "admin", "SHOW STREAMS;")
    assert {"shared", "admin_only", "alice_secret"} <= {s["topic"] for s in body[0]["streams"]}


def test_denials_are_logged_and_counted(
    secured: tuple[RunningServer, Path], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = secured
    with caplog.at_level(logging.WARNING, logger="ksqlpy.server.acl"):
        status, _ = ksql(server, "bob", "SELECT * FROM admin_s;")
    assert status == 403
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "ksqlpy.server.acl"]
    assert any("'bob'" in m and "127.0.0.1" in m and "SELECT * FROM admin_s" in m for m in lines), lines
    assert not any("bob-pw" in m for m in lines)
    metrics = httpx.get(f"{server.url}/metrics", auth=("admin", "admin-pw"), timeout=30).text
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith('ksqlpy_authorization_denials_total{operation="READ",resource="TOPIC"}')
    ]
    assert counted and float(counted[0].split()[-1]) >= 1


def test_persistent_query_keeps_running_as_its_creator(
    secured: tuple[RunningServer, Path], caplog: pytest.LogCaptureFixture
) -> None:
    server, acl_file = secured
    with caplog.at_level(logging.INFO, logger="ksqlpy.server"):
        status, body = ksql(
            server,
            "alice",
            "CREATE STREAM alice_keep WITH (kafka_topic='alice_keep') AS SELECT * FROM shared_s;",
        )
    assert status == 200, body
    query_id = body[0]["commandStatus"]["queryId"]
    assert f"Persistent query {query_id} runs as user 'alice'" in caplog.messages
    original = acl_file.read_text()
    try:
        acl_file.write_text(
            original.replace("User:alice    ALLOW       READ       TOPIC     LITERAL   shared\n", "")
        )
        stat = acl_file.stat()
        os.utime(acl_file, (stat.st_atime, stat.st_mtime + 10))  # seen as a change whatever the clock
        status, body = ksql(server, "alice", "CREATE STREAM alice_late AS SELECT * FROM shared_s;")
        assert status == 403
        denied(body, "Read", "shared")
        status, body = ksql(server, "admin", "SHOW QUERIES;")
        states = {q["id"]: q["state"] for q in body[0]["queries"]}
        assert states[query_id] == "RUNNING"
    finally:
        acl_file.write_text(original)
        stat = acl_file.stat()
        os.utime(acl_file, (stat.st_atime, stat.st_mtime + 20))


def test_describe_needs_describe_which_read_implies(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    status, body = ksql(server, "bob", "DESCRIBE admin_s;")
    assert status == 403
    denied(body, "Describe", "admin_only")
    status, body = ksql(server, "bob", "DESCRIBE shared_s;")
    assert status == 200, body
    assert body[0]["sourceDescription"]["topic"] == "shared"


def test_requests_without_a_user_are_user_anonymous(tmp_path: Path) -> None:
    rules = tmp_path / "acl"
    rules.write_text("User:ANONYMOUS ALLOW READ TOPIC LITERAL open\nUser:* ALLOW WRITE TOPIC PREFIXED pub_\n")
    acl = Authorizer(str(rules), lambda name: frozenset())
    assert acl.allowed(None, topic(Operation.READ, "open"))
    assert not acl.allowed(None, topic(Operation.WRITE, "open"))
    assert acl.allowed(None, topic(Operation.WRITE, "pub_x"))  # User:* is everyone
    assert acl.allowed("zoe", topic(Operation.WRITE, "pub_x"))
    assert not acl.allowed("zoe", topic(Operation.READ, "open"))
    assert not acl.allowed("zoe", cluster(Operation.CREATE))  # nothing without an ALLOW


def test_trace_needs_read_on_every_topic_it_reads(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured

    def trace(user: str, source: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}/trace", json={"source": source, "key": "a"}, auth=(user, PASSWORDS[user]), timeout=30
        )

    allowed = trace("admin", "SHARED_S")
    assert allowed.status_code == 200, allowed.text
    assert "shared" in {hop["topic"] for hop in allowed.json()["hops"]}
    denied = trace("bob", "ADMIN_S")
    assert denied.status_code == 403
    assert denied.json()["error_code"] == 40301 and "admin_only" in denied.json()["message"]


def test_lineage_shows_only_what_the_user_may_describe(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured

    def names(user: str) -> set[str]:
        r = httpx.get(f"{server.url}/lineage", auth=(user, PASSWORDS[user]), timeout=30)
        assert r.status_code == 200, r.text
        return {n["name"] for n in r.json()["nodes"]}

    assert {"shared", "admin_only", "SHARED_S", "ADMIN_S"} <= names("admin")
    bob = names("bob")
    assert {"shared", "SHARED_S"} <= bob and not {"admin_only", "ADMIN_S"} & bob
