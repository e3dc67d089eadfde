"""Scale-out on Kafka: servers with one service id share persistent queries, and their state
follows the partitions each query's consumer group gives each of them.

Real ``ksqlpy server`` processes on the test broker, exactly-once. Server A runs the DDL; the others
replay the command topic when they start, so each runs every query as one member of its group: an
aggregation by the input's key, one by a value column (through its repartition topic), and the
stream joined to a table of every key. Input is produced straight to the topic's six partitions
while one of three servers is killed (``kill -9``) and later a fourth joins; at the end every key's count and sum in the
tables' sink topics (read committed, the last record per key) must be exact, and the join's sink
must hold every input record once: an event lost, or counted by two servers, shows.

A partition of one query once stopped advancing after a rebalance in this test (its committed
position stayed where it was while its input grew). One way there is fixed and tested in
``tests/store/test_kafka_replay_rebalance.py``: a member re-reading partitions to rebuild state
that was behind the group's commits kept a moved partition in its re-read set, which held every
other partition of the member back for good.

The broker (Tansu) never times out a transaction a killed server left open (real Kafka aborts it
after ``transaction.timeout.ms``); until then read-committed readers cannot pass it. Tansu also
hands read-committed readers the records of aborted transactions (fenced or aborted alike), so
when A is killed in the middle of a transaction whose records reached the log, its repartitioned
records are counted again (BY_G over by about one batch) and the join's output holds them twice;
on Kafka they are never read. So A is killed between transactions here, once what it was sent is
committed, and leaves none open: it need not come back to fence one, and a fourth server joins
the two left instead. A kill at any point of a stream is covered on one server
(``test_kill9.py``), and an aborted batch by ``tests/store/test_kafka_batch_aborted.py``.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
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
GROUPS = 40
#: Events per phase of the first test; three phases, 300 k in all.
PHASE = 100_000

Event = tuple[str, str, int]  # key, group, value


def _settings(bootstrap: str, service_id: str, standbys: int = 0) -> dict[str, str]:
    return {
        "bootstrap.servers": bootstrap,
        "processing.guarantee": "exactly_once_v2",
        **{f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()},
        "ksql.service.id": service_id,
        "ksql.streams.num.standby.replicas": str(standbys),
    }


def _produce(bootstrap: str, topic: str, records: list[tuple[str, dict[str, Any]]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random"})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, orjson.dumps(value), key.encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def _send(bootstrap: str, topic: str, events: list[Event]) -> None:
    _produce(bootstrap, topic, [(k, {"G": g, "V": v}) for k, g, v in events])


def _events(rng: random.Random, n: int) -> list[Event]:
    return [(f"k{rng.randrange(KEYS)}", f"g{rng.randrange(GROUPS)}", rng.randrange(100)) for _ in range(n)]


def _totals(events: list[Event], by: int) -> dict[str, tuple[int, int]]:
    """Count and sum of V per key (``by`` 0) or per group (``by`` 1)."""
    totals: dict[str, list[int]] = {}
    for event in events:
        t = totals.setdefault(event[by], [0, 0])
        t[0] += 1
        t[1] += event[2]
    return {k: (c, s) for k, (c, s) in totals.items()}


def _read(bootstrap: str, topic: str, isolation: str = "read_committed", json: bool = True) -> list[tuple[str, Any, int]]:
    """Every record of ``topic`` to its end: (key, value (decoded from JSON), partition)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{random.randrange(10**9)}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "fetch.queue.backoff.ms": 10,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        at_end: set[int] = set()
        out: list[tuple[str, Any, int]] = []
        deadline = time.monotonic() + 60
        while len(at_end) < PARTITIONS and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.5):
                if m.error() is not None:
                    at_end.add(int(m.partition() or 0))  # end of partition
                    continue
                value = m.value()
                decoded = orjson.loads(value) if json and value is not None else value
                out.append(((m.key() or b"").decode(), decoded, int(m.partition() or 0)))
        missing = sorted(set(range(PARTITIONS)) - at_end)
        # (read committed stops before a transaction left open until it is aborted)
        assert not missing, f"{topic}: partitions {missing} not read to their end within 60 s"
        return out
    finally:
        consumer.close()


def _table(bootstrap: str, topic: str) -> dict[str, tuple[int, int]]:
    """A table's sink topic: each key's last (N, S)."""
    last: dict[str, tuple[int, int]] = {}
    for key, value, _ in _read(bootstrap, topic):
        if value is None:
            last.pop(key, None)
        else:
            last[key] = (int(value["N"]), int(value["S"]))
    return last


