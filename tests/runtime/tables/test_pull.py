"""Pull queries over materialized tables: lookups, scans, windows, errors, plain SQL, restart."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from ksqlpy.errors import AnalysisError, ParseError
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.results import QueryType

USERS = (
    "CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR, age INT) "
    "WITH (kafka_topic='users', value_format='JSON', partitions=3);"
)
QUERYABLE = "CREATE TABLE q_users AS SELECT * FROM users;"
PEOPLE = {f"u{i}": (f"n{i}", i * 7 % 50) for i in range(20)}


def pull(engine: Engine, text: str) -> tuple[str, list[tuple[object, ...]]]:
    """(header schema text, rows) of a pull query, as the REST API would send them."""
    from ksqlpy.server.entities import schema_text

    query = engine.session().execute_query(text)
    try:
        rows = [r.values for r in query]
        assert query.error is None
        return schema_text(query.columns, query.key_columns), rows
    finally:
        query.close()


@pytest.fixture
def users(engine: Engine) -> Engine:
    session = engine.session()
    session.execute_all(USERS)
    session.execute_all(QUERYABLE)
    produce_json(engine, "users", {uid: {"NAME": name, "AGE": age} for uid, (name, age) in PEOPLE.items()})
    return engine


def produce_json(engine: Engine, topic: str, rows: dict[str, dict[str, object]]) -> None:
    """One batch of JSON records keyed by KAFKA-format strings."""
    import json

    import pyarrow as pa

    engine.store.produce(
        topic,
        pa.table(
            {
                "timestamp": pa.array([1000] * len(rows), pa.int64()),
                "key": pa.array([k.encode() for k in rows], pa.binary()),
                "value": pa.array([json.dumps(v).encode() for v in rows.values()], pa.binary()),
            }
        ),
    )


def test_key_lookup_reads_its_own_writes(users: Engine) -> None:
    # No wait: the pull query waits for the CTAS and the materializer to catch up by itself.
    users.session().execute_all("INSERT INTO users (id, name, age) VALUES ('u3', 'renamed', 99);")
    schema, rows = pull(users, "SELECT * FROM q_users WHERE id = 'u3';")
    assert schema == "`ID` STRING KEY, `NAME` STRING, `AGE` INTEGER"
    assert rows == [("u3", "renamed", 99)]


def test_in_lookup_answers_in_the_order_given(users: Engine) -> None:
    _, rows = pull(users, "SELECT id, age * 2 AS twice FROM q_users WHERE id IN ('u9', 'u2', 'nobody', 'u9');")
    assert rows == [("u9", PEOPLE["u9"][1] * 2), ("u2", PEOPLE["u2"][1] * 2)]


def test_scan_with_any_where_and_limit(users: Engine) -> None:
    schema, rows = pull(users, "SELECT name, age FROM q_users WHERE age > 20 AND name LIKE 'n1%';")
    assert schema == "`NAME` STRING, `AGE` INTEGER"
    expected = {(n, a) for n, a in PEOPLE.values() if a > 20 and n.startswith("n1")}
    assert expected and set(rows) == expected and len(rows) == len(expected)
    _, limited = pull(users, "SELECT * FROM q_users WHERE age >= 0 LIMIT 4;")
    assert len(limited) == 4


def test_scan_order_is_partition_then_key_bytes(users: Engine) -> None:
    from ksqlpy.runtime.store.partitioner import partition_for_key

    _, rows = pull(users, "SELECT id FROM q_users;")
    expected = sorted(PEOPLE, key=lambda k: (partition_for_key(k.encode(), 3), k.encode()))
    assert [r[0] for r in rows] == expected


def test_deleted_key_is_gone(users: Engine) -> None:
    import pyarrow as pa

    users.store.produce(
        "users", pa.table({"timestamp": pa.array([1], pa.int64()), "key": [b"u4"], "value": pa.nulls(1, pa.binary())})
    )
    assert pull(users, "SELECT * FROM q_users WHERE id = 'u4';")[1] == []


def test_plain_create_table_is_not_queryable_as_in_ksqldb(users: Engine) -> None:
    with pytest.raises(AnalysisError, match="The `USERS` table isn't queryable"):
        pull(users, "SELECT * FROM users;")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT * FROM q_users WHERE ROWOFFSET > 1;", "Pull queries don't support the following columns in WHERE clauses: `ROWOFFSET`"),
        ("SELECT ROWPARTITION FROM q_users;", "Pull queries don't support the following columns in SELECT clauses: `ROWPARTITION`"),
        ("SELECT * FROM q_users LIMIT -1;", "Pull queries don't support negative integers in the LIMIT clause."),
        ("SELECT * FROM q_users WHERE WINDOWSTART > 1;", "WHERE column 'WINDOWSTART' cannot be resolved"),
        ("SELECT name, name FROM q_users;", "Duplicate value columns found in schema: `NAME` STRING"),
    ],
)
def test_ksqldb_errors(users: Engine, text: str, message: str) -> None:
    with pytest.raises(AnalysisError) as info:
        pull(users, text)
    assert message in str(info.value)


def test_table_scan_disabled(users: Engine) -> None:
    session = users.session({"ksql.query.pull.table.scan.enabled": "false"})
    with pytest.raises(AnalysisError, match="WHERE clause missing key column for disjunct"):
        session.execute_query("SELECT * FROM q_users WHERE age = 3;")
    query = session.execute_query("SELECT name FROM q_users WHERE id = 'u1';")
    assert [r.values for r in query] == [(PEOPLE["u1"][0],)]


def test_join_aggregate_order_by_over_tables(users: Engine) -> None:
    session = users.session()
    session.execute_all(
        "CREATE TABLE teams (uid VARCHAR PRIMARY KEY, team VARCHAR) WITH (kafka_topic='teams', value_format='JSON', partitions=1);"
    )
    teams = {uid: "red" if i % 3 else "blue" for i, uid in enumerate(PEOPLE)}
    produce_json(users, "teams", {uid: {"TEAM": team} for uid, team in teams.items()})
    text = (
        "SELECT t.team, count(*) AS members, max(u.age) AS oldest FROM q_users u JOIN teams t ON u.id = t.uid "
        "GROUP BY t.team ORDER BY t.team;"
    )
    schema, rows = pull(users, text)
    assert schema == "`TEAM` STRING, `MEMBERS` BIGINT, `OLDEST` INTEGER"
    expected = sorted(
        (team, sum(1 for u in PEOPLE if teams[u] == team), max(PEOPLE[u][1] for u in PEOPLE if teams[u] == team))
        for team in set(teams.values())
    )
    assert rows == expected


def test_plain_sql_over_a_stream_keeps_ksqldb_errors(users: Engine) -> None:
    session = users.session()
    session.execute_all("CREATE STREAM clicks (id VARCHAR KEY, n INT) WITH (kafka_topic='clicks', value_format='JSON', partitions=1);")
    with pytest.raises(ParseError):
        session.execute_query("SELECT * FROM clicks ORDER BY n;")
    with pytest.raises(AnalysisError, match="Pull queries don't support JOIN clauses"):
        session.execute_query("SELECT * FROM q_users u JOIN clicks c WITHIN 1 SECOND ON u.id = c.id;")


def test_plain_sql_cannot_reach_files(users: Engine) -> None:
    with pytest.raises(ParseError):
        users.session().execute_query("SELECT * FROM read_csv('/etc/passwd') ORDER BY 1;")


def test_windowed_table_bounds(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(
        "CREATE STREAM views (page VARCHAR KEY, ms INT) WITH (kafka_topic='views', value_format='JSON', partitions=1);"
    )
    session.execute_all(
        "CREATE TABLE per_second AS SELECT page, COUNT(*) AS n FROM views WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY page;"
    )
    stamps = [1000, 1500, 2100, 3999, 1200]
    for ts in stamps:
        session.execute_all(f"INSERT INTO views (ROWTIME, page, ms) VALUES ({ts}, 'home', 1);")
    schema, rows = pull(engine, "SELECT * FROM per_second WHERE page = 'home';")
    assert schema == "`PAGE` STRING KEY, `WINDOWSTART` BIGINT KEY, `WINDOWEND` BIGINT KEY, `N` BIGINT"
    counts: dict[int, int] = {}
    for ts in stamps:
        counts[ts // 1000 * 1000] = counts.get(ts // 1000 * 1000, 0) + 1
    assert rows == [("home", s, s + 1000, n) for s, n in sorted(counts.items())]
    _, bounded = pull(engine, "SELECT WINDOWSTART, N FROM per_second WHERE page = 'home' AND WINDOWSTART >= 2000;")
    assert bounded == [(s, n) for s, n in sorted(counts.items()) if s >= 2000]


def test_pull_after_restart(opener: Callable[[], Engine]) -> None:
    engine = opener()
    try:
        session = engine.session()
        session.execute_all(USERS)
        session.execute_all(QUERYABLE)
        session.execute_all("INSERT INTO users (id, name, age) VALUES ('a', 'Ann', 30);")
        assert pull(engine, "SELECT * FROM q_users WHERE id = 'a';")[1] == [("a", "Ann", 30)]
    finally:
        engine.close()
    engine = opener()
    try:
        assert pull(engine, "SELECT * FROM q_users WHERE id = 'a';")[1] == [("a", "Ann", 30)]
        assert engine.materializers["Q_USERS"].records_in == 0
    finally:
        engine.close()


def test_describe_and_explain_say_how_pull_queries_are_served(users: Engine) -> None:
    session = users.session()
    assert users.wait_idle()
    desc = session.execute_all("DESCRIBE q_users EXTENDED;")[0]
    assert f'materialized: mat."Q_USERS" ({len(PEOPLE)} rows, up to date; key ID); pull queries:' in desc.statistics
    lookup = session.execute_all("EXPLAIN SELECT name FROM q_users WHERE id IN ('u1', 'u2');")[0]
    assert lookup.execution_plan == (
        ' > [ PROJECT ] | "NAME" AS NAME\n'
        "\t\t > [ FILTER ] | COALESCE(\"ID\" IN ('u1', 'u2'), FALSE)\n"
        '\t\t\t\t > [ KEY LOOKUP | 2 key(s) on ID ] | mat."Q_USERS" (materialized from topic Q_USERS)'
    )
    assert lookup.query_type is QueryType.PULL
    assert re.fullmatch(r"query_\d+", lookup.id)
    scan = session.execute_all("EXPLAIN SELECT name FROM q_users WHERE age > 3;")[0]
    assert scan.execution_plan == (
        ' > [ PROJECT ] | "NAME" AS NAME\n'
        '\t\t > [ FILTER ] | COALESCE("AGE" > CAST(3 AS INT), FALSE)\n'
        '\t\t\t\t > [ TABLE SCAN | ORDER BY "__PARTITION", "__KEY" ] | mat."Q_USERS" (materialized from topic Q_USERS)'
    )
    qid = next(q for q, run in users.queries.items() if run.plan.sink is not None and run.plan.sink.name == "Q_USERS")
    explained = session.execute_all(f"EXPLAIN {qid};")[0]
    source = "ID STRING KEY, NAME STRING, AGE INTEGER, ROWTIME BIGINT, ROWPARTITION INTEGER, ROWOFFSET BIGINT, ID STRING"
    assert explained.execution_plan == (
        f" > [ SINK ] | Schema: ID STRING KEY, NAME STRING, AGE INTEGER | Logger: {qid}.Q_USERS\n"
        f"\t\t > [ PROJECT ] | Schema: ID STRING KEY, NAME STRING, AGE INTEGER | Logger: {qid}.Project\n"
        f"\t\t\t\t > [ SOURCE ] | Schema: {source} | Logger: {qid}.KsqlTopic.Source\n"
        ' > [ MATERIALIZE ] | mat."Q_USERS" from topic Q_USERS: pull queries read it'
    )


def test_table_of_a_query_started_at_latest_is_caught_up_at_once() -> None:
    # The CTAS starts past the stream's two records and has read nothing, so it has committed
    # nothing: still, nothing is owed, and the pull query has nothing to wait for.
    engine = Engine.open({"ksql.streams.state.dir": ":memory:"})
    try:
        session = engine.session({"auto.offset.reset": "latest"})
        session.execute_all(
            "CREATE STREAM clicks (page STRING KEY, n INT) WITH (kafka_topic='clicks', value_format='JSON', partitions=2);"
            "INSERT INTO clicks (page, n) VALUES ('a', 1);"
            "INSERT INTO clicks (page, n) VALUES ('b', 2);"
            "CREATE TABLE counts AS SELECT page, COUNT(*) AS c FROM clicks GROUP BY page;"
        )
        (ctas,) = engine.queries.values()
        assert engine.store.committed(ctas.group, "clicks") == {}
        ends = engine.store.end_offsets("clicks")
        assert sum(ends.values()) == 2 and ctas.settled() == ends
        assert pull(engine, "SELECT * FROM counts WHERE page = 'a';")[1] == []
        session.execute_all("INSERT INTO clicks (page, n) VALUES ('a', 3);")
        assert pull(engine, "SELECT * FROM counts WHERE page = 'a';")[1] == [("a", 1)]
    finally:
        engine.close()
