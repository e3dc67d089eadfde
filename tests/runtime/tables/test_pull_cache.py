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
    return list(pullcache._kept.get(engine.materializers["Q_USERS"], {}))


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


def snapshots(engine: Engine) -> dict[object, int]:
    """Per lookup shape of table Q_USERS read whole, the keys it holds."""
    found = pullcache._snapshots.get(engine.materializers["Q_USERS"], {})
    return {shape: len(rows) for shape, (_, rows) in found.items()}


def test_a_table_read_whole_answers_every_lookup_as_duckdb_does(users: Engine) -> None:
    shapes = (
        "SELECT * FROM q_users WHERE id = '{}';",
        "SELECT name, age * 2 AS twice FROM q_users WHERE id = '{}' AND age > 10;",
    )
    uids = [*PEOPLE, "nobody", "U1", "u1 "]
    expected = {(shape, uid): answered(users, shape.format(uid)) for shape in shapes for uid in uids}
    for _ in range(2):  # past SNAPSHOT_AFTER lookups: the rest are answered from the whole table
        for shape in shapes:
            for uid in uids:
                assert settled(users, shape.format(uid)) == expected[(shape, uid)]
    over_ten = sum(age > 10 for _, age in PEOPLE.values())
    assert sorted(snapshots(users).values()) == sorted([len(PEOPLE), over_ten])
    users.session().execute_all("INSERT INTO users (id, name, age) VALUES ('u3', 'moved', 30);")
    assert ready(users, shapes[0].format("u3")) in (None, [("u3", "moved", 30)])
    assert answered(users, shapes[0].format("u3")) == [("u3", "moved", 30)]
    for shape, twice in zip(shapes, ([("u3", "moved", 30)], [("moved", 60)]), strict=True):
        assert settled(users, shape.format("u3")) == twice
        for uid in ("u5", "nobody"):
            assert settled(users, shape.format(uid)) == expected[(shape, uid)]


def test_a_large_table_is_not_read_whole(users: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pullcache, "SNAPSHOT_ROWS", 5)
    text = "SELECT * FROM q_users WHERE id = '{}';"
    for _ in range(2):
        for uid in PEOPLE:
            assert settled(users, text.format(uid)) == [(uid, *PEOPLE[uid])]
    assert snapshots(users) == {}
