"""Kafka store: a GROUP BY that re-keys goes through ksqlDB's ``Aggregate-GroupBy-repartition``
topic on the broker (each group in the partition its key hashes to), counts exactly once across
a restart, and a table GROUP BY gives the embedded store's results."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka_broker import FAST_CLIENT_CONFIG, engine_settings

from ksqlpy.runtime.describe import query_description
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.session import Session
from ksqlpy.runtime.store.partitioner import partition_for_key

pytestmark = pytest.mark.kafka

PER_RECORD = {"ksql.streams.cache.max.bytes.buffering": "0"}


def _open(bootstrap: str, data: Path, service: str) -> Engine:
    return Engine.open(
        {
            **engine_settings(bootstrap, service_id=service, data_dir=data),
            "processing.guarantee": "exactly_once_v2",
        }
    )


def _execute(engine: Engine, text: str) -> None:
    Session(engine, PER_RECORD, {}).execute_all(text)


def _consume(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every committed record of ``topic``, as (partition, key, value), read by a plain consumer."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": "false",
            **FAST_CLIENT_CONFIG,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(meta.partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[tuple[int, bytes | None, bytes | None]] = []
        for _ in range(200):
            positions = {
                tp.partition: tp.offset for tp in consumer.position([TopicPartition(topic, p) for p in parts])
            }
            if all(positions.get(p, 0) >= end for p, end in ends.items() if end > 0):
                break
            for message in consumer.consume(1000, timeout=0.2):
                if message.error() is None:
                    out.append((message.partition(), message.key(), message.value()))
        return out
    finally:
        consumer.close()


def _latest(records: list[tuple[int, bytes | None, bytes | None]]) -> dict[bytes | None, object]:
    """The last value of each key of a sink topic (a table's current contents)."""
    out: dict[bytes | None, object] = {}
    for _, key, value in records:
        out[key] = None if value is None else json.loads(value)
    return out


def _produce(engine: Engine, topic: str, rows: list[tuple[str, dict[str, object]]]) -> None:
    engine.store.produce(
        topic,
        pa.table(
            {
                "timestamp": pa.array([1000 + i for i in range(len(rows))], pa.int64()),
                "key": pa.array([k.encode() for k, _ in rows], pa.binary()),
                "value": pa.array([json.dumps(v).encode() for _, v in rows], pa.binary()),
            }
        ),
    )


PAGES = ["home", "docs", "blog", "about", "jobs", "news", "shop"]


def test_a_group_by_a_value_goes_through_the_repartition_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    service = f"grp_{run}_"
    engine = _open(kafka_bootstrap, tmp_path / "data", service)
    try:
        _execute(
            engine,
            f"""
            CREATE STREAM views (id VARCHAR KEY, page VARCHAR, ms INT)
              WITH (kafka_topic='views_{run}', value_format='JSON', partitions=3);
            CREATE TABLE per_page WITH (kafka_topic='per_page_{run}') AS
              SELECT page, COUNT(*) AS n, SUM(ms) AS total FROM views GROUP BY page;
            """,
        )
        rows = [(f"v{i}", {"PAGE": PAGES[i % len(PAGES)], "MS": i}) for i in range(60)]
        rows.append(("v-null", {"PAGE": None, "MS": 1}))  # no group: dropped before the topic
        _produce(engine, f"views_{run}", rows)
        assert engine.wait_idle(120)

        topic = f"_confluent-ksql-{service}query_CTAS_PER_PAGE_0-Aggregate-GroupBy-repartition"
        spec = engine.store.describe_topic(topic)
        assert spec is not None and spec.partitions == 3
        grouped = _consume(kafka_bootstrap, topic)
        assert len(grouped) == 60
        for partition, key, value in grouped:
            assert key is not None and key.decode() in PAGES
            # Kafka's default partitioner over the serialized group key
            assert partition == partition_for_key(key, 3)
            assert value is not None and set(json.loads(value)) == {
                "KSQL_INTERNAL_COL_0",
                "KSQL_INTERNAL_COL_1",
            }
        assert len({p for p, _, _ in grouped}) > 1

        expected = {
            page.encode(): {
                "N": sum(1 for i in range(60) if PAGES[i % len(PAGES)] == page),
                "TOTAL": sum(i for i in range(60) if PAGES[i % len(PAGES)] == page),
            }
            for page in PAGES
        }
        assert _latest(_consume(kafka_bootstrap, f"per_page_{run}")) == expected
        # the record without a group went to the processing log, named by its source record
        (logged,) = [json.loads(v or b"null") for _, _, v in _consume(kafka_bootstrap, engine.plog.topic)]
        error = logged["MESSAGE"]["RECORDPROCESSINGERROR"]
        assert error["ERRORMESSAGE"].startswith("Group-by column with index 0 resolved to null.")
        assert error["CAUSE"][0].startswith(f"topic views_{run}, partition ")

        # EXPLAIN shows the query's two stages
        topology = query_description(engine, engine.queries["CTAS_PER_PAGE_0"], "").topology
        assert f"produce to {topic}; poll {topic} -> decode" in topology

        Session(engine, {}, {}).execute_all("TERMINATE CTAS_PER_PAGE_0;")
        # Kafka deletes topics asynchronously: the broker's metadata may list it a moment longer.
        deadline = time.monotonic() + 15
        while engine.store.describe_topic(topic) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert engine.store.describe_topic(topic) is None
    finally:
        engine.close()


@pytest.mark.parametrize("local_state", ["kept", "lost"])
def test_a_restart_mid_stream_counts_every_record_once(
    kafka_bootstrap: str, tmp_path: Path, local_state: str
) -> None:
    run = uuid.uuid4().hex[:8]
    service = f"grprestart_{run}_"
    data = tmp_path / "data"
    first = _open(kafka_bootstrap, data, service)
    statements = f"""
        CREATE STREAM views (id VARCHAR KEY, page VARCHAR)
          WITH (kafka_topic='views_{run}', value_format='JSON', partitions=3);
        CREATE TABLE per_page WITH (kafka_topic='per_page_{run}') AS
          SELECT page, COUNT(*) AS n FROM views GROUP BY page;
    """
    try:
        _execute(first, statements)
        _produce(first, f"views_{run}", [(f"a{i}", {"PAGE": PAGES[i % 3]}) for i in range(30)])
        assert first.wait_idle(120)
        # More input arrives while the query is stopped part-way through it.
        _produce(first, f"views_{run}", [(f"b{i}", {"PAGE": PAGES[i % len(PAGES)]}) for i in range(200)])
    finally:
        first.close()
    if local_state == "lost":  # then the aggregation's state comes back from its changelog
        shutil.rmtree(data)
    later = [(f"c{i}", {"PAGE": PAGES[i % len(PAGES)]}) for i in range(40)]

    second = _open(kafka_bootstrap, data, service)
    try:
        _produce(second, f"views_{run}", later)
        assert second.wait_idle(120)
        pages = [PAGES[i % 3] for i in range(30)] + [PAGES[i % len(PAGES)] for i in range(200)]
        pages += [PAGES[i % len(PAGES)] for i in range(40)]
        counts: dict[str, int] = defaultdict(int)
        for page in pages:
            counts[page] += 1
        assert _latest(_consume(kafka_bootstrap, f"per_page_{run}")) == {
            page.encode(): {"N": n} for page, n in counts.items()
        }
        topic = f"_confluent-ksql-{service}query_CTAS_PER_PAGE_0-Aggregate-GroupBy-repartition"
        # each input record went through the repartition topic exactly once
        assert len(_consume(kafka_bootstrap, topic)) == len(pages)
    finally:
        second.close()


TEAMS = """
CREATE TABLE users (id VARCHAR PRIMARY KEY, team VARCHAR, score INT)
  WITH (kafka_topic='users_{run}', value_format='JSON', partitions=3);
CREATE TABLE per_team WITH (kafka_topic='per_team_{run}') AS
  SELECT team, COUNT(*) AS members, SUM(score) AS total FROM users GROUP BY team HAVING COUNT(*) > 0;
"""

UPDATES = [
    "INSERT INTO users (id, team, score) VALUES ('u1', 'red', 1);",
    "INSERT INTO users (id, team, score) VALUES ('u2', 'red', 2);",
    "INSERT INTO users (id, team, score) VALUES ('u3', 'blue', 3);",
    "INSERT INTO users (id, team, score) VALUES ('u1', 'blue', 10);",  # moves red -> blue
    "INSERT INTO users (id, team, score) VALUES ('u3', 'blue', 30);",  # stays in blue
    "INSERT INTO users (id, team, score) VALUES ('u2', 'green', 2);",  # red is left empty
    "INSERT INTO users (id, team, score) VALUES ('u4', 'green', 4);",
]


def _per_key(records: list[tuple[int, bytes | None, bytes | None]]) -> dict[bytes | None, list[object]]:
    out: dict[bytes | None, list[object]] = defaultdict(list)
    for _, key, value in records:
        out[key].append(None if value is None else json.loads(value))
    return dict(out)


def _embedded(tmp_path: Path, run: str) -> dict[bytes | None, list[object]]:
    engine = Engine.open(
        {"ksql.streams.state.dir": str(tmp_path / "embedded"), "ksql.streams.auto.offset.reset": "earliest"}
    )
    try:
        _execute(engine, TEAMS.format(run=run))
        for statement in UPDATES:
            _execute(engine, statement)
            assert engine.wait_idle(60)
        records: list[tuple[int, bytes | None, bytes | None]] = []
        with engine.store.open_reader([f"per_team_{run}"], start="earliest") as reader:
            for _ in range(50):
                batch = reader.poll(10_000, timeout=0.05)
                if batch.num_rows == 0 and records:
                    break
                records += zip(
                    batch.column("partition").to_pylist(),
                    batch.column("key").to_pylist(),
                    batch.column("value").to_pylist(),
                    strict=True,
                )
        return _per_key(records)
    finally:
        engine.close()


def test_a_table_group_by_moves_rows_between_groups_as_ksqldb_does(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    service = f"grptable_{run}_"
    engine = _open(kafka_bootstrap, tmp_path / "data", service)
    try:
        _execute(engine, TEAMS.format(run=run))
        for statement in UPDATES:
            _execute(engine, statement)
            assert engine.wait_idle(60)
        changes = _per_key(_consume(kafka_bootstrap, f"per_team_{run}"))
        topic = f"_confluent-ksql-{service}query_CTAS_PER_TEAM_0-Aggregate-GroupBy-repartition"
        grouped = _consume(kafka_bootstrap, topic)
    finally:
        engine.close()
    # each change of a group, in order: u1 leaving red, u3's update within blue emitted once,
    # red's last member leaving turns it into a tombstone (HAVING fails)
    assert changes == {
        b"red": [{"MEMBERS": 1, "TOTAL": 1}, {"MEMBERS": 2, "TOTAL": 3}, {"MEMBERS": 1, "TOTAL": 2}, None],
        b"blue": [{"MEMBERS": 1, "TOTAL": 3}, {"MEMBERS": 2, "TOTAL": 13}, {"MEMBERS": 2, "TOTAL": 40}],
        b"green": [{"MEMBERS": 1, "TOTAL": 2}, {"MEMBERS": 2, "TOTAL": 6}],
    }
    # the same changes as aggregating in place on the embedded store
    assert changes == _embedded(tmp_path, run)
    # a move is a retraction from the old group and an addition to the new, each in its group's
    # partition; an update within one group goes as both too
    assert len(grouped) == 4 + 2 * 3
    for partition, key, _ in grouped:
        assert key is not None and partition == partition_for_key(key, 3)


def test_a_windowed_group_by_keeps_stream_time_per_repartition_partition(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    engine = _open(kafka_bootstrap, tmp_path / "data", f"grpwin_{run}_")
    try:
        _execute(
            engine,
            f"""
            CREATE STREAM views (id VARCHAR KEY, page VARCHAR)
              WITH (kafka_topic='views_{run}', value_format='JSON', partitions=2);
            CREATE TABLE per_page WITH (kafka_topic='per_page_{run}') AS
              SELECT page, COUNT(*) AS n FROM views
              WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY page;
            """,
        )
        # 'home' goes to repartition partition 0, 'docs' to 1 (murmur2 of the key)
        assert (partition_for_key(b"home", 2), partition_for_key(b"docs", 2)) == (0, 1)
        for page, ts in (("home", 100_000), ("docs", 5_000), ("home", 5_000)):
            _execute(engine, f"INSERT INTO views (id, page, ROWTIME) VALUES ('v', '{page}', {ts});")
            assert engine.wait_idle(60)
        windows = sorted(
            (r.values[0], r.values[1], r.values[2])
            for r in engine.session().execute_query("SELECT page, WINDOWSTART, n FROM per_page;")
        )
    finally:
        engine.close()
    # 'docs' at 5s is on time in its partition, whose stream time is still 5s; 'home' at 5s is
    # late in partition 0, where stream time is 100s (its window closed at 10s)
    assert windows == [("docs", 0, 1), ("home", 100_000, 1)]


def test_a_group_key_the_plans_key_format_cannot_hold_is_written_as_json(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    service = f"grpjson_{run}_"
    engine = _open(kafka_bootstrap, tmp_path / "data", service)
    try:
        _execute(
            engine,
            f"""
            CREATE STREAM s (id VARCHAR KEY, a INT, b VARCHAR)
              WITH (kafka_topic='s_{run}', format='DELIMITED', partitions=2);
            CREATE TABLE t WITH (kafka_topic='t_{run}', key_format='JSON') AS
              SELECT STRUCT(A := a, B := b) AS k, COUNT(*) AS n FROM s GROUP BY STRUCT(A := a, B := b);
            INSERT INTO s (id, a, b) VALUES ('1', 1, 'x');
            INSERT INTO s (id, a, b) VALUES ('2', 1, 'x');
            """,
        )
        assert engine.wait_idle(60)
        assert not [e for q in engine.queries.values() for e in q.errors]
        topic = f"_confluent-ksql-{service}query_CTAS_T_0-Aggregate-GroupBy-repartition"
        # DELIMITED cannot hold a STRUCT key: the repartition topic keys it as JSON
        assert {json.loads(k or b"null")["A"] for _, k, _ in _consume(kafka_bootstrap, topic)} == {1}
        # the sink's value is DELIMITED: the count alone
        assert _latest(_consume(kafka_bootstrap, f"t_{run}")) == {b'{"A":1,"B":"x"}': 2}
    finally:
        engine.close()
