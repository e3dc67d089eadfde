"""Kafka store: a new persistent query reads its input while its consumer joins the group, in one
open transaction that commits when the assignment gives it the partitions it read, else aborts.

The test broker (Tansu) holds a JoinGroup for half of ``session.timeout.ms``; these tests use 6 s,
so a query that waited for its assignment would read nothing for ~3 s.

Tansu delivers the records of aborted transactions to read-committed readers (Kafka never does), so
where a read-ahead is aborted the sink is checked through what the servers committed: every input
once in the records the servers report kept, and the aborted read-ahead's outputs are the only
records beyond those (see /work/shared/KAFKA-NOTES.md).

A stateless query sends each batch read ahead while it prepares the next; the assignment commits
the batches sent by then, and the member reads the rest again. Batches are slowed down, and the
read-ahead's producer made late or failing, where the store meets them (``QueryRunner._prepare``,
``_ReadAhead._start_producer``); the reading, producing and committing are real.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from kafka_broker import engine_settings

from ksqlpy.runtime import query as query_module
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.store.kafka import _ReadAhead

pytestmark = pytest.mark.kafka

PARTITIONS = 3
ROWS = 30_000
#: A join of ~3 s on the test broker: long enough that reading ahead shows.
SESSION_TIMEOUT_MS = "6000"


def _settings(
    bootstrap: str, service_id: str, data_dir: Path, guarantee: str = "exactly_once_v2"
) -> dict[str, str]:
    return {
        **engine_settings(bootstrap, service_id=service_id, data_dir=data_dir),
        "kafka.session.timeout.ms": SESSION_TIMEOUT_MS,
        "processing.guarantee": guarantee,
    }


def _produce(bootstrap: str, topic: str, first: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i in range(first, first + count):
        while True:
            try:
                producer.produce(topic, orjson.dumps({"ID": i, "V": i % 7}), f"k{i}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def _read_ids(bootstrap: str, topic: str) -> list[int]:
    """The ID of every record of ``topic`` (read committed), to the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.queue.backoff.ms": 10,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        at_end: set[int] = set()
        ids: list[int] = []
        deadline = time.monotonic() + 30
        while len(at_end) < PARTITIONS and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.2):
                if m.error() is not None:
                    at_end.add(int(m.partition() or 0))
                    continue
                ids.append(int(orjson.loads(m.value() or b"{}")["ID"]))
        assert at_end == set(range(PARTITIONS)), f"{topic} not read to its end"
        return ids
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        answer = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in answer)
    finally:
        consumer.close()


_OUTCOME = re.compile(r"read ahead ([\d,]+) records .*; (kept|aborted)")


