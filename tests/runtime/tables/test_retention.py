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


def pull(
    engine: Engine, text: str = "SELECT page, WINDOWSTART, WINDOWEND FROM per_page;"
) -> set[tuple[object, ...]]:
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


def alive(
    windows: set[tuple[str, int, int]], observed: int, retention: int, *, bound: int = 1
) -> set[tuple[str, int, int]]:
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


def test_hopping_windows_expire_by_their_start(engine: Engine) -> None:
    size, advance, retention = 10_000, 5_000, 20_000
    setup(
        engine,
        "HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS, RETENTION 20 SECONDS, GRACE PERIOD 0 SECONDS)",
    )

    def windows(events: list[tuple[str, int]]) -> set[tuple[str, int, int]]:
        return {
            (page, start, start + size)
            for page, ts in events
            for start in range(ts // advance * advance - size + advance, ts + 1, advance)
            if start >= 0
        }

    events = [("a", 12_000), ("b", 14_000)]
    view(engine, *events)
    assert pull(engine) == windows(events)  # windows [5000, 15000) and [10000, 20000)
    events.append(("a", 27_000))
    view(engine, events[-1])
    observed = max(w[1] for w in windows(events))
    expected = alive(windows(events), observed, retention)
    assert pull(engine) == expected
    assert stream_times(engine) == {0: observed}
    assert ("b", 5_000, 15_000) not in expected and ("b", 10_000, 20_000) in expected


def test_session_windows_expire_by_their_end(engine: Engine) -> None:
    retention = 20_000
    setup(engine, "SESSION (5 SECONDS, RETENTION 20 SECONDS, GRACE PERIOD 0 SECONDS)")
    view(engine, ("a", 0), ("a", 3_000), ("b", 10_000))
    sessions = {("a", 0, 3_000), ("b", 10_000, 10_000)}
    assert pull(engine) == sessions
    assert stream_times(engine) == {0: 10_000}  # a session store's time is the latest session end
    view(engine, ("c", 23_500))
    # stream time 23500: session a ended at 3000 (not > 3500) and is gone; b ended at 10000
    expected = alive(sessions | {("c", 23_500, 23_500)}, 23_500, retention, bound=2)
    assert expected == {("b", 10_000, 10_000), ("c", 23_500, 23_500)}
    assert pull(engine) == expected


def test_default_retention_is_size_plus_grace(engine: Engine) -> None:
    setup(engine, "TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 5 SECONDS)")
    window = engine.catalog.source("PER_PAGE").window
    assert window is not None and window.retention_ms == 15_000
    view(engine, ("a", 1_000), ("a", 14_000))
    assert pull(engine) == {("a", 0, 10_000), ("a", 10_000, 20_000)}  # 0 > 10000 - 15000
    view(engine, ("b", 25_000))
    assert pull(engine) == {("a", 10_000, 20_000), ("b", 20_000, 30_000)}  # 0 is not > 20000 - 15000
    desc = engine.session().execute_all("DESCRIBE per_page EXTENDED;")[0]
    assert "windows retained 15000 ms" in desc.statistics


def test_default_grace_gives_a_day_of_windows(engine: Engine) -> None:
    """Without GRACE PERIOD the grace is 24 hours less the size, so windows live for a day."""
    hour, day = 3_600_000, 86_400_000
    setup(engine, "TUMBLING (SIZE 1 HOUR)")
    window = engine.catalog.source("PER_PAGE").window
    assert window is not None and window.retention_ms == day
    view(engine, ("a", 0), ("b", 2 * hour), ("c", day))
    assert pull(engine) == {("b", 2 * hour, 3 * hour), ("c", day, day + hour)}  # 0 is not > day - day
    view(engine, ("d", day + 2 * hour))
    assert pull(engine) == {("c", day, day + hour), ("d", day + 2 * hour, day + 3 * hour)}


def test_stream_time_is_per_partition(engine: Engine) -> None:
    """Each partition's window store has its own observed stream time, as Kafka Streams' tasks do."""
    setup(engine, "TUMBLING (SIZE 10 SECONDS, RETENTION 30 SECONDS, GRACE PERIOD 0 SECONDS)", partitions=2)
    pages = [f"p{i}" for i in range(8)]
    view(engine, *((p, 1_000) for p in pages))
    assert pull(engine) == {(p, 0, 10_000) for p in pages}  # waits until the table caught up
    cursor = engine.store.state_cursor()
    try:
        placed = dict(cursor.execute('SELECT PAGE, "__PARTITION" FROM mat."PER_PAGE"').fetchall())
    finally:
        cursor.close()
    assert set(placed) == set(pages) and len(set(placed.values())) == 2
    mover = pages[0]
    view(engine, (mover, 45_000))
    moved = placed[mover]
    assert pull(engine) == {(p, 0, 10_000) for p in pages if placed[p] != moved} | {(mover, 40_000, 50_000)}
    assert stream_times(engine) == {moved: 40_000, 1 - moved: 0}


def test_restart_keeps_the_observed_stream_time(opener: Callable[[], Engine]) -> None:
    engine = opener()
    try:
        setup(engine, "TUMBLING (SIZE 10 SECONDS, RETENTION 30 SECONDS, GRACE PERIOD 0 SECONDS)")
        view(engine, ("a", 52_000))
        assert pull(engine) == {("a", 50_000, 60_000)}
        topic = engine.catalog.source("PER_PAGE").topic
    finally:
        engine.close()
    engine = opener()
    try:
        assert stream_times(engine) == {0: 50_000}
        assert pull(engine) == {("a", 50_000, 60_000)}
        assert engine.materializers["PER_PAGE"].records_in == 0  # resumed, not rebuilt
        # Records for old windows written straight to the table's topic: the one older than the
        # restored stream time allows is dropped, the other kept (from scratch, both would stay).
        engine.store.produce(
            topic,
            pa.table(
                {
                    "timestamp": pa.array([19_000, 29_000], pa.int64()),
                    "key": [b"old" + struct.pack(">q", 10_000), b"new" + struct.pack(">q", 20_001)],
                    "value": [json.dumps({"N": 1}).encode()] * 2,
                }
            ),
        )
        assert pull(engine) == {("a", 50_000, 60_000), ("new", 20_001, 30_001)}
        assert stream_times(engine) == {0: 50_000}
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            "TUMBLING (SIZE 10 SECONDS, RETENTION 5 SECONDS, GRACE PERIOD 0 SECONDS)",
            (
                "The retention period of the window store Aggregate-Aggregate-Materialize must be no smaller than its "
                "window size plus the grace period. Got size=[10000], grace=[0], retention=[5000]"
            ),
        ),
        (
            "HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS, RETENTION 1 HOUR)",
            (
                "The retention period of the window store Aggregate-Aggregate-Materialize must be no smaller than its "
                "window size plus the grace period. Got size=[10000], grace=[86390000], retention=[3600000]"
            ),
        ),
        (
            "SESSION (10 SECONDS, RETENTION 15 SECONDS, GRACE PERIOD 10 SECONDS)",
            (
                "The retention period of the session store Aggregate-Aggregate-Materialize must be no smaller than the "
                "session inactivity gap plus the grace period. Got gap=[10000], grace=[10000], retention=[15000]"
            ),
        ),
    ],
)
def test_retention_smaller_than_size_plus_grace_is_rejected(
    engine: Engine, window: str, message: str
) -> None:
    session = engine.session()
    session.execute_all(VIEWS.format(p=1))
    with pytest.raises(PlanError) as info:
        session.execute_all(ctas(window))
    assert message in str(info.value)
    assert engine.catalog.find("PER_PAGE") is None
    with pytest.raises(KsqlpyError, match="must be no smaller than"):
        session.execute_query(f"SELECT page, COUNT(*) FROM views WINDOW {window} GROUP BY page EMIT CHANGES;")


