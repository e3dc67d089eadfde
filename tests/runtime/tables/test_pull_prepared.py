"""Pull queries answered again from the plan kept for their text: they still read their own
writes, follow DDL, evaluate ksqlpy functions, and run beside statements on the REST server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from test_pull import PEOPLE, QUERYABLE, USERS, produce_json, pull

from ksqlpy.errors import KsqlpyError
from ksqlpy.runtime import pull as pull_module
from ksqlpy.runtime.engine import Engine
from ksqlpy.server.app import KsqlServer
from ksqlpy.server.config import ServerConfig

#: How a key literal the key column cannot take is reported (as by ksqlDB).
BAD_KEY = "can not be converted to the type of the key column: ID INTEGER KEY"


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


def test_a_lookup_planned_once_answers_every_key_and_reports_a_bad_one(users: Engine) -> None:
    server = KsqlServer(users, ServerConfig())
    session = users.session()
    session.execute_all(
        "CREATE TABLE nums (id INT PRIMARY KEY, v VARCHAR) WITH (kafka_topic='nums', value_format='JSON', "
        "key_format='JSON', partitions=2);"
    )
    session.execute_all("CREATE TABLE q_nums AS SELECT * FROM nums;")
    session.execute_all("".join(f"INSERT INTO nums (id, v) VALUES ({i}, 'v{i}');" for i in range(30)))

    def rows(text: str) -> list[object]:
        query = server.start_query(text, {}, {})
        try:
            return [r.values for r in query]
        finally:
            query.close()

    for uid, (name, age) in [*PEOPLE.items(), ("nobody", ("", 0))]:
        expected = [(name, age)] if uid in PEOPLE and age >= 10 else []
        assert rows(f"SELECT name, age FROM q_users WHERE id = '{uid}' AND age >= 10;") == expected
    # the same shape with another value where no key is: another query
    assert rows("SELECT name, age FROM q_users WHERE id = 'u1' AND age >= 0;") == [PEOPLE["u1"]]
    for i in [*range(0, 30, 3), 31, 0]:
        assert rows(f"SELECT * FROM q_nums WHERE id IN ({i}, {i + 1});") == [(k, f"v{k}") for k in (i, i + 1) if k < 30]
    assert rows("SELECT * FROM q_nums WHERE id IN (4, 4);") == [(4, "v4")]
    with pytest.raises(KsqlpyError) as info:
        rows("SELECT * FROM q_nums WHERE id IN (4, 'x');")
    assert "'x' " + BAD_KEY in str(info.value)
    with pytest.raises(KsqlpyError, match="Invalid key in WHERE clause: .*out of range"):
        rows("SELECT * FROM q_nums WHERE id IN (4, 99999999999);")
    # the lookups above were answered from plans of their shapes
    assert sum(t is not None for t in pull_module._templates.values()) >= 2
