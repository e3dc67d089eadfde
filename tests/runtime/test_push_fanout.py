"""Push queries over one stream share its reads (``runtime.fanout``): each still gets every row
of its own plan, in order, from its own start position, whether its client keeps up or not."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.query import PushQuery

EARLIEST = {"auto.offset.reset": "earliest"}
CREATE = (
    "CREATE STREAM nums (k VARCHAR KEY, n INT) WITH (kafka_topic='nums', value_format='JSON', partitions=1);"
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open({"ksql.streams.state.dir": str(tmp_path / "data")}) as e:
        yield e


def produce(engine: Engine, first: int, n: int) -> None:
    values = [json.dumps({"N": i}).encode() for i in range(first, first + n)]
    engine.store.produce(
        "nums",
        pa.table(
            {
                "timestamp": pa.array(range(first, first + n), pa.int64()),
                "key": pa.array([b"k"] * n, pa.binary()),
                "value": pa.array(values, pa.binary()),
            }
        ),
    )


def collect(query: Any, until: Callable[[list[Any]], bool], rows: list[Any] | None = None) -> list[Any]:
    got = [] if rows is None else rows
    deadline = time.monotonic() + 30
    while not until(got):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up with {len(got)} rows")
        got.extend(row.values for row in query.drain())
        time.sleep(0.01)
    return got


def test_queries_from_different_positions_and_plans_each_get_their_rows_in_order(engine: Engine) -> None:
    s = engine.session(EARLIEST)
    s.execute_all(CREATE)
    early = s.execute_query("SELECT n FROM nums EMIT CHANGES;")
    produce(engine, 0, 50)
    late = s.execute_query("SELECT n FROM nums EMIT CHANGES;")
    latest = engine.session().execute_query("SELECT n FROM nums EMIT CHANGES;")
    odd = s.execute_query("SELECT n * 10 AS t FROM nums WHERE n % 2 = 1 EMIT CHANGES;")
    try:
        # One hub reads the stream for all four (two plans).
        hubs = {q._runner._hub for q in (early, late, latest, odd)}
        assert len(hubs) == 1 and None not in hubs
        for first in range(50, 200, 30):
            produce(engine, first, 30)
        assert collect(early, lambda g: len(g) >= 200) == [(i,) for i in range(200)]
        assert collect(late, lambda g: len(g) >= 200) == [(i,) for i in range(200)]
        assert collect(latest, lambda g: len(g) >= 150) == [(i,) for i in range(50, 200)]
        assert collect(odd, lambda g: len(g) >= 100) == [(i * 10,) for i in range(1, 200, 2)]
    finally:
        for q in (early, late, latest, odd):
            q.close()


def test_a_client_behind_loses_nothing_and_holds_no_other_query_up(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PushQuery, "max_buffered", 5)
    s = engine.session(EARLIEST)
    s.execute_all(CREATE)
    slow = s.execute_query("SELECT n FROM nums EMIT CHANGES;")
    fast = s.execute_query("SELECT n FROM nums EMIT CHANGES;")
    try:
        got: list[Any] = []
        for first in range(0, 100, 10):
            produce(engine, first, 10)
            collect(fast, lambda g, n=first + 10: len(g) >= n, got)
        assert got == [(i,) for i in range(100)]
        # The slow client read nothing yet: it holds at most a bound's worth of rows and a batch.
        assert 0 < slow.records_read < 100
        assert collect(slow, lambda g: len(g) >= 100) == [(i,) for i in range(100)]
    finally:
        slow.close()
        fast.close()


def test_limit_ends_a_shared_query_and_the_others_go_on(engine: Engine) -> None:
    s = engine.session(EARLIEST)
    s.execute_all(CREATE)
    limited = s.execute_query("SELECT n FROM nums EMIT CHANGES LIMIT 3;")
    endless = s.execute_query("SELECT n FROM nums EMIT CHANGES;")
    try:
        produce(engine, 0, 10)
        assert collect(limited, lambda g: limited.done) == [(0,), (1,), (2,)]
        assert limited.end_reason == "LIMIT"
        produce(engine, 10, 10)
        assert collect(endless, lambda g: len(g) >= 20) == [(i,) for i in range(20)]
    finally:
        limited.close()
        endless.close()


def test_queries_over_a_stream_of_several_partitions_share_its_reads(engine: Engine) -> None:
    s = engine.session(EARLIEST)
    s.execute_all(
        "CREATE STREAM parts (k VARCHAR KEY, n INT) WITH (kafka_topic='parts', value_format='JSON', partitions=4);"
    )
    queries = [s.execute_query("SELECT k, n FROM parts EMIT CHANGES;") for _ in range(3)]
    try:
        for first in range(0, 120, 40):
            s.execute_all(
                "".join(
                    f"INSERT INTO parts (k, n) VALUES ('k{i % 5}', {i});" for i in range(first, first + 40)
                )
            )
        for q in queries:
            got = collect(q, lambda g: len(g) >= 120)
            assert sorted(n for _, n in got) == list(range(120))
            for key in range(5):  # a key's rows are in one partition: in order
                assert [n for k, n in got if k == f"k{key}"] == list(range(key, 120, 5))
    finally:
        for q in queries:
            q.close()


def test_the_last_query_of_a_plan_leaving_leaves_the_other_plans_running(engine: Engine) -> None:
    s = engine.session(EARLIEST)
    s.execute_all(CREATE)
    leaving = s.execute_query("SELECT n FROM nums EMIT CHANGES;")
    staying = s.execute_query("SELECT n * 2 AS d FROM nums EMIT CHANGES;")
    try:
        produce(engine, 0, 10)
        assert collect(leaving, lambda g: len(g) >= 10) == [(i,) for i in range(10)]
        leaving.close()
        for first in range(10, 50, 10):
            produce(engine, first, 10)
        assert collect(staying, lambda g: len(g) >= 50) == [(i * 2,) for i in range(50)]
        assert staying.error is None
    finally:
        staying.close()


WIDE = (
    "CREATE STREAM wide (k VARCHAR KEY, `low` INT, d DECIMAL(4,2), ts TIMESTAMP, st STRUCT<A INT>, "
    "arr ARRAY<STRING>, b BYTES) WITH (kafka_topic='wide', value_format='JSON', partitions=1);"
)
WIDE_VALUES = [
    (b"a", {"low": 1, "D": 1.25, "TS": 1700000000123, "ST": {"A": 7}, "ARR": ["x", None], "B": "AQI="}),
    (None, {"low": None, "D": None, "TS": None, "ST": None, "ARR": None, "B": None}),
    (b"c", {"low": -3, "D": 10.5, "TS": 0, "ST": {"A": None}, "ARR": [], "B": ""}),
]


@pytest.mark.parametrize(
    "sql, picks, rows",
    [
        ("SELECT * FROM wide EMIT CHANGES;", True, 3),
        ("SELECT `low`, k, ROWTIME, ROWOFFSET FROM wide EMIT CHANGES;", True, 3),
        ("SELECT st, b FROM wide EMIT CHANGES;", True, 3),
        ("SELECT k, `low` + 1 AS m FROM wide EMIT CHANGES;", False, 3),
        ("SELECT * FROM wide WHERE `low` > 0 EMIT CHANGES;", False, 1),
    ],
)
def test_queries_that_only_pick_columns_answer_in_arrow_as_duckdb_does(
    engine: Engine, sql: str, picks: bool, rows: int
) -> None:
    from ksqlpy.runtime.codec import SourceDecoder
    from ksqlpy.runtime.evaluate import StepEvaluator
    from ksqlpy.runtime.fanout import column_picker
    from ksqlpy.runtime.serde.registry import registry_for

    s = engine.session(EARLIEST)
    s.execute_all(WIDE)
    engine.store.produce(
        "wide",
        pa.table(
            {
                "timestamp": pa.array([5, 6, 7], pa.int64()),
                "key": pa.array([k for k, _ in WIDE_VALUES], pa.binary()),
                "value": pa.array([json.dumps(v).encode() for _, v in WIDE_VALUES], pa.binary()),
            }
        ),
    )
    query = s.execute_query(sql)
    try:
        shared = collect(query, lambda g: len(g) >= rows)  # through the hub, picked or evaluated
        push = query._runner
        step = push.plan.step
        evaluator = StepEvaluator(step, PushQuery.function_connection(), drop_unmatched=True)
        picker = column_picker(evaluator)
        assert (picker is not None) is picks
        with engine.store.open_reader(["wide"]) as reader:
            records = reader.poll(100, timeout=1)
        batch = SourceDecoder(step.source, registry_for(engine.store)).decode(records).table
        evaluated = evaluator.evaluate(batch, "test").rows
        by_duckdb = push.client_rows(evaluated)
        evaluator.con.close()
        assert [r.values for r in by_duckdb] == shared
        if picker is not None:
            picked = picker(batch)
            assert picked is not None
            assert push.client_rows(picked) == by_duckdb
            for column in ("__TS", "__NULL_KEY"):  # the record's timestamp, and whether it had a key
                assert picked.column(column).to_pylist() == evaluated.column(column).to_pylist()
    finally:
        query.close()
