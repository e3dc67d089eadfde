"""``auto.offset.reset`` set in a session decides where that session's persistent queries start."""

from __future__ import annotations

import pytest

from ksqlpy.runtime.engine import Engine

SETUP = """
CREATE STREAM S (K STRING KEY, V INT) WITH (KAFKA_TOPIC='s', PARTITIONS=1, VALUE_FORMAT='JSON');
INSERT INTO S (K, V) VALUES ('a', 1);
INSERT INTO S (K, V) VALUES ('b', 2);
"""


@pytest.mark.parametrize(("reset", "expected"), [("earliest", 3), ("latest", 1)])
def test_persistent_query_starts_where_the_session_says(reset: str, expected: int) -> None:
    engine = Engine.open({"ksql.streams.state.dir": ":memory:"})
    try:
        session = engine.session({"auto.offset.reset": reset})
        session.execute_all(SETUP + "CREATE STREAM T AS SELECT K, V * 10 AS W FROM S;")
        assert engine.wait_idle(30)
        engine.insert_rows("S", [{"K": "c", "V": 3}])
        assert engine.wait_idle(30)
        assert sum(engine.store.end_offsets("T").values()) == expected
    finally:
        engine.close()
