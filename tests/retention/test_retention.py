"""WINDOW ... RETENTION on materialized windowed tables: expiry by observed stream time, the
default retention, restarts, and Kafka Streams' too-small-retention error."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

import pyarrow as pa
import pytest

from ksqlpy.errors import KsqlpyError, PlanError
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.materialize import observed_stream_time, stream_time_ref

VIEWS = "CREATE STREAM views (page VARCHAR KEY, ms INT) WITH (kafka_topic='views', value_format='JSON', partitions={p});"


def ctas(window: str, name: str = "per_page") -> str:
    return f"CREATE TABLE {name} AS SELECT page, COUNT(*) AS n FROM views WINDOW {window} GROUP BY page;"


def setup(engine: Engine, window: str, partitions: int = 1) -> None:
    session = engine.session()
    session.execute_all(VIEWS.format(p=partitions))
    session.execute_all(ctas(window))


def view(engine: Engine, *events: tuple[str, int]) -> None:
    """One INSERT per (page, timestamp): each record advances stream time on its own."""
    session = engine.session()
    for page, ts in events:
        session.execute_all(f"INSERT INTO views (ROWTIME, page, ms) VALUES ({ts}, '{page}', 1);")


def pull(engine: Engine, text: str = "SELECT page, WINDOWSTART, WINDOWEND FROM per_page;") -> set[tuple[object, ...]]:
    query = engine.session().execute_query(text)
    try:
        rows = {tuple(r.values) for r in query}
        assert query.error is None
        return rows
    finally:
        query.close()


def stream_times(engine: Engine, name: str = "PER_PAGE") -> dict[int, int]:
    cursor = engine.store.state_cursor()
    try:
        return observed_stream_time(cursor, name)
    finally:
        cursor.close()


def tumbling_windows(events: list[tuple[str, int]], size: int) -> set[tuple[str, int, int]]:
    return {(page, ts // size * size, ts // size * size + size) for page, ts in events}


def alive(windows: set[tuple[str, int, int]], observed: int, retention: int, *, bound: int = 1) -> set[tuple[str, int, int]]:
    """Kafka Streams' fetch bound: a window stays while its segment timestamp (``bound``: 1 =
    start, 2 = end) is greater than observed stream time - retention."""
    return {w for w in windows if w[bound] > observed - retention}


def test_tumbling_windows_expire_as_stream_time_advances(engine: Engine) -> None:
    size, retention = 10_000, 30_000
    setup(engine, "TUMBLING (SIZE 10 SECONDS, RETENTION 30 SECONDS, GRACE PERIOD 0 SECONDS)")
    events = [("a", 1_000), ("b", 5_000), ("a", 12_000), ("b", 25_000)]
    view(engine, *events)
    everything = tumbling_windows(events, size)
    assert pull(engine) == everything  # stream time 20000: nothing is older than 30 s yet
    assert stream_times(engine) == {0: 20_000}
    # stream time 30000: windows starting at 0 are exactly one retention old, and gone
    events.append(("a", 33_000))
    view(engine, events[-1])
    assert pull(engine) == alive(tumbling_windows(events, size), 30_000, retention)
    assert not {w for w in pull(engine) if w[1] == 0}
    # stream time 50000: only windows starting after 20000 stay
    events.append(("c", 52_000))
    view(engine, events[-1])
    expected = alive(tumbling_windows(events, size), 50_000, retention)
    assert pull(engine) == expected and len(expected) < len(tumbling_windows(events, size))
    assert stream_times(engine) == {0: 50_000}
    # key lookups see the same: expired windows are deleted, not hidden from scans only
    assert pull(engine, "SELECT WINDOWSTART FROM per_page WHERE page = 'a';") == {
        (w[1],) for w in expected if w[0] == "a"
    }
