"""Record headers are carried from each source record to the records it produces."""

from __future__ import annotations

import pyarrow as pa

from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.store.base import HEADER_TYPE


def test_headers_pass_through_a_select(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(
        "CREATE STREAM S (K STRING KEY, V INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);"
        "CREATE STREAM O AS SELECT K, V * 2 AS V2 FROM S;"
    )
    headers = [[{"key": "abc", "value": b"!"}], []]
    engine.store.produce(
        "s",
        pa.table(
            {
                "timestamp": pa.array([0, 1], pa.int64()),
                "key": pa.array([b"a", b"b"], pa.binary()),
                "value": pa.array([b'{"V":1}', b'{"V":2}'], pa.binary()),
                "headers": pa.array(headers, HEADER_TYPE),
            }
        ),
    )
    assert engine.wait_idle()
    with engine.store.open_reader(["O"], start="earliest") as reader:
        batch = reader.poll(100, timeout=1.0)
    assert [h or [] for h in batch.column("headers").to_pylist()] == headers
