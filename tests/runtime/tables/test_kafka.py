"""Materialization and pull queries on the Kafka store (the session's Tansu broker)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ksqlpy.runtime.engine import Engine

pytestmark = pytest.mark.kafka


def test_materialized_pull_on_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    from kafka_broker import FAST_CLIENT_CONFIG

    run = uuid.uuid4().hex[:8]
    engine = Engine.open(
        {
            "bootstrap.servers": kafka_bootstrap,
            **{f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()},
            "ksql.service.id": f"mat_{run}_",
            "ksql.streams.state.dir": str(tmp_path / "data"),
            "ksql.streams.auto.offset.reset": "earliest",
        }
    )
    try:
        session = engine.session()
        session.execute_all(
            f"CREATE TABLE users (id VARCHAR PRIMARY KEY, age INT) WITH (kafka_topic='users_{run}', "
            "value_format='JSON', partitions=2);"
        )
        session.execute_all("CREATE TABLE q_users AS SELECT * FROM users;")
        for uid, age in (("a", 1), ("b", 2), ("a", 3)):
            session.execute_all(f"INSERT INTO users (id, age) VALUES ('{uid}', {age});")
        query = session.execute_query("SELECT * FROM q_users WHERE id IN ('a', 'b');")
        assert [r.values for r in query] == [("a", 3), ("b", 2)]
    finally:
        engine.close()
