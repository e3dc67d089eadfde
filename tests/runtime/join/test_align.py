"""Join input time alignment: records are released in timestamp order across a join's inputs,
and held back while an input that may still deliver earlier records has none buffered — on
the embedded store, end to end, and on :class:`InputAligner` itself."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.join.align import BEHIND_WAIT_S, InputAligner
from ksqlpy.runtime.store.base import RECORD_SCHEMA, TopicPartition


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


def _produce(engine: Any, topic: str, rows: list[tuple[str, dict[str, Any], int]]) -> None:
    engine.store.produce(
        topic,
        pa.table(
            {
                "timestamp": pa.array([ts for _, _, ts in rows], pa.int64()),
                "key": pa.array([k.encode() for k, _, _ in rows], pa.binary()),
                "value": pa.array([json.dumps(v).encode() for _, v, _ in rows], pa.binary()),
            }
        ),
    )


def _read(engine: Any, topic: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    with engine.store.open_reader([topic], start="earliest") as reader:
        while True:
            batch = reader.poll(10_000, timeout=0.2)
            if batch.num_rows == 0:
                return out
            for k, v in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist(), strict=True):
                out.append((k.decode(), json.loads(v)))


SOURCES = """
CREATE STREAM orders (id VARCHAR KEY, amount INT) WITH (kafka_topic='orders', value_format='JSON', partitions=1);
CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR) WITH (kafka_topic='users', value_format='JSON', partitions=1);
"""
ENRICH = """
CREATE STREAM enriched AS SELECT o.id AS id, o.amount AS amount, u.name AS name
  FROM orders o LEFT JOIN users u ON o.id = u.id;
"""


def _polls(engine: Any) -> list[set[str]]:
    """The topics of each non-empty batch the store's readers return from now on."""
    seen: list[set[str]] = []
    original = engine.store.open_reader

    def open_reader(*args: Any, **kwargs: Any) -> Any:
        reader = original(*args, **kwargs)
        poll = reader.poll

        def recorded(*a: Any, **kw: Any) -> Any:
            batch = poll(*a, **kw)
            if batch.num_rows:
                seen.append(set(batch.column("topic").to_pylist()))
            return batch

        reader.poll = recorded
        return reader

    engine.store.open_reader = open_reader
    return seen


def test_table_rows_read_after_the_stream_records_that_need_them_still_join(engine: Any) -> None:
    session = engine.session({"ksql.streams.max.poll.records": "10"})
    session.execute_all(SOURCES)
    ids = [f"k{i:02d}" for i in range(40)]
    _produce(engine, "orders", [(k, {"AMOUNT": i}, 1_000 + i) for i, k in enumerate(ids)])
    _produce(engine, "users", [(k, {"NAME": f"user {k}"}, 10) for k in ids])
    polls = _polls(engine)
    session.execute_all(ENRICH)
    assert engine.wait_idle(30)
    # the query read stream records before any of the table's rows (polls of ten records)
    first_users = next(i for i, topics in enumerate(polls) if "users" in topics)
    assert any(topics == {"orders"} for topics in polls[:first_users])
    out = _read(engine, "ENRICHED")
    assert sorted(out) == [(k, {"AMOUNT": i, "NAME": f"user {k}"}) for i, k in enumerate(ids)]


def test_records_held_back_are_read_again_after_a_restart(tmp_path: Path) -> None:
    engine = _open(tmp_path / "data")
    try:
        # wait up to ten minutes for the table to deliver rows as old as the orders
        session = engine.session({"ksql.streams.max.task.idle.ms": "600000"})
        session.execute_all(SOURCES + ENRICH)
        query = next(iter(engine.queries.values()))
        group = engine.query_group(query.query_id)
        _produce(engine, "orders", [("a", {"AMOUNT": 1}, 100), ("b", {"AMOUNT": 2}, 101)])
        deadline = time.monotonic() + 30
        while query.records_in < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert query.records_in == 2
        assert not query.caught_up()  # read, and held
        assert _read(engine, "ENRICHED") == []
        assert engine.store.committed(group, "orders").get(0, 0) == 0
    finally:
        engine.close()

    engine = _open(tmp_path / "data")
    try:
        # the users, older than the orders, and an order and a user newer than those: the
        # held orders go (each partition still has a record after them), the newest order waits
        _produce(
            engine,
            "users",
            [("a", {"NAME": "ann"}, 1), ("b", {"NAME": "bob"}, 2), ("z", {"NAME": "zed"}, 500)],
        )
        _produce(engine, "orders", [("c", {"AMOUNT": 3}, 900)])
        deadline = time.monotonic() + 30
        out = _read(engine, "ENRICHED")
        while len(out) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            out = _read(engine, "ENRICHED")
        assert sorted(out) == [("a", {"AMOUNT": 1, "NAME": "ann"}), ("b", {"AMOUNT": 2, "NAME": "bob"})]
        assert engine.store.committed(group, "orders") == {0: 2}
    finally:
        engine.close()