def _converge(
    read: Callable[[], dict[str, tuple[int, int]]], want: dict[str, tuple[int, int]], timeout: float
) -> dict[str, tuple[int, int]]:
    deadline = time.monotonic() + timeout
    got = read()
    while got != want and time.monotonic() < deadline:
        time.sleep(1.0)
        got = read()
    return got


def _server(tmp_path: Path, name: str, settings: dict[str, str]) -> ServerProcess:
    return ServerProcess(tmp_path / name, tmp_path / f"{name}.log", settings)


def _setup(server: ServerProcess, run: str, *, by_value: bool = False) -> str:
    """The input stream and the aggregation by its key; with ``by_value``, also one by a value
    column (through the repartition topic). Returns the input topic."""
    source = f"{run}_events"
    server.ksql(
        f"CREATE STREAM EVENTS (K VARCHAR KEY, G VARCHAR, V INT) WITH (KAFKA_TOPIC='{source}', "
        f"PARTITIONS={PARTITIONS}, VALUE_FORMAT='JSON');"
    )
    server.ksql(
        f"CREATE TABLE TOTALS WITH (KAFKA_TOPIC='{run}_totals') AS "
        "SELECT K, COUNT(*) AS N, SUM(V) AS S FROM EVENTS GROUP BY K;"
    )
    if by_value:
        server.ksql(
            f"CREATE TABLE BY_G WITH (KAFKA_TOPIC='{run}_by_g') AS "
            "SELECT G, COUNT(*) AS N, SUM(V) AS S FROM EVENTS GROUP BY G;"
        )
    return source


def _setup_join(server: ServerProcess, bootstrap: str, run: str) -> None:
    """A table of every key (co-partitioned with the input) and the stream joined to it."""
    server.ksql(
        f"CREATE TABLE NAMES (K VARCHAR PRIMARY KEY, NAME VARCHAR) WITH (KAFKA_TOPIC='{run}_names', "
        f"PARTITIONS={PARTITIONS}, VALUE_FORMAT='JSON');"
    )
    _produce(bootstrap, f"{run}_names", [(f"k{k}", {"NAME": f"n{k}"}) for k in range(KEYS)])
    server.ksql(
        f"CREATE STREAM NAMED WITH (KAFKA_TOPIC='{run}_named') AS "
        "SELECT E.K AS K, E.V AS V, N.NAME AS NAME FROM EVENTS E LEFT JOIN NAMES N ON E.K = N.K;"
    )


def _joined(bootstrap: str, run: str) -> dict[str, tuple[int, int]]:
    """The join's sink topic: records and sum of V per key."""
    totals: dict[str, list[int]] = {}
    for key, value, _ in _read(bootstrap, f"{run}_named"):
        t = totals.setdefault(key, [0, 0])
        t[0] += 1
        t[1] += int(value["V"])
    return {k: (c, s) for k, (c, s) in totals.items()}


