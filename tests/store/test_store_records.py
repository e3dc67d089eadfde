"""The shared record helpers: consumed Kafka messages to record batches."""

from __future__ import annotations

import pyarrow as pa
from confluent_kafka import Message

from ksqlpy.runtime.store import _records
from ksqlpy.runtime.store.base import RECORD_SCHEMA


def message(topic: str, partition: int, offset: int, **fields: object) -> Message:
    return Message(topic=topic, partition=partition, offset=offset, timestamp=(1, 1000 + offset), **fields)


def test_messages_of_one_partition_become_a_batch_and_a_next_offset() -> None:
    messages = [message("t", 0, 7, key=b"k", value=b"v1"), message("t", 0, 8, key=None, value=None)]
    table, ends = _records.from_messages(messages)
    assert table.schema == RECORD_SCHEMA
    assert table.to_pylist() == [
        {
            "topic": "t",
            "partition": 0,
            "offset": 7,
            "timestamp": 1007,
            "key": b"k",
            "value": b"v1",
            "headers": None,
        },
        {
            "topic": "t",
            "partition": 0,
            "offset": 8,
            "timestamp": 1008,
            "key": None,
            "value": None,
            "headers": None,
        },
    ]
    assert ends == {("t", 0): 9}


def test_the_known_topic_and_partition_of_a_batch_are_not_asked_of_each_message() -> None:
    messages = [message("t", 2, 7, key=b"k", value=b"v1"), message("t", 2, 8, value=b"v2")]
    asked = _records.from_messages(messages)
    told = _records.from_messages(messages, topic="t", partition=2)
    assert told == asked
    assert told[1] == {("t", 2): 9}
    assert told[0].column("partition").to_pylist() == [2, 2]


def test_messages_of_several_topics_and_partitions_keep_their_headers() -> None:
    messages = [
        message("a", 1, 3, value=b"x", headers=[("h", b"1"), ("h", None)]),
        message("b", 0, 10, value=b"y"),
        message("a", 1, 4, value=b"z", headers=[]),
        message("a", 0, 0, value=b"w"),
    ]
    table, ends = _records.from_messages(messages)
    assert table.column("topic").to_pylist() == ["a", "b", "a", "a"]
    assert table.column("partition").to_pylist() == [1, 0, 1, 0]
    assert table.column("headers").to_pylist() == [
        [{"key": "h", "value": b"1"}, {"key": "h", "value": None}],
        None,
        [],
        None,
    ]
    assert ends == {("a", 1): 5, ("b", 0): 11, ("a", 0): 1}


def test_no_messages_is_an_empty_batch() -> None:
    table, ends = _records.from_messages([])
    assert table.num_rows == 0 and table.schema == RECORD_SCHEMA and ends == {}


def test_constant_strings_matches_a_built_array() -> None:
    for value, n in (("topic-1", 3), ("", 2), ("x", 0)):
        assert _records.constant_strings(value, n).equals(pa.array([value] * n, pa.string()))
