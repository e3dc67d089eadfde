"""Kafka store: a new windowed aggregation reads its input while its consumer joins the group,
its state changed in the read-ahead's transaction, on its first start only.

As in test_kafka_read_ahead.py, the test broker (Tansu) holds a JoinGroup for half of
``session.timeout.ms`` (6 s here), and shows the records of aborted transactions to read-committed
readers: where a read-ahead may be aborted (two servers), the aggregates are checked in the servers'
state (pull queries), not in the sink.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from kafka_broker import engine_settings

from ksqlpy.runtime.engine import Engine

pytestmark = pytest.mark.kafka

PARTITIONS = 3
ROWS = 20_000
KEYS = 20
#: every record's timestamp: BASE + its id (ms), so ten-second windows hold 10,000 ids each
BASE = 1_700_000_000_000
SESSION_TIMEOUT_MS = "6000"

_OUTCOME = re.compile(r"read ahead ([\d,]+) records .*; (kept|aborted)")


def _settings(bootstrap: str, service_id: str, data_dir: Path) -> dict[str, str]:
    return {
        **engine_settings(bootstrap, service_id=service_id, data_dir=data_dir),
        "kafka.session.timeout.ms": SESSION_TIMEOUT_MS,
        "processing.guarantee": "exactly_once_v2",
    }


def _produce(bootstrap: str, topic: str, first: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i in range(first, first + count):
        while True:
            try:
                producer.produce(
                    topic, orjson.dumps({"V": i % 7}), f"k{i % KEYS}".encode(), timestamp=BASE + i
                )
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def _want(rows: int) -> dict[tuple[str, int], tuple[int, int]]:
    want: dict[tuple[str, int], tuple[int, int]] = {}
    for i in range(rows):
        window = (BASE + i) // 10_000 * 10_000
        n, total = want.get((f"k{i % KEYS}", window), (0, 0))
        want[(f"k{i % KEYS}", window)] = (n + 1, total + i % 7)
    return want


def _pulled(
    engine: Engine, want: dict[tuple[str, int], tuple[int, int]]
) -> dict[tuple[str, int], tuple[int, int]]:
    """The table's windows by pull query, once they are ``want`` (the table is materialized
    from the sink a moment after the query commits), or as they are after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        rows = engine.session().execute_query("SELECT k, WINDOWSTART, n, total FROM t;")
        pulled = {(r.values[0], r.values[1]): (r.values[2], r.values[3]) for r in rows}
        if pulled == want or time.monotonic() > deadline:
            return pulled
        time.sleep(0.1)


def _sink(engine: Engine, topic: str, *, largest: bool = False) -> dict[tuple[str, int], tuple[int, int]]:
    """Each window's last record in the sink (read committed), or with ``largest`` its record of
    the highest count: an aborted read-ahead, which Tansu shows, counted from empty state a
    prefix of the input, so it never holds a higher count than the window's committed last
    record. A windowed key is the key's bytes and the window start (8 bytes, big-endian)."""
    found: dict[tuple[str, int], tuple[int, int]] = {}
    with engine.store.open_reader([topic], start="earliest") as reader:
        empty = polls = 0
        while empty < 5 and polls < 300:
            polls += 1
            batch = reader.poll(10_000, timeout=0.2)
            empty = 0 if batch.num_rows or not found else empty + 1
            for k, v in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist(), strict=True):
                value = orjson.loads(v)
                window = (k[:-8].decode(), int.from_bytes(k[-8:], "big"))
                if not largest or value["N"] >= found.get(window, (0, 0))[0]:
                    found[window] = (value["N"], value["TOTAL"])
    return found


