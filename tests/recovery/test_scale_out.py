"""Scale-out on Kafka: servers with one service id share a persistent aggregation, and its state
follows the partitions the query's consumer group gives each of them.

Real ``ksqlpy server`` processes on the test broker, exactly-once. Server A runs the DDL; the others
replay the command topic when they start, so each runs the query as one member of its group. Input
is produced straight to the topic's six partitions while servers are killed (``kill -9``) and
started; at the end every key's count and sum in the sink topic (read committed, the last record
per key) must be exact: an event lost, or counted by two servers, shows.

The broker (Tansu) never times out a transaction a killed server left open (real Kafka aborts it
after ``transaction.timeout.ms``); until then read-committed readers cannot pass it. A killed
server is therefore started again over its own data directory before the end: its transactional
id fences the old transaction, as on Kafka a restart of the same server does.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]
from kafka_broker import FAST_CLIENT_CONFIG

from ksqlpy.runtime.store.partitioner import partitions_for_keys
from tests.recovery.test_kill9 import ServerProcess

pytestmark = pytest.mark.kafka

PARTITIONS = 6
KEYS = 1_000
#: Events per phase of the first test; three phases, 300 k in all (about 40 s on a 2-core machine).
PHASE = 100_000


def _settings(bootstrap: str, service_id: str, standbys: int = 0) -> dict[str, str]:
    return {
        "bootstrap.servers": bootstrap,
        "processing.guarantee": "exactly_once_v2",
        **{f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()},
        "ksql.service.id": service_id,
        "ksql.streams.num.standby.replicas": str(standbys),
    }


def _produce(bootstrap: str, topic: str, events: list[tuple[str, int]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random"})
    for key, value in events:
        while True:
            try:
                producer.produce(topic, orjson.dumps({"V": value}), key.encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def _events(rng: random.Random, n: int) -> list[tuple[str, int]]:
    return [(f"k{rng.randrange(KEYS)}", rng.randrange(100)) for _ in range(n)]


def _expected(events: list[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    totals: dict[str, list[int]] = {}
    for key, value in events:
        t = totals.setdefault(key, [0, 0])
        t[0] += 1
        t[1] += value
    return {k: (c, s) for k, (c, s) in totals.items()}


def _table(bootstrap: str, topic: str) -> dict[str, tuple[int, int]]:
    """The sink topic read committed to its end: each key's last (N, S)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{random.randrange(10**9)}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.queue.backoff.ms": 10,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        at_end: set[int] = set()
        last: dict[str, tuple[int, int]] = {}
        deadline = time.monotonic() + 60
        while len(at_end) < PARTITIONS and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.5):
                if m.error() is not None:
                    if m.error().code() == -191:  # end of partition
                        at_end.add(int(m.partition() or 0))
                    continue
                value = orjson.loads(m.value()) if m.value() is not None else None
                key = (m.key() or b"").decode()
                if value is None:
                    last.pop(key, None)
                else:
                    last[key] = (int(value["N"]), int(value["S"]))
        return last
    finally:
        consumer.close()


