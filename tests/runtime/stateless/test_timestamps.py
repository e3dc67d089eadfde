"""Record timestamps from columns: the sink's TIMESTAMP column and a source's formatted one."""

from __future__ import annotations

from stateless_io import produce

from ksqlpy.runtime.engine import Engine


def _timestamps(engine: Engine, topic: str) -> list[int]:
    out: list[int] = []
    with engine.store.open_reader([topic], start="earliest") as reader:
        for _ in range(20):
            batch = reader.poll(10_000, timeout=0.05)
            if batch.num_rows == 0 and out:
                break
            out.extend(batch.column("timestamp").to_pylist())
    return out


def test_sink_timestamp_column_sets_record_time_and_drops_negative_ones(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(
        "CREATE STREAM TEST (K STRING KEY, ID BIGINT) WITH (kafka_topic='t', value_format='JSON', partitions=1);"
        "CREATE STREAM TS WITH (timestamp='sink_ts') AS SELECT K, ID AS SINK_TS, ID FROM TEST;"
    )
    produce(engine, "t", [(b"a", {"ID": 7}), (b"b", {"ID": -2}), (b"c", {"ID": 9})])
    assert engine.wait_idle()
    assert _timestamps(engine, "TS") == [7, 9]


def test_formatted_source_timestamp_column_is_parsed(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(
        "CREATE STREAM TEST (K STRING KEY, TS STRING) WITH (kafka_topic='t', value_format='JSON', partitions=1, "
        "timestamp='TS', timestamp_format='yyyy-MM-dd''T''HH:mm:ssX');"
        "CREATE STREAM OUT AS SELECT * FROM TEST;"
    )
    produce(engine, "t", [(b"a", {"TS": "1970-01-01T00:00:01Z"}), (b"b", {"TS": "nope"})])
    assert engine.wait_idle()
    assert _timestamps(engine, "OUT") == [1000]