def _pull(server: ServerProcess, sql: str) -> dict[str, tuple[int, int]]:
    """The rows of a pull query over TOTALS on ``server``, as key -> (count, sum)."""
    response = httpx.post(
        f"{server.url}/query-stream",
        json={"sql": sql, "properties": {}},
        headers={"Accept": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return {r[0]: (r[1], r[2]) for r in response.json()[1:] if isinstance(r, list)}


def _logged(server: ServerProcess, pattern: str) -> list[re.Match[str]]:
    return list(re.finditer(pattern, server.log.read_text(errors="replace")))


def _changelogs(bootstrap: str, run: str, query: str) -> dict[str, int]:
    """The changelog topics of a query (by its id's prefix) and their partitions."""
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30).topics
    prefix = f"_confluent-ksql-{run}query_{query}"
    return {n: len(t.partitions) for n, t in topics.items() if n.startswith(prefix) and n.endswith("-changelog")}


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
    a, b, c, d = (_server(tmp_path, name, settings) for name in ("a", "b", "c", "d"))
    servers.extend([a, b, c, d])
    rng = random.Random(3)
    events: list[Event] = []

    a.start()
    source = _setup(a, run, by_value=True)
    _setup_join(a, kafka_bootstrap, run)
    b.start()  # replays the command topic: runs the queries as a second member of each group
    c.start()  # and a third

    def check() -> None:
        for name, read, want in (
            ("TOTALS", lambda: _table(kafka_bootstrap, f"{run}_totals"), _totals(events, 0)),
            ("BY_G", lambda: _table(kafka_bootstrap, f"{run}_by_g"), _totals(events, 1)),
            ("NAMED", lambda: _joined(kafka_bootstrap, run), _totals(events, 0)),
        ):
            got = _converge(read, want, 240)
            wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
            assert not wrong and got.keys() == want.keys(), (
                f"{name}: {len(wrong)} keys wrong (got, want), e.g. {list(wrong.items())[:5]}"
            )

    phase = _events(rng, PHASE)
    events += phase
    _send(kafka_bootstrap, source, phase)
    check()
    # The aggregations' changelogs follow the input: six partitions each.
    totals = _changelogs(kafka_bootstrap, run, "CTAS_TOTALS_")
    by_group = _changelogs(kafka_bootstrap, run, "CTAS_BY_G_")
    assert len(totals) == len(by_group) == 2 and set(totals.values()) | set(by_group.values()) == {PARTITIONS}
    # Each group's changes went to the changelog partition of its key's input partition.
    (groups,) = (n for n in totals if n.endswith("-Aggregate-Aggregate-Materialize-changelog"))
    placed = [(next(iter(orjson.loads(k).values())), p) for k, _, p in _read(kafka_bootstrap, groups, "read_uncommitted", json=False)]
    assert len({k for k, _ in placed}) == KEYS
    keys = pa.array([str(k).encode() for k, _ in placed], pa.binary())
    assert partitions_for_keys(keys, PARTITIONS).to_pylist() == [p for _, p in placed]

    # A dies mid-stream: B and C take its partitions over, restoring their state from the
    # changelogs. A is killed once what it was sent is committed, between transactions (see the
    # module's docstring for why the test broker cannot have it killed inside one), so it leaves
    # no transaction open; the rest of the phase is produced at once, while B and C wait out A's
    # session and take its partitions over.
    phase = _events(rng, PHASE)
    events += phase[: PHASE // 2]
    _send(kafka_bootstrap, source, phase[: PHASE // 2])
    check()
    a.kill9()
    events += phase[PHASE // 2 :]
    _send(kafka_bootstrap, source, phase[PHASE // 2 :])
    # B and C take A's partitions over, with their state, once the group sees A gone. Wait for
    # that before D joins: a D that joined first would get A's partitions itself (the assignor
    # keeps B's and C's where they are), and B and C would have nothing to take over.
    moved = r"Restored [\d,]+ of [\d,]+ changelog records for partition \d of query CTAS_TOTALS_"
    deadline = time.monotonic() + 180
    while not [m for s in (b, c) for m in _logged(s, moved)] and time.monotonic() < deadline:
        time.sleep(0.2)

    # A fourth server, D, joins: partitions move again.
    d.start()
    phase = _events(rng, PHASE)
    events += phase
    _send(kafka_bootstrap, source, phase)

    check()
    # A pull query for any key gives the right row from every surviving server (routed to the
    # key's owner), as does a scan (fanned out over the owners).
    want = _totals(events, 0)
    sample = rng.sample(sorted(want), 20)
    for server in (b, c, d):
        for key in sample:
            rows = _converge(lambda: _pull(server, f"SELECT * FROM TOTALS WHERE K = '{key}';"), {key: want[key]}, 60)
            assert rows == {key: want[key]}, (server.url, key, rows)
        assert _converge(lambda: _pull(server, "SELECT * FROM TOTALS;"), want, 60) == want, server.url
    # Partitions did move between servers with their state.
    assert [m for s in (b, c) for m in _logged(s, moved)]
    # (each server's first restore of a partition is at its start: D's show it took some over)
    assert _logged(d, moved)


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
    source = _setup(a, run)
    b.start()
    events = _events(rng, 60_000)
    _send(kafka_bootstrap, source, events)

    def read() -> dict[str, tuple[int, int]]:
        return _table(kafka_bootstrap, f"{run}_totals")

    assert _converge(read, _totals(events, 0), 120) == _totals(events, 0)
    # Let B's standby copy of A's partitions catch up with their changelogs.
    time.sleep(2)

    a.kill9()
    more = _events(rng, 20_000)
    events += more
    _send(kafka_bootstrap, source, more)
    assert _converge(read, _totals(events, 0), 120) == _totals(events, 0)

    taken = _logged(
        b, r"Restored ([\d,]+) of ([\d,]+) changelog records for partition (\d) of query \w+ \(standby copy was warm\)"
    )
    assert taken, "B took over no partition from its standby copy"
    for match in taken:
        read, held = (int(match.group(i).replace(",", "")) for i in (1, 2))
        assert read < held