def _changelog_keys(bootstrap: str, topic: str) -> list[tuple[str, int]]:
    """(group key, partition) of every record of an aggregation's changelog."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"check-{random.randrange(10**9)}", "enable.partition.eof": True}
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        at_end: set[int] = set()
        placed: list[tuple[str, int]] = []
        deadline = time.monotonic() + 60
        while len(at_end) < PARTITIONS and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.5):
                if m.error() is not None:
                    at_end.add(int(m.partition() or 0))
                    continue
                (key,) = orjson.loads(m.key() or b"{}").values()
                placed.append((str(key), int(m.partition() or 0)))
        return placed
    finally:
        consumer.close()


def _converge(bootstrap: str, topic: str, want: dict[str, tuple[int, int]], timeout: float) -> dict[str, tuple[int, int]]:
    deadline = time.monotonic() + timeout
    got = _table(bootstrap, topic)
    while got != want and time.monotonic() < deadline:
        time.sleep(1.0)
        got = _table(bootstrap, topic)
    return got


def _server(tmp_path: Path, name: str, settings: dict[str, str]) -> ServerProcess:
    return ServerProcess(tmp_path / name, tmp_path / f"{name}.log", settings)


def _setup(server: ServerProcess, run: str) -> tuple[str, str]:
    source, sink = f"{run}_events", f"{run}_totals"
    server.ksql(
        f"CREATE STREAM EVENTS (K VARCHAR KEY, V INT) WITH (KAFKA_TOPIC='{source}', PARTITIONS={PARTITIONS}, "
        "VALUE_FORMAT='JSON');"
    )
    server.ksql(
        f"CREATE TABLE TOTALS WITH (KAFKA_TOPIC='{sink}') AS "
        "SELECT K, COUNT(*) AS N, SUM(V) AS S FROM EVENTS GROUP BY K;"
    )
    return source, sink


def _logged(server: ServerProcess, pattern: str) -> list[re.Match[str]]:
    return list(re.finditer(pattern, server.log.read_text(errors="replace")))


@pytest.fixture
def servers() -> Any:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


@pytest.mark.timeout(600)
def test_state_follows_partitions_across_kills_and_joins(
    kafka_bootstrap: str, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    run = f"so{random.randrange(10**9)}"
    settings = _settings(kafka_bootstrap, run)
    a, b, c = (_server(tmp_path, name, settings) for name in ("a", "b", "c"))
    servers.extend([a, b, c])
    rng = random.Random(3)
    events: list[tuple[str, int]] = []

    a.start()
    source, sink = _setup(a, run)
    b.start()  # replays the command topic: runs the aggregation as a second member

    phase = _events(rng, PHASE)
    events += phase
    _produce(kafka_bootstrap, source, phase)
    assert _converge(kafka_bootstrap, sink, _expected(events), 120) == _expected(events)
    # The changelogs follow the input: six partitions each.
    changelogs = {
        name: len(meta.partitions)
        for name, meta in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics.items()
        if name.startswith(f"_confluent-ksql-{run}query_") and name.endswith("-changelog")
    }
    assert len(changelogs) == 2 and set(changelogs.values()) == {PARTITIONS}, changelogs
    # Each group's changes went to the changelog partition of the input partition of its key.
    (groups,) = (n for n in changelogs if n.endswith("-Aggregate-Aggregate-Materialize-changelog"))
    placed = _changelog_keys(kafka_bootstrap, groups)
    assert len({k for k, _ in placed}) == KEYS
    keys = pa.array([k.encode() for k, _ in placed], pa.binary())
    assert partitions_for_keys(keys, PARTITIONS).to_pylist() == [p for _, p in placed]

    # A dies mid-stream: B takes its partitions over, restoring their state from the changelogs.
    phase = _events(rng, PHASE)
    events += phase
    _produce(kafka_bootstrap, source, phase[: PHASE // 2])
    time.sleep(0.3)
    a.kill9()
    _produce(kafka_bootstrap, source, phase[PHASE // 2 :])

    # A comes back (its restart fences the transaction it left open) and C joins: partitions move again.
    a.start()
    c.start()
    phase = _events(rng, PHASE)
    events += phase
    _produce(kafka_bootstrap, source, phase)

    want = _expected(events)
    got = _converge(kafka_bootstrap, sink, want, 240)
    wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    assert not wrong, f"{len(wrong)} keys wrong, e.g. {list(wrong.items())[:5]}"
    assert sum(n for n, _ in got.values()) == len(events)
    # Partitions did move between servers with their state.
    restores = [m for s in (a, b, c) for m in _logged(s, r"Restored [\d,]+ of [\d,]+ changelog records for partition \d")]
    assert restores




@pytest.mark.timeout(600)
def test_a_standby_takes_over_without_a_full_restore(
    kafka_bootstrap: str, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    run = f"sb{random.randrange(10**9)}"
    settings = _settings(kafka_bootstrap, run, standbys=1)
    a, b = _server(tmp_path, "a", settings), _server(tmp_path, "b", settings)
    servers.extend([a, b])
    rng = random.Random(5)
    a.start()
    source, sink = _setup(a, run)
    b.start()
    events = _events(rng, 60_000)
    _produce(kafka_bootstrap, source, events)
    assert _converge(kafka_bootstrap, sink, _expected(events), 120) == _expected(events)
    # Let B's standby copy of A's partitions catch up with their changelogs.
    time.sleep(2)

    a.kill9()
    more = _events(rng, 20_000)
    events += more
    _produce(kafka_bootstrap, source, more)
    assert _converge(kafka_bootstrap, sink, _expected(events), 120) == _expected(events)

    taken = _logged(
        b, r"Restored ([\d,]+) of ([\d,]+) changelog records for partition (\d) of query \w+ \(standby copy was warm\)"
    )
    assert taken, "B took over no partition from its standby copy"
    for match in taken:
        read, held = (int(match.group(i).replace(",", "")) for i in (1, 2))
        assert read < held
