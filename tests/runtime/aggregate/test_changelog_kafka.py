"""Kafka store: aggregation state goes to changelog topics, and a server whose local state is
lost or behind restores it from them, without reading the input again."""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from pathlib import Path

import pytest
from kafka_broker import engine_settings

from ksqlpy.runtime.engine import Engine

pytestmark = pytest.mark.kafka

QUERIES = """
CREATE STREAM pv (page VARCHAR KEY, user_id VARCHAR, ms INT) WITH (kafka_topic='pv_{run}', value_format='JSON', partitions=2);
CREATE TABLE per_page WITH (kafka_topic='per_page_{run}') AS
    SELECT page, COUNT(*) AS views, SUM(ms) AS total_ms, COLLECT_SET(user_id) AS users
    FROM pv WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 1 HOUR) GROUP BY page;
CREATE TABLE users (id VARCHAR PRIMARY KEY, team VARCHAR) WITH (kafka_topic='users_{run}', value_format='JSON', partitions=1);
CREATE TABLE per_team WITH (kafka_topic='per_team_{run}') AS SELECT team, COUNT(*) AS members FROM users GROUP BY team;
"""


def _open(bootstrap: str, data: Path, run: str) -> Engine:
    settings = engine_settings(bootstrap, service_id=f"changelog_{run}_", data_dir=data)
    return Engine.open({**settings, "processing.guarantee": "exactly_once_v2"})


def _insert(engine: Engine, rows: list[str]) -> None:
    session = engine.session()
    for statement in rows:
        session.execute_all(statement)


def _pull(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    assert engine.wait_idle(60)
    return [tuple(r.values) for r in engine.session().execute_query(sql)]


def _records_read(engine: Engine) -> int:
    return sum(q.records_in for q in engine.queries.values())


def _sink(engine: Engine, topic: str) -> list[tuple[bytes | None, object]]:
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


@pytest.mark.parametrize("loss", ["lost state directory", "state one batch behind"])
def test_state_is_restored_from_changelogs(
    kafka_bootstrap: str, tmp_path: Path, loss: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = uuid.uuid4().hex[:8]
    data = tmp_path / "data"
    first = _open(kafka_bootstrap, data, run)
    try:
        _insert(first, [QUERIES.format(run=run)])
        _insert(
            first,
            [
                "INSERT INTO pv (page, user_id, ms, ROWTIME) VALUES ('home', 'u1', 10, 1000);",
                "INSERT INTO pv (page, user_id, ms, ROWTIME) VALUES ('docs', 'u2', 20, 2000);",
                "INSERT INTO users (id, team) VALUES ('u1', 'red');",
                "INSERT INTO users (id, team) VALUES ('u2', 'red');",
            ],
        )
        assert _pull(first, "SELECT page, views FROM per_page WHERE page = 'home';") == [("home", 1)]
        first.store.state_database.execute("CHECKPOINT")
        snapshot = tmp_path / "snapshot.duckdb"
        shutil.copy(data / "state.duckdb", snapshot)
        _insert(
            first,
            [
                "INSERT INTO pv (page, user_id, ms, ROWTIME) VALUES ('home', 'u3', 30, 3000);",
                "INSERT INTO users (id, team) VALUES ('u2', 'blue');",
            ],
        )
        assert _pull(first, "SELECT page, views FROM per_page WHERE page = 'home';") == [("home", 2)]
        assert _pull(first, "SELECT team, members FROM per_team WHERE team = 'blue';") == [("blue", 1)]
        sink_before = _sink(first, f"per_page_{run}")
    finally:
        first.close()

    shutil.rmtree(data)
    if loss == "state one batch behind":
        data.mkdir()
        shutil.copy(snapshot, data / "state.duckdb")
    caplog.set_level(logging.INFO, logger="ksqlpy.partitions")
    second = _open(kafka_bootstrap, data, run)
    try:
        assert second.wait_idle(120)
        # Each assigned partition is restored from its own changelog partitions.
        restored = [r.getMessage() for r in caplog.records if "changelog records for partition" in r.getMessage()]
        assert restored and all(" of query " in m for m in restored)
        # Restored, not rebuilt: the aggregations read none of their input again.
        assert _records_read(second) == 0
        _insert(
            second,
            [
                "INSERT INTO pv (page, user_id, ms, ROWTIME) VALUES ('home', 'u1', 40, 4000);",
                "INSERT INTO users (id, team) VALUES ('u1', 'blue');",
            ],
        )
        rows = _pull(second, "SELECT page, views, total_ms, users FROM per_page WHERE page = 'home';")
        assert [(p, v, t, sorted(u)) for p, v, t, u in rows] == [("home", 3, 80, ["u1", "u3"])]
        # The table aggregation kept its source rows too: u1 moving retracts it from red.
        assert sorted(_pull(second, "SELECT team, members FROM per_team;")) == [("blue", 2), ("red", 0)]
        # Every earlier output exactly once, then the new one.
        before = sorted(json.dumps([k.hex() if k else None, v], sort_keys=True) for k, v in sink_before)
        after = [json.dumps([k.hex() if k else None, v], sort_keys=True) for k, v in _sink(second, f"per_page_{run}")]
        new = list(after)
        for record in before:
            new.remove(record)
        assert len(after) == len(before) + 1
        (key, value) = json.loads(new[0])
        assert bytes.fromhex(key).startswith(b"home")
        assert (value["VIEWS"], value["TOTAL_MS"], sorted(value["USERS"])) == (3, 80, ["u1", "u3"])
    finally:
        second.close()


def test_terminate_deletes_the_changelog_topics(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    engine = _open(kafka_bootstrap, tmp_path / "data", run)
    try:
        _insert(engine, [QUERIES.format(run=run)])
        _insert(engine, ["INSERT INTO pv (page, user_id, ms, ROWTIME) VALUES ('home', 'u1', 10, 1000);"])
        assert engine.wait_idle(60)

        def changelogs() -> list[str]:
            return [
                t.name
                for t in engine.store.list_topics()
                if f"changelog_{run}_query_CTAS_PER_PAGE" in t.name and t.name.endswith("-changelog")
            ]

        assert len(changelogs()) == 2
        (query_id,) = [q for q in engine.queries if q.startswith("CTAS_PER_PAGE")]
        engine.session().execute_all(f"TERMINATE {query_id};")
        # Kafka deletes topics asynchronously: the broker's metadata may list them a moment longer.
        deadline = time.monotonic() + 15
        while changelogs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert changelogs() == []
    finally:
        engine.close()
