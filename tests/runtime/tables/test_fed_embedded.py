"""A windowed aggregation's table on the embedded store is fed by the query writing it: the rows
and the table's read position commit in the query's transaction, and the sink topic is not read
back into the state (see "Fed partitions" in ``ksqlpy.runtime.materialize``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from ksqlpy.runtime.engine import Engine

VIEWS = (
    "CREATE STREAM views (page VARCHAR KEY, ms INT) "
    "WITH (kafka_topic='views', value_format='JSON', partitions=1);"
)
CTAS = (
    "CREATE TABLE per_page AS SELECT page, COUNT(*) AS n, SUM(ms) AS total "
    "FROM views WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY page;"
)
Events = list[tuple[str, int, int]]  # (page, timestamp, ms)


def events(first: int, count: int) -> Events:
    """``count`` events over five pages, one every 97 ms from ``first`` (several windows)."""
    return [(f"p{i % 5}", first + 97 * i, i % 13) for i in range(count)]


def produce(engine: Engine, batch: Events) -> None:
    engine.store.produce(
        "views",
        pa.table(
            {
                "timestamp": pa.array([ts for _, ts, _ in batch], pa.int64()),
                "key": pa.array([page.encode() for page, _, _ in batch], pa.binary()),
                "value": pa.array([json.dumps({"ms": ms}).encode() for _, _, ms in batch], pa.binary()),
            }
        ),
    )


def expected(batch: Events) -> dict[tuple[str, int], tuple[int, int]]:
    """(page, window start) -> (count, sum), as the aggregation computes it."""
    out: dict[tuple[str, int], tuple[int, int]] = {}
    for page, ts, ms in batch:
        key = (page, ts // 10_000 * 10_000)
        n, total = out.get(key, (0, 0))
        out[key] = (n + 1, total + ms)
    return out


def state(engine: Engine) -> dict[tuple[str, int], tuple[int, int]]:
    assert engine.wait_idle()
    cursor = engine.store.state_cursor()
    try:
        rows = cursor.execute('SELECT PAGE, WINDOWSTART, WINDOWEND, N, TOTAL FROM mat."PER_PAGE"').fetchall()
    finally:
        cursor.close()
    assert all(end == start + 10_000 for _, start, end, _, _ in rows)
    return {(page, start): (n, total) for page, start, _, n, total in rows}


def pulled(engine: Engine) -> dict[tuple[str, int], tuple[int, int]]:
    query = engine.session().execute_query("SELECT page, WINDOWSTART, n, total FROM per_page;")
    try:
        rows = [tuple(r.values) for r in query]
        assert query.error is None
    finally:
        query.close()
    return {(str(page), int(start)): (int(n), int(total)) for page, start, n, total in rows}


def sink_position(engine: Engine) -> tuple[dict[int, int], dict[int, int]]:
    """The table's committed read position of its topic, and the topic's end."""
    m = engine.materializers["PER_PAGE"]
    topic = m.source.topic
    return engine.store.committed(m.group, topic), engine.store.end_offsets(topic)


def test_the_query_feeds_the_table_and_commits_its_position(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(VIEWS)
    session.execute_all(CTAS)
    batch = events(0, 600)
    produce(engine, batch[:300])
    produce(engine, batch[300:])
    assert state(engine) == expected(batch)
    assert pulled(engine) == expected(batch)
    m = engine.materializers["PER_PAGE"]
    assert m.fed() == frozenset({0})
    committed, end = sink_position(engine)
    assert end[0] > 0 and committed == end


def test_fed_rows_of_one_window_twice_in_a_batch_keep_the_last(engine: Engine) -> None:
    """Fed rows whose keys and windows are distinct (an aggregation's batch) go in as they are;
    a batch naming one key and window twice still leaves its last row alone in the table."""
    session = engine.session()
    session.execute_all(VIEWS)
    session.execute_all(CTAS)
    produce(engine, events(0, 10))
    assert state(engine) == expected(events(0, 10))
    m = engine.materializers["PER_PAGE"]
    layout = m.layout

    def rows(values: list[tuple[str, int, int, int]]) -> pa.Table:
        columns: dict[str, list[object]] = {name: [] for name in (*layout.column_names, "__tomb")}
        for page, start, n, total in values:
            row = {
                "PAGE": page,
                "WINDOWSTART": start,
                "WINDOWEND": start + 10_000,
                "N": n,
                "TOTAL": total,
                "ROWTIME": start,
                "__PARTITION": 0,
                "__KEY": page.encode(),
                "__tomb": False,
            }
            for name, value in row.items():
                columns[name].append(value)
        return pa.table(columns)

    with engine.store.transaction() as tx:
        m.feed(tx.state, rows([("p0", 0, 100, 1), ("p1", 0, 200, 2), ("p0", 10_000, 300, 3)]))
    with engine.store.transaction() as tx:
        m.feed(tx.state, rows([("p2", 0, 7, 7), ("p2", 0, 8, 8), ("p3", 0, 9, 9), ("p2", 0, 400, 4)]))
    got = state(engine)
    assert got[("p0", 0)] == (100, 1) and got[("p1", 0)] == (200, 2) and got[("p0", 10_000)] == (300, 3)
    assert got[("p2", 0)] == (400, 4) and got[("p3", 0)] == (9, 9)


def test_a_restart_reads_on_from_the_position_the_query_committed(opener: Callable[[], Engine]) -> None:
    first, second = events(0, 400), events(400 * 97, 300)
    engine = opener()
    try:
        session = engine.session()
        session.execute_all(VIEWS)
        session.execute_all(CTAS)
        produce(engine, first)
        assert state(engine) == expected(first)
    finally:
        engine.close()
    engine = opener()
    try:
        assert state(engine) == expected(first)
        committed, before = sink_position(engine)
        assert committed == before
        produce(engine, second)
        assert state(engine) == expected(first + second)
        assert pulled(engine) == expected(first + second)
        committed, end = sink_position(engine)
        assert committed == end
        # The first run's records are not read again; of this run's, at most those written
        # before the query handed the table over (it may start before the materializer does).
        assert engine.materializers["PER_PAGE"].records_in <= end[0] - before[0]
    finally:
        engine.close()


def test_a_terminated_query_hands_the_table_back(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(VIEWS)
    session.execute_all(CTAS)
    batch = events(0, 300)
    produce(engine, batch)
    assert state(engine) == expected(batch)
    m = engine.materializers["PER_PAGE"]
    assert m.fed() == frozenset({0})
    read = m.records_in  # (the query may have written a batch before the hand-over)
    query_id = next(iter(engine.queries))
    session.execute_all(f"TERMINATE {query_id};")
    assert engine.wait_idle()
    assert m.fed() == frozenset()
    # read on from the position the query committed: nothing of the topic is read again
    assert m.caught_up()
    assert m.records_in == read
    committed, end = sink_position(engine)
    assert committed == end
    assert state(engine) == expected(batch)
    assert pulled(engine) == expected(batch)


CHILD = textwrap.dedent(
    f"""
    import json, sys
    import pyarrow as pa
    from ksqlpy.runtime.engine import Engine

    engine = Engine.open({{"ksql.streams.state.dir": sys.argv[1], "ksql.streams.auto.offset.reset": "earliest"}})
    session = engine.session()
    session.execute_all({VIEWS!r})
    session.execute_all({CTAS!r})
    for b in range(200):
        engine.store.produce("views", pa.table({{
            "timestamp": pa.array([97 * (b * 500 + i) for i in range(500)], pa.int64()),
            "key": pa.array([f"p{{(b * 500 + i) % 5}}".encode() for i in range(500)], pa.binary()),
            "value": pa.array([json.dumps({{"ms": (b * 500 + i) % 13}}).encode() for i in range(500)], pa.binary()),
        }}))
        print(b, engine.store.committed(next(iter(engine.queries.values())).group, "views").get(0, 0), flush=True)
    """
)


def test_a_kill_9_leaves_rows_and_position_together(tmp_path: Path) -> None:
    data = tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data)], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert child.stdout is not None
    for line in child.stdout:
        if int(line.split()[1]) >= 20_000:  # the query is well under way
            break
    child.send_signal(signal.SIGKILL)
    child.wait(30)

    engine = Engine.open({"ksql.streams.state.dir": str(data), "ksql.streams.auto.offset.reset": "earliest"})
    try:
        assert engine.wait_idle(120)
        produced = engine.store.end_offsets("views")[0]
        assert produced >= 20_000
        # every record produced before the kill counted once, whatever the query had committed
        assert state(engine) == expected(events(0, produced))
        committed, end = sink_position(engine)
        assert committed == end
    finally:
        engine.close()


# ---------------------------------------------------------------- a GROUP BY without WINDOW

TOTALS = "CREATE TABLE totals AS SELECT page, COUNT(*) AS n, SUM(ms) AS total FROM views GROUP BY page;"


def totals_of(batch: Events) -> dict[str, tuple[int, int]]:
    """page -> (count, sum), as the aggregation computes it."""
    out: dict[str, tuple[int, int]] = {}
    for page, _, ms in batch:
        n, total = out.get(page, (0, 0))
        out[page] = (n + 1, total + ms)
    return out


def totals_state(engine: Engine, table: str = "TOTALS") -> dict[str, tuple[int, int]]:
    assert engine.wait_idle()
    cursor = engine.store.state_cursor()
    try:
        rows = cursor.execute(f'SELECT PAGE, N, TOTAL FROM mat."{table}"').fetchall()
    finally:
        cursor.close()
    return {str(page): (int(n), int(total)) for page, n, total in rows}


def totals_pulled(engine: Engine, table: str = "totals") -> dict[str, tuple[int, int]]:
    """The table as a pull query reads it, at once (no wait for idleness: read-your-writes)."""
    query = engine.session().execute_query(f"SELECT page, n, total FROM {table};")
    try:
        rows = [tuple(r.values) for r in query]
        assert query.error is None
    finally:
        query.close()
    return {str(page): (int(n), int(total)) for page, n, total in rows}


def looked_up(engine: Engine, page: str) -> tuple[int, int] | None:
    query = engine.session().execute_query(f"SELECT n, total FROM totals WHERE page = '{page}';")
    try:
        rows = [tuple(r.values) for r in query]
        assert query.error is None
    finally:
        query.close()
    assert len(rows) <= 1
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


def totals_position(engine: Engine) -> tuple[dict[int, int], dict[int, int]]:
    m = engine.materializers["TOTALS"]
    topic = m.source.topic
    return engine.store.committed(m.group, topic), engine.store.end_offsets(topic)


def test_a_table_without_window_is_fed_too(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(VIEWS)
    session.execute_all(TOTALS)
    batch = events(0, 600)
    produce(engine, batch[:300])
    produce(engine, batch[300:])
    assert totals_state(engine) == totals_of(batch)
    m = engine.materializers["TOTALS"]
    assert m.fed() == frozenset({0})
    read = m.records_in  # (the query may have written a batch before the hand-over)
    more = events(600 * 97, 400)
    produce(engine, more)
    # read-your-writes without waiting for idleness: the lookups see every event produced
    assert looked_up(engine, "p3") == totals_of(batch + more)["p3"]
    assert totals_pulled(engine) == totals_of(batch + more)
    assert totals_state(engine) == totals_of(batch + more)
    assert m.records_in == read  # the fed records were not read back from the topic
    committed, end = totals_position(engine)
    assert end[0] > 0 and committed == end


def test_insert_values_into_a_fed_table_stops_the_feeding_until_read(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(VIEWS)
    session.execute_all(TOTALS)
    first, second = events(0, 300), events(300 * 97, 200)
    third, fourth = events(500 * 97, 200), events(700 * 97, 210)
    produce(engine, first)
    assert totals_state(engine) == totals_of(first)
    m = engine.materializers["TOTALS"]
    assert m.fed() == frozenset({0})
    # another writer of the table's topic: the next pull query reads its row, without waiting
    session.execute_all("INSERT INTO totals (page, n, total) VALUES ('zz', 7, 8);")
    assert looked_up(engine, "zz") == (7, 8)
    assert totals_pulled(engine) == {**totals_of(first), "zz": (7, 8)}
    # the query's next batch hands the table over again, once the materializer has read it
    for b in range(2):
        produce(engine, second[b * 100 : (b + 1) * 100])
        assert engine.wait_idle()
    assert m.fed() == frozenset({0})
    # a write, then the query's next batch at once, then lookups
    session.execute_all("INSERT INTO totals (page, n, total) VALUES ('zy', 5, 6);")
    produce(engine, third)
    assert looked_up(engine, "zy") == (5, 6)
    assert looked_up(engine, "p2") == totals_of(first + second + third)["p2"]
    rows = {**totals_of(first + second + third), "zz": (7, 8), "zy": (5, 6)}
    assert totals_pulled(engine) == rows
    assert totals_state(engine) == rows
    for b in range(3):
        produce(engine, fourth[b * 70 : (b + 1) * 70])
        assert engine.wait_idle()
    rows = {**totals_of(first + second + third + fourth), "zz": (7, 8), "zy": (5, 6)}
    assert totals_state(engine) == rows
    assert totals_pulled(engine) == rows
    assert m.fed() == frozenset({0})
    committed, end = totals_position(engine)
    assert committed == end


def test_having_turning_false_deletes_a_fed_row(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(VIEWS)
    session.execute_all(
        "CREATE TABLE rare AS SELECT page, COUNT(*) AS n, SUM(ms) AS total FROM views GROUP BY page "
        "HAVING COUNT(*) < 4;"
    )
    produce(engine, [("a", 1, 1), ("b", 2, 2), ("a", 3, 3)])
    assert totals_state(engine, "RARE") == {"a": (2, 4), "b": (1, 2)}
    m = engine.materializers["RARE"]
    produce(engine, [("c", 4, 5)])  # a batch after the hand-over
    assert totals_state(engine, "RARE") == {"a": (2, 4), "b": (1, 2), "c": (1, 5)}
    assert m.fed() == frozenset({0})
    read = m.records_in
    produce(engine, [("a", 5, 1), ("a", 6, 1), ("b", 7, 1)])
    assert totals_pulled(engine, "rare") == {"b": (2, 3), "c": (1, 5)}
    assert totals_state(engine, "RARE") == {"b": (2, 3), "c": (1, 5)}
    produce(engine, [("d", 8, 1), ("e", 9, 2), ("c", 10, 3)])  # one row per key
    assert totals_pulled(engine, "rare") == {"b": (2, 3), "c": (2, 8), "d": (1, 1), "e": (1, 2)}
    assert m.records_in == read
