"""PRINT topic: a topic's records as text lines, as ksqlDB's PRINT shows them.

``PRINT 'topic' [FROM BEGINNING] [INTERVAL n] [LIMIT n]`` streams, through the engine facade's
:class:`~ksqlpy.runtime.streaming.StreamingQuery`, one text row per line::

    Key format: KAFKA_STRING
    Value format: JSON or KAFKA_STRING
    rowtime: 2020/05/04 12:01:02.123 Z, key: k1, value: {"a":1}, partition: 0

The format lines come first, once the first records are seen: each is the list of formats the
record bytes so far could be written in (ksqlDB's ``TopicStream`` format detection), most
specific first. Every record is shown as the first format detected for it; ``<null>`` marks a
missing key or value. ``INTERVAL n`` shows one record in every ``n``; ``LIMIT n`` stops after ``n``
shown records. Without FROM BEGINNING only records written after the PRINT started are shown.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import struct
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError, KsqlpyError
from ksqlpy.parser import ast
from ksqlpy.runtime.rows import Row

log = logging.getLogger(__name__)

#: Formats PRINT tells apart, in the order ksqlDB lists them.
KAFKA_INT = "KAFKA_INT"
KAFKA_BIGINT = "KAFKA_BIGINT"
KAFKA_DOUBLE = "KAFKA_DOUBLE"
JSON = "JSON"
KAFKA_STRING = "KAFKA_STRING"
NO_DATA = "¯\\_(ツ)_/¯ - no data processed"

_CANDIDATES: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    (KAFKA_INT, lambda b: len(b) == 4),
    (KAFKA_BIGINT, lambda b: len(b) == 8),
    (KAFKA_DOUBLE, lambda b: len(b) == 8),
    (JSON, lambda b: _is_json(b)),
    (KAFKA_STRING, lambda b: _is_text(b)),
)


def _is_text(data: bytes) -> bool:
    """UTF-8 without control characters: binary numbers are not shown as strings."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c >= " " or c in "\t\r\n" for c in text)


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


class FormatGuess:
    """The formats one side (key or value) of the records seen so far could be in."""

    def __init__(self) -> None:
        self.formats: list[str] | None = None  # None: no non-null bytes seen yet

    def observe(self, data: bytes | None) -> None:
        if data is None:
            return
        fits = [name for name, test in _CANDIDATES if test(data)]
        self.formats = fits if self.formats is None else [f for f in self.formats if f in fits]

    def describe(self) -> str:
        if self.formats is None:
            return NO_DATA
        return " or ".join(self.formats) if self.formats else "UNKNOWN"

    def render(self, data: bytes | None) -> str:
        """The bytes as the most specific format that fits them."""
        if data is None:
            return "<null>"
        formats = self.formats or []
        if KAFKA_INT in formats and len(data) == 4:
            return str(struct.unpack(">i", data)[0])
        if KAFKA_BIGINT in formats and len(data) == 8:
            return str(struct.unpack(">q", data)[0])
        return data.decode("utf-8", errors="replace")


