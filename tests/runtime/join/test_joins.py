"""Join queries end to end on the embedded store: statements create the sources and the join,
records are produced to the topics one run at a time (as a client would write them), and the
sink topic is read back. Each test checks one of ksqlDB's join rules."""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.join import operator as join_operator
from ksqlpy.runtime.join.runner import _processing_order


def _open(path: Path) -> Any:
    return Engine.open(
        {
            "ksql.streams.state.dir": str(path),
            "ksql.streams.auto.offset.reset": "earliest",
            "ksql.logging.processing.stream.auto.create": "false",
        }
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    e = _open(tmp_path / "data")
    yield e
    e.close()


def _produce(engine: Any, topic: str, rows: list[tuple[str | None, dict[str, Any] | None, int]]) -> None:
    engine.store.produce(
        topic,
        pa.table(
            {
                "timestamp": pa.array([ts for _, _, ts in rows], pa.int64()),
                "key": pa.array([None if k is None else k.encode() for k, _, _ in rows], pa.binary()),
                "value": pa.array(
                    [None if v is None else json.dumps(v).encode() for _, v, _ in rows], pa.binary()
                ),
            }
        ),
    )
    assert engine.wait_idle(30)


def _read(engine: Any, topic: str) -> list[tuple[str | None, Any, int]]:
    out: list[tuple[str | None, Any, int]] = []
    with engine.store.open_reader([topic], start="earliest") as reader:
        for _ in range(20):
            batch = reader.poll(10_000, timeout=0.05)
            if batch.num_rows == 0 and out:
                break
            for k, v, ts in zip(
                batch.column("key").to_pylist(),
                batch.column("value").to_pylist(),
                batch.column("timestamp").to_pylist(),
                strict=True,
            ):
                out.append((None if k is None else k.decode(), None if v is None else json.loads(v), ts))
    return out


STREAM_TABLE = """
CREATE STREAM orders (id VARCHAR KEY, amount INT) WITH (kafka_topic='orders', value_format='JSON', partitions=1);
CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR) WITH (kafka_topic='users', value_format='JSON', partitions=1);
CREATE STREAM enriched AS SELECT o.id AS id, o.amount AS amount, u.name AS name
  FROM orders o LEFT JOIN users u ON o.id = u.id;
"""


def test_stream_table_join_reads_the_table_as_of_each_stream_record(engine: Any) -> None:
    engine.session().execute_all(STREAM_TABLE)
    _produce(engine, "orders", [("a", {"AMOUNT": 1}, 10)])
    _produce(engine, "users", [("a", {"NAME": "ann"}, 20)])
    _produce(
        engine, "orders", [("a", {"AMOUNT": 2}, 30), (None, {"AMOUNT": 3}, 31), ("b", {"AMOUNT": 4}, 32)]
    )
    _produce(engine, "users", [("a", None, 40)])  # a tombstone deletes the table row
    _produce(engine, "orders", [("a", {"AMOUNT": 5}, 50), ("a", None, 51)])
    rows = _read(engine, "ENRICHED")
    # table records only change state; a stream record with a null key or value never joins;
    # each result carries the stream record's timestamp
    assert rows == [
        ("a", {"AMOUNT": 1, "NAME": None}, 10),
        ("a", {"AMOUNT": 2, "NAME": "ann"}, 30),
        ("b", {"AMOUNT": 4, "NAME": None}, 32),
        ("a", {"AMOUNT": 5, "NAME": None}, 50),
    ]


def test_join_state_and_positions_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "data"
    engine = _open(path)
    try:
        engine.session().execute_all(STREAM_TABLE)
        _produce(engine, "users", [("a", {"NAME": "ann"}, 1)])
        _produce(engine, "orders", [("a", {"AMOUNT": 1}, 2)])
    finally:
        engine.close()
    engine = _open(path)
    try:
        assert engine.wait_idle(30)
        # the table's value was consumed before the restart: the join still knows it, and the
        # order read before the restart is not joined again
        _produce(engine, "orders", [("a", {"AMOUNT": 2}, 3)])
        rows = _read(engine, "ENRICHED")
    finally:
        engine.close()
    assert rows == [("a", {"AMOUNT": 1, "NAME": "ann"}, 2), ("a", {"AMOUNT": 2, "NAME": "ann"}, 3)]


def test_table_table_outer_join_emits_on_either_side_and_tombstones(engine: Any) -> None:
    engine.session().execute_all(
        """
        CREATE TABLE l (id VARCHAR PRIMARY KEY, a INT) WITH (kafka_topic='l', value_format='JSON', partitions=1);
        CREATE TABLE r (id VARCHAR PRIMARY KEY, b INT) WITH (kafka_topic='r', value_format='JSON', partitions=1);
        CREATE TABLE j AS SELECT l.id AS id, a, b FROM l INNER JOIN r ON l.id = r.id;
        """
    )
    _produce(engine, "l", [("k", {"A": 1}, 10)])  # no right row: nothing
    _produce(engine, "r", [("k", {"B": 2}, 5)])
    _produce(engine, "l", [("k", {"A": 3}, 20)])
    _produce(engine, "r", [("k", None, 30)])  # the joined row is gone: a tombstone
    _produce(engine, "r", [("x", None, 40)])  # a tombstone for a key never seen: nothing
    # the timestamp is the later of the two sides'
    assert _read(engine, "J") == [
        ("k", {"A": 1, "B": 2}, 10),
        ("k", {"A": 3, "B": 2}, 20),
        ("k", None, 30),
    ]


def test_stream_stream_left_join_with_grace_holds_unmatched_records(engine: Any) -> None:
    engine.session().execute_all(
        """
        CREATE STREAM l (id VARCHAR KEY, a INT) WITH (kafka_topic='l', value_format='JSON', partitions=1);
        CREATE STREAM r (id VARCHAR KEY, b INT) WITH (kafka_topic='r', value_format='JSON', partitions=1);
        CREATE STREAM j AS SELECT l.id AS id, a, b FROM l LEFT JOIN r
          WITHIN 10 SECONDS GRACE PERIOD 5 SECONDS ON l.id = r.id;
        """
    )
    _produce(engine, "l", [("k", {"A": 1}, 1_000), ("m", {"A": 2}, 2_000)])
    _produce(engine, "r", [("k", {"B": 3}, 4_000)])
    assert _read(engine, "J") == [("k", {"A": 1, "B": 3}, 4_000)]
    # stream time passes m's window end (12 s) plus grace (5 s): m is emitted without a match
    _produce(engine, "r", [("z", {"B": 9}, 17_001)])
    assert _read(engine, "J") == [("k", {"A": 1, "B": 3}, 4_000), ("m", {"A": 2, "B": None}, 2_000)]


def test_stream_stream_left_join_without_grace_emits_unmatched_records_at_once(engine: Any) -> None:
    engine.session().execute_all(
        """
        CREATE STREAM l (id VARCHAR KEY, a INT) WITH (kafka_topic='l', value_format='JSON', partitions=1);
        CREATE STREAM r (id VARCHAR KEY, b INT) WITH (kafka_topic='r', value_format='JSON', partitions=1);
        CREATE STREAM j AS SELECT l.id AS id, a, b FROM l LEFT JOIN r WITHIN 10 SECONDS ON l.id = r.id;
        """
    )
    _produce(engine, "l", [("k", {"A": 1}, 1_000)])
    _produce(engine, "r", [("k", {"B": 3}, 30_000), ("k", {"B": 4}, 5_000)])
    # the left record is emitted alone at once, then joined when a match within 10 s arrives
    assert _read(engine, "J") == [("k", {"A": 1, "B": None}, 1_000), ("k", {"A": 1, "B": 4}, 5_000)]


def test_stream_stream_join_gives_a_records_matches_in_the_other_sides_timestamp_order(engine: Any) -> None:
    # Kafka Streams fetches a key's buffered records from the window store in timestamp order,
    # not in the order they arrived: one right record meets the left ones by their timestamps,
    # whether they were stored by an earlier run or read in the same run.
    engine.session().execute_all(
        """
        CREATE STREAM l (id VARCHAR KEY, a INT) WITH (kafka_topic='l', value_format='JSON', partitions=1);
        CREATE STREAM r (id VARCHAR KEY, b INT) WITH (kafka_topic='r', value_format='JSON', partitions=1);
        """
    )
    _produce(engine, "l", [("k", {"A": 1}, 50_000), ("k", {"A": 2}, 10_000), ("k", {"A": 3}, 30_000)])
    _produce(engine, "r", [("k", {"B": 8}, 60_000)])
    engine.session().execute_all("CREATE STREAM j AS SELECT l.id AS id, a, b FROM l JOIN r WITHIN 1 MINUTE ON l.id = r.id;")
    assert engine.wait_idle(30)
    assert [(v["A"], v["B"]) for _, v, _ in _read(engine, "J")] == [(2, 8), (3, 8), (1, 8)]
    _produce(engine, "l", [("k", {"A": 4}, 20_000), ("k", {"A": 5}, 40_000)])
    _produce(engine, "r", [("k", {"B": 9}, 60_000)])
    assert [(v["A"], v["B"]) for _, v, _ in _read(engine, "J")][3:] == [
        (4, 8),
        (5, 8),
        (2, 9),
        (4, 9),
        (3, 9),
        (5, 9),
        (1, 9),
    ]


def test_stream_stream_left_join_with_grace_releases_held_records_over_many_runs(engine: Any) -> None:
    # Unmatched left records of many keys wait in the store across runs; each is emitted once,
    # padded with nulls, when stream time passes its window end plus grace, oldest first, unless
    # a right record matched it before then.
    engine.session().execute_all(
        """
        CREATE STREAM l (id VARCHAR KEY, a INT) WITH (kafka_topic='l', value_format='JSON', partitions=1);
        CREATE STREAM r (id VARCHAR KEY, b INT) WITH (kafka_topic='r', value_format='JSON', partitions=1);
        CREATE STREAM j AS SELECT l.id AS id, a, b FROM l LEFT JOIN r
          WITHIN 1 SECOND GRACE PERIOD 5 SECONDS ON l.id = r.id;
        """
    )
    # left records of keys k0..k39 at 10.0 s, 10.1 s, ... 13.9 s, produced in four runs
    for run in range(4):
        _produce(engine, "l", [(f"k{i}", {"A": i}, 10_000 + 100 * i) for i in range(10 * run, 10 * run + 10)])
    # right records match every third key of the first twelve within its window
    _produce(engine, "r", [(f"k{i}", {"B": i}, 10_500 + 100 * i) for i in range(0, 12, 3)])
    assert [k for k, v, _ in _read(engine, "J") if v["B"] is not None] == ["k0", "k3", "k6", "k9"]
    # stream time 17.2 s: left records before 11.2 s (window end 1 s + grace 5 s before it) expire;
    # then two late right records match held ones
    _produce(engine, "r", [("z", {"B": -1}, 17_200)])
    _produce(engine, "r", [("k30", {"B": 30}, 13_400), ("k39", {"B": 39}, 14_300)])
    out = _read(engine, "J")
    matched = [(k, v["A"]) for k, v, _ in out if v["B"] is not None]
    assert matched == [("k0", 0), ("k3", 3), ("k6", 6), ("k9", 9), ("k30", 30), ("k39", 39)]
    padded = [(k, ts) for k, v, ts in out if v["B"] is None]
    assert padded == [(f"k{i}", 10_000 + 100 * i) for i in range(12) if i % 3]
    # the rest expire once stream time passes 13.9 s + 6 s
    _produce(engine, "r", [("z", {"B": -1}, 20_000)])
    padded_keys = [k for k, v, _ in _read(engine, "J") if v["B"] is None]
    expected = [f"k{i}" for i in range(12) if i % 3] + [f"k{i}" for i in range(12, 39) if i != 30]
    assert padded_keys == expected


def test_processing_order_keeps_offsets_and_takes_the_lowest_next_timestamp() -> None:
    records = pa.table(
        {
            "topic": ["a", "a", "b", "b"],
            "partition": pa.array([0, 0, 0, 0], pa.int32()),
            "timestamp": pa.array([30, 10, 20, 40], pa.int64()),
        }
    )
    # a's 30 comes before its 10 (offset order); b's 20 waits for a's head (30) to be taken
    assert _processing_order(records).tolist() == [2, 0, 1, 3]


def test_foreign_key_join_follows_both_tables(engine: Any) -> None:
    engine.session().execute_all(
        """
        CREATE TABLE orders (id VARCHAR PRIMARY KEY, user_id VARCHAR, n INT)
          WITH (kafka_topic='orders', value_format='JSON', partitions=1);
        CREATE TABLE users (uid VARCHAR PRIMARY KEY, name VARCHAR)
          WITH (kafka_topic='users', value_format='JSON', partitions=1);
        CREATE TABLE j AS SELECT o.id AS id, n, name FROM orders o LEFT JOIN users u ON o.user_id = u.uid;
        """
    )
    _produce(engine, "users", [("u1", {"NAME": "ann"}, 1)])
    _produce(engine, "orders", [("o1", {"USER_ID": "u1", "N": 1}, 2), ("o2", {"USER_ID": "u2", "N": 2}, 3)])
    _produce(engine, "users", [("u1", {"NAME": "anne"}, 4)])  # re-joins every order naming u1
    _produce(engine, "users", [("u1", None, 5)])  # LEFT: the orders stay, without a user
    _produce(engine, "orders", [("o2", None, 6)])  # a left delete is a tombstone
    assert _read(engine, "J") == [
        ("o1", {"N": 1, "NAME": "ann"}, 2),
        ("o2", {"N": 2, "NAME": None}, 3),
        ("o1", {"N": 1, "NAME": "anne"}, 4),
        ("o1", {"N": 1, "NAME": None}, 5),
        ("o2", None, 6),
    ]


WINDOWED = """
CREATE STREAM s1 (k INT KEY, v BIGINT) WITH (kafka_topic='s1', value_format='JSON', partitions=1,
  window_type='Tumbling', window_size='2 SECONDS');
CREATE STREAM s2 (k INT KEY, v BIGINT) WITH (kafka_topic='s2', value_format='JSON', partitions=1,
  window_type='Tumbling', window_size='2 SECONDS');
CREATE STREAM joined AS SELECT * FROM s1 JOIN s2 WITHIN 1 MINUTE ON s1.k = s2.k;
"""


def _windowed(key: int, start: int) -> bytes:
    # a KAFKA INT key and its time window's start, as Kafka Streams' time-windowed serde writes them
    return struct.pack(">i", key) + struct.pack(">q", start)


def _produce_raw(engine: Any, topic: str, rows: list[tuple[bytes, dict[str, Any], int]]) -> None:
    engine.store.produce(
        topic,
        pa.table(
            {
                "timestamp": pa.array([ts for _, _, ts in rows], pa.int64()),
                "key": pa.array([k for k, _, _ in rows], pa.binary()),
                "value": pa.array([json.dumps(v).encode() for _, v, _ in rows], pa.binary()),
            }
        ),
    )
    assert engine.wait_idle(30)


def test_windowed_sources_join_within_the_same_window_and_keep_it(engine: Any) -> None:
    engine.session().execute_all(WINDOWED)
    _produce_raw(engine, "s1", [(_windowed(1, 0), {"V": 1}, 0), (_windowed(1, 2000), {"V": 2}, 2000)])
    _produce_raw(engine, "s2", [(_windowed(1, 2000), {"V": 3}, 2100)])
    with engine.store.open_reader(["JOINED"], start="earliest") as reader:
        batch = reader.poll(100, timeout=1.0)
    # the key 1 of window [0, 2000) does not meet the same key of window [2000, 4000)
    assert batch.column("key").to_pylist() == [_windowed(1, 2000)]
    assert json.loads(batch.column("value")[0].as_py()) == {
        "S1_WINDOWSTART": 2000,
        "S1_WINDOWEND": 4000,
        "S1_V": 2,
        "S2_K": 1,
        "S2_WINDOWSTART": 2000,
        "S2_WINDOWEND": 4000,
        "S2_V": 3,
    }
    assert batch.column("timestamp").to_pylist() == [2100]


def _joined_in_batches_of(
    path: Path, statements: str, join: str, rows: dict[str, list[tuple[str | None, dict[str, Any] | None, int]]], poll: int
) -> list[tuple[str | None, Any, int]]:
    e = _open(path)
    try:
        e.session().execute_all(statements)
        for topic, records in rows.items():
            e.store.produce(
                topic,
                pa.table(
                    {
                        "timestamp": pa.array([ts for _, _, ts in records], pa.int64()),
                        "key": pa.array([None if k is None else k.encode() for k, _, _ in records], pa.binary()),
                        "value": pa.array(
                            [None if v is None else json.dumps(v).encode() for _, v, _ in records], pa.binary()
                        ),
                    }
                ),
            )
        e.session({"ksql.streams.max.poll.records": str(poll)}).execute_all(join)
        assert e.wait_idle(30)
        return _read(e, "J")
    finally:
        e.close()


@pytest.mark.parametrize(
    ("left", "join"),
    [
        ("STREAM a (id VARCHAR KEY, x INT)", "CREATE STREAM j AS SELECT a.id AS id, x, y FROM a LEFT JOIN b ON a.id = b.id;"),
        ("TABLE a (id VARCHAR PRIMARY KEY, x INT)", "CREATE TABLE j AS SELECT a.id AS id, x, y FROM a JOIN b ON a.id = b.id;"),
        (
            "TABLE a (id VARCHAR PRIMARY KEY, x INT)",
            "CREATE TABLE j AS SELECT ROWKEY AS id, x, y FROM a FULL OUTER JOIN b ON a.id = b.id;",
        ),
    ],
)
def test_interleaved_table_updates_join_as_they_would_one_run_at_a_time(
    tmp_path: Path, left: str, join: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two inputs whose timestamps interleave record by record are read in one batch as runs of
    # a record or two; joined together as one sequence, each record must still meet the other
    # side as the records before it left it: the output equals that of each run joined alone,
    # a record per batch.
    rng = random.Random(5)
    rows: dict[str, list[tuple[str | None, dict[str, Any] | None, int]]] = {"a": [], "b": []}
    for n in range(200):
        topic, column = ("a", "X") if rng.random() < 0.5 else ("b", "Y")
        key = None if rng.random() < 0.03 else f"k{rng.randrange(6)}"
        deletes = topic == "b" or left.startswith("TABLE")
        value = None if deletes and rng.random() < 0.15 else {column: n}
        rows[topic].append((key, value, 1_000 + n))
    statements = (
        f"CREATE {left} WITH (kafka_topic='a', value_format='JSON', partitions=1);"
        "CREATE TABLE b (id VARCHAR PRIMARY KEY, y INT) WITH (kafka_topic='b', value_format='JSON', partitions=1);"
    )
    batched = _joined_in_batches_of(tmp_path / "batched", statements, join, rows, 10_000)
    monkeypatch.setattr(join_operator, "_SEQUENCED", ())  # every run joined on its own
    one_by_one = _joined_in_batches_of(tmp_path / "one", statements, join, rows, 1)
    assert len(one_by_one) > 50
    assert batched == one_by_one
