"""Kafka store: a member's committed positions reach the group while another producer's transaction
on the sink is still open.

Kafka applies a transaction's offsets when it commits. The test broker (Tansu) holds them back while
an earlier transaction that wrote to the same partitions is open, and applies them when a later
transaction end finds every transaction it overlaps finished; one that overlaps other partitions
only may leave them held back for good. Another server's read-ahead is such a transaction: it
writes to every sink partition while its member joins the group. A member whose commits were held
back looked idle and finished, and its group showed none of its positions (a restart would read
its input again). Here the open transaction is a second transactional producer's, held open on the
sink for the whole test; the query, its commits and the group are real.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka_broker import engine_settings

from ksqlpy.runtime.engine import Engine

pytestmark = pytest.mark.kafka

PARTITIONS = 3
ROWS = 3_000


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        answer = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in answer)
    finally:
        consumer.close()


def _sink_ids(bootstrap: str, topic: str) -> list[int]:
    """The ID of every record of ``topic`` written by the query, to the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4()}",
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
                elif m.key() != b"open":  # the other producer's records
                    ids.append(int(orjson.loads(m.value() or b"{}")["ID"]))
        assert at_end == set(range(PARTITIONS)), f"{topic} not read to its end"
        return ids
    finally:
        consumer.close()


def test_positions_committed_behind_another_open_transaction_reach_the_group(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    settings = {
        **engine_settings(kafka_bootstrap, service_id=f"held_{run}_", data_dir=tmp_path / "data"),
        "kafka.session.timeout.ms": "2000",
        "processing.guarantee": "exactly_once_v2",
    }
    engine = Engine.open(settings)
    other = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"other-{run}"})
    try:
        session = engine.session()
        session.execute_all(
            f"CREATE STREAM s (k VARCHAR KEY, id INT) WITH (kafka_topic='s_{run}', value_format='JSON', "
            f"partitions={PARTITIONS});"
            f"CREATE STREAM o WITH (kafka_topic='o_{run}') AS SELECT k, id FROM s;"
        )
        (query,) = engine.queries.values()
        deadline = time.monotonic() + 30
        while not query._reader.assignment() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert query._reader.assignment()
        group = query.group
        assert group is not None
        # Another producer's transaction on every sink partition, open from here to the end.
        other.init_transactions(30)
        other.begin_transaction()
        for p in range(PARTITIONS):
            other.produce(f"o_{run}", b"{}", b"open", partition=p)
        assert other.flush(30) == 0
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
        for i in range(ROWS):
            producer.produce(f"s_{run}", orjson.dumps({"ID": i}), f"k{i}".encode())
        assert producer.flush(30) == 0
        assert engine.wait_idle(60)
        deadline = time.monotonic() + 20
        while _committed(kafka_bootstrap, group, f"s_{run}") < ROWS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _committed(kafka_bootstrap, group, f"s_{run}") == ROWS
    finally:
        other.abort_transaction(30)
        engine.close()
    assert sorted(_sink_ids(kafka_bootstrap, f"o_{run}")) == list(range(ROWS))  # each exactly once
