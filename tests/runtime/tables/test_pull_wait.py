"""Read-your-writes for key lookups of a table being written: a lookup waits for the writer's
pending records of its own keys, only where the table's rows of a key depend on them alone."""

from __future__ import annotations

import json
import threading

import pyarrow as pa
import pytest

from ksqlpy.runtime import pull, pullwait
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.store.base import TopicSpec
from ksqlpy.runtime.store.embedded import EmbeddedStore

EVENTS = (
    "CREATE STREAM events (id VARCHAR KEY, score INT, region VARCHAR) "
    "WITH (kafka_topic='events', value_format='JSON', partitions=1);"
)
LATEST = (
    "CREATE TABLE latest AS SELECT id, LATEST_BY_OFFSET(score) AS score, COUNT(*) AS n "
    "FROM events GROUP BY id;"
)


def produce(engine: Engine, topic: str, rows: list[tuple[str, int]]) -> None:
    engine.store.produce(
        topic,
        pa.table(
            {
                "key": pa.array([k.encode() for k, _ in rows], pa.binary()),
                "value": pa.array([json.dumps({"SCORE": s, "REGION": "eu"}).encode() for _, s in rows], pa.binary()),
            }
        ),
    )


def lookup(engine: Engine, key: str) -> list[tuple[object, ...]]:
    query = engine.session().execute_query(f"SELECT * FROM latest WHERE id = '{key}';")
    try:
        return [r.values for r in query]
    finally:
        query.close()


def declare_latest(engine: Engine, partitions: int) -> Engine:
    session = engine.session()
    session.execute_all(EVENTS.replace("partitions=1", f"partitions={partitions}"))
    session.execute_all(LATEST)
    produce(engine, "events", [("a", 1), ("b", 1)])
    assert engine.wait_idle()
    assert lookup(engine, "a") == [("a", 1, 1)] and lookup(engine, "b") == [("b", 1, 1)]
    return engine


@pytest.fixture(params=[1, 3], ids=["fed", "read-back"])
def latest(engine: Engine, request: pytest.FixtureRequest) -> Engine:
    """The table LATEST over stream EVENTS of one partition (the aggregation feeds its table)
    or of three (the table's materializer reads the aggregation's records back)."""
    return declare_latest(engine, request.param)


@pytest.fixture
def fed_latest(engine: Engine) -> Engine:
    """LATEST over one partition, fed by its aggregation: holding the table's feed lock holds
    the writer's next commit."""
    declare_latest(engine, 1)
    assert engine.materializers["LATEST"].fed()
    return engine