def test_retention_equal_to_size_plus_grace_is_accepted(engine: Engine) -> None:
    setup(engine, "TUMBLING (SIZE 10 SECONDS, RETENTION 12 SECONDS, GRACE PERIOD 2 SECONDS)")
    window = engine.catalog.source("PER_PAGE").window
    assert window is not None and window.retention_ms == 12_000


def test_drop_removes_the_stream_time(engine: Engine) -> None:
    setup(engine, "TUMBLING (SIZE 10 SECONDS, RETENTION 30 SECONDS, GRACE PERIOD 0 SECONDS)")
    view(engine, ("a", 1_000))
    assert pull(engine) == {("a", 0, 10_000)}
    assert stream_times(engine) == {0: 0}
    session = engine.session()
    (query_id,) = (
        q
        for q, run in engine.queries.items()
        if run.plan.sink is not None and run.plan.sink.name == "PER_PAGE"
    )
    session.execute_all(f"TERMINATE {query_id};")
    session.execute_all("DROP TABLE per_page;")
    cursor = engine.store.state_cursor()
    try:
        tables = {
            r[0]
            for r in cursor.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'mat'"
            ).fetchall()
        }
    finally:
        cursor.close()
    assert stream_time_ref("PER_PAGE") == 'mat."PER_PAGE_stream_time"'
    assert "PER_PAGE" not in tables and "PER_PAGE_stream_time" not in tables


def test_windowed_source_table_keeps_every_window(engine: Engine) -> None:
    """A table declared over a windowed topic has no RETENTION clause: nothing expires."""
    engine.session().execute_all(
        "CREATE TABLE counts (page VARCHAR PRIMARY KEY, n BIGINT) "
        "WITH (kafka_topic='counts', value_format='JSON', partitions=1, window_type='TUMBLING', window_size='10 SECONDS');"
    )
    window = engine.catalog.source("COUNTS").window
    assert window is not None and window.retention_ms is None
    starts = [0, 10 * 86_400_000, 20 * 86_400_000]
    engine.store.produce(
        "counts",
        pa.table(
            {
                "timestamp": pa.array(starts, pa.int64()),
                "key": [b"a" + struct.pack(">q", s) for s in starts],
                "value": [json.dumps({"N": 1}).encode()] * len(starts),
            }
        ),
    )
    assert engine.materializers["COUNTS"].wait_for(engine.store.end_offsets("counts"), timeout=30)
    cursor = engine.store.state_cursor()
    try:
        rows = set(cursor.execute('SELECT PAGE, WINDOWSTART FROM mat."COUNTS"').fetchall())
    finally:
        cursor.close()
    assert rows == {("a", s) for s in starts}
    assert stream_times(engine, "COUNTS") == {}
