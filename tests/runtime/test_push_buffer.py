"""A push query whose client is behind stops reading at its buffer's bound and loses nothing:
the rows wait in the topic, and come in order once the client drains them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.query import PushQuery


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open({"ksql.streams.state.dir": str(tmp_path / "data")}) as e:
        yield e


def produce(engine: Engine, first: int, n: int) -> None:
    values = [json.dumps({"N": i}).encode() for i in range(first, first + n)]
    engine.store.produce(
        "nums",
        pa.table(
            {
                "timestamp": pa.array(range(first, first + n), pa.int64()),
                "key": pa.array([b"k"] * n, pa.binary()),
                "value": pa.array(values, pa.binary()),
            }
        ),
    )


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def test_a_push_query_waits_for_its_client_at_the_bound(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PushQuery, "max_buffered", 3)
    s = engine.session()
    s.execute_all(
        "CREATE STREAM nums (k VARCHAR KEY, n INT) WITH (kafka_topic='nums', value_format='JSON', partitions=1);"
    )
    q = s.execute_query("SELECT n FROM nums EMIT CHANGES;")
    try:
        produce(engine, 0, 4)
        wait_until(lambda: q.records_read == 4, "the first batch to be read")
        produce(engine, 4, 4)
        wait_until(lambda: q.records_read == 8, "the second batch to be read")
        produce(engine, 8, 4)
        # Four rows held, over the bound of three: the second batch waits to be buffered, the
        # third to be read.
        assert [row.values for row in q.drain()] == [(0,), (1,), (2,), (3,)]
        rows = []
        wait_until(lambda: rows.extend(q.drain()) or len(rows) >= 8, "the rest of the rows")
        assert [row.values for row in rows] == [(i,) for i in range(4, 12)]
        assert q.records_read == 12
    finally:
        q.close()
