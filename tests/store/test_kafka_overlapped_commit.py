"""Kafka store: a stateless persistent query commits each batch while it reads the next; when that
commit fails, or the group moves partitions meanwhile, both batches are read again, and every
input record still has exactly one output.

The refusal of a commit is injected where the store meets the broker's answer (Tansu does not
check generations, see test_kafka_batch_aborted): the transaction's commit raises Kafka's
``ILLEGAL_GENERATION`` once, on the committing thread, so the batch after it is already read.
(Tansu shows the records of aborted transactions to read-committed readers, which Kafka never
does: the refused batch's outputs may be read besides the committed ones.)
A move of partitions is injected as the reader sees one: its rebalance count rises during a poll.
The abort, the rewinding and the re-reading run for real against the broker.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
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


@pytest.fixture
def engine(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setattr(query_module, "BATCH_SIZE", BATCH)
    run = tmp_path.name[-12:].replace("-", "_")
    settings = engine_settings(kafka_bootstrap, service_id=f"overlap_{run}_", data_dir=tmp_path / "data")
    opened = Engine.open({**settings, "processing.guarantee": "exactly_once_v2"})
    try:
        yield opened
    finally:
        opened.close()


def _run_query(engine: Engine, run: str) -> str:
    """Start a filter/project, and once its group has assigned it the source (a query reads
    ahead of that, one batch at a time), write it a backlog; the sink topic's name."""
    session = engine.session()
    session.execute_all(
        f"CREATE STREAM src (k VARCHAR KEY, v INT) WITH (kafka_topic='src_{run}', value_format='JSON', partitions=1);"
        f"CREATE STREAM out WITH (kafka_topic='out_{run}') AS SELECT k, v * 2 AS w FROM src WHERE v % 3 <> 0;"
    )
    (query,) = engine.queries.values()
    deadline = time.monotonic() + 30
    while not query._reader.assignment() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert query._reader.assignment()
    values = [json.dumps({"v": i}).encode() for i in range(RECORDS)]
    engine.store.produce(
        f"src_{run}",
        pa.table({"key": pa.array([b"k%d" % (i % 7) for i in range(RECORDS)], pa.binary()),
                  "value": pa.array(values, pa.binary())}),
    )
    assert engine.wait_idle(120)
    return f"out_{run}"


def _outputs(engine: Engine, topic: str) -> Counter[int]:
    seen: Counter[int] = Counter()
    with engine.store.open_reader([topic], start="earliest") as reader:
        for _ in range(40):
            batch = reader.poll(10_000, timeout=0.2)
            for value in batch.column("value").to_pylist():
                seen[json.loads(value)["W"]] += 1
    return seen


def _expected() -> Counter[int]:
    return Counter(i * 2 for i in range(RECORDS) if i % 3 != 0)


def test_a_refused_overlapped_commit_reads_both_batches_again(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    refused: list[str] = []
    aborted: Counter[int] = Counter()  # the refused transaction's outputs
    finish = KafkaTransactionContext._finish_kafka

    def refuse_once(self: KafkaTransactionContext, exc_type: object) -> None:
        # Refused on the committing thread: the loop has read (and prepared) the next batch.
        on_committer = threading.current_thread().name.startswith("commit-")
        if exc_type is None and not refused and on_committer and self._tx is not None and self._tx.pending:
            refused.append(threading.current_thread().name)
            for _, records in self._tx.pending:
                aborted.update(json.loads(v)["W"] for v in records.column("value").to_pylist())
            self._abort(KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION)))
        finish(self, exc_type)

    monkeypatch.setattr(KafkaTransactionContext, "_finish_kafka", refuse_once)
    caplog.set_level(logging.INFO, logger="ksqlpy.query")
    topic = _run_query(engine, tmp_path.name[-12:].replace("-", "_"))

    assert refused, "no batch committed while the next was prepared"
    assert any("and the next one with it" in r.getMessage() for r in caplog.records)
    (query,) = engine.queries.values()
    assert query.state.value == "RUNNING"
    # Every input once in what was committed. The test broker also hands read-committed readers
    # the records of aborted transactions (Kafka never does): those of the refused one, at most.
    outputs = _outputs(engine, topic)
    assert _expected() - outputs == Counter()
    assert outputs - _expected() <= aborted


@pytest.mark.parametrize("on_empty_poll", [False, True], ids=["mid-backlog", "at-the-end"])
def test_partitions_moving_during_an_overlapped_poll_read_both_batches_again(
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    on_empty_poll: bool,
) -> None:
    moved: list[int] = []
    poll = KafkaReader.poll

    def poll_and_move(self: KafkaReader, *args: Any, **kwargs: Any) -> pa.Table:
        table = poll(self, *args, **kwargs)
        # Once, on a poll after a batch that waits to commit: one with records while the
        # backlog lasts, or the empty one after the last batch.
        read = min(self._next.values()) if self._next else 0
        wanted = read >= RECORDS and not table.num_rows if on_empty_poll else read > BATCH and table.num_rows
        if not moved and wanted:
            moved.append(table.num_rows)
            self._moves += 1
        return table

    monkeypatch.setattr(KafkaReader, "poll", poll_and_move)
    caplog.set_level(logging.INFO, logger="ksqlpy.query")
    topic = _run_query(engine, tmp_path.name[-12:].replace("-", "_"))

    assert moved
    assert any("partitions moved" in r.getMessage() for r in caplog.records)
    assert _outputs(engine, topic) == _expected()
