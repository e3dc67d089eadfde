"""The command log: every statement that changes the metastore, in order, durably.

DDL and persistent queries are appended as JSON records to the command topic
(``_confluent-ksql-<service id>_command_topic``, as ksqlDB names it) in the same topic store the
queries use: the embedded store's DuckDB file, or Kafka. A record holds the statement, the session
properties it ran with and, as ksqlDB's command topic does, its plan (``ksqlPlanV1``: the DDL
command and the query's execution steps). On start the engine applies the stored plans as they
are — a newer ksqlpy that would plan the statement differently still runs the plan it stored — so
a restarted server has the same streams, tables, types and running queries, and each query
resumes from its committed positions. Records without a plan (TERMINATE, and logs written before
plans were stored) are replayed from their statement.

On Kafka the command topic is shared by every server of a cluster (same service id, same Kafka):
it is written in transactions and tailed continuously by :mod:`ksqlpy.runtime.commandrunner`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from ksqlpy.runtime.store.base import TopicSpec, TopicStore


def command_topic(service_id: str) -> str:
    return f"_confluent-ksql-{service_id}_command_topic"


@dataclass(frozen=True, slots=True)
class Command:
    statement: str  # variables already substituted
    properties: Mapping[str, Any] = field(default_factory=dict)
    query_id: str | None = None
    #: the statement's plan as ksqlDB's JSON (``ksqlPlanV1``), when it has one
    plan: Mapping[str, Any] | None = None

    def encode(self) -> bytes:
        obj: dict[str, Any] = {
            "statement": self.statement,
            "streamsProperties": dict(self.properties),
            "queryId": self.query_id,
        }
        if self.plan is not None:
            obj["plan"] = self.plan
        return orjson.dumps(obj)

    @classmethod
    def decode(cls, data: bytes) -> Command:
        obj = orjson.loads(data)
        return cls(obj["statement"], obj.get("streamsProperties") or {}, obj.get("queryId"), obj.get("plan"))


class CommandLog:
    def __init__(self, store: TopicStore, service_id: str) -> None:
        self.store = store
        self.topic = command_topic(service_id)
        store.create_topic(
            TopicSpec(name=self.topic, partitions=1, config={"cleanup.policy": "delete", "retention.ms": "-1"}),
            exist_ok=True,
        )

    def append(self, command: Command) -> int:
        """Append a command durably; returns its sequence number (its offset)."""
        before = self.store.end_offsets(self.topic).get(0, 0)
        batch = pa.table(
            {
                "timestamp": pa.array([0], pa.int64()),
                "key": pa.array([None], pa.binary()),
                "value": pa.array([command.encode()], pa.binary()),
            }
        )
        self.store.produce(self.topic, batch)
        return before

    def replay(self) -> Iterator[tuple[int, Command]]:
        end = self.store.end_offsets(self.topic).get(0, 0)
        if end == 0:
            return
        with self.store.open_reader([self.topic], group=None, start="earliest") as reader:
            seen = 0
            idle = 0
            while seen < end and idle < 50:
                batch = reader.poll(10_000, timeout=0.1)
                if batch.num_rows == 0:
                    idle += 1
                    continue
                offsets = batch.column("offset").to_pylist()
                for off, value in zip(offsets, batch.column("value").to_pylist()):
                    if value is not None:
                        yield off, Command.decode(value)
                seen = offsets[-1] + 1
