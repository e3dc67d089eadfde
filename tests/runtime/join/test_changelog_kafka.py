"""Kafka store: join state (stream–table, table–table, foreign-key and stream–stream window
stores) goes to changelog topics named after ksqlDB's stores, and a server whose local state
directory is lost restores it from them without reading the input again."""

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
CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR) WITH (kafka_topic='users_{run}', value_format='JSON', partitions=1);
CREATE TABLE teams (id VARCHAR PRIMARY KEY, team VARCHAR) WITH (kafka_topic='teams_{run}', value_format='JSON', partitions=1);
CREATE TABLE items (id VARCHAR PRIMARY KEY, owner VARCHAR) WITH (kafka_topic='items_{run}', value_format='JSON', partitions=1);
CREATE STREAM orders (user_id VARCHAR KEY, item VARCHAR) WITH (kafka_topic='orders_{run}', value_format='JSON', partitions=1);
CREATE STREAM clicks (user_id VARCHAR KEY, page VARCHAR) WITH (kafka_topic='clicks_{run}', value_format='JSON', partitions=1);
CREATE STREAM views (user_id VARCHAR KEY, ms INT) WITH (kafka_topic='views_{run}', value_format='JSON', partitions=1);
CREATE STREAM enriched WITH (kafka_topic='enriched_{run}') AS
    SELECT o.user_id, o.item, u.name FROM orders o JOIN users u ON o.user_id = u.id;
CREATE TABLE user_teams WITH (kafka_topic='user_teams_{run}') AS
    SELECT u.id, u.name, t.team FROM users u JOIN teams t ON u.id = t.id;
CREATE TABLE item_owners WITH (kafka_topic='item_owners_{run}') AS
    SELECT i.id, i.owner, u.name FROM items i JOIN users u ON i.owner = u.id;
CREATE STREAM clicked_views WITH (kafka_topic='clicked_views_{run}') AS
    SELECT c.user_id, c.page, v.ms FROM clicks c JOIN views v WITHIN 1 HOUR GRACE PERIOD 1 HOUR
    ON c.user_id = v.user_id;
CREATE STREAM clicks_or_not WITH (kafka_topic='clicks_or_not_{run}') AS
    SELECT c.user_id, c.page, v.ms FROM clicks c LEFT JOIN views v WITHIN 1 MINUTE GRACE PERIOD 1 MINUTE
    ON c.user_id = v.user_id;
CREATE TABLE orders_per_name WITH (kafka_topic='orders_per_name_{run}') AS
    SELECT u.name, COUNT(*) AS orders FROM orders o JOIN users u ON o.user_id = u.id GROUP BY u.name;
"""

SINKS = ("enriched", "user_teams", "item_owners", "clicked_views", "clicks_or_not")


def _open(bootstrap: str, data: Path, run: str) -> Engine:
    settings = engine_settings(bootstrap, service_id=f"joinlog_{run}_", data_dir=data)
    return Engine.open({**settings, "processing.guarantee": "exactly_once_v2"})


def _insert(engine: Engine, statements: list[str]) -> None:
    session = engine.session()
    for statement in statements:
        session.execute_all(statement)


def _sink(engine: Engine, topic: str) -> list[str]:
    """The topic's records, each as JSON text ``[key hex, value]``."""
    out: list[str] = []
    with engine.store.open_reader([topic], start="earliest") as reader:
        ends = engine.store.end_offsets(topic)
        for _ in range(100):
            positions = {tp.partition: o for tp, o in reader.positions().items()}
            if all(positions.get(p, 0) >= e for p, e in ends.items()):
                break
            batch = reader.poll(10_000, timeout=0.2)
            for k, v in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist(), strict=True):
                out.append(
                    json.dumps([k.hex() if k else None, None if v is None else json.loads(v)], sort_keys=True)
                )
    return out


def _sinks(engine: Engine, run: str) -> dict[str, list[str]]:
    assert engine.wait_idle(120)
    return {name: _sink(engine, f"{name}_{run}") for name in SINKS}


def _values(records: list[str]) -> list[dict[str, object]]:
    return [json.loads(r)[1] for r in records]


