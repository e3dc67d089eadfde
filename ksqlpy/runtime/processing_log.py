"""The processing log: where records that could not be processed go, instead of stopping a query.

As in ksqlDB, entries are JSON records on the topic ``<service id>ksql_processing_log``, readable
as the stream ``KSQL_PROCESSING_LOG``. Each entry names the query (logger), the topic, partition
and offset of the record and what went wrong. Record contents never go to the server log; the
record itself is kept base64-encoded in the entry only when
``ksql.logging.processing.rows.include`` is true (ksqlDB's default is false).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass

import orjson
import pyarrow as pa

from ksqlpy.runtime.store.base import TopicSpec, TopicStore

log = logging.getLogger("ksqlpy.processing")

PROCESSING_LOG_STREAM = "KSQL_PROCESSING_LOG"

#: The stream's schema, as ksqlDB declares it (a subset of its fields; the rest are null).
PROCESSING_LOG_DDL = (
    "CREATE STREAM KSQL_PROCESSING_LOG (LOGGER STRING, LEVEL STRING, TIME BIGINT, "
    "MESSAGE STRUCT<TYPE INT, DESERIALIZATIONERROR STRUCT<TARGET STRING, ERRORMESSAGE STRING, "
    "RECORDB64 STRING, CAUSE ARRAY<STRING>, `topic` STRING>, RECORDPROCESSINGERROR STRUCT<ERRORMESSAGE "
    "STRING, RECORD STRING, CAUSE ARRAY<STRING>>, SERIALIZATIONERROR STRUCT<TARGET STRING, ERRORMESSAGE "
    "STRING, RECORD STRING, CAUSE ARRAY<STRING>, `topic` STRING>>) "
    "WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='JSON');"
)

DESERIALIZATION_ERROR = 0
RECORD_PROCESSING_ERROR = 1
SERIALIZATION_ERROR = 3


@dataclass(frozen=True, slots=True)
class ProcessingError:
    type: int
    message: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    target: str | None = None  # "key" or "value"
    record: bytes | None = None


class ProcessingLog:
    """Appends processing errors to the processing-log topic; thread-safe."""

    def __init__(self, store: TopicStore, topic: str, *, include_rows: bool = False) -> None:
        self.store = store
        self.topic = topic
        self.include_rows = include_rows
        self._lock = threading.Lock()
        self.count = 0
        #: entries written per logger (a query id), for the per-query figure in /metrics
        self.counts: dict[str, int] = {}

    def ensure_topic(self) -> None:
        self.store.create_topic(TopicSpec(name=self.topic, partitions=1), exist_ok=True)

    def write(self, logger: str, errors: list[ProcessingError]) -> None:
        if not errors:
            return
        now = int(time.time() * 1000)
        values = []
        for e in errors:
            values.append(orjson.dumps(self._entry(logger, now, e)))
            log.warning(
                "Query %s skipped a record it could not process (topic %s, partition %s, offset %s): %s",
                logger, e.topic, e.partition, e.offset, e.message,
            )
        batch = pa.table(
            {
                "timestamp": pa.array([now] * len(values), pa.int64()),
                "key": pa.array([None] * len(values), pa.binary()),
                "value": pa.array(values, pa.binary()),
            }
        )
        with self._lock:
            self.count += len(errors)
            self.counts[logger] = self.counts.get(logger, 0) + len(errors)
            try:
                self.store.produce(self.topic, batch)
            except Exception:  # the log must never take a query down
                log.exception("Could not write %d entries to the processing log", len(values))

    def _entry(self, logger: str, now: int, e: ProcessingError) -> dict[str, object]:
        record = (
            base64.b64encode(e.record).decode() if (self.include_rows and e.record is not None) else None
        )
        message: dict[str, object] = {"TYPE": e.type}
        where = f"topic {e.topic}, partition {e.partition}, offset {e.offset}"
        if e.type == DESERIALIZATION_ERROR:
            message["DESERIALIZATIONERROR"] = {
                "TARGET": e.target,
                "ERRORMESSAGE": e.message,
                "RECORDB64": record,
                "CAUSE": [where],
                "topic": e.topic,
            }
        elif e.type == SERIALIZATION_ERROR:
            message["SERIALIZATIONERROR"] = {
                "TARGET": e.target, "ERRORMESSAGE": e.message, "RECORD": None, "CAUSE": [where], "topic": e.topic,
            }
        else:
            message["RECORDPROCESSINGERROR"] = {"ERRORMESSAGE": e.message, "RECORD": None, "CAUSE": [where]}
        return {"LOGGER": logger, "LEVEL": "ERROR", "TIME": now, "MESSAGE": message}