def test_a_lookup_waits_for_its_own_keys_records_only(fed_latest: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    latest = fed_latest
    # Long enough that no answer can come from waiting in vain: every one below is a real answer.
    monkeypatch.setattr(pull, "CATCH_UP_SECONDS", 3600.0)
    materializer = latest.materializers["LATEST"]
    answers: dict[str, list[tuple[object, ...]]] = {}

    def look(key: str) -> None:
        answers[key] = lookup(latest, key)

    # The writer cannot commit its next batch while the feed lock is held.
    materializer.feed_lock.acquire()
    b = threading.Thread(target=look, args=("b",), daemon=True)
    try:
        produce(latest, "events", [("b", 7)])
        other = threading.Thread(target=look, args=("a",), daemon=True)
        other.start()
        other.join(60)
        assert not other.is_alive(), "a lookup of a key with nothing pending waited for the writer"
        assert answers["a"] == [("a", 1, 1)]
        b.start()
    finally:
        materializer.feed_lock.release()
    b.join(60)
    assert not b.is_alive()
    # b's record was written before its lookup began: the lookup saw it
    assert answers["b"] == [("b", 7, 2)]


def test_lookups_read_every_write_before_them(latest: Engine) -> None:
    expected = {"a": (1, 1), "b": (1, 1), "c": None}
    for i in range(20):
        written = [("a", i), ("c", i)] if i % 2 else [("b", i)]
        produce(latest, "events", written)
        for key, score in written:
            before = expected[key]
            expected[key] = (score, 1 + (before[1] if before else 0))
        for key in ("a", "b", "c"):
            row = expected[key]
            assert lookup(latest, key) == ([(key, *row)] if row else [])


@pytest.mark.parametrize(
    ("ctas", "qualifies"),
    [
        (LATEST, True),
        ("CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM events WHERE score > 0 GROUP BY id HAVING COUNT(*) > 1;", True),
        ("CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM events WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY id;", False),
        ("CREATE TABLE t AS SELECT region, COUNT(*) AS n FROM events GROUP BY region;", False),
        ("CREATE TABLE t AS SELECT UCASE(id) AS k, COUNT(*) AS n FROM events GROUP BY UCASE(id);", False),
        ("CREATE TABLE t AS SELECT id, score FROM events_table;", False),
        ("CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM events_json GROUP BY id;", False),
    ],
)
def test_only_tables_whose_rows_depend_on_their_keys_records_qualify(
    engine: Engine, ctas: str, qualifies: bool
) -> None:
    session = engine.session()
    session.execute_all(EVENTS)
    session.execute_all(
        "CREATE TABLE events_table (id VARCHAR PRIMARY KEY, score INT) "
        "WITH (kafka_topic='events_t', value_format='JSON', partitions=1);"
    )
    session.execute_all(
        "CREATE STREAM events_json (id VARCHAR KEY, score INT) "
        "WITH (kafka_topic='events_j', key_format='JSON', value_format='JSON', partitions=1);"
    )
    session.execute_all(ctas)
    (query,) = [q for q in engine.queries.values() if q.plan.sink is not None]
    keys = pullwait.source_keys(query.plan, ("x",))
    assert (keys == [b"x"]) if qualifies else keys is None


def test_lookup_values_are_read_from_plain_literals_only() -> None:
    assert pullwait.lookup_values([("CAST('it''s' AS VARCHAR)",)]) == ("it's",)
    assert pullwait.lookup_values([("CAST(CAST(-12 AS INT) AS INTEGER)",)]) == (-12,)
    assert pullwait.lookup_values([("CAST(UCASE('a') AS VARCHAR)",)]) is None
    assert pullwait.lookup_values([("CAST('a' AS VARCHAR)", "CAST('b' AS VARCHAR)")]) is None


def test_the_store_finds_the_last_record_of_keys_from_memory_as_from_the_log() -> None:
    store = EmbeddedStore(":memory:", maintenance_interval=None)
    try:
        store.create_topic(TopicSpec(name="t", partitions=1, replicas=1, config={}))

        def append(keys: list[bytes | None]) -> None:
            store.produce("t", pa.table({"key": pa.array(keys, pa.binary()), "value": pa.array([b"v"] * len(keys))}))

        append([b"a", b"b", b"a"])  # offsets 0-2, before anyone asked: read from the log
        assert store.last_offsets_of("t", {0: (0, 3)}, [b"a"], read_log=False) is None
        assert store.last_offsets_of("t", {0: (0, 3)}, [b"a"]) == {0: 2}
        assert store.last_offsets_of("t", {0: (0, 2)}, [b"a"]) == {0: 0}
        assert store.last_offsets_of("t", {0: (1, 3)}, [b"c"]) == {}
        append([b"c", None, b"b"])  # offsets 3-5, kept in memory
        with pytest.raises(RuntimeError), store.transaction() as tx:  # offsets 6-7, rolled back
            tx.produce("t", pa.table({"key": pa.array([b"x", b"x"]), "value": pa.array([b"v", b"v"])}))
            raise RuntimeError("rolled back")
        append([b"y"])  # offset 6 again
        end = store.end_offsets("t")[0]
        assert end == 7
        for keys in ([b"a"], [b"b"], [b"c"], [b"x"], [b"y"], [b"a", b"c"]):
            for start in range(3, end):
                from_memory = store.last_offsets_of("t", {0: (start, end)}, keys)
                from_log = {0: o} if (o := store._last_offset_read(store._topic("t"), 0, start, end, keys)) is not None else {}
                assert from_memory == from_log, (keys, start)
        assert store.last_offsets_of("t", {0: (3, end)}, [b"x"], read_log=False) == {}
        assert store.last_offsets_of("t", {0: (2, end)}, [b"x"], read_log=False) is None
        assert store.last_offsets_of("t", {0: (3, end)}, [b"b", b"y"]) == {0: 6}
    finally:
        store.close()


def test_a_lookup_with_nothing_pending_is_ready_without_waiting(fed_latest: Engine) -> None:
    """What a server answers on its event loop: a lookup that would not wait."""
    latest = fed_latest
    materializer = latest.materializers["LATEST"]

    def ready(key: str) -> list[tuple[object, ...]] | None:
        query = latest.session().start_ready_pull(f"SELECT * FROM latest WHERE id = '{key}';")
        if query is None:
            return None
        try:
            return [r.values for r in query]
        finally:
            query.close()

    materializer.feed_lock.acquire()
    try:
        produce(latest, "events", [("b", 7)])
        assert ready("a") == [("a", 1, 1)]
        assert ready("b") is None  # its record is still to be committed: a worker thread waits for it
    finally:
        materializer.feed_lock.release()
    assert latest.wait_idle()
    # the writer owes nothing now: the table is caught up again, and its lookups kept
    assert ready("b") == [("b", 7, 2)]
    assert pull._is_caught_up(latest, materializer)