def test_join_state_is_restored_from_changelogs(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = uuid.uuid4().hex[:8]
    data = tmp_path / "data"
    first = _open(kafka_bootstrap, data, run)
    try:
        _insert(first, [QUERIES.format(run=run)])
        _insert(
            first,
            [
                "INSERT INTO users (id, name) VALUES ('u1', 'ann');",
                "INSERT INTO users (id, name) VALUES ('u2', 'bob');",
                "INSERT INTO teams (id, team) VALUES ('u1', 'red');",
                "INSERT INTO items (id, owner) VALUES ('i1', 'u1');",
                "INSERT INTO orders (user_id, item) VALUES ('u1', 'book');",
                "INSERT INTO clicks (user_id, page, ROWTIME) VALUES ('u1', 'home', 10000);",
                "INSERT INTO clicks (user_id, page, ROWTIME) VALUES ('u2', 'docs', 15000);",
            ],
        )
        before = _sinks(first, run)
        # the LEFT join holds both clicks until a match or the end of their grace period
        assert [len(before[s]) for s in SINKS] == [1, 1, 1, 0, 0]
        changelogs = {
            t.name.split("query_", 1)[1]
            for t in first.store.list_topics()
            if f"joinlog_{run}_query_" in t.name and t.name.endswith("-changelog")
        }
    finally:
        first.close()
    # each join's state under ksqlDB's store names
    (enriched,) = [c for c in changelogs if c.startswith("CSAS_ENRICHED")]
    assert enriched.endswith("-KafkaTopic_Right-Reduce-changelog")
    assert {c.split("-", 1)[1] for c in changelogs if c.startswith("CSAS_CLICKED_VIEWS")} == {
        "Join-this-join-store-changelog",
        "Join-other-join-store-changelog",
        "Join-StreamTime-changelog",
    }
    assert {c.split("-", 1)[1] for c in changelogs if c.startswith("CTAS_USER_TEAMS")} == {
        "KafkaTopic_Left-Reduce-changelog",
        "KafkaTopic_Right-Reduce-changelog",
    }

    shutil.rmtree(data)
    caplog.set_level(logging.INFO, logger="ksqlpy.partitions")
    second = _open(kafka_bootstrap, data, run)
    try:
        assert second.wait_idle(120)
        # each join's stores (rows of no partition: one changelog partition) restored whole
        assert sum("store(s) without partitions" in r.getMessage() for r in caplog.records) == 6
        # Restored, not rebuilt: the joins read none of their input again.
        assert sum(q.records_in for q in second.queries.values()) == 0
        _insert(
            second,
            [
                "INSERT INTO orders (user_id, item) VALUES ('u2', 'pen');",
                "INSERT INTO orders (user_id, item) VALUES ('u1', 'cup');",
                "INSERT INTO teams (id, team) VALUES ('u2', 'blue');",
                "INSERT INTO items (id, owner) VALUES ('i2', 'u2');",
                "INSERT INTO views (user_id, ms, ROWTIME) VALUES ('u1', 7, 20000);",
                "INSERT INTO clicks (user_id, page, ROWTIME) VALUES ('u3', 'blog', 200000);",
            ],
        )
        after = _sinks(second, run)
        # the aggregation after a join kept its counts too
        counts = second.session().execute_query("SELECT name, orders FROM orders_per_name;")
        assert sorted(tuple(r.values) for r in counts) == [("ann", 2), ("bob", 1)]
    finally:
        second.close()
    # Every earlier output exactly once, then the new one, joined with state from before the loss.
    new: dict[str, list[str]] = {}
    for name in SINKS:
        rest = list(after[name])
        for record in before[name]:
            rest.remove(record)
        new[name] = rest
    assert _values(new["enriched"]) == [{"ITEM": "pen", "NAME": "bob"}, {"ITEM": "cup", "NAME": "ann"}]
    assert _values(new["user_teams"]) == [{"NAME": "bob", "TEAM": "blue"}]
    assert _values(new["item_owners"]) == [{"OWNER": "u2", "NAME": "bob"}]
    assert _values(new["clicked_views"]) == [{"PAGE": "home", "MS": 7}]
    # u1's held click joins the view; u2's, still held, is released padded once time passes its grace
    assert _values(new["clicks_or_not"]) == [{"PAGE": "home", "MS": 7}, {"PAGE": "docs", "MS": None}]


def test_terminate_deletes_the_join_changelogs(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    engine = _open(kafka_bootstrap, tmp_path / "data", run)
    try:
        _insert(engine, [QUERIES.format(run=run)])
        assert engine.wait_idle(60)

        def changelogs() -> list[str]:
            return [
                t.name
                for t in engine.store.list_topics()
                if f"joinlog_{run}_query_CSAS_CLICKED_VIEWS" in t.name and t.name.endswith("-changelog")
            ]

        assert len(changelogs()) == 3
        (query_id,) = [q for q in engine.queries if q.startswith("CSAS_CLICKED_VIEWS")]
        engine.session().execute_all(f"TERMINATE {query_id};")
        # Kafka deletes topics asynchronously: the broker's metadata may list them a moment longer.
        deadline = time.monotonic() + 15
        while changelogs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert changelogs() == []
    finally:
        engine.close()


def test_state_kept_before_its_changelog_starts_the_changelog(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server upgraded with a join running has state but no changelog yet: the changelog
    starts with that state, so a later loss of the state directory loses nothing."""
    run = uuid.uuid4().hex[:8]
    data = tmp_path / "data"
    first = _open(kafka_bootstrap, data, run)
    # a server from before join changelogs
    first.store.changelogged = False  # type: ignore[misc]
    try:
        # the sources and the stream-table join only
        _insert(first, [QUERIES.format(run=run).split("CREATE TABLE user_teams")[0]])
        _insert(first, ["INSERT INTO users (id, name) VALUES ('u1', 'ann');"])
        assert first.wait_idle(120)
        assert not [
            t
            for t in first.store.list_topics()
            if f"joinlog_{run}_" in t.name and t.name.endswith("-changelog")
        ]
    finally:
        first.close()
    caplog.set_level(logging.INFO, logger="ksqlpy.changelog")
    second = _open(kafka_bootstrap, data, run)
    try:
        assert second.wait_idle(120)
        assert any("started with the 1 row(s)" in r.getMessage() for r in caplog.records)
    finally:
        second.close()
    shutil.rmtree(data)
    third = _open(kafka_bootstrap, data, run)
    try:
        assert third.wait_idle(120)
        _insert(third, ["INSERT INTO orders (user_id, item) VALUES ('u1', 'book');"])
        assert third.wait_idle(120)
        assert _values(_sink(third, f"enriched_{run}")) == [{"ITEM": "book", "NAME": "ann"}]
    finally:
        third.close()
