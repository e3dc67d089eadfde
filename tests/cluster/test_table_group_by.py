"""A table's GROUP BY across two ``ksqlpy server`` processes with one service id, on Kafka.

ksqlDB aggregates a table (``tableGroupBy``) as Kafka Streams does: each input partition's task
keeps the source rows it has read, and sends a row's change through the repartition topic as the
retraction of its old value (to the old group's partition) and the addition of its new value (to
the new group's). Here the source has four partitions split between two servers, and the rows
whose groups are checked are read on one server while their old and new groups are aggregated on
the other; rows change groups, lose their group (a null key) and are deleted (tombstones). Every
group's COUNT and SUM in the sink topic must match a Python model of the table, a group left
with no rows showing count 0 as in ksqlDB's QTT cases. Then one server is killed: the other takes
its partitions over, restores their source rows from the store's changelog, and goes on exactly.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]
from kafka_broker import FAST_CLIENT_CONFIG

from ksqlpy.runtime.store.partitioner import partition_for_key
from tests.recovery.test_kill9 import ServerProcess
from tests.runtime.aggregate.test_repartition_kafka import _consume

pytestmark = pytest.mark.kafka

PARTITIONS = 4
Row = tuple[str | None, int]  # team, score


def _eventually(check: Callable[[], Any], within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def _send(bootstrap: str, topic: str, changes: list[tuple[str, Row | None]]) -> None:
    """Rows (or tombstones) keyed by id, each to the partition its key hashes to."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, row in changes:
        value = None if row is None else orjson.dumps({"TEAM": row[0], "SCORE": row[1]})
        producer.produce(topic, value, key.encode(), partition=partition_for_key(key.encode(), PARTITIONS))
    assert producer.flush(30) == 0


def _model(table: dict[str, Row], touched: set[str]) -> dict[str, tuple[int, int]]:
    """Each group's (COUNT, SUM) over the table's rows; a group that had rows and has none is
    (0, 0), as ksqlDB's table aggregation emits it."""
    out = {team: (0, 0) for team in touched}
    for team, score in table.values():
        if team is not None:
            n, s = out[team]
            out[team] = (n + 1, s + score)
    return out


def _groups(bootstrap: str, topic: str) -> dict[str, tuple[int, int]]:
    """The sink topic as a table: each group's last (N, S)."""
    out: dict[str, tuple[int, int]] = {}
    for _, key, value in _consume(bootstrap, topic):
        assert key is not None
        if value is None:
            out.pop(key.decode(), None)
        else:
            decoded = orjson.loads(value)
            out[key.decode()] = (int(decoded["N"]), int(decoded["S"]))
    return out


def _held(server: ServerProcess, query_id: str) -> dict[str, set[tuple[str, int]]]:
    """The partitions of its input each server (``host:port``) holds for the query, as
    ``server``'s ``/clusterStatus`` lists them."""
    status = httpx.get(f"{server.url}/clusterStatus", timeout=10).json()["clusterStatus"]
    return {
        host: {
            (p["topic"], p["partition"])
            for p in held["activeStandbyPerQuery"].get(query_id, {}).get("activePartitions", [])
        }
        for host, held in status.items()
    }


