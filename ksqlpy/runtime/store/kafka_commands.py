"""The command topic on Kafka: a read-committed tail and a transactional writer.

ksqlDB's servers share one command topic (one partition). Each reads it with
``isolation.level=read_committed`` from the beginning and applies every command in order; a
server writes with a transactional producer whose ``transactional.id`` is the service id, so a
new writer fences an older one of any server of the cluster (ksqlDB's ``CommandStore`` and
``DistributingExecutor``). Only committed commands are ever read.

Where the tail stands is the offset after the last record read or the end-of-partition offset
the broker last reported, whichever is greater: transaction markers take offsets but are never
delivered, and the test broker reports the high watermark one batch low
(/work/shared/KAFKA-NOTES.md), so neither alone says "caught up".

Kafka hides an aborted transaction's records from read-committed consumers. The Tansu test broker
does not (its fetches list no aborted transactions): there, a command whose writer was fenced
after producing it and before committing would still be read. The window is the few
milliseconds between a writer's produce and its commit, while another server starts a write.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from ksqlpy.errors import TopicError
from ksqlpy.runtime.store.kafka import init_transactions

_TIMEOUT = 30.0
#: Longest the command topic's tail waits for a fetch (unless the settings say otherwise).
_TAIL_FETCH_WAIT_MS = "50"


class _FencingIsExpected(logging.LoggerAdapter):  # type: ignore[type-arg]
    """librdkafka's log of a command writer, with its messages about being fenced at DEBUG: a
    server's kept writer is fenced whenever another server's writer starts (see
    ``ksqlpy.runtime.commandrunner``), and the statement is tried again, which the runner logs."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        text = str(msg) % args if args else str(msg)
        super().log(logging.DEBUG if "fence" in text.lower() else level, "%s", text, **kwargs)


_WRITER_LOG = _FencingIsExpected(logging.getLogger("ksqlpy.store.kafka.client"), {})


class CommandFenced(TopicError):
    """Another writer of the same cluster began a transaction meanwhile: this one was fenced."""


def _error_of(exc: KafkaException) -> KafkaError:
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else KafkaError(KafkaError._FAIL)


#: Errors after which the statement is tried again with a new producer: fenced by another server's,
#: or a kept producer whose id the broker no longer knows (it forgets a transactional id unused for
#: ``transactional.id.expiration.ms``, 7 days by default).
_FENCED = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.INVALID_TXN_STATE,
    KafkaError.CONCURRENT_TRANSACTIONS,
    KafkaError.INVALID_PRODUCER_ID_MAPPING,
    KafkaError.UNKNOWN_PRODUCER_ID,
}


def _failure(exc: KafkaException, doing: str) -> TopicError:
    error = _error_of(exc)
    if error.code() in _FENCED or error.fatal():
        return CommandFenced(f"Could not write the statement into the command topic: {error.str()}")
    return TopicError(f"Could not write the statement into the command topic ({doing}): {error.str()}")


class KafkaCommandTail:
    """Reads the command topic's committed records in order, from the beginning."""

    def __init__(self, consumer_settings: Mapping[str, Any], topic: str) -> None:
        self.topic = topic
        settings = {
            # A statement waits for the tail twice (catching up, then reading its own command back);
            # a broker that does not answer a fetch when records arrive (the test broker) holds it
            # for fetch.wait.max.ms, librdkafka's 500 ms by default: ~0.75 s per statement, against
            # ~0.08 s at 50 ms (an idle server fetches the command topic 20 times a second).
            "fetch.wait.max.ms": _TAIL_FETCH_WAIT_MS,
            **consumer_settings,
            "group.id": f"ksqlpy-command-runner-{uuid.uuid4()}",  # never committed: each server reads all
            "isolation.level": "read_committed",
            "enable.partition.eof": "true",
            "auto.offset.reset": "earliest",
        }
        self._consumer = Consumer(settings)
        self._consumer.assign([KafkaTopicPartition(topic, 0, OFFSET_BEGINNING)])
        # end offsets come from a client that never fetches: a broker answers a connection's
        # requests in turn, so asking the tail's would wait behind its long-polling fetch
        self._ends = Consumer(settings)
        self._next = 0
        self._eof = 0

    def poll(self, timeout: float) -> list[tuple[int, bytes]]:
        """Committed commands read within ``timeout`` seconds: (offset, value) in order."""
        out: list[tuple[int, bytes]] = []
        # consume() waits out its whole timeout unless it fills the batch: wait for the first
        # record (or end-of-partition event) with poll(), then take what else is there at once
        first = self._consumer.poll(timeout)
        messages = [] if first is None else [first, *self._consumer.consume(500, 0)]
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._eof = max(self._eof, message.offset() or 0)
                    continue
                raise TopicError(f"Could not read the command topic {self.topic}: {error.str()}")
            offset = message.offset()
            value = message.value()
            assert offset is not None
            self._next = offset + 1
            if value is not None:
                out.append((offset, value))
        return out

    def end_offset(self) -> int:
        """The committed end of the command topic, as the broker reports it now."""
        try:
            _low, high = self._ends.get_watermark_offsets(
                KafkaTopicPartition(self.topic, 0), timeout=_TIMEOUT, cached=False
            )
        except KafkaException as exc:
            raise TopicError(f"Could not read the end of the command topic: {_error_of(exc).str()}") from exc
        return int(high)

    def reached(self, end: int, marker: int | None = None) -> bool:
        """Whether the tail has read up to ``end``, with a transaction marker known to be at
        offset ``marker`` (never delivered) counted as read once the tail reaches it."""
        at = max(self._next, self._eof)
        if marker is not None and at == marker:
            at += 1
        return at >= end

    def close(self) -> None:
        self._consumer.close()
        self._ends.close()


