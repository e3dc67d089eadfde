"""Materialization, pull queries and window retention on the Kafka store (the session's Tansu
broker), whose state database is a local DuckDB file committed after each Kafka transaction."""

from __future__ import annotations

import time
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


def test_query_feeds_its_windowed_table_on_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The query writing a windowed one-partition table puts its rows into the table's state
    itself once the materializer has read the partition; pull queries see the same rows as when
    the topic is read back, also after the query stops and the partition is read again."""
    run = uuid.uuid4().hex[:8]
    engine = Engine.open(engine_settings(kafka_bootstrap, service_id=f"feed_{run}_", data_dir=tmp_path / "data"))
    try:
        session = engine.session()
        session.execute_all(
            f"CREATE STREAM views (page VARCHAR KEY, ms INT) WITH (kafka_topic='fviews_{run}', "
            "value_format='JSON', partitions=1);"
        )
        session.execute_all(
            f"CREATE TABLE per_page WITH (kafka_topic='fper_page_{run}') AS SELECT page, COUNT(*) AS n, "
            "SUM(ms) AS total FROM views WINDOW TUMBLING (SIZE 10 SECONDS, RETENTION 20 SECONDS, "
            "GRACE PERIOD 0 SECONDS) GROUP BY page;"
        )
        pull = "SELECT page, WINDOWSTART, n, total FROM per_page;"
        session.execute_all("INSERT INTO views (ROWTIME, page, ms) VALUES (1000, 'a', 1);")
        assert {tuple(r.values) for r in session.execute_query(pull)} == {("a", 0, 1, 1)}
        for page, ts, ms in (("a", 2_000, 2), ("b", 3_000, 5), ("a", 12_000, 7), ("b", 4_000, 1)):
            session.execute_all(f"INSERT INTO views (ROWTIME, page, ms) VALUES ({ts}, '{page}', {ms});")
            session.execute_query(pull)  # each record its own batch
        materializer = engine.materializers["PER_PAGE"]
        assert materializer.fed() == frozenset({0})
        # b at 4000 came after stream time 12000 closed window 0 (no grace): dropped
        expected = {("a", 0, 2, 3), ("b", 0, 1, 5), ("a", 10_000, 1, 7)}
        assert {tuple(r.values) for r in session.execute_query(pull)} == expected
        deadline = time.monotonic() + 10
        while 0 not in materializer._paused and time.monotonic() < deadline:
            time.sleep(0.05)
        read = materializer.records_in  # the fed partition is no longer read back
        # stream time 31000: windows 0 and 10000 expire, as when the topic is read back
        session.execute_all("INSERT INTO views (ROWTIME, page, ms) VALUES (31000, 'c', 4);")
        assert {tuple(r.values) for r in session.execute_query(pull)} == {("c", 30_000, 1, 4)}
        session.execute_all("INSERT INTO views (ROWTIME, page, ms) VALUES (32000, 'c', 6);")
        assert {tuple(r.values) for r in session.execute_query(pull)} == {("c", 30_000, 2, 10)}
        assert materializer.records_in == read
        fed_state = _state_rows(engine, "PER_PAGE")
        (query_id,) = [q for q in engine.queries if "PER_PAGE" in q]
        session.execute_all(f"TERMINATE {query_id};")
        assert {tuple(r.values) for r in session.execute_query(pull)} == {("c", 30_000, 2, 10)}
        assert materializer.fed() == frozenset()
        # read back from the topic: the same rows, hidden columns and stream time included
        assert _state_rows(engine, "PER_PAGE") == fed_state
    finally:
        engine.close()


def _state_rows(engine: Engine, name: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    cursor = engine.store.state_cursor()
    try:
        rows = cursor.execute(f'SELECT * FROM mat."{name}" ORDER BY ALL').fetchall()
        times = cursor.execute(f'SELECT * FROM mat."{name}_stream_time" ORDER BY ALL').fetchall()
        return rows, times
    finally:
        cursor.close()
