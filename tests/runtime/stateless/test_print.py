"""PRINT topic through the engine facade: format lines, then one line per record."""

from __future__ import annotations

import re
import struct

import pyarrow as pa
import pytest

from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.printing import PrintFormatter, format_rowtime


def _produce(engine: Engine, topic: str, records: list[tuple[bytes | None, bytes | None, int]]) -> None:
    engine.store.produce(
        topic,
        pa.table(
            {
                "timestamp": pa.array([t for _, _, t in records], pa.int64()),
                "key": pa.array([k for k, _, _ in records], pa.binary()),
                "value": pa.array([v for _, v, _ in records], pa.binary()),
            }
        ),
    )


def _lines(query: object, count: int) -> list[str]:
    out: list[str] = []
    for _ in range(100):
        out.extend(str(r.values[0]) for r in query.poll(0.1))  # type: ignore[attr-defined]
        if len(out) >= count or query.done:  # type: ignore[attr-defined]
            break
    return out


def test_print_from_beginning_with_limit(engine: Engine) -> None:
    s = engine.session()
    s.execute_all("CREATE STREAM S (K STRING KEY, V INT) WITH (kafka_topic='t', value_format='JSON', partitions=1);")
    _produce(engine, "t", [(b"k1", b'{"V":1}', 1588593662123), (None, None, 0), (b"k3", b'{"V":3}', 2)])
    q = s.execute_query("PRINT 't' FROM BEGINNING LIMIT 2;")
    assert q.is_print
    lines = _lines(q, 4)
    assert lines == [
        "Key format: KAFKA_STRING",
        "Value format: JSON or KAFKA_STRING",
        'rowtime: 2020/05/04 12:01:02.123 Z, key: k1, value: {"V":1}, partition: 0',
        "rowtime: 1970/01/01 00:00:00.000 Z, key: <null>, value: <null>, partition: 0",
    ]
    for _ in range(50):
        if q.done:
            break
        q.poll(0.1)
    assert q.done and q.end_reason == "LIMIT"
    q.close()


def test_print_interval_shows_every_nth_record(engine: Engine) -> None:
    s = engine.session()
    s.execute_all("CREATE STREAM S (V INT) WITH (kafka_topic='t', value_format='JSON', partitions=1);")
    _produce(engine, "t", [(None, str(i).encode(), 0) for i in range(5)])
    q = s.execute_query("PRINT 't' FROM BEGINNING INTERVAL 2 LIMIT 3;")
    values = [re.search(r"value: (\S+),", line).group(1) for line in _lines(q, 5)[2:]]  # type: ignore[union-attr]
    assert values == ["0", "2", "4"]
    q.close()


def test_print_of_a_missing_topic_is_an_error(engine: Engine) -> None:
    with pytest.raises(AnalysisError, match="Could not find topic 'nope'"):
        engine.session().execute_query("PRINT 'nope';")


def test_binary_keys_are_told_apart_by_size() -> None:
    f = PrintFormatter()
    batch = pa.table(
        {
            "timestamp": pa.array([0], pa.int64()),
            "partition": pa.array([0], pa.int32()),
            "key": pa.array([struct.pack(">q", 42)], pa.binary()),
            "value": pa.array([b"x"], pa.binary()),
        }
    )
    lines = f.lines(batch)
    assert lines[0] == "Key format: KAFKA_BIGINT or KAFKA_DOUBLE"
    assert lines[1] == "Value format: KAFKA_STRING"
    assert "key: 42," in lines[2]
    assert format_rowtime(-1) == "1969/12/31 23:59:59.999 Z"
