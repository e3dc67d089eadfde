"""Pull queries answered again from the plan kept for their text: they still read their own
writes, follow DDL, evaluate ksqlpy functions, and run beside statements on the REST server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from test_pull import PEOPLE, QUERYABLE, USERS, produce_json, pull

from ksqlpy.runtime.engine import Engine
from ksqlpy.server.app import KsqlServer
from ksqlpy.server.config import ServerConfig


@pytest.fixture
def users(engine: Engine) -> Engine:
    session = engine.session()
    session.execute_all(USERS)
    session.execute_all(QUERYABLE)
    produce_json(engine, "users", {uid: {"NAME": name, "AGE": age} for uid, (name, age) in PEOPLE.items()})
    return engine


def test_a_repeated_lookup_reads_each_write_made_before_it(users: Engine) -> None:
    text = "SELECT * FROM q_users WHERE id = 'u4';"
    assert pull(users, text)[1] == [("u4", *PEOPLE["u4"])]
    for age in (101, 102, 103):
        users.session().execute_all(f"INSERT INTO users (id, name, age) VALUES ('u4', 'again', {age});")
        assert pull(users, text)[1] == [("u4", "again", age)]
    assert pull(users, text)[1] == [("u4", "again", 103)]


def test_repeated_lookups_and_scans_answer_as_the_first_time(users: Engine) -> None:
    texts = (
        "SELECT id, age * 2 AS twice FROM q_users WHERE id IN ('u9', 'u2', 'nobody', 'u9');",
        "SELECT * FROM q_users WHERE id = 'u1' OR id = 'u7';",
        "SELECT name, age FROM q_users WHERE age > 20 LIMIT 3;",
        "SELECT * FROM q_users;",
    )
    first = [pull(users, t) for t in texts]
    assert [pull(users, t) for t in texts] == first
    assert first[0][1] == [("u9", PEOPLE["u9"][1] * 2), ("u2", PEOPLE["u2"][1] * 2)]
    assert len(first[3][1]) == len(PEOPLE)


def test_ksqlpy_functions_answer_the_same_on_every_run(users: Engine) -> None:
    text = "SELECT id, CHR(65 + age) AS c FROM q_users WHERE id = 'u3';"
    expected = [("u3", chr(65 + PEOPLE["u3"][1]))]
    assert pull(users, text)[1] == expected
    assert pull(users, text)[1] == expected


def test_a_recreated_table_is_planned_again(users: Engine) -> None:
    text = "SELECT * FROM q_users WHERE id = 'u5';"
    assert pull(users, text)[0] == "`ID` STRING KEY, `NAME` STRING, `AGE` INTEGER"
    session = users.session()
    for query_id in list(users.queries):
        session.execute_all(f"TERMINATE {query_id};")
    session.execute_all("DROP TABLE q_users DELETE TOPIC;")
    session.execute_all("CREATE TABLE q_users AS SELECT id, age FROM users;")
    schema, rows = pull(users, text)
    assert schema == "`ID` STRING KEY, `AGE` INTEGER"
    assert rows == [("u5", PEOPLE["u5"][1])]


def test_a_repeated_pull_query_does_not_wait_for_statements(users: Engine) -> None:
    server = KsqlServer(users, ServerConfig())
    text = "SELECT * FROM q_users WHERE id = 'u6';"

    def rows() -> list[object]:
        query = server.start_query(text, {}, {})
        try:
            return [r.values for r in query]
        finally:
            query.close()

    assert rows() == [("u6", *PEOPLE["u6"])]
    with server.statement_lock, ThreadPoolExecutor(1) as pool:  # a statement is running
        assert pool.submit(rows).result(timeout=60) == [("u6", *PEOPLE["u6"])]
