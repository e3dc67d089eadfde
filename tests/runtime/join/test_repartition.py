"""Re-keyed join sides go through ksqlDB's internal topics on the embedded store: a stream joined
on a value column is written to ``<application id>-Join-repartition`` keyed by that column, and
the join reads it back; a table re-keyed into another key format goes through
``<context>-SelectKey-repartition`` and logs its materialization to ``-Materialize-changelog``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ksqlpy.runtime.engine import Engine

APP = "_confluent-ksql-default_query_"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    e = Engine.open(
        {
            "ksql.streams.state.dir": str(tmp_path / "data"),
            "ksql.streams.auto.offset.reset": "earliest",
            "ksql.logging.processing.stream.auto.create": "false",
        }
    )
    yield e
    e.close()


def _produce(engine: Any, topic: str, rows: list[tuple[bytes | None, dict[str, Any] | None, int]]) -> None:
    engine.store.produce(
        topic,
        pa.table(
            {
                "timestamp": pa.array([ts for _, _, ts in rows], pa.int64()),
                "key": pa.array([k for k, _, _ in rows], pa.binary()),
                "value": pa.array(
                    [None if v is None else json.dumps(v).encode() for _, v, _ in rows], pa.binary()
                ),
            }
        ),
    )
    assert engine.wait_idle(60)


def _read(engine: Any, topic: str) -> list[tuple[bytes | None, Any, int, int]]:
    """(key, value, timestamp, partition) of every record of ``topic``."""
    out: list[tuple[bytes | None, Any, int, int]] = []
    with engine.store.open_reader([topic], start="earliest") as reader:
        for _ in range(40):
            batch = reader.poll(10_000, timeout=0.05)
            if batch.num_rows == 0 and out:
                break
            for k, v, ts, p in zip(
                batch.column("key").to_pylist(),
                batch.column("value").to_pylist(),
                batch.column("timestamp").to_pylist(),
                batch.column("partition").to_pylist(),
                strict=True,
            ):
                out.append((k, None if v is None else json.loads(v), ts, p))
    return out


def test_a_stream_joined_on_a_value_goes_through_the_join_repartition_topic(engine: Any) -> None:
    engine.session().execute_all(
        """
        CREATE STREAM clicks (id VARCHAR KEY, user_id VARCHAR, page VARCHAR)
          WITH (kafka_topic='clicks', value_format='JSON', partitions=3);
        CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR)
          WITH (kafka_topic='users', value_format='JSON', partitions=3);
        CREATE STREAM named AS SELECT c.user_id, c.page, u.name FROM clicks c JOIN users u ON c.user_id = u.id;
        """
    )
    topic = f"{APP}CSAS_NAMED_0-Join-repartition"
    spec = engine.store.describe_topic(topic)
    assert spec is not None and spec.partitions == 3  # as many as the stream's topic
    _produce(engine, "users", [(b"u1", {"NAME": "ann"}, 1)])
    _produce(
        engine,
        "clicks",
        [(b"c1", {"USER_ID": "u1", "PAGE": "home"}, 2), (b"c2", {"USER_ID": None, "PAGE": "docs"}, 3)],
    )
    written = _read(engine, topic)
    # re-keyed by the join expression, the columns prefixed by the stream's alias; the record
    # with a null join key is not written (Kafka Streams' repartition filter)
    assert [(k, v["C_PAGE"], ts) for k, v, ts, _ in written] == [(b"u1", "home", 2)]
    assert [(k, v) for k, v, _, _ in _read(engine, "NAMED")] == [(b"u1", {"PAGE": "home", "NAME": "ann"})]


def test_a_table_rekeyed_into_the_join_key_format_is_repartitioned_and_changelogged(engine: Any) -> None:
    engine.session().execute_all(
        """
        CREATE TABLE t1 (id INT PRIMARY KEY, val VARCHAR)
          WITH (kafka_topic='t1', key_format='KAFKA', value_format='JSON', partitions=1);
        CREATE TABLE t2 (id INT PRIMARY KEY, foo INT)
          WITH (kafka_topic='t2', key_format='DELIMITED', value_format='JSON', partitions=1);
        CREATE TABLE joined AS SELECT * FROM t1 JOIN t2 ON t1.id = t2.id;
        """
    )
    assert engine.store.describe_topic(f"{APP}CTAS_JOINED_0-LeftSourceKeyed-SelectKey-repartition") is None
    _produce(engine, "t2", [(b"7", {"FOO": 70}, 1)])
    _produce(engine, "t1", [((7).to_bytes(4, "big"), {"VAL": "seven"}, 2)])
    # t2's DELIMITED key is re-keyed into the join's KAFKA key format (t1's, the left side's)
    repartition = _read(engine, f"{APP}CTAS_JOINED_0-RightSourceKeyed-SelectKey-repartition")
    assert [(k, v["T2_FOO"]) for k, v, _, _ in repartition] == [((7).to_bytes(4, "big"), 70)]
    changelog = _read(engine, f"{APP}CTAS_JOINED_0-RightSourceKeyed-Materialize-changelog")
    assert [(k, v) for k, v, _, _ in changelog] == [(k, v) for k, v, _, _ in repartition]
    joined = _read(engine, "JOINED")
    assert [(k, v["T1_VAL"], v["T2_FOO"]) for k, v, _, _ in joined] == [((7).to_bytes(4, "big"), "seven", 70)]


def test_a_stream_stream_join_logs_its_window_stores_and_terminate_deletes_internal_topics(
    engine: Any,
) -> None:
    engine.session().execute_all(
        """
        CREATE STREAM l (id VARCHAR KEY, a INT) WITH (kafka_topic='l', value_format='JSON', partitions=1);
        CREATE STREAM r (id VARCHAR KEY, b INT) WITH (kafka_topic='r', value_format='JSON', partitions=1);
        CREATE STREAM lr AS SELECT l.id, a, b FROM l LEFT JOIN r WITHIN 10 SECONDS ON l.id = r.id;
        """
    )
    # Kafka Streams' names for the join's window stores (a LEFT join's other side is outer)
    this = f"{APP}CSAS_LR_0-KSTREAM-JOINTHIS-0000000008-store-changelog"
    other = f"{APP}CSAS_LR_0-KSTREAM-OUTEROTHER-0000000009-store-changelog"
    _produce(engine, "l", [(b"k", {"A": 1}, 1000), (None, {"A": 2}, 1001)])
    _produce(engine, "r", [(b"k", {"B": 3}, 2000)])
    # each stored record keyed by the join key and its timestamp (the window start); a record
    # without a key is not stored
    assert [(k, v) for k, v, _, _ in _read(engine, this)] == [
        (
            b"k" + (1000).to_bytes(8, "big"),
            {"L_A": 1, "L_ROWTIME": 1000, "L_ROWPARTITION": 0, "L_ROWOFFSET": 0, "L_ID": "k"},
        )
    ]
    assert [v["R_B"] for _, v, _, _ in _read(engine, other)] == [3]
    engine.session().execute_all("TERMINATE CSAS_LR_0;")
    assert engine.store.describe_topic(this) is None and engine.store.describe_topic(other) is None


def test_an_inner_join_rekeyed_for_the_next_join_goes_through_that_joins_repartition_topic(
    engine: Any,
) -> None:
    engine.session().execute_all(
        """
        CREATE STREAM orders (id VARCHAR KEY, item VARCHAR) WITH (kafka_topic='orders', value_format='JSON', partitions=1);
        CREATE STREAM paid (id VARCHAR KEY, amount INT) WITH (kafka_topic='paid', value_format='JSON', partitions=1);
        CREATE TABLE items (id VARCHAR PRIMARY KEY, name VARCHAR) WITH (kafka_topic='items', value_format='JSON', partitions=1);
        CREATE STREAM sold AS SELECT o.id, o.item, p.amount, i.name FROM orders o
          JOIN paid p WITHIN 1 HOUR ON o.id = p.id
          JOIN items i ON o.item = i.id;
        """
    )
    _produce(engine, "items", [(b"i1", {"NAME": "pen"}, 1)])
    _produce(engine, "orders", [(b"o1", {"ITEM": "i1"}, 2)])
    _produce(engine, "paid", [(b"o1", {"AMOUNT": 5}, 3)])
    # the stream-stream join's result, re-keyed by the item, is written to the outer join's
    # repartition topic and joined with the table from there
    written = _read(engine, f"{APP}CSAS_SOLD_0-Join-repartition")
    assert [(k, v["O_ID"], v["P_AMOUNT"]) for k, v, _, _ in written] == [(b"i1", "o1", 5)]
    sold = _read(engine, "SOLD")
    assert [(v["O_ID"], v["AMOUNT"], v["NAME"]) for _, v, _, _ in sold] == [("o1", 5, "pen")]
