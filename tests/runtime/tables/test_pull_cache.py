"""Key lookups answered again from the rows kept for them: only while their table is unchanged,
never for a statement whose rows can change by themselves, and never past a write."""

from __future__ import annotations

import time

import pytest
from test_pull import PEOPLE, QUERYABLE, USERS, produce_json

from ksqlpy.runtime import pullcache
from ksqlpy.runtime.engine import Engine


@pytest.fixture
def users(engine: Engine) -> Engine:
    session = engine.session()
    session.execute_all(USERS)
    session.execute_all(QUERYABLE)
    produce_json(engine, "users", {uid: {"NAME": name, "AGE": age} for uid, (name, age) in PEOPLE.items()})
    return engine


def ready(engine: Engine, text: str) -> list[tuple[object, ...]] | None:
    """The rows of ``text`` answered without waiting (None: it would have to wait or plan)."""
    query = engine.session().start_ready_pull(text)
    if query is None:
        return None
    try:
        return [r.values for r in query]
    finally:
        query.close()


def answered(engine: Engine, text: str) -> list[tuple[object, ...]]:
    """The rows of ``text`` after its table caught up (as any pull query)."""
    query = engine.session().execute_query(text)
    try:
        return [r.values for r in query]
    finally:
        query.close()


def settled(engine: Engine, text: str) -> list[tuple[object, ...]]:
    """The rows of ``text`` answered without waiting, once its table stopped moving (the
    materializer's own writes after a catch-up move it too)."""
    for _ in range(200):
        answered(engine, text)
        rows = ready(engine, text)
        if rows is not None:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"{text} was never answerable without waiting")


def kept(engine: Engine) -> list[str]:
    """The statements whose rows are kept for table Q_USERS."""
    return [sql for m, entries in pullcache._kept.items() if m.name == "Q_USERS" for sql in entries]


def test_a_kept_lookup_never_answers_past_a_write(users: Engine) -> None:
    text = "SELECT * FROM q_users WHERE id = 'u4';"
    answered(users, "SELECT * FROM q_users WHERE id = 'u3';")  # plans the lookup's shape
    assert answered(users, text) == [("u4", *PEOPLE["u4"])]
    assert settled(users, text) == [("u4", *PEOPLE["u4"])]
    assert any("'u4'" in sql for sql in kept(users))
    assert ready(users, text) == [("u4", *PEOPLE["u4"])]
    for age in (101, 102):
        users.session().execute_all(f"INSERT INTO users (id, name, age) VALUES ('u4', 'again', {age});")
        # right after the write: either not answerable without waiting, or the new row
        assert ready(users, text) in (None, [("u4", "again", age)])
        assert answered(users, text) == [("u4", "again", age)]
        assert settled(users, text) == [("u4", "again", age)]
        assert ready(users, text) in (None, [("u4", "again", age)])
    # a key nobody has: no row, kept as such until a write brings one
    missing = "SELECT * FROM q_users WHERE id = 'u99';"
    assert answered(users, missing) == []
    assert settled(users, missing) == []
    users.session().execute_all("INSERT INTO users (id, name, age) VALUES ('u99', 'new', 1);")
    assert ready(users, missing) in (None, [("u99", "new", 1)])
    assert answered(users, missing) == [("u99", "new", 1)]
    assert settled(users, missing) == [("u99", "new", 1)]


def test_a_lookup_whose_rows_change_by_themselves_is_not_kept(users: Engine) -> None:
    answered(users, "SELECT id, UUID() AS u FROM q_users WHERE id = 'u1';")
    text = "SELECT id, UUID() AS u FROM q_users WHERE id = 'u2';"
    first = answered(users, text)
    runs = [ready(users, text) or answered(users, text) for _ in range(3)]
    assert len({str(r) for r in [first, *runs]}) == 4  # a fresh UUID each time
    assert not any("UUID" in sql.upper() for sql in kept(users))


@pytest.mark.parametrize(
    ("sql", "stable"),
    [
        ('SELECT "ID" AS "ID" FROM mat."T" input WHERE input."ID" = CAST(\'now()\' AS VARCHAR)', True),
        ('SELECT "AGE" AS "X" FROM mat."T" input WHERE COALESCE("AGE" >= 1e5, FALSE) LIMIT 3', True),
        ('SELECT "random()" AS "X" FROM mat."T" input', True),
        ('SELECT RANDOM() AS "X" FROM mat."T" input', False),
        ('SELECT EPOCH_MS(GET_CURRENT_TIMESTAMP()) AS "X" FROM mat."T" input', False),
        ('SELECT CAST(CURRENT_DATE - CAST(\'1970-01-01\' AS DATE) AS INT) AS "X" FROM mat."T" input', False),
    ],
)
def test_only_statements_of_stable_words_are_deterministic(sql: str, stable: bool) -> None:
    assert pullcache.deterministic(sql) is stable
