"""Session-windowed streams keyed in a Schema Registry format are re-keyed before their join, as
ksqlDB plans them (``streamSelectKeyV2`` over ``windowedStreamSourceV1``): each side goes
through its ``Join-left``/``Join-right`` repartition topic with its window, and only records of
the same key and the same window join."""

from __future__ import annotations

from typing import Any

from ksqlpy.testing.qtt import build_case
from ksqlpy.testing.runner import run_case

APP = "_confluent-ksql-some.ksql.service.idquery_CSAS_OUTPUT_0"


def _record(topic: str, key: int, v: int, start: int, end: int) -> dict[str, Any]:
    window = {"start": start, "end": end, "type": "session"}
    return {"topic": topic, "key": key, "value": {"V": v}, "timestamp": end, "window": window}


def test_windowed_sides_join_through_their_repartition_topics() -> None:
    node = {
        "name": "windowed repartition",
        "statements": [
            *(
                f"CREATE STREAM {name} (ID INT KEY, V BIGINT) WITH (kafka_topic='{topic}', key_format='JSON_SR', "
                "value_format='JSON', WINDOW_TYPE='SESSION');"
                for name, topic in (("S1", "left"), ("S2", "right"))
            ),
            "CREATE STREAM OUTPUT AS SELECT S1.ID, S1.V, S2.V FROM S1 JOIN S2 WITHIN 1 MINUTE ON S1.ID = S2.ID;",
        ],
        "inputs": [
            _record("left", 1, 10, 100, 500),
            _record("right", 1, 20, 100, 400),  # another window: no match
            _record("right", 1, 30, 100, 500),
            _record("right", 2, 40, 100, 500),  # another key: no match
        ],
        "outputs": [
            {"topic": "OUTPUT", "key": 1, "value": {"S1_V": 10, "S2_V": 30}, "timestamp": 500,
             "window": {"start": 100, "end": 500, "type": "session"}},
        ],
        "post": {"topics": {"topics": [
            {"name": f"{APP}-Join-left-repartition"},
            {"name": f"{APP}-Join-right-repartition"},
        ]}},
    }
    result = run_case(build_case(node, suite="s", file_name="f.json", fmt=None, config=None))  # type: ignore[arg-type]
    assert result.status == "passed", result.error
