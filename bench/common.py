"""Helpers the benchmarks share: pageview events, engines on either store, and measurements.

Pageview events are built a batch at a time with Arrow kernels, so loading millions of them
takes seconds and the load phase measures the store rather than the generator::

    {"PAGE":"/page/17","DURATION":73,"REFERRER":"https://www.example.com/search?q=stream+sql",
     "VIEWTIME":1700000000123}

(about 120 bytes), keyed by user id (``user_<n>``, KAFKA format: the bare UTF-8 text).
"""

from __future__ import annotations

import contextlib
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.runtime.engine import Engine

#: Events per produce call while loading a topic.
LOAD_BATCH = 50_000
#: Event time of the first event (epoch millis); events are 1 ms apart.
BASE_TIME = 1_700_000_000_000
REFERRER = "https://www.example.com/search?q=stream+sql"


@dataclass(frozen=True, slots=True)
class Pageviews:
    """One batch of pageview events and what a benchmark needs to know about it."""

    records: pa.Table  # PRODUCE_SCHEMA columns: timestamp, key, value
    durations: np.ndarray  # DURATION of each event, to count how many a filter keeps


def pageviews(
    start: int, n: int, *, users: int = 100_000, pages: int = 200, seed: int = 7, late: float = 0.0
) -> Pageviews:
    """Events ``start .. start + n`` (deterministic for a given ``start`` and ``seed``), 1 ms
    apart; a fraction ``late`` of them arrive up to a minute late (their time is earlier)."""
    rng = np.random.default_rng(seed + start)
    user = rng.integers(0, users, n)
    page = rng.integers(0, pages, n)
    duration = rng.integers(1, 120, n)
    viewtime = np.arange(BASE_TIME + start, BASE_TIME + start + n, dtype=np.int64)
    if late:
        viewtime -= np.where(rng.random(n) < late, rng.integers(0, 60_000, n), 0)

    value = pc.binary_join_element_wise(
        '{"PAGE":"/page/',
        as_text(page),
        '","DURATION":',
        as_text(duration),
        f',"REFERRER":"{REFERRER}","VIEWTIME":',
        as_text(viewtime),
        "}",
        "",
    )
    key = pc.binary_join_element_wise("user_", as_text(user), "")
    records = pa.table(
        {
            "timestamp": pa.array(viewtime),
            "key": key.cast(pa.binary()),
            "value": value.cast(pa.binary()),
        }
    )
    return Pageviews(records, duration)


def as_text(values: np.ndarray) -> pa.Array:
    """Numbers as their decimal text, one Arrow cast."""
    return pa.array(values).cast(pa.string())


def load_pageviews(engine: Engine, topic: str, events: int, **kwargs: Any) -> tuple[float, int]:
    """Produce ``events`` pageviews to ``topic``: (seconds taken, events with DURATION > 60)."""
    t0 = time.perf_counter()
    long_views = 0
    for start in range(0, events, LOAD_BATCH):
        batch = pageviews(start, min(LOAD_BATCH, events - start), **kwargs)
        long_views += int((batch.durations > 60).sum())
        engine.store.produce(topic, batch.records)
    return time.perf_counter() - t0, long_views


PAGEVIEWS_DDL = (
    "CREATE STREAM pageviews (user_id VARCHAR KEY, page VARCHAR, duration INT, referrer VARCHAR, "
    "viewtime BIGINT) WITH (kafka_topic='{topic}', value_format='JSON', partitions={partitions});"
)
# Record timestamps are the events' VIEWTIME already, so no TIMESTAMP property is needed.


def peak_rss_mib() -> float:
    """This process's peak resident set size so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time this process has used so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class FirstPoll:
    """Records when a store's readers first poll (the start of a query's work): wraps the
    store's ``open_reader`` on this one store instance."""

    def __init__(self, store: Any) -> None:
        self.at: float | None = None
        self._lock = threading.Lock()
        original = store.open_reader

        def open_reader(*args: Any, **kwargs: Any) -> Any:
            reader = original(*args, **kwargs)
            poll = reader.poll

            def timed_poll(*a: Any, **kw: Any) -> Any:
                with self._lock:
                    if self.at is None:
                        self.at = time.perf_counter()
                return poll(*a, **kw)

            reader.poll = timed_poll
            return reader

        store.open_reader = open_reader


def wait_for(predicate: Any, timeout: float, interval: float = 0.0005) -> float:
    """Spin until ``predicate()`` holds; the time it first held (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the benchmark did not finish in time")
        time.sleep(interval)
    return time.perf_counter()


@contextlib.contextmanager
def bench_engine(store: str, extra: dict[str, Any] | None = None) -> Iterator[Engine]:
    """An engine on a fresh embedded store (in a temporary directory) or on a fresh Tansu
    broker (``store="kafka"``), closed and cleaned up on exit."""
    with tempfile.TemporaryDirectory(prefix="ksqlpy-bench-") as tmp:
        config: dict[str, Any] = {"ksql.streams.state.dir": tmp, "ksql.streams.auto.offset.reset": "earliest"}
        config.update(extra or {})
        if store == "embedded":
            engine = Engine.open(config)
            try:
                yield engine
            finally:
                engine.close()
            return
        with _tansu() as bootstrap:
            config["bootstrap.servers"] = bootstrap
            config["ksql.service.id"] = f"bench_{int(time.time())}_"
            engine = Engine.open(config)
            try:
                yield engine
            finally:
                engine.close()


@contextlib.contextmanager
def _tansu() -> Iterator[str]:
    """A Tansu broker (memory storage) from the test helpers; its bootstrap address."""
    tests = Path(__file__).resolve().parent.parent / "tests"
    sys.path.insert(0, str(tests))
    try:
        from kafka_broker import running_broker
    finally:
        sys.path.remove(str(tests))
    with running_broker() as broker:
        yield broker.bootstrap


def kafka_client_settings() -> dict[str, str]:
    """librdkafka settings for the local broker (KAFKA-NOTES.md), as engine config keys."""
    return {
        "kafka.fetch.queue.backoff.ms": "10",
        "kafka.fetch.wait.max.ms": "50",
        "kafka.session.timeout.ms": "2000",
        "kafka.heartbeat.interval.ms": "300",
        "kafka.queued.min.messages": "200000",
    }
