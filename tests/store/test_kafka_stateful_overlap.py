"""Kafka store: an aggregation ends each batch's transaction on a committer thread while it polls
and decodes the next batch; when that commit is refused, or the group moves partitions during the
poll, the next batch is dropped with it and both are read again, so every record counts once.

As in test_kafka_overlapped_commit, the refusal is injected where the store meets the broker's
answer (Kafka's ``ILLEGAL_GENERATION``, once, on the committing thread) and a move of partitions
as the reader sees one (its rebalance count rises during a poll); the abort, the rollback of the
state, the rewinding and the re-reading run for real against the broker.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka import KafkaError, KafkaException
from kafka_broker import engine_settings

from ksqlpy.runtime import query as query_module
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.store.kafka import KafkaReader, KafkaTransactionContext

pytestmark = pytest.mark.kafka

#: Records in the backlog; batches of BATCH (set below) make several overlapped commits.
RECORDS = 2_000
BATCH = 300
KEYS = 7


@pytest.fixture
def engine(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setattr(query_module, "STATEFUL_BATCH_SIZE", BATCH)
    run = tmp_path.name[-12:].replace("-", "_")
    settings = engine_settings(kafka_bootstrap, service_id=f"aggoverlap_{run}_", data_dir=tmp_path / "data")
    opened = Engine.open({**settings, "processing.guarantee": "exactly_once_v2"})
    try:
        yield opened
    finally:
        opened.close()


def _run_query(engine: Engine, run: str) -> str:
    """Start a count and sum per key, and once its group has assigned it the source (a new
    aggregation reads ahead of that), write it a backlog; the sink topic's name."""
    session = engine.session()
    session.execute_all(
        f"CREATE STREAM src (k VARCHAR KEY, v INT) WITH (kafka_topic='src_{run}', value_format='JSON', partitions=1);"
        f"CREATE TABLE t WITH (kafka_topic='t_{run}') AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM src GROUP BY k;"
    )
    (query,) = engine.queries.values()
    deadline = time.monotonic() + 30
    while not query._reader.assignment() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert query._reader.assignment()
    values = [json.dumps({"v": i}).encode() for i in range(RECORDS)]
    engine.store.produce(
        f"src_{run}",
        pa.table({"key": pa.array([b"k%d" % (i % KEYS) for i in range(RECORDS)], pa.binary()),
                  "value": pa.array(values, pa.binary())}),
    )
    assert engine.wait_idle(120)
    return f"t_{run}"


def _expected() -> dict[str, tuple[int, int]]:
    return {
        f"k{j}": (len(range(j, RECORDS, KEYS)), sum(range(j, RECORDS, KEYS))) for j in range(KEYS)
    }


def _check(engine: Engine, topic: str) -> None:
    """The state and the sink's last value of each key hold every record once."""
    (query,) = engine.queries.values()
    assert query.state.value == "RUNNING"
    pulled = {r.values[0]: tuple(r.values[1:]) for r in engine.session().execute_query("SELECT * FROM t;")}
    assert pulled == _expected()
    last: dict[str, tuple[int, int]] = {}
    with engine.store.open_reader([topic], start="earliest") as reader:
        for _ in range(40):
            batch = reader.poll(10_000, timeout=0.2)
            for k, v in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist(), strict=True):
                value = json.loads(v)
                last[k.decode()] = (value["N"], value["TOTAL"])
    assert last == _expected()


def test_a_refused_commit_behind_the_next_poll_reads_both_batches_again(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    refused: list[str] = []
    finish = KafkaTransactionContext._finish_kafka

    def refuse_once(self: KafkaTransactionContext, exc_type: object) -> None:
        # Refused on the committing thread: the loop is polling (or has polled) the next batch.
        on_committer = threading.current_thread().name.startswith("commit-")
        if exc_type is None and not refused and on_committer and self._tx is not None and self._tx.pending:
            refused.append(threading.current_thread().name)
            self._abort(KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION)))
        finish(self, exc_type)

    monkeypatch.setattr(KafkaTransactionContext, "_finish_kafka", refuse_once)
    caplog.set_level(logging.INFO, logger="ksqlpy.query")
    topic = _run_query(engine, tmp_path.name[-12:].replace("-", "_"))

    assert refused, "no batch's transaction ended while the next batch was polled"
    assert any("read after it with it" in r.getMessage() for r in caplog.records)
    _check(engine, topic)


def test_partitions_moving_during_the_poll_behind_a_commit_read_the_batch_again(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    moved: list[int] = []
    poll = KafkaReader.poll

    def poll_and_move(self: KafkaReader, *args: Any, **kwargs: Any) -> pa.Table:
        table = poll(self, *args, **kwargs)
        # Once, on a poll with records after the first batch of the backlog (whose commit is
        # under way then).
        read = min(self._next.values()) if self._next else 0
        if not moved and read > BATCH and table.num_rows:
            moved.append(table.num_rows)
            self._moves += 1
        return table

    monkeypatch.setattr(KafkaReader, "poll", poll_and_move)
    caplog.set_level(logging.INFO, logger="ksqlpy.query")
    topic = _run_query(engine, tmp_path.name[-12:].replace("-", "_"))

    assert moved
    assert any("partitions moved" in r.getMessage() for r in caplog.records)
    _check(engine, topic)
