"""Join input time alignment on the Kafka store (the session's Tansu broker): stream records
read before the table rows they need still join them, and records held back when the server
stops are read again after it restarts, their positions never committed past them."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from kafka_broker import engine_settings

from ksqlpy.runtime.engine import Engine

pytestmark = pytest.mark.kafka


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


def _read(engine: Any, topic: str, n: int) -> list[tuple[str, Any]]:
    """The topic's records once it has ``n`` (or what it has after 30 s), and no more."""
    out: list[tuple[str, Any]] = []
    deadline = time.monotonic() + 30
    with engine.store.open_reader([topic], start="earliest") as reader:
        while time.monotonic() < deadline:
            batch = reader.poll(10_000, timeout=0.2)
            for k, v in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist(), strict=True):
                out.append((k.decode(), json.loads(v)))
            if batch.num_rows == 0 and len(out) >= n:
                return out
    return out


def test_held_records_are_read_again_after_a_restart_on_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    orders, users, sink = f"orders_{run}", f"users_{run}", f"enriched_{run}"
    settings = engine_settings(kafka_bootstrap, service_id=f"align_{run}_", data_dir=tmp_path / "data")
    engine = Engine.open(settings)
    try:
        # wait up to ten minutes for the table to deliver rows as old as the orders
        session = engine.session({"ksql.streams.max.task.idle.ms": "600000"})
        session.execute_all(
            f"""
            CREATE STREAM orders (id VARCHAR KEY, amount INT)
              WITH (kafka_topic='{orders}', value_format='JSON', partitions=1);
            CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR)
              WITH (kafka_topic='{users}', value_format='JSON', partitions=1);
            CREATE STREAM enriched WITH (kafka_topic='{sink}') AS
              SELECT o.id AS id, o.amount AS amount, u.name AS name FROM orders o LEFT JOIN users u ON o.id = u.id;
            """
        )
        query = next(iter(engine.queries.values()))
        group = engine.query_group(query.query_id)
        _produce(engine, orders, [("a", {"AMOUNT": 1}, 100), ("b", {"AMOUNT": 2}, 101)])
        deadline = time.monotonic() + 30
        while query.records_in < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert query.records_in == 2
        assert not query.caught_up()  # read, and held
        assert engine.store.committed(group, orders).get(0, 0) == 0
    finally:
        engine.close()

    engine = Engine.open(settings)
    try:
        # older users, and an order and a user newer than those: the held orders go
        _produce(
            engine, users, [("a", {"NAME": "ann"}, 1), ("b", {"NAME": "bob"}, 2), ("z", {"NAME": "zed"}, 500)]
        )
        _produce(engine, orders, [("c", {"AMOUNT": 3}, 900)])
        out = _read(engine, sink, 2)
        assert sorted(out) == [("a", {"AMOUNT": 1, "NAME": "ann"}), ("b", {"AMOUNT": 2, "NAME": "bob"})]
        assert engine.store.committed(engine.query_group(query.query_id), orders) == {0: 2}
    finally:
        engine.close()