class KafkaCommandWriter:
    """The command topic's transactional producer, ``transactional.id`` = the service id: creating
    one fences every older writer of the cluster (and aborts its open transaction). It is kept
    for one transaction after another (:meth:`begin`) until it is fenced or fails."""

    def __init__(self, producer_settings: Mapping[str, Any], topic: str, transactional_id: str) -> None:
        self.topic = topic
        # The error callback keeps what it saw in a list of its own, not on the writer: a callback
        # holding the writer would close a cycle (writer -> producer -> callback -> writer) that
        # only the garbage collector breaks, and the producer, with its threads and connections,
        # would outlive its use until it ran. Without the cycle it goes with the writer.
        fatal: list[KafkaError] = []
        self._fatal_errors = fatal
        #: set when a transaction ended in a way that leaves the producer unusable
        self._failed = False

        def on_error(error: KafkaError) -> None:
            if error.fatal() or error.code() in _FENCED:
                fatal.append(error)

        settings = {
            **producer_settings,
            "transactional.id": transactional_id,
            "acks": "all",
            "error_cb": on_error,
            "logger": _WRITER_LOG,
        }
        settings.pop("partitioner", None)
        self._producer = Producer(settings)
        try:
            init_transactions(self._producer, _TIMEOUT)
        except KafkaException as exc:
            raise _failure(exc, "starting a transaction") from exc

    @property
    def usable(self) -> bool:
        """Whether another transaction can begin: not fenced, no fatal error, none failed."""
        return not self._failed and self._fatal is None

    def begin(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            self._failed = True
            raise _failure(exc, "starting a transaction") from exc

    @property
    def _fatal(self) -> KafkaError | None:
        """The fatal error this producer met (being fenced is one), as its error callback saw it."""
        return self._fatal_errors[-1] if self._fatal_errors else None

    def _fenced(self, doing: str) -> TopicError:
        """A transaction that failed other than with a Kafka error: a fenced producer's delivery
        callbacks surface as SystemError, before its error callback says why. Nothing of the
        transaction was committed, so the statement is tried again (a bounded number of times)."""
        why = self._fatal.str() if self._fatal is not None else doing
        return CommandFenced(f"Could not write the statement into the command topic: {why}")

    def append(self, value: bytes) -> int:
        """Write one command in the transaction; its offset (the command's sequence number)."""
        delivered: list[tuple[KafkaError | None, int]] = []

        def on_delivery(error: KafkaError | None, message: Any) -> None:
            delivered.append((error, -1 if error is not None else int(message.offset())))

        try:
            self._producer.produce(self.topic, value, None, partition=0, on_delivery=on_delivery)
            self._producer.flush(_TIMEOUT)
        except KafkaException as exc:
            self._failed = True
            raise _failure(exc, "producing") from exc
        except Exception as exc:  # a fenced producer's callbacks can surface as SystemError
            self._failed = True
            raise self._fenced("producing") from exc
        if not delivered:
            self._failed = True
            raise self._fenced("producing: no acknowledgement")
        error, offset = delivered[0]
        if error is not None:
            self._failed = True
            raise _failure(KafkaException(error), "producing")
        return offset

    def commit(self) -> None:
        if self._fatal is not None:
            raise self._fenced("committing")
        try:
            self._producer.commit_transaction(_TIMEOUT)
        except KafkaException as exc:
            self._failed = True  # the outcome may be unknown: a new producer settles it
            raise _failure(exc, "committing") from exc

    def abort(self) -> None:
        try:
            self._producer.abort_transaction(_TIMEOUT)
        except KafkaException:
            self._failed = True  # fenced or gone: the broker aborts it for us

    def close(self) -> None:
        self._producer.flush(1.0)
