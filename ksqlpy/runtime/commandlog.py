"""The command log: every statement that changes the metastore, in order, durably.

DDL and persistent queries are appended as JSON records to the command topic
(``_confluent-ksql-<service id>_command_topic``, as ksqlDB names it) in the same topic store the
queries use: the embedded store's DuckDB file, or Kafka. A record holds the statement, the session
properties it ran with and, as ksqlDB's command topic does, its plan (``ksqlPlanV1``: the DDL
command and the query's execution steps). On start the engine applies the stored plans as they
are — a newer ksqlpy that would plan the statement differently still runs the plan it stored — so
a restarted server has the same streams, tables, types and running queries, and each query
resumes from its committed positions. Records without a plan (TERMINATE, and logs written before
plans were stored) are replayed from their statement. A record also names its command
(``commandId``, ``stream/`PV`/create``, the key of ksqlDB's command topic records) and the message
its success reports (``commandMessage``), so whichever server applies it answers
``/status/<commandId>`` for it as the server that ran it does.

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
    #: ksqlDB's ``commandId`` (``stream/`PV`/create``), None in records written before it was kept
    command_id: str | None = None
    #: what the command's status says once it succeeded ("Stream created")
    message: str = ""

    def encode(self) -> bytes:
        obj: dict[str, Any] = {
            "statement": self.statement,
            "streamsProperties": dict(self.properties),
            "queryId": self.query_id,
        }
        if self.plan is not None:
            obj["plan"] = self.plan
        if self.command_id is not None:
            obj["commandId"] = self.command_id
            obj["commandMessage"] = self.message
        return orjson.dumps(obj)

    @classmethod
    def decode(cls, data: bytes) -> Command:
        obj = orjson.loads(data)
        return cls(
            obj["statement"],
            obj.get("streamsProperties") or {},
            obj.get("queryId"),
            obj.get("plan"),
            obj.get("commandId"),
            str(obj.get("commandMessage") or ""),
        )


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
