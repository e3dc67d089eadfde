"""Batched inserts (``/inserts-stream``): one store batch, and a bad row stops the batch there."""

from __future__ import annotations

import pytest

from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.insert import InsertRowError


@pytest.fixture
def engine():
    engine = Engine.open({"ksql.streams.state.dir": ":memory:"})
    engine.session().execute_all(
        "CREATE STREAM S (K STRING KEY, V INT) WITH (KAFKA_TOPIC='s', PARTITIONS=1, VALUE_FORMAT='JSON');"
    )
    yield engine
    engine.close()


def test_rows_land_in_order(engine: Engine) -> None:
    engine.insert_rows("S", [{"K": str(i), "V": i} for i in range(100)])
    assert engine.store.end_offsets("s") == {0: 100}
    with engine.store.open_reader(["s"]) as reader:
        batch = reader.poll(1000, timeout=1)
    assert [k.decode() for k in batch.column("key").to_pylist()] == [str(i) for i in range(100)]


def test_bad_row_inserts_the_rows_before_it(engine: Engine) -> None:
    with pytest.raises(InsertRowError) as caught:
        engine.insert_rows("S", [{"K": "a", "V": 1}, {"K": "b", "V": "x"}, {"K": "c", "V": 3}])
    assert caught.value.index == 1
    assert "Failed to insert values into 'S'" in str(caught.value)
    assert engine.store.end_offsets("s") == {0: 1}


def test_a_replaced_stream_gets_its_new_columns(engine: Engine) -> None:
    """Encoders are kept per stream: a stream dropped and declared again with other columns
    over the same topic encodes its own."""
    engine.insert_rows("S", [{"K": "a", "V": 1}])
    engine.session().execute_all(
        "DROP STREAM S;"
        "CREATE STREAM S (K STRING KEY, W STRING) WITH (KAFKA_TOPIC='s', PARTITIONS=1, VALUE_FORMAT='JSON');"
    )
    engine.insert_rows("S", [{"K": "b", "W": "w"}])
    with engine.store.open_reader(["s"]) as reader:
        batch = reader.poll(1000, timeout=1)
    assert [v.decode() for v in batch.column("value").to_pylist()] == ['{"V":1}', '{"W":"w"}']