def _records(topic: str, partition: int, offsets: range, times: list[int]) -> pa.Table:
    n = len(offsets)
    return pa.table(
        {
            "topic": [topic] * n,
            "partition": pa.array([partition] * n, pa.int32()),
            "offset": pa.array(list(offsets), pa.int64()),
            "timestamp": pa.array(times, pa.int64()),
            "key": pa.array([b"k"] * n, pa.binary()),
            "value": pa.array([b"v"] * n, pa.binary()),
            "headers": pa.array([[]] * n, RECORD_SCHEMA.field("headers").type),
        },
        schema=RECORD_SCHEMA,
    )


def test_aligner_waits_for_an_input_behind_its_end_and_commits_before_what_it_holds() -> None:
    orders, users = TopicPartition("orders", 0), TopicPartition("users", 0)
    ends = {"orders": {0: 3}, "users": {0: 2}}
    aligner = InputAligner()
    aligner.add(_records("orders", 0, range(3), [100, 101, 102]))
    # users has two records to deliver, none read yet: nothing goes
    assert aligner.release({orders: 3, users: 0}, ends.__getitem__).num_rows == 0
    assert aligner.committable({orders: 3, users: 0}) == {orders: 0, users: 0}
    aligner.add(_records("users", 0, range(1), [5]))
    # one user read, one still behind: the user goes, and nothing after it while users is dry
    released = aligner.release({orders: 3, users: 1}, ends.__getitem__)
    assert released.column("topic").to_pylist() == ["users"]
    aligner.add(_records("users", 0, range(1, 2), [101]))
    # users read to its end: everything goes, in timestamp order (ties: orders, buffered first)
    released = aligner.release({orders: 3, users: 2}, ends.__getitem__)
    assert list(
        zip(released.column("topic").to_pylist(), released.column("timestamp").to_pylist(), strict=True)
    ) == [
        ("orders", 100),
        ("orders", 101),
        ("users", 101),
        ("orders", 102),
    ]
    assert aligner.held == 0
    assert aligner.committable({orders: 3, users: 2}) == {orders: 3, users: 2}


def test_aligner_without_idling_releases_what_is_buffered() -> None:
    orders, users = TopicPartition("orders", 0), TopicPartition("users", 0)
    aligner = InputAligner(-1)
    aligner.add(_records("orders", 0, range(2), [100, 101]))
    released = aligner.release({orders: 2, users: 0}, {"orders": {0: 2}, "users": {0: 5}}.__getitem__)
    assert released.num_rows == 2


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_aligner_idles_for_max_task_idle_ms_on_an_input_at_its_end() -> None:
    orders, users = TopicPartition("orders", 0), TopicPartition("users", 0)
    ends = {"orders": {0: 2}, "users": {0: 0}}.__getitem__
    clock = _Clock()
    aligner = InputAligner(1_000, clock=clock)
    aligner.add(_records("orders", 0, range(2), [100, 101]))
    assert aligner.release({orders: 2, users: 0}, ends).num_rows == 0
    assert aligner.next_deadline() == 1.0
    clock.now = 0.5
    assert aligner.release({orders: 2, users: 0}, ends).num_rows == 0
    clock.now = 1.0
    assert aligner.release({orders: 2, users: 0}, ends).column("timestamp").to_pylist() == [100, 101]


def test_aligner_stops_waiting_for_an_input_that_does_not_deliver() -> None:
    orders, users = TopicPartition("orders", 0), TopicPartition("users", 0)
    ends = {"orders": {0: 1}, "users": {0: 7}}.__getitem__  # users stays behind
    clock = _Clock()
    aligner = InputAligner(clock=clock)
    aligner.add(_records("orders", 0, range(1), [100]))
    assert aligner.release({orders: 1, users: 0}, ends).num_rows == 0
    clock.now = BEHIND_WAIT_S
    assert aligner.release({orders: 1, users: 0}, ends).num_rows == 1


def test_stream_stream_join_reads_both_inputs_in_timestamp_order(engine: Any) -> None:
    session = engine.session()
    session.execute_all(
        """
        CREATE STREAM l (k VARCHAR KEY, v INT) WITH (kafka_topic='l', value_format='JSON', partitions=1);
        CREATE STREAM r (k VARCHAR KEY, w VARCHAR) WITH (kafka_topic='r', value_format='JSON', partitions=1);
        """
    )
    # written side by side, read in one poll: the join takes them by timestamp, not by topic
    _produce(engine, "l", [("k", {"V": 1}, 1_000), ("k", {"V": 2}, 2_200), ("k", {"V": 3}, 4_500)])
    _produce(engine, "r", [("k", {"W": "x"}, 1_500), ("k", {"W": "y"}, 4_000)])
    session.execute_all(
        "CREATE STREAM j AS SELECT l.k AS k, v, w FROM l LEFT JOIN r WITHIN 1 SECOND ON l.k = r.k;"
    )
    assert engine.wait_idle(30)
    assert _read(engine, "J") == [
        ("k", {"V": 1, "W": None}),  # nothing on the right yet
        ("k", {"V": 1, "W": "x"}),
        ("k", {"V": 2, "W": "x"}),
        ("k", {"V": 3, "W": "y"}),
    ]