def _outcomes(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    found = []
    for record in caplog.records:
        match = _OUTCOME.search(record.getMessage())
        if match:
            found.append((int(match.group(1).replace(",", "")), match.group(2)))
    return found


def _create(engine: Engine, run: str) -> None:
    engine.session().execute_all(
        f"CREATE STREAM s (k VARCHAR KEY, v INT) WITH (kafka_topic='s_{run}', value_format='JSON', "
        f"partitions={PARTITIONS});"
    )


_CTAS = (
    "CREATE TABLE t WITH (kafka_topic='t_{run}') AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM s "
    "WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY k;"
)


def test_a_new_windowed_aggregation_reads_ahead_once(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = uuid.uuid4().hex[:10]
    engine = Engine.open(_settings(kafka_bootstrap, f"aheadst_{run}_", tmp_path / "data"))
    try:
        _create(engine, run)
        _produce(kafka_bootstrap, f"s_{run}", 0, ROWS)
        caplog.set_level(logging.INFO, logger="ksqlpy.store.kafka")
        engine.session().execute_all(_CTAS.format(run=run))
        (query,) = engine.queries.values()
        # Records are aggregated before the group has assigned anything.
        deadline = time.monotonic() + 20
        while query.records_in == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert query.records_in > 0
        assert query._reader.assignment() == []
        assert engine.wait_idle(60)
        assert [o for _, o in _outcomes(caplog)] == ["kept"]
        assert _pulled(engine, _want(ROWS)) == _want(ROWS)
        assert _sink(engine, f"t_{run}") == _want(ROWS)
    finally:
        engine.close()
    # Restarted, the query has committed positions and local state: it waits for its assignment,
    # keeps its state as it is, and carries on from there.
    _produce(kafka_bootstrap, f"s_{run}", ROWS, 5_000)
    engine = Engine.open(_settings(kafka_bootstrap, f"aheadst_{run}_", tmp_path / "data"))
    try:
        assert engine.wait_idle(60)
        assert len(_outcomes(caplog)) == 1  # no second read-ahead
        assert _pulled(engine, _want(ROWS + 5_000)) == _want(ROWS + 5_000)
        assert _sink(engine, f"t_{run}") == _want(ROWS + 5_000)
    finally:
        engine.close()


def test_two_servers_starting_a_windowed_aggregation_at_once(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = uuid.uuid4().hex[:10]
    service = f"aheadst2_{run}_"
    a = Engine.open(_settings(kafka_bootstrap, service, tmp_path / "a"))
    b = Engine.open(_settings(kafka_bootstrap, service, tmp_path / "b"))
    try:
        _create(a, run)
        _produce(kafka_bootstrap, f"s_{run}", 0, ROWS)
        caplog.set_level(logging.INFO, logger="ksqlpy.store.kafka")
        a.session().execute_all(_CTAS.format(run=run))
        deadline = time.monotonic() + 20
        while not b.queries and time.monotonic() < deadline:
            time.sleep(0.02)
        (query_a,) = a.queries.values()
        (query_b,) = b.queries.values()
        group = query_a.group
        assert group is not None and group == query_b.group
        deadline = time.monotonic() + 60
        while (
            sum(max(o, 0) for o in a.store.committed(group, f"s_{run}").values()) < ROWS
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        while not (query_a.is_idle() and query_b.is_idle()) and time.monotonic() < deadline:
            time.sleep(0.05)
        owned_a = {tp.partition for tp in query_a._reader.assignment()}
        owned_b = {tp.partition for tp in query_b._reader.assignment()}
        assert not owned_a & owned_b and owned_a | owned_b == set(range(PARTITIONS))
        # Every window exact: none counted twice by a read-ahead that was aborted, or lost by one
        # that was kept.
        assert _sink(a, f"t_{run}", largest=True) == _want(ROWS)
    finally:
        stoppers = [threading.Thread(target=e.close) for e in (a, b)]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(60)
    outcomes = _outcomes(caplog)
    # Each server reads ahead once if both find the query new; on a loaded machine B may start
    # it after A's read-ahead wrote to the changelogs, and then waits for its assignment.
    assert 1 <= len(outcomes) <= 2, outcomes


def _one_partition(engine: Engine, run: str) -> None:
    engine.session().execute_all(
        f"CREATE STREAM s (k VARCHAR KEY, v INT) WITH (kafka_topic='s_{run}', value_format='JSON', partitions=1);"
    )


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("cache", ["10000000", "0"], ids=["cache", "no-cache"])
def test_the_rows_a_read_ahead_produced_go_into_the_table_without_reading_its_topic_back(
    kafka_bootstrap: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    cache: str,
) -> None:
    """The query keeps the rows it writes to the table while reading ahead, cut to one per key
    as they grow, and hands them over when the read-ahead is kept; the table's materializer
    reads none of the records back, then or after."""
    from ksqlpy.runtime import query as query_module

    # batches of 2,000 records, cut to one row per key every few batches
    monkeypatch.setattr(query_module, "STATEFUL_BATCH_SIZE", 2_000)
    monkeypatch.setattr(query_module, "AHEAD_ROWS_COMPACT", 500)
    run = uuid.uuid4().hex[:10]
    settings = {
        **_settings(kafka_bootstrap, f"aheadrows_{run}_", tmp_path / "data"),
        "ksql.streams.cache.max.bytes.buffering": cache,
    }
    engine = Engine.open(settings)
    try:
        _one_partition(engine, run)
        _produce(kafka_bootstrap, f"s_{run}", 0, ROWS)
        caplog.set_level(logging.INFO, logger="ksqlpy")
        engine.session().execute_all(_CTAS.format(run=run))
        assert engine.wait_idle(60)
        assert [o for _, o in _outcomes(caplog)] == ["kept"]
        want = _want(ROWS)
        assert any(
            f"took {len(want)} rows the query wrote while reading ahead" in m for m in _messages(caplog)
        )
        assert _pulled(engine, want) == want
        assert engine.materializers["T"].records_in == 0
        # the query goes on feeding the table after its read-ahead
        _produce(kafka_bootstrap, f"s_{run}", ROWS, 5_000)
        assert _pulled(engine, _want(ROWS + 5_000)) == _want(ROWS + 5_000)
        assert engine.materializers["T"].records_in == 0
        assert _sink(engine, f"t_{run}") == _want(ROWS + 5_000)
    finally:
        engine.close()


def test_a_read_ahead_that_is_not_kept_leaves_the_table_to_its_topic(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows kept are dropped with the read-ahead; the table reads its topic instead."""
    from ksqlpy.runtime.store import kafka as kafka_store

    def aborted(self: Any, member: Any, assigned: set[Any]) -> dict[Any, int]:
        self.abandon("the test aborts it")
        return {}

    monkeypatch.setattr(kafka_store._ReadAhead, "finish", aborted)
    run = uuid.uuid4().hex[:10]
    settings = {
        **_settings(kafka_bootstrap, f"aheadnot_{run}_", tmp_path / "data"),
        "ksql.streams.cache.max.bytes.buffering": "0",
    }
    engine = Engine.open(settings)
    try:
        _one_partition(engine, run)
        _produce(kafka_bootstrap, f"s_{run}", 0, ROWS)
        caplog.set_level(logging.INFO, logger="ksqlpy")
        engine.session().execute_all(_CTAS.format(run=run))
        assert engine.wait_idle(60)
        messages = _messages(caplog)
        assert any("keeps the rows of partition(s) [0]" in m for m in messages)
        assert any("aborted, the test aborts it" in m for m in messages)
        assert any("no longer fed, read again from the topic" in m for m in messages)
        assert not any("while reading ahead, none read back" in m for m in messages)
        assert _pulled(engine, _want(ROWS)) == _want(ROWS)
    finally:
        engine.close()


def test_a_read_ahead_past_its_rows_limit_leaves_the_table_to_its_topic(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows that outgrow the limit are given up at once; the read-ahead itself is kept, and the
    table reads back what it committed."""
    from ksqlpy.runtime import query as query_module

    monkeypatch.setattr(query_module, "AHEAD_ROWS_COMPACT", 10)
    monkeypatch.setattr(query_module, "AHEAD_ROWS_MAX_BYTES", 1)
    run = uuid.uuid4().hex[:10]
    engine = Engine.open(_settings(kafka_bootstrap, f"aheadbig_{run}_", tmp_path / "data"))
    try:
        _one_partition(engine, run)
        _produce(kafka_bootstrap, f"s_{run}", 0, ROWS)
        caplog.set_level(logging.INFO, logger="ksqlpy")
        engine.session().execute_all(_CTAS.format(run=run))
        assert engine.wait_idle(60)
        messages = _messages(caplog)
        assert [o for _, o in _outcomes(caplog)] == ["kept"]
        assert any("no longer fed, read again from the topic" in m for m in messages)
        assert not any("while reading ahead, none read back" in m for m in messages)
        assert _pulled(engine, _want(ROWS)) == _want(ROWS)
        assert engine.materializers["T"].records_in > 0
    finally:
        engine.close()
