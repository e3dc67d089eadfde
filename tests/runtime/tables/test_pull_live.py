"""Live snapshots: key lookups of a table being written answered from a copy of its rows that
the table's writers keep current, which must always hold what DuckDB holds."""

from __future__ import annotations

import time
from collections.abc import Callable

import pyarrow as pa
import pytest
from test_pull import PEOPLE, QUERYABLE, USERS, produce_json
from test_pull_wait import declare_latest, produce

from ksqlpy.runtime import pulllive
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.materialize import Materializer

WAIT_SECONDS = 60.0


def rows(query: object) -> list[tuple[object, ...]]:
    try:
        return [r.values for r in query]  # type: ignore[attr-defined]
    finally:
        query.close()  # type: ignore[attr-defined]


def rows_or_none(query: object | None) -> list[tuple[object, ...]] | None:
    return None if query is None else rows(query)


def lookup(engine: Engine, text: str) -> list[tuple[object, ...]]:
    """A server's answer to ``text`` off its event loop: planned once, then bound and caught up."""
    session = engine.session()
    query = session.start_prepared_pull(text)
    return rows(query if query is not None else session.execute_query(text))


def in_duckdb(engine: Engine, text: str) -> list[tuple[object, ...]]:
    """What ``text`` reads in DuckDB once its table caught up (a parsed pull query, which no
    snapshot answers)."""
    return rows(engine.session().execute_query(text))


def live_snapshots(materializer: Materializer) -> list[pulllive.LiveSnapshot]:
    return [s for s in pulllive._live.get(materializer, {}).values() if s.live]


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what}")
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def soon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulllive, "LIVE_AFTER", 3)


@pytest.fixture(params=[1, 3], ids=["fed", "read-back"])
def latest(engine: Engine, request: pytest.FixtureRequest) -> Engine:
    return declare_latest(engine, request.param)


def make_live(engine: Engine, table: str, text: str) -> pulllive.LiveSnapshot:
    """Look ``text`` up until its shape has a live snapshot."""
    materializer = engine.materializers[table]
    until(lambda: bool(lookup(engine, text) is not None and live_snapshots(materializer)), "made live")
    [snapshot] = live_snapshots(materializer)
    return snapshot


def test_a_live_snapshot_answers_as_duckdb_through_every_write(latest: Engine) -> None:
    text = "SELECT * FROM latest WHERE id = '{}';"
    snapshot = make_live(latest, "LATEST", text.format("a"))
    expected = {"a": (1, 1), "b": (1, 1)}
    for i in range(12):
        written = [("a", i), (f"new{i}", i)] if i % 2 else [("b", i), ("a", -i)]
        produce(latest, "events", written)
        for key, score in written:
            before = expected.get(key)
            expected[key] = (score, 1 + (before[1] if before else 0))
        for key in [*expected, "nobody"]:
            row = expected.get(key)
            want = [(key, *row)] if row else []
            # on a server's event loop: answered at once only when nothing of the key is pending
            assert rows_or_none(latest.session().start_ready_pull(text.format(key))) in (None, want)
            assert lookup(latest, text.format(key)) == want
            assert in_duckdb(latest, text.format(key)) == want
    # the lookups came from the snapshot, kept current by the writes rather than read again
    assert live_snapshots(latest.materializers["LATEST"]) == [snapshot]
    assert {k: [r.values for r in v] for k, v in snapshot._by_key.items() if v} == {
        k: [(k, *row)] for k, row in expected.items()
    }


@pytest.fixture
def users(engine: Engine) -> Engine:
    session = engine.session()
    session.execute_all(USERS)
    session.execute_all(QUERYABLE)
    produce_json(engine, "users", {uid: {"NAME": name, "AGE": age} for uid, (name, age) in PEOPLE.items()})
    return engine