@pytest.fixture
def pair(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    settings = {
        "bootstrap.servers": kafka_bootstrap,
        "processing.guarantee": "exactly_once_v2",
        "ksql.service.id": f"tg{random.randrange(10**9)}_",
        "ksql.heartbeat.enable": "true",
        **{f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()},
    }
    a = ServerProcess(tmp_path / "a", tmp_path / "a.log", settings)
    b = ServerProcess(tmp_path / "b", tmp_path / "b.log", settings)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.mark.timeout(180)
def test_rows_changing_groups_across_servers_count_exactly(
    kafka_bootstrap: str, pair: tuple[ServerProcess, ServerProcess]
) -> None:
    a, b = pair
    run = f"tg{random.randrange(10**9)}"
    source, sink = f"{run}_users", f"{run}_per_team"
    with ThreadPoolExecutor(1) as starting:
        # B starts meanwhile; it runs what A creates from the command topic, as the query's
        # second member
        b_started = starting.submit(b.start)
        a.start()
        b_started.result()
    a.ksql(
        f"CREATE TABLE USERS (ID VARCHAR PRIMARY KEY, TEAM VARCHAR, SCORE INT) WITH (KAFKA_TOPIC='{source}', "
        f"PARTITIONS={PARTITIONS}, VALUE_FORMAT='JSON');"
    )
    (created,) = a.ksql(
        f"CREATE TABLE PER_TEAM WITH (KAFKA_TOPIC='{sink}') AS "
        "SELECT TEAM, COUNT(*) AS N, SUM(SCORE) AS S FROM USERS GROUP BY TEAM;"
    )
    query_id = created["commandStatus"]["queryId"]
    names = {a.url.removeprefix("http://"): "a", b.url.removeprefix("http://"): "b"}

    def split() -> dict[str, set[tuple[str, int]]] | None:
        held = {names.get(h, h): parts for h, parts in _held(a, query_id).items()}
        sources = [{p for t, p in held.get(s, set()) if t == source} for s in ("a", "b")]
        both = sources[0] | sources[1]
        return held if all(sources) and len(both) == PARTITIONS and sum(map(len, sources)) == PARTITIONS else None

    held = _eventually(split, 60)
    assert held, f"the two servers did not split the source's partitions: {_held(a, query_id)}"
    owner = {p: s for s in ("a", "b") for t, p in held[s] if t == source}
    # task p reads partition p of the source and of the repartition topic
    assert all({p for _, p in held[s]} == {p for p, o in owner.items() if o == s} for s in ("a", "b")), held
    topics = {t for s in held.values() for t, _ in s}
    assert len(topics) == 2 and source in topics, held
    assert all(t.endswith("-Aggregate-GroupBy-repartition") for t in topics - {source}), held

    def on(key: str) -> str:
        return owner[partition_for_key(key.encode(), PARTITIONS)]

    # Groups aggregated on each server (the repartition topic is keyed by the team, as the
    # source is by its id, and its partitions go with the source's), and ids read on each.
    teams = {s: [t for t in (f"t{i}" for i in range(40)) if on(t) == s][:4] for s in ("a", "b")}
    ids = {s: [k for k in (f"u{i}" for i in range(200)) if on(k) == s][:24] for s in ("a", "b")}
    assert all(len(t) == 4 for t in teams.values()) and all(len(k) == 24 for k in ids.values())

    rng = random.Random(7)
    table: dict[str, Row] = {}
    touched: set[str] = set()

    def change(changes: list[tuple[str, Row | None]]) -> None:
        for key, row in changes:
            if row is None:
                table.pop(key, None)
            else:
                table[key] = row
                if row[0] is not None:
                    touched.add(row[0])
        _send(kafka_bootstrap, source, changes)

    def settled() -> None:
        want = _model(table, touched)
        deadline = time.monotonic() + 60
        got = _groups(kafka_bootstrap, sink)
        while got != want and time.monotonic() < deadline:
            time.sleep(0.5)
            got = _groups(kafka_bootstrap, sink)
        wrong = {t: (got.get(t), w) for t, w in want.items() if got.get(t) != w}
        assert not wrong and got.keys() == want.keys(), f"(got, want) per group: {wrong}"

    # Every id starts in a group aggregated on the other server.
    change([(k, (rng.choice(teams["b" if s == "a" else "a"]), rng.randrange(100))) for s in ids for k in ids[s]])
    # Updates move ids between groups (both servers' groups), lose their group, are deleted and
    # come back; several changes of one id go in one batch.
    everyone = teams["a"] + teams["b"]
    for _ in range(3):
        changes: list[tuple[str, Row | None]] = []
        for k in rng.sample(ids["a"] + ids["b"], 30):
            roll = rng.random()
            if roll < 0.15:
                changes.append((k, None))
            elif roll < 0.25:
                changes.append((k, (None, rng.randrange(100))))
            else:
                changes.append((k, (rng.choice(everyone), rng.randrange(100))))
        change(changes)
    # a group all of whose rows left shows count 0 (as ksqlDB's tableGroupBy emits it)
    gone = teams["a"][0]
    change([(k, (teams["b"][0], 1)) for k, (t, _) in list(table.items()) if t == gone])
    assert _model(table, touched)[gone] == (0, 0)
    settled()
    # Each source row is kept (and logged) in the partition it was read from, as a Kafka
    # Streams task keeps its part of the table: its changelog partition is its key's.
    log = f"_confluent-ksql-{a.settings['ksql.service.id']}query_{query_id}-Aggregate-Source-changelog"
    assert log in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    placed = [(orjson.loads(key or b"{}"), p) for p, key, _ in _consume(kafka_bootstrap, log)]
    assert {k for key, _ in placed for k in key.values()} == set(ids["a"] + ids["b"])
    assert all(p == partition_for_key(str(k).encode(), PARTITIONS) for key, p in placed for k in key.values())

    # A dies (kill -9, between transactions: the test broker never aborts a transaction a killed
    # server left open, see tests/recovery/test_scale_out.py): B owns every partition, with A's
    # source rows restored from their changelog, and retracts their old values exactly.
    # The ids A read change while B waits out A's session and takes its partitions over.
    a.kill9()
    changes = []
    for k in ids["a"]:
        roll = rng.random()
        changes.append((k, None) if roll < 0.2 else (k, (rng.choice(everyone), rng.randrange(100))))
    change(changes)
    mine = b.url.removeprefix("http://")
    assert _eventually(lambda: len(_held(b, query_id).get(mine, set())) == 2 * PARTITIONS, 60), _held(b, query_id)
    settled()
    restored = re.findall(
        rf"Restored ([\d,]+) of [\d,]+ changelog records for partition (\d) of query {query_id}",
        b.log.read_text(errors="replace"),
    )
    assert {int(p) for n, p in restored if n != "0"} & {p for p, o in owner.items() if o == "a"}, restored
