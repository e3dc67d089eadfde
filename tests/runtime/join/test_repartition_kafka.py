"""Kafka store: a re-keyed join side goes through its repartition topic on the broker, created
with ksqlDB's name and the side's partition count, and the join reads it back."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from kafka_broker import engine_settings

from ksqlpy.runtime.engine import Engine

pytestmark = pytest.mark.kafka


def _read(engine: Engine, topic: str) -> list[tuple[bytes | None, object]]:
    out: list[tuple[bytes | None, object]] = []
    with engine.store.open_reader([topic], start="earliest") as reader:
        ends = engine.store.end_offsets(topic)
        for _ in range(100):
            positions = {tp.partition: o for tp, o in reader.positions().items()}
            if all(positions.get(p, 0) >= e for p, e in ends.items()):
                break
            batch = reader.poll(10_000, timeout=0.2)
            for k, v in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist(), strict=True):
                out.append((k, None if v is None else json.loads(v)))
    return out


def _raw(engine: Engine, topic: str) -> list[bytes | None]:
    out: list[bytes | None] = []
    with engine.store.open_reader([topic], start="earliest") as reader:
        ends = engine.store.end_offsets(topic)
        for _ in range(100):
            positions = {tp.partition: o for tp, o in reader.positions().items()}
            if all(positions.get(p, 0) >= e for p, e in ends.items()):
                break
            out.extend(reader.poll(10_000, timeout=0.2).column("value").to_pylist())
    return out


def test_a_stream_joined_on_a_value_is_repartitioned_through_the_broker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    service = f"repart_{run}_"
    engine = Engine.open(engine_settings(kafka_bootstrap, service_id=service, data_dir=tmp_path / "data"))
    try:
        session = engine.session()
        session.execute_all(
            f"""
            CREATE STREAM clicks (id VARCHAR KEY, user_id VARCHAR, page VARCHAR)
              WITH (kafka_topic='clicks_{run}', value_format='JSON', partitions=2);
            CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR)
              WITH (kafka_topic='users_{run}', value_format='JSON', partitions=2);
            CREATE STREAM named WITH (kafka_topic='named_{run}') AS
              SELECT c.user_id, c.page, u.name FROM clicks c JOIN users u ON c.user_id = u.id;
            INSERT INTO users (id, name) VALUES ('u1', 'ann');
            """
        )
        assert engine.wait_idle(60)
        session.execute_all("INSERT INTO clicks (id, user_id, page) VALUES ('c1', 'u1', 'home');")
        assert engine.wait_idle(60)
        topic = f"_confluent-ksql-{service}query_CSAS_NAMED_0-Join-repartition"
        spec = engine.store.describe_topic(topic)
        assert spec is not None and spec.partitions == 2
        assert [(k, v["C_PAGE"]) for k, v in _read(engine, topic)] == [(b"u1", "home")]  # type: ignore[index]
        assert _read(engine, f"named_{run}") == [(b"u1", {"PAGE": "home", "NAME": "ann"})]
    finally:
        engine.close()


def test_a_stream_stream_join_logs_its_window_stores_on_the_broker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    service = f"stores_{run}_"
    engine = Engine.open(engine_settings(kafka_bootstrap, service_id=service, data_dir=tmp_path / "data"))
    try:
        session = engine.session()
        session.execute_all(
            f"""
            CREATE STREAM l (id VARCHAR KEY, a INT) WITH (kafka_topic='l_{run}', value_format='JSON', partitions=1);
            CREATE STREAM r (id VARCHAR KEY, b INT) WITH (kafka_topic='r_{run}', value_format='JSON', partitions=1);
            CREATE STREAM lr WITH (kafka_topic='lr_{run}') AS
              SELECT l.id, a, b FROM l JOIN r WITHIN 10 SECONDS ON l.id = r.id;
            INSERT INTO l (id, a) VALUES ('k', 1);
            """
        )
        assert engine.wait_idle(60)
        session.execute_all("INSERT INTO r (id, b) VALUES ('k', 2);")
        assert engine.wait_idle(60)
        this = f"_confluent-ksql-{service}query_CSAS_LR_0-KSTREAM-JOINTHIS-0000000008-store-changelog"
        other = f"_confluent-ksql-{service}query_CSAS_LR_0-KSTREAM-JOINOTHER-0000000009-store-changelog"
        # On Kafka the stores log themselves in the state changelog layout (restorable rows,
        # see ksqlpy/runtime/changelog.py) under Kafka Streams' names: one record each here.
        assert len(_raw(engine, this)) == 1
        assert len(_raw(engine, other)) == 1
        assert _read(engine, f"lr_{run}") == [(b"k", {"A": 1, "B": 2})]
    finally:
        engine.close()