def test_changed_and_deleted_rows_reach_a_live_snapshot(users: Engine) -> None:
    text = "SELECT age, name FROM q_users WHERE id = '{}';"
    make_live(users, "Q_USERS", text.format("u1"))
    expected = {uid: [(age, name)] for uid, (name, age) in PEOPLE.items()}
    for uid, want in expected.items():
        assert lookup(users, text.format(uid)) == want
    users.session().execute_all("INSERT INTO users (id, name, age) VALUES ('u1', 'older', 40);")
    users.session().execute_all("INSERT INTO users (id, name, age) VALUES ('fresh', 'x', 11);")
    tombstone = pa.table({"key": pa.array([b"u2"], pa.binary()), "value": pa.array([None], pa.binary())})
    users.store.produce("users", tombstone)
    expected.update({"u1": [(40, "older")], "fresh": [(11, "x")], "u2": []})
    for uid in [*expected, "nobody"]:
        want = expected.get(uid, [])
        assert lookup(users, text.format(uid)) == want
        assert in_duckdb(users, text.format(uid)) == want
    assert live_snapshots(users.materializers["Q_USERS"])


def test_a_lookup_that_computes_gets_no_live_snapshot(users: Engine) -> None:
    """Its statement could fail on a new row (an overflow, a cast), inside the writer's
    transaction: it is read from DuckDB."""
    text = "SELECT name, age * 2 AS twice FROM q_users WHERE id = '{}' AND age > 10;"
    expected = {uid: [(name, age * 2)] if age > 10 else [] for uid, (name, age) in PEOPLE.items()}
    for _ in range(3 * pulllive.LIVE_AFTER):
        for uid in ("u1", "u3"):
            users.session().execute_all(f"INSERT INTO users (id, name, age) VALUES ('{uid}', 'n', 30);")
            expected[uid] = [("n", 60)]
            assert lookup(users, text.format(uid)) == expected[uid]
    for uid, want in expected.items():
        assert lookup(users, text.format(uid)) == want
    assert live_snapshots(users.materializers["Q_USERS"]) == []
    assert users.materializers["Q_USERS"]._watchers == ()


def test_a_live_snapshot_no_lookup_uses_stops_being_kept(
    latest: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    materializer = latest.materializers["LATEST"]
    snapshot = make_live(latest, "LATEST", "SELECT * FROM latest WHERE id = 'a';")
    assert materializer._watchers == (snapshot,)
    monkeypatch.setattr(pulllive, "IDLE_SECONDS", 0.0)
    produce(latest, "events", [("a", 5)])
    until(lambda: not snapshot.live, "dropped")
    assert materializer._watchers == ()
    monkeypatch.setattr(pulllive, "IDLE_SECONDS", 60.0)
    assert lookup(latest, "SELECT * FROM latest WHERE id = 'a';") == [("a", 5, 2)]
    # later lookups make it again, from the table as it is then
    again = make_live(latest, "LATEST", "SELECT * FROM latest WHERE id = 'a';")
    assert again is not snapshot
    assert [r.values for r in again._by_key["a"]] == [("a", 5, 2)]


def test_a_large_table_gets_no_live_snapshot(latest: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from ksqlpy.runtime import pullcache

    monkeypatch.setattr(pullcache, "SNAPSHOT_ROWS", 1)
    for _ in range(3 * pulllive.LIVE_AFTER):
        assert lookup(latest, "SELECT * FROM latest WHERE id = 'b';") == [("b", 1, 1)]
    until(lambda: pulllive._misses.get(latest.materializers["LATEST"], {}) != {}, "counted")
    time.sleep(0.2)
    assert live_snapshots(latest.materializers["LATEST"]) == []
    assert latest.materializers["LATEST"]._watchers == ()


def test_a_live_snapshot_of_a_table_that_grows_too_large_is_dropped(
    latest: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "SELECT * FROM latest WHERE id = '{}';"
    snapshot = make_live(latest, "LATEST", text.format("a"))
    monkeypatch.setattr(pulllive, "MAX_KEYS", 4)
    produce(latest, "events", [("c", 3), ("d", 4), ("e", 5)])
    until(lambda: not snapshot.live, "dropped")
    assert latest.materializers["LATEST"]._watchers == ()
    for key, score in (("a", 1), ("c", 3), ("e", 5)):
        assert lookup(latest, text.format(key)) == [(key, score, 1)]