def format_rowtime(millis: int) -> str:
    """ksqlDB's ``yyyy/MM/dd HH:mm:ss.SSS Z`` in UTC."""
    when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=millis)
    return when.strftime("%Y/%m/%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} Z"


class PrintFormatter:
    """Turns record batches into PRINT's lines; keeps the format guesses between batches."""

    def __init__(self) -> None:
        self.key = FormatGuess()
        self.value = FormatGuess()
        self.header_sent = False

    def lines(self, batch: pa.Table) -> list[str]:
        keys = batch.column("key").to_pylist()
        values = batch.column("value").to_pylist()
        for k, v in zip(keys, values):
            self.key.observe(k)
            self.value.observe(v)
        out: list[str] = []
        if not self.header_sent and batch.num_rows:
            out.append(f"Key format: {self.key.describe()}")
            out.append(f"Value format: {self.value.describe()}")
            self.header_sent = True
        times = batch.column("timestamp").to_pylist()
        partitions = batch.column("partition").to_pylist()
        for ts, k, v, p in zip(times, keys, values, partitions):
            out.append(
                f"rowtime: {format_rowtime(ts)}, key: {self.key.render(k)}, "
                f"value: {self.value.render(v)}, partition: {p}"
            )
        return out


class PrintRunner:
    """Reads a topic on its own thread and buffers PRINT's lines as rows; the interface the
    engine's StreamingQuery drives (``cond``, ``buffer``, ``ended``, ``end_reason``, ``error``,
    ``listener``, ``stop``)."""

    def __init__(
        self, store: Any, topic: str, *, from_beginning: bool, interval: int | None, limit: int | None
    ) -> None:
        self.store = store
        self.topic = topic
        self.start_position = "earliest" if from_beginning else "latest"
        self.interval = max(1, interval or 1)
        self.limit = limit
        self.buffer: deque[Row] = deque()
        self.cond = threading.Condition()
        self.ended = False
        self.end_reason: str | None = None
        self.error: KsqlpyError | None = None
        self.listener: Callable[[], None] | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"print-{topic}", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)  # positions pinned: records written after PRINT returns are shown

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        formatter = PrintFormatter()
        seen = shown = 0
        try:
            with self.store.open_reader([self.topic], start=self.start_position) as reader:
                self._ready.set()
                while not self._stop.is_set():
                    batch = reader.poll(1000, timeout=0.2)
                    if batch.num_rows == 0:
                        continue
                    # INTERVAL n: the first record, then every n-th one.
                    keep = [(seen + i) % self.interval == 0 for i in range(batch.num_rows)]
                    seen += batch.num_rows
                    batch = batch.filter(pa.array(keep))
                    if self.limit is not None:
                        batch = batch.slice(0, max(0, self.limit - shown))
                    shown += batch.num_rows
                    self._push(formatter.lines(batch))
                    if self.limit is not None and shown >= self.limit:
                        self.end_reason = "LIMIT"
                        break
        except KsqlpyError as e:
            self.error = e
            self.end_reason = "ERROR"
        except Exception as e:  # reported to the client as the PRINT's error
            log.exception("PRINT %s failed", self.topic)
            self.error = KsqlpyError(str(e))
            self.end_reason = "ERROR"
        finally:
            self._ready.set()
            with self.cond:
                self.ended = True
                self.end_reason = self.end_reason or "COMPLETED"
                self.cond.notify_all()
            self._notify()

    def _push(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        with self.cond:
            self.buffer.extend(Row((line,)) for line in lines)
            self.cond.notify_all()
        self._notify()

    def _notify(self) -> None:
        callback = self.listener
        if callback is not None:
            try:
                callback()
            except Exception:  # a client's callback must not stop the PRINT
                log.debug("PRINT listener failed", exc_info=True)


def print_topic(session: Any, stmt: ast.PrintTopic) -> Any:
    """Start a PRINT: a streaming query of text rows (``is_print``) over the topic's records."""
    from ksqlpy.runtime.streaming import StreamingQuery

    engine = session.engine
    if engine.store.describe_topic(stmt.topic) is None:
        raise AnalysisError(
            f"Could not find topic '{stmt.topic}', or the KSQL user does not have permissions to list the "
            "topic. Topic names are case-sensitive.",
            pos=stmt.pos,
        )
    runner = PrintRunner(
        engine.store, stmt.topic, from_beginning=stmt.from_beginning, interval=stmt.interval, limit=stmt.limit
    )
    query_id = f"print_{stmt.topic}_{id(runner)}"
    query = StreamingQuery(
        engine, query_id, (sqltypes.Field("PRINT", sqltypes.STRING),), runner=runner, is_print=True  # type: ignore[arg-type]
    )
    runner.start()
    return query
