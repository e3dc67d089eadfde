"""Window retention on the Kafka store (the session's Tansu broker), whose state database is a
local DuckDB file committed after each Kafka transaction."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ksqlpy.runtime.engine import Engine

pytestmark = pytest.mark.kafka


def test_windows_expire_on_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    from kafka_broker import FAST_CLIENT_CONFIG

    run = uuid.uuid4().hex[:8]
    engine = Engine.open(
        {
            "bootstrap.servers": kafka_bootstrap,
            **{f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()},
            "ksql.service.id": f"ret_{run}_",
            "ksql.streams.state.dir": str(tmp_path / "data"),
            "ksql.streams.auto.offset.reset": "earliest",
        }
    )
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
