"""Kafka store: a batch whose offsets the group refuses (its partitions moved while it ran) is
aborted, its state changes rolled back, and its records read again, so nothing counts twice.

A broker refuses ``TxnOffsetCommit`` from a member of an old generation; the test broker (Tansu)
does not check generations, so the refusal is injected where the store meets the broker's answer:
the transaction's commit raises Kafka's ``ILLEGAL_GENERATION`` once. The abort itself, the
rollback and the re-reading run for real against the broker.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from kafka_broker import engine_settings

from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.store import kafka as kafka_store
from ksqlpy.runtime.store.kafka import KafkaTransactionContext

pytestmark = pytest.mark.kafka


def test_a_refused_batch_is_aborted_and_read_again(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path.name[-12:].replace("-", "_")
    settings = engine_settings(kafka_bootstrap, service_id=f"aborted_{run}_", data_dir=tmp_path / "data")
    engine = Engine.open({**settings, "processing.guarantee": "exactly_once_v2"})
    try:
        session = engine.session()
        session.execute_all(
            f"CREATE STREAM s (k VARCHAR KEY, v INT) WITH (kafka_topic='s_{run}', value_format='JSON', partitions=3);"
            f"CREATE TABLE t WITH (kafka_topic='t_{run}') AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM s GROUP BY k;"
        )
        assert engine.wait_idle(60)
        # A new aggregation reads ahead until its group assigns it partitions: the batch refused
        # below is one the group's member runs on its own partitions.
        (query,) = [q for q in engine.queries.values() if q.query_id.startswith("CTAS_T")]
        deadline = time.monotonic() + 30
        while not query._reader.assignment() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert query._reader.assignment()

        refused: list[bool] = []
        finish = KafkaTransactionContext._finish_kafka

        def refuse_once(self: KafkaTransactionContext, exc_type: object) -> None:
            if exc_type is None and not refused and self._tx is not None and self._tx.pending:
                refused.append(True)
                self._abort(KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION)))
            finish(self, exc_type)

        monkeypatch.setattr(KafkaTransactionContext, "_finish_kafka", refuse_once)
        caplog.set_level(logging.INFO, logger="ksqlpy.query")
        rows = "".join(f"INSERT INTO s (k, v) VALUES ('k{i % 5}', {i});" for i in range(40))
        session.execute_all(rows)
        assert engine.wait_idle(120)

        assert refused
        assert any("aborted" in r.getMessage() for r in caplog.records)
        # The query went on; the aborted batch counted once, when read again.
        assert query.state.value == "RUNNING"
        pulled = {r.values[0]: tuple(r.values[1:]) for r in engine.session().execute_query("SELECT * FROM t;")}
        want = {f"k{j}": (8, sum(i for i in range(40) if i % 5 == j)) for j in range(5)}
        assert pulled == want
        # The sink holds each key's final value last, and no value past it (read committed).
        last: dict[str, object] = {}
        with engine.store.open_reader([f"t_{run}"], start="earliest") as reader:
            for _ in range(50):
                batch = reader.poll(10_000, timeout=0.2)
                for k, v in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist(), strict=True):
                    last[k.decode()] = json.loads(v)
        assert {k: (v["N"], v["TOTAL"]) for k, v in last.items()} == want  # type: ignore[index]
    finally:
        engine.close()


def test_a_transaction_its_producer_cannot_abort_is_ended_by_a_new_producer(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When the abort itself fails (a broker that cannot bump the producer's epoch, say), a new
    producer of the same transactional id ends the transaction and the query goes on."""
    run = tmp_path.name[-12:].replace("-", "_")
    settings = engine_settings(kafka_bootstrap, service_id=f"unaborted_{run}_", data_dir=tmp_path / "data")
    engine = Engine.open({**settings, "processing.guarantee": "exactly_once_v2"})
    try:
        session = engine.session()
        session.execute_all(
            f"CREATE STREAM s (k VARCHAR KEY, v INT) WITH (kafka_topic='s_{run}', value_format='JSON', partitions=1);"
            f"CREATE TABLE t WITH (kafka_topic='t_{run}') AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM s GROUP BY k;"
        )
        assert engine.wait_idle(60)
        (query,) = [q for q in engine.queries.values() if q.query_id.startswith("CTAS_T")]
        deadline = time.monotonic() + 30
        while not query._reader.assignment() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert query._reader.assignment()

        refused: list[bool] = []
        finish = KafkaTransactionContext._finish_kafka

        def refuse_once(self: KafkaTransactionContext, exc_type: object) -> None:
            if exc_type is None and not refused and self._tx is not None and self._tx.pending:
                refused.append(True)
                self._abort(KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION)))
            finish(self, exc_type)

        def abort_times_out(producer: object) -> None:
            # the open transaction stays open, as when the producer's abort never completes
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Timed out waiting for operation to finish"))

        monkeypatch.setattr(KafkaTransactionContext, "_finish_kafka", refuse_once)
        monkeypatch.setattr(kafka_store, "_abort_transaction", abort_times_out)
        caplog.set_level(logging.INFO)
        rows = "".join(f"INSERT INTO s (k, v) VALUES ('k{i % 5}', {i});" for i in range(40))
        session.execute_all(rows)
        assert engine.wait_idle(120)

        assert refused
        assert any("starting a new transactional producer" in r.getMessage() for r in caplog.records)
        assert query.state.value == "RUNNING"
        pulled = {r.values[0]: tuple(r.values[1:]) for r in engine.session().execute_query("SELECT * FROM t;")}
        want = {f"k{j}": (8, sum(i for i in range(40) if i % 5 == j)) for j in range(5)}
        assert pulled == want
        # the transaction given up wrote nothing a read-committed reader sees
        last: dict[str, object] = {}
        with engine.store.open_reader([f"t_{run}"], start="earliest") as reader:
            for _ in range(50):
                batch = reader.poll(10_000, timeout=0.2)
                for k, v in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist(), strict=True):
                    last[k.decode()] = json.loads(v)
        assert {k: (v["N"], v["TOTAL"]) for k, v in last.items()} == want  # type: ignore[index]
    finally:
        engine.close()
