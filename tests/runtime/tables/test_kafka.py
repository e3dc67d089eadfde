"""Materialization, pull queries and window retention on the Kafka store (the session's Tansu
broker), whose state database is a local DuckDB file committed after each Kafka transaction."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kafka_broker import engine_settings

from ksqlpy.runtime.engine import Engine

pytestmark = pytest.mark.kafka


def test_materialized_pull_on_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    engine = Engine.open(engine_settings(kafka_bootstrap, service_id=f"mat_{run}_", data_dir=tmp_path / "data"))
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


def test_windows_expire_on_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    engine = Engine.open(engine_settings(kafka_bootstrap, service_id=f"ret_{run}_", data_dir=tmp_path / "data"))
    try:
        session = engine.session()
        session.execute_all(
            f"CREATE STREAM views (page VARCHAR KEY, ms INT) WITH (kafka_topic='views_{run}', "
            "value_format='JSON', partitions=1);"
        )
        session.execute_all(
            f"CREATE TABLE per_page WITH (kafka_topic='per_page_{run}') AS SELECT page, COUNT(*) AS n FROM views "
            "WINDOW TUMBLING (SIZE 10 SECONDS, RETENTION 20 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY page;"
        )
        for page, ts in (("a", 1_000), ("b", 12_000), ("d", 22_000), ("c", 31_000)):
            session.execute_all(f"INSERT INTO views (ROWTIME, page, ms) VALUES ({ts}, '{page}', 1);")
        query = session.execute_query("SELECT page, WINDOWSTART FROM per_page;")
        # stream time 30000: windows 0 and 10000 are not > 30000 - 20000, window 20000 is
        assert {tuple(r.values) for r in query} == {("d", 20_000), ("c", 30_000)}
    finally:
        engine.close()