def _outcomes(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    found = []
    for record in caplog.records:
        match = _OUTCOME.search(record.getMessage())
        if match:
            found.append((int(match.group(1).replace(",", "")), match.group(2)))
    return found


def _create(engine: Engine, run: str) -> None:
    engine.session().execute_all(
        f"CREATE STREAM s (k VARCHAR KEY, id INT, v INT) WITH (kafka_topic='s_{run}', value_format='JSON', "
        f"partitions={PARTITIONS});"
    )


@pytest.mark.parametrize("guarantee", ["exactly_once_v2", "at_least_once"])
def test_one_server_keeps_what_it_read_while_joining(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, guarantee: str
) -> None:
    run = uuid.uuid4().hex[:10]
    engine = Engine.open(_settings(kafka_bootstrap, f"ahead_{run}_", tmp_path / "data", guarantee))
    try:
        _create(engine, run)
        _produce(kafka_bootstrap, f"s_{run}", 0, ROWS)
        caplog.set_level(logging.INFO, logger="ksqlpy.store.kafka")
        engine.session().execute_all(f"CREATE STREAM o WITH (kafka_topic='o_{run}') AS SELECT k, id FROM s WHERE v >= 0;")
        (query,) = engine.queries.values()
        # Records are read (and produced, uncommitted) before the group has assigned anything.
        deadline = time.monotonic() + 20
        while query.records_in == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert query.records_in > 0
        assert query._reader.assignment() == []
        assert engine.wait_idle(60)
        _produce(kafka_bootstrap, f"s_{run}", ROWS, 100)  # and then on, from where it was kept
        assert engine.wait_idle(60)
        group = query.group
    finally:
        engine.close()
    # Restarted, the query reads ahead again, from the positions the group committed.
    _produce(kafka_bootstrap, f"s_{run}", ROWS + 100, 900)
    engine = Engine.open(_settings(kafka_bootstrap, f"ahead_{run}_", tmp_path / "data", guarantee))
    try:
        assert engine.wait_idle(60)
    finally:
        engine.close()
    outcomes = _outcomes(caplog)
    assert [o for _, o in outcomes] == ["kept", "kept"] and outcomes[0][0] > 0, outcomes
    assert outcomes[1][0] == 900, outcomes
    ids = _read_ids(kafka_bootstrap, f"o_{run}")
    assert sorted(ids) == list(range(ROWS + 1000))  # each exactly once
    assert group is not None and _committed(kafka_bootstrap, group, f"s_{run}") == ROWS + 1000


def _settled(a: Any, b: Any) -> bool:
    """Whether both queries are idle and their members own every partition, each its own."""
    owned_a, owned_b = set(a._reader.assignment()), set(b._reader.assignment())
    return a.is_idle() and b.is_idle() and not owned_a & owned_b and len(owned_a | owned_b) == PARTITIONS


def test_two_servers_joining_at_once_keep_only_what_they_are_assigned(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = uuid.uuid4().hex[:10]
    service = f"ahead2_{run}_"
    a = Engine.open(_settings(kafka_bootstrap, service, tmp_path / "a"))
    b = Engine.open(_settings(kafka_bootstrap, service, tmp_path / "b"))
    try:
        _create(a, run)
        _produce(kafka_bootstrap, f"s_{run}", 0, ROWS)
        caplog.set_level(logging.INFO, logger="ksqlpy.store.kafka")
        # B runs the query as soon as it reads the statement from the command topic, well within
        # the ~3 s A's join takes: both join the query's group in one round, both reading ahead.
        a.session().execute_all(f"CREATE STREAM o WITH (kafka_topic='o_{run}') AS SELECT k, id FROM s WHERE v >= 0;")
        deadline = time.monotonic() + 20
        while not b.queries and time.monotonic() < deadline:
            time.sleep(0.02)
        (query_a,) = a.queries.values()
        (query_b,) = b.queries.values()
        group = query_a.group
        assert group is not None and group == query_b.group
        deadline = time.monotonic() + 60
        while _committed(kafka_bootstrap, group, f"s_{run}") < ROWS and time.monotonic() < deadline:
            time.sleep(0.2)
        # (not wait_idle: it would wait for each to catch up with partitions the other owns)
        # Where B joined after A's group settled, its join moves A's partitions once A is idle:
        # neither owns any until that rebalance ends.
        while not _settled(query_a, query_b) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Between them the two members own every partition, each its own.
        owned_a = set(query_a._reader.assignment())
        owned_b = set(query_b._reader.assignment())
        assert not owned_a & owned_b and len(owned_a | owned_b) == PARTITIONS
    finally:
        stoppers = [threading.Thread(target=e.close) for e in (a, b)]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(60)
    outcomes = _outcomes(caplog)
    # Each server reads ahead once when both join in one round; on a loaded machine B may read the
    # statement after A's group settled, and then starts normally (its state is behind A's commit).
    assert 1 <= len(outcomes) <= 2, outcomes
    aborted = sum(n for n, outcome in outcomes if outcome == "aborted")
    ids = _read_ids(kafka_bootstrap, f"o_{run}")
    assert set(ids) == set(range(ROWS))  # nothing lost
    # Each exactly once in what was committed: the only records beyond those are the aborted
    # read-aheads' outputs, which Kafka hides from read-committed readers (the test broker shows them).
    # An aborted read-ahead's records reach the broker only if its producer had sent them before the
    # abort (an abort purges what is still queued), so anything from none to all of them may show.
    assert ROWS <= len(ids) <= ROWS + aborted, (len(ids), outcomes)
    assert max(Counter(ids).values()) <= 1 + len(outcomes), (Counter(ids).most_common(3), outcomes)
    assert _committed(kafka_bootstrap, group, f"s_{run}") == ROWS


def _slow_ahead_batches(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[str]:
    """Batches read ahead take ``seconds`` longer to prepare, so a backlog outlasts the join; the
    threads the read-ahead's batches were sent on."""
    prepare = query_module.QueryRunner._prepare
    senders: list[str] = []

    def slow_prepare(self: query_module.QueryRunner, *args: Any) -> Any:
        if args[-1] is not None:  # its read-ahead transaction
            time.sleep(seconds)
        return prepare(self, *args)

    send = _ReadAhead.send

    def recorded_send(self: _ReadAhead, topic: str, records: Any) -> None:
        senders.append(threading.current_thread().name)
        send(self, topic, records)

    monkeypatch.setattr(query_module.QueryRunner, "_prepare", slow_prepare)
    monkeypatch.setattr(_ReadAhead, "send", recorded_send)
    return senders


def test_a_batch_read_ahead_but_not_sent_when_the_assignment_comes_is_read_again_by_the_member(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 200, each read ahead taking 0.25 s more: 8,000 records outlast the ~3 s join, so
    # the assignment comes while a batch read ahead waits to be sent (the loop keeps one waiting).
    rows = 8_000
    monkeypatch.setattr(query_module, "BATCH_SIZE", 200)
    senders = _slow_ahead_batches(monkeypatch, 0.25)
    # The read-ahead's producer starts late: the first batches' outputs are held meanwhile.
    start_producer = _ReadAhead._start_producer
    held: list[int] = []

    def late_start(self: _ReadAhead) -> None:
        time.sleep(0.6)
        held.append(self._held_rows)
        start_producer(self)

    monkeypatch.setattr(_ReadAhead, "_start_producer", late_start)
    run = uuid.uuid4().hex[:10]
    engine = Engine.open(_settings(kafka_bootstrap, f"ahead3_{run}_", tmp_path / "data"))
    try:
        _create(engine, run)
        _produce(kafka_bootstrap, f"s_{run}", 0, rows)
        caplog.set_level(logging.INFO, logger="ksqlpy")
        engine.session().execute_all(f"CREATE STREAM o WITH (kafka_topic='o_{run}') AS SELECT k, id FROM s WHERE v >= 0;")
        (query,) = engine.queries.values()
        assert engine.wait_idle(90)
        group = query.group
    finally:
        engine.close()
    ((sent, outcome),) = _outcomes(caplog)
    assert outcome == "kept" and 0 < sent < rows
    assert any("not yet sent: read again" in r.getMessage() for r in caplog.records)
    assert any("the assignment came before a batch" in r.getMessage() for r in caplog.records)
    assert held and held[0] > 0  # outputs produced before the producer had started
    assert any(name.startswith("commit-") for name in senders)  # sent while the next was prepared
    ids = _read_ids(kafka_bootstrap, f"o_{run}")
    assert sorted(ids) == list(range(rows))  # each exactly once
    assert group is not None and _committed(kafka_bootstrap, group, f"s_{run}") == rows


def test_a_read_ahead_whose_producer_cannot_start_is_aborted_and_the_member_reads_it_all(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failed_start(self: _ReadAhead) -> None:
        self._start_error = KafkaException(KafkaError(KafkaError._TRANSPORT, "injected"))

    monkeypatch.setattr(_ReadAhead, "_start_producer", failed_start)
    monkeypatch.setattr(query_module, "BATCH_SIZE", 1_000)
    run = uuid.uuid4().hex[:10]
    engine = Engine.open(_settings(kafka_bootstrap, f"ahead4_{run}_", tmp_path / "data"))
    try:
        _create(engine, run)
        _produce(kafka_bootstrap, f"s_{run}", 0, ROWS)
        caplog.set_level(logging.INFO, logger="ksqlpy")
        engine.session().execute_all(f"CREATE STREAM o WITH (kafka_topic='o_{run}') AS SELECT k, id FROM s WHERE v >= 0;")
        (query,) = engine.queries.values()
        assert engine.wait_idle(90)
        assert query.state.value == "RUNNING"
        group = query.group
    finally:
        engine.close()
    assert [outcome for _, outcome in _outcomes(caplog)] == ["aborted"]
    assert any("could not start" in r.getMessage() for r in caplog.records)
    ids = _read_ids(kafka_bootstrap, f"o_{run}")
    assert sorted(ids) == list(range(ROWS))  # nothing of the read-ahead's reached the sink
    assert group is not None and _committed(kafka_bootstrap, group, f"s_{run}") == ROWS
