"""The aggregation operator on its own: the vectorized plan and the sequential reference
(the accumulators' Python methods) agree on random batches; session windows merge; a table's
source rows are kept in the partition they were read from."""

from __future__ import annotations

import dataclasses
import itertools
import random

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ksqlpy.parser import parse_statement
from ksqlpy.planner import ddl
from ksqlpy.planner.aggregate import analyze_aggregate
from ksqlpy.planner.catalog import Catalog
from ksqlpy.runtime.aggregate import SMALL_BATCH_ROWS, AggregateProcessor
from ksqlpy.runtime.codec import TOMBSTONE
from ksqlpy.runtime.query import new_connection

STREAM = "CREATE STREAM S (ID STRING KEY, V INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);"
TABLE = "CREATE TABLE T (ID STRING PRIMARY KEY, G STRING, V INT) WITH (kafka_topic='t', value_format='JSON', partitions=1);"


def processor(ddl_text: str, query: str, *, vectorized: bool, per_record: bool = True) -> AggregateProcessor:
    catalog = Catalog()
    catalog.add(ddl.source_from_create(parse_statement(ddl_text), catalog, {}))
    _, step = analyze_aggregate(parse_statement(query).query, catalog, sink_name="OUT", persistent=True)
    step = dataclasses.replace(step, per_record=per_record)
    p = AggregateProcessor(step, "Q", new_connection())
    p.vectorized = vectorized and p.vectorized
    return p


def stream_batch(rng: random.Random, n: int, t0: int) -> pa.Table:
    return pa.table(
        {
            "ID": pa.array([rng.choice("abc") for _ in range(n)]),
            "V": pa.array([rng.choice([None, *range(-5, 20)]) for _ in range(n)], pa.int32()),
            "ROWTIME": pa.array([t0 + rng.randrange(0, 5000) for _ in range(n)], pa.int64()),
            "ROWPARTITION": pa.array(np.zeros(n, dtype=np.int32)),
            "ROWOFFSET": pa.array(np.arange(n, dtype=np.int64)),
        }
    )


def table_batch(rng: random.Random, n: int, t0: int) -> pa.Table:
    tomb = [rng.random() < 0.2 for _ in range(n)]
    return pa.table(
        {
            "ID": pa.array([rng.choice("pqrs") for _ in range(n)]),
            "G": pa.array([None if t else rng.choice("xy") for t in tomb]),
            "V": pa.array([None if t else rng.randrange(0, 9) for t in tomb], pa.int32()),
            "ROWTIME": pa.array([t0 + i for i in range(n)], pa.int64()),
            "ROWPARTITION": pa.array(np.zeros(n, dtype=np.int32)),
            "ROWOFFSET": pa.array(np.arange(n, dtype=np.int64)),
            TOMBSTONE: pa.array(tomb),
        }
    )


CASES = [
    (
        STREAM,
        "SELECT ID, COUNT(*) AS C, SUM(V) AS S, MIN(V) AS MN, MAX(V) AS MX FROM S GROUP BY ID EMIT CHANGES;",
        stream_batch,
    ),
    (STREAM, "SELECT ID, SUM(V) AS S FROM S GROUP BY ID HAVING SUM(V) > 15 EMIT CHANGES;", stream_batch),
    (STREAM, "SELECT ID, COUNT(*) * 2 AS C2, AVG(V) AS A FROM S GROUP BY ID EMIT CHANGES;", stream_batch),
    (
        STREAM,
        "SELECT ID, COUNT(V) AS C FROM S WINDOW TUMBLING (SIZE 1 SECOND, GRACE PERIOD 2 SECONDS) GROUP BY ID EMIT CHANGES;",
        stream_batch,
    ),
    (
        STREAM,
        "SELECT ID, SUM(V) AS S FROM S WINDOW HOPPING (SIZE 3 SECONDS, ADVANCE BY 1 SECOND) GROUP BY ID EMIT CHANGES;",
        stream_batch,
    ),
    (TABLE, "SELECT G, COUNT(*) AS C, SUM(V) AS S FROM T GROUP BY G EMIT CHANGES;", table_batch),
    (TABLE, "SELECT G, SUM(V) AS S FROM T GROUP BY G HAVING COUNT(*) > 1 EMIT CHANGES;", table_batch),
]


#: Rows of each batch: larger batches than ``SMALL_BATCH_ROWS``, and a few rows each, which the
#: vectorized processor aggregates in Python (``_small``), between larger ones.
LARGE = SMALL_BATCH_ROWS + 30
SIZES = {"large": (LARGE, LARGE, LARGE, LARGE), "small": (1, 3, 16, 2, LARGE, 1, 5, 7)}


@pytest.mark.parametrize(("ddl_text", "query", "make"), CASES)
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("per_record", [True, False])
@pytest.mark.parametrize("sizes", list(SIZES))
def test_vectorized_and_sequential_agree(
    ddl_text: str, query: str, make, seed: int, per_record: bool, sizes: str
) -> None:
    """With caching (not ``per_record``) the vectorized plan is one GROUP BY per batch."""
    vec = processor(ddl_text, query, vectorized=True, per_record=per_record)
    seq = processor(ddl_text, query, vectorized=False, per_record=per_record)
    assert vec.vectorized and not seq.vectorized
    assert vec._groupable
    rng = random.Random(seed)
    vec_state, seq_state = duckdb.connect(), duckdb.connect()
    emitted = 0
    for b, n in enumerate(SIZES[sizes]):
        batch = make(rng, n, b * 3000)
        a = vec.process(batch, vec_state).rows
        s = seq.process(batch, seq_state).rows
        assert a.to_pylist() == s.to_pylist()
        emitted += a.num_rows
    assert emitted > 0


SMALL_CASES = [
    (STREAM, "SELECT ID, LATEST_BY_OFFSET(V) AS L, COUNT(*) AS C FROM S GROUP BY ID EMIT CHANGES;", stream_batch),
    (STREAM, "SELECT ID, COUNT(*) * 2 AS C2, AVG(V) AS A FROM S GROUP BY ID EMIT CHANGES;", stream_batch),
    (STREAM, "SELECT ID, AVG(V) AS A FROM S GROUP BY ID HAVING COUNT(*) > 2 EMIT CHANGES;", stream_batch),
    (
        STREAM,
        (
            "SELECT ID, AVG(V) AS A, LATEST_BY_OFFSET(V) AS L FROM S "
            "WINDOW HOPPING (SIZE 3 SECONDS, ADVANCE BY 1 SECOND) GROUP BY ID EMIT CHANGES;"
        ),
        stream_batch,
    ),
    (TABLE, "SELECT G, AVG(V) AS A FROM T GROUP BY G EMIT CHANGES;", table_batch),
    (TABLE, "SELECT G, AVG(V) AS A, COUNT(*) AS C FROM T GROUP BY G HAVING COUNT(*) > 1 EMIT CHANGES;", table_batch),
]


@pytest.mark.parametrize(("ddl_text", "query", "make"), SMALL_CASES)
@pytest.mark.parametrize("per_record", [True, False])
def test_small_batches_aggregated_in_python_agree_with_the_reference(
    ddl_text: str, query: str, make, per_record: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of a few rows of an aggregation the vectorized plan runs as a query (not Arrow's)
    are aggregated by the accumulators' Python methods, their output taken as the vectorized
    plan's is: the same rows, and the same state for the batches after them, as the reference."""
    small = 0
    aggregate_small = AggregateProcessor._small

    def counted(self: AggregateProcessor, rows: pa.Table, prior: pa.Table) -> pa.Table:
        nonlocal small
        small += 1
        return aggregate_small(self, rows, prior)

    monkeypatch.setattr(AggregateProcessor, "_small", counted)
    vec = processor(ddl_text, query, vectorized=True, per_record=per_record)
    seq = processor(ddl_text, query, vectorized=False, per_record=per_record)
    assert vec.vectorized and not seq.vectorized
    rng = random.Random(7)
    vec_state, seq_state = duckdb.connect(), duckdb.connect()
    emitted = 0
    sizes = (1, 3, 16, 2, LARGE, 1, 5, 7, 1, 1)
    for b, n in enumerate(sizes):
        batch = make(rng, n, b * 1000)
        a = vec.process(batch, vec_state).rows
        s = seq.process(batch, seq_state).rows
        assert a.to_pylist() == s.to_pylist()
        emitted += a.num_rows
    assert emitted > 0
    if vec._groupable and not per_record:
        assert small == 0  # one GROUP BY per batch in Arrow (see test_vectorized_and_sequential_agree)
    else:
        assert small >= 5  # (a hopping window's record is three rows)


def test_session_windows_merge_and_delete_merged_sessions() -> None:
    p = processor(
        STREAM,
        "SELECT ID, COUNT(*) AS C FROM S WINDOW SESSION (10 SECONDS) GROUP BY ID EMIT CHANGES;",
        vectorized=True,
    )
    batch = pa.table(
        {
            "ID": pa.array(["a", "a", "a"]),
            "V": pa.array([1, 1, 1], pa.int32()),
            "ROWTIME": pa.array([0, 30_000, 15_000], pa.int64()),
            "ROWPARTITION": pa.array([0, 0, 0], pa.int32()),
            "ROWOFFSET": pa.array([0, 1, 2], pa.int64()),
        }
    )
    rows = p.process(batch, duckdb.connect()).rows.to_pylist()
    got = [(r["__WINDOWSTART"], r["__WINDOWEND"], None if r["__DELETE"] else r["C"]) for r in rows]
    # 15s is within the gap of neither 0 nor 30s: three sessions, no merge
    assert got == [(0, 0, 1), (30_000, 30_000, 1), (15_000, 15_000, 1)]
    bridge = batch.slice(0, 1).set_column(2, "ROWTIME", pa.array([22_000], pa.int64()))
    state = duckdb.connect()
    p2 = processor(
        STREAM,
        "SELECT ID, COUNT(*) AS C FROM S WINDOW SESSION (10 SECONDS) GROUP BY ID EMIT CHANGES;",
        vectorized=True,
    )
    p2.process(batch, state)
    merged = p2.process(bridge, state).rows.to_pylist()
    got = [(r["__WINDOWSTART"], r["__WINDOWEND"], None if r["__DELETE"] else r["C"]) for r in merged]
    # 22s bridges the 15s and 30s sessions: both are deleted, the merged one has all three rows
    assert got == [(30_000, 30_000, None), (15_000, 15_000, None), (15_000, 30_000, 3)]


# a HAVING whose result an update within one group can change
STAGED = [
    *CASES,
    (TABLE, "SELECT G, SUM(V) AS S FROM T GROUP BY G HAVING SUM(V) > 12 EMIT CHANGES;", table_batch),
]


@pytest.mark.parametrize(("ddl_text", "query", "make"), STAGED)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_through_a_repartition_topic_the_results_are_the_same(
    ddl_text: str, query: str, make, seed: int
) -> None:
    # Stage one's rows, read back in stage two in batches cut anywhere (a retraction and its
    # addition may come in different batches), give the changes aggregating in place gives.
    in_place = processor(ddl_text, query, vectorized=True)
    staged = processor(ddl_text, query, vectorized=True)
    rng = random.Random(seed)
    in_place_state, staged_state = duckdb.connect(), duckdb.connect()
    expected: list[dict[str, object]] = []
    prepared: list[pa.Table] = []
    for b in range(4):
        batch = make(rng, 40, b * 3000)
        expected += in_place.process(batch, in_place_state).rows.to_pylist()
        rows = staged.prepare(batch, staged_state).rows
        prepared.append(rows.append_column("__P", pa.array(np.zeros(rows.num_rows, dtype=np.int32))))
    grouped = pa.concat_tables(prepared)
    cuts = sorted({0, grouped.num_rows, *(rng.randrange(grouped.num_rows) for _ in range(12))})
    got: list[dict[str, object]] = []
    for start, end in itertools.pairwise(cuts):
        got += staged.process_grouped(grouped.slice(start, end - start), None, staged_state).rows.to_pylist()
    assert expected and got == expected


def test_a_table_source_row_is_kept_in_the_partition_it_was_read_from() -> None:
    # Stage one keeps each source row in its input partition's part of the store (whose
    # changelog partition it is logged to); aggregating in place keeps it all in partition 0.
    query = "SELECT G, COUNT(*) AS C FROM T GROUP BY G EMIT CHANGES;"
    part = {"p": 0, "q": 1, "r": 2, "s": 3}
    batch = table_batch(random.Random(4), 40, 0)
    at = batch.schema.get_field_index("ROWPARTITION")
    batch = batch.set_column(at, "ROWPARTITION", pa.array([part[k] for k in batch.column("ID").to_pylist()], pa.int32()))
    for stage_one, want in ((True, part), (False, dict.fromkeys(part, 0))):
        p = processor(TABLE, query, vectorized=True)
        state = duckdb.connect()
        if stage_one:
            p.prepare(batch, state)
        else:
            p.process(batch, state)
        kept = state.sql('SELECT "__SK0", "__SP" FROM agg."Q_src"').fetchall()
        assert kept and all(sp == want[k] for k, sp in kept), kept


def test_source_rows_kept_before_they_named_their_partition_are_in_partition_0() -> None:
    query = "SELECT G, COUNT(*) AS C FROM T GROUP BY G EMIT CHANGES;"
    state = duckdb.connect()
    processor(TABLE, query, vectorized=True).prepare(table_batch(random.Random(5), 20, 0), state)
    state.execute('ALTER TABLE agg."Q_src" DROP COLUMN "__SP"')
    (held,) = state.execute('SELECT count(*) FROM agg."Q_src"').fetchone() or (0,)
    assert held > 0
    # the query starts again over the state the version before kept
    p = processor(TABLE, query, vectorized=True)
    p.prepare(table_batch(random.Random(6), 0, 0), state)
    assert state.execute('SELECT count(*), count_if("__SP" = 0) FROM agg."Q_src"').fetchone() == (held, held)


@pytest.mark.parametrize(
    ("query", "in_python"),
    [
        ("SELECT ID, LATEST_BY_OFFSET(V) AS L, COLLECT_LIST(V) AS C FROM S GROUP BY ID EMIT CHANGES;", True),
        ("SELECT ID, SUM(CAST(V AS DECIMAL(4, 1))) AS D FROM S GROUP BY ID EMIT CHANGES;", False),
        ("SELECT ID, MIN(FROM_DAYS(V)) AS D FROM S GROUP BY ID EMIT CHANGES;", False),
    ],
)
def test_small_batches_in_python_only_of_plain_types(query: str, in_python: bool) -> None:
    """The accumulators' Python forms of DECIMAL and DATE differ from the vectorized ones at their
    edges (overflow, initial states): their small batches stay vectorized."""
    assert processor(STREAM, query, vectorized=True)._small_in_python is in_python


@pytest.mark.parametrize("per_record", [True, False])
def test_an_aggregate_without_a_vector_form_keeps_one_state_per_group_across_batches(per_record: bool) -> None:
    """COUNT_DISTINCT runs through the accumulators' Python methods; its state is 2731 INTs. Each
    batch's rows are counted in order, and a group's state at the end of a batch carries over."""
    p = processor(
        STREAM, "SELECT ID, COUNT_DISTINCT(V) AS D, COUNT(*) AS C FROM S GROUP BY ID EMIT CHANGES;",
        vectorized=True, per_record=per_record,
    )
    assert not p.vectorized  # no vector form: the batches go through _sequential
    state = duckdb.connect()
    # the reference: the accumulator's own methods, one record at a time, one state per key
    distinct = p.step.calls[0].accumulator
    states = {"a": distinct.initial(), "b": distinct.initial()}
    for b in range(3):
        n = 3000
        ids = ["a" if i % 3 else "b" for i in range(n)]
        values = [(b * 7 + i * 13) % 997 for i in range(n)]
        batch = pa.table(
            {
                "ID": pa.array(ids),
                "V": pa.array(values, pa.int32()),
                "ROWTIME": pa.array([b * 10_000 + i for i in range(n)], pa.int64()),
                "ROWPARTITION": pa.array(np.zeros(n, dtype=np.int32)),
                "ROWOFFSET": pa.array(np.arange(b * n, (b + 1) * n, dtype=np.int64)),
            }
        )
        rows = p.process(batch, state).rows.to_pylist()
        expected = []
        for key, v in zip(ids, values, strict=True):
            states[key] = distinct.add(states[key], (v,))
            expected.append((key, distinct.result(states[key])))
        if not per_record:  # with caching: each group's last change of the batch, in that order
            last = {key: i for i, key in enumerate(ids)}
            expected = [expected[i] for i in sorted(last.values())]
        assert [(r["ID"], r["D"]) for r in rows] == expected
    assert 980 < expected[-1][1] < 1020  # a has 997 distinct values


def test_emit_final_emits_each_window_once_when_stream_time_passes_its_end() -> None:
    """A batch of events a millisecond apart passes through thousands of stream times; each
    window is emitted once, with its final count, in window order, when stream time reaches its
    end (no grace), and the window still open is not."""
    p = processor(
        STREAM,
        "SELECT ID, COUNT(*) AS C FROM S WINDOW TUMBLING (SIZE 1 SECOND, GRACE PERIOD 0 SECONDS) "
        "GROUP BY ID EMIT FINAL;",
        vectorized=True,
        per_record=False,
    )
    state = duckdb.connect()
    rng = random.Random(3)
    ids = [rng.choice("abc") for _ in range(5_500)]
    emitted = []
    for start, end in ((0, 2_600), (2_600, 5_500)):
        n = end - start
        batch = pa.table(
            {
                "ID": pa.array(ids[start:end]),
                "V": pa.array(np.zeros(n, dtype=np.int32)),
                "ROWTIME": pa.array(np.arange(start, end, dtype=np.int64)),
                "ROWPARTITION": pa.array(np.zeros(n, dtype=np.int32)),
                "ROWOFFSET": pa.array(np.arange(start, end, dtype=np.int64)),
            }
        )
        emitted += [(r["__WINDOWSTART"], r["ID"], r["C"]) for r in p.process(batch, state).rows.to_pylist()]
    # stream time ends at 5.499 s: the windows up to [4 s, 5 s) are closed, [5 s, 6 s) is open
    expected = sorted(
        {(w * 1000, key, sum(1 for t in range(w * 1000, w * 1000 + 1000) if ids[t] == key)) for w in range(5) for key in "abc"}
    )
    assert emitted == expected


def session_batch(rng: random.Random, n: int, t0: int) -> pa.Table:
    """Records of a few keys, mostly in time order, some seconds late."""
    times = sorted(t0 + rng.randrange(0, 6000) for _ in range(n))
    for i in rng.sample(range(n), n // 6):
        times[i] -= rng.randrange(0, 5000)
    return pa.table(
        {
            "ID": pa.array([rng.choice("abcd") for _ in range(n)]),
            "V": pa.array([rng.choice([None, *range(-5, 20)]) for _ in range(n)], pa.int32()),
            "ROWTIME": pa.array(times, pa.int64()),
            "ROWPARTITION": pa.array(np.zeros(n, dtype=np.int32)),
            "ROWOFFSET": pa.array(np.arange(n, dtype=np.int64)),
        }
    )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("grace", ["", ", GRACE PERIOD 2 SECONDS"])
def test_session_windows_with_caching_emit_what_a_caching_session_store_flushes(seed: int, grace: str) -> None:
    # A batch with caching emits each session's last change; a merged-away session's tombstone
    # only when an earlier batch emitted the session (Kafka Streams' CachingSessionStore skips
    # a removed session that its underlying store never held).
    query = (
        "SELECT ID, COUNT(*) AS C, SUM(V) AS S, COLLECT_LIST(V) AS L FROM S "
        f"WINDOW SESSION (1 SECOND{grace}) GROUP BY ID EMIT CHANGES;"
    )
    every = processor(STREAM, query, vectorized=True)
    cached = processor(STREAM, query, vectorized=True, per_record=False)
    rng = random.Random(seed)
    every_state, cached_state = duckdb.connect(), duckdb.connect()
    flushed: set[tuple[object, ...]] = set()  # sessions emitted downstream and not deleted since
    tombstones = merged_in_batch = 0
    for b in range(8):
        batch = session_batch(rng, 50, b * 4000)
        last: dict[tuple[object, ...], tuple[int, dict[str, object]]] = {}
        for i, row in enumerate(every.process(batch, every_state).rows.to_pylist()):
            last[(row["ID"], row["__WINDOWSTART"], row["__WINDOWEND"])] = (i, row)
        expected = []
        for bounds, (i, row) in sorted(last.items(), key=lambda item: item[1][0]):
            if row["__DELETE"] and bounds not in flushed:
                merged_in_batch += 1
                continue
            expected.append(row)
        got = cached.process(batch, cached_state).rows.to_pylist()
        assert got == expected
        for row in got:
            bounds = (row["ID"], row["__WINDOWSTART"], row["__WINDOWEND"])
            if row["__DELETE"]:
                tombstones += 1
                flushed.discard(bounds)
            else:
                flushed.add(bounds)
    assert tombstones and merged_in_batch  # both kinds of merge happened
    assert every_state.sql(f"SELECT * FROM {every.tables.groups} ORDER BY ALL").fetchall() == cached_state.sql(
        f"SELECT * FROM {cached.tables.groups} ORDER BY ALL"
    ).fetchall()


def observable(rows: pa.Table) -> list[dict[str, object]]:
    """A batch's output as a sink sees it: a tombstone (``__DELETE``) has no value columns."""
    out = []
    for r in rows.to_pylist():
        if r["__DELETE"]:
            r = {k: v for k, v in r.items() if k.startswith("__") or k == "ID"}
        out.append(r)
    return out


def ordered_session_batch(rng: random.Random, n: int, t0: int, shuffled: bool) -> pa.Table:
    """Records of a few keys in time order (steps within and past a 1 s gap), or shuffled."""
    times, t = [], t0
    for _ in range(n):
        t += rng.choice([0, 10, 200, 700, 990, 1000, 1001, 1500, 3000])
        times.append(t)
    if shuffled:
        rng.shuffle(times)
    return pa.table(
        {
            "ID": pa.array([rng.choice("abcde") for _ in range(n)]),
            "V": pa.array([rng.choice([None, *range(-5, 20)]) for _ in range(n)], pa.int32()),
            "ROWTIME": pa.array(times, pa.int64()),
            "ROWPARTITION": pa.array(np.zeros(n, dtype=np.int32)),
            "ROWOFFSET": pa.array(np.arange(n, dtype=np.int64)),
        }
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "query",
    [
        (
            "SELECT ID, COUNT(*) AS C, SUM(V) AS S, MIN(V) AS LO, MAX(V) AS HI, AVG(V) AS A FROM S "
            "WINDOW SESSION (1 SECOND) GROUP BY ID EMIT CHANGES;"
        ),
        (
            "SELECT ID, COUNT(V) AS C FROM S WINDOW SESSION (1 SECOND, GRACE PERIOD 1 SECOND) "
            "GROUP BY ID HAVING COUNT(V) % 3 <> 1 EMIT CHANGES;"
        ),
    ],
)
@pytest.mark.parametrize("per_record", [False, True])
def test_session_batches_in_time_order_aggregate_as_record_by_record(
    seed: int, query: str, per_record: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch is aggregated in one statement: in time order per key with per-record output (one
    # run of records per session), in any order with caching (unless a record is late); its
    # output and the state it leaves are those of the records one by one.
    grouped = processor(STREAM, query, vectorized=True, per_record=per_record)
    one_by_one = processor(STREAM, query, vectorized=True, per_record=per_record)
    assert grouped._sessions_groupable
    one_by_one._sessions_groupable = False
    taken = []
    in_order = AggregateProcessor._sessions_in_order

    def counted(self: AggregateProcessor, rows: pa.Table, state: duckdb.DuckDBPyConnection, **kw: bool) -> object:
        out = in_order(self, rows, state, **kw)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(AggregateProcessor, "_sessions_in_order", counted)
    rng = random.Random(seed)
    grouped_state, one_by_one_state = duckdb.connect(), duckdb.connect()
    t0 = 0
    for b in range(10):
        batch = ordered_session_batch(rng, rng.choice([200, 400]), t0, shuffled=b in (3, 7))
        t0 = max(batch.column("ROWTIME").to_pylist()) - rng.choice([0, 500, 1500, 4000])
        assert observable(grouped.process(batch, grouped_state).rows) == observable(
            one_by_one.process(batch, one_by_one_state).rows
        )
        table = grouped.tables.groups
        assert grouped_state.sql(f"SELECT * FROM {table} ORDER BY ALL").fetchall() == one_by_one_state.sql(
            f"SELECT * FROM {table} ORDER BY ALL"
        ).fetchall()
    assert any(taken)
    if per_record or "GRACE" in query:
        # shuffled batches: out of order (per-record output), or records past the grace period
        assert not all(taken)


@pytest.mark.parametrize("per_record", [False, True])
def test_a_session_batch_reaching_two_stored_sessions_is_aggregated_record_by_record(per_record: bool) -> None:
    # Stored sessions of a key may lie within the gap of each other (one was past its expiry
    # when the other began): a record within the gap of both merges them, which the grouped
    # way, extending only the latest session, would not.
    query = "SELECT ID, COUNT(*) AS C FROM S WINDOW SESSION (1 SECOND) GROUP BY ID EMIT CHANGES;"
    grouped = processor(STREAM, query, vectorized=True, per_record=per_record)
    one_by_one = processor(STREAM, query, vectorized=True, per_record=per_record)
    one_by_one._sessions_groupable = False
    states = duckdb.connect(), duckdb.connect()
    first = ordered_session_batch(random.Random(1), 1, 0, shuffled=False)
    for p, state in zip((grouped, one_by_one), states, strict=True):
        p.process(first.set_column(0, "ID", pa.array(["a"])).set_column(2, "ROWTIME", pa.array([0])), state)
        table = p.tables.groups
        state.execute(f"INSERT INTO {table} SELECT * REPLACE (500 AS WINDOWSTART, 500 AS WINDOWEND) FROM {table}")
    n = 2 * SMALL_BATCH_ROWS
    batch = pa.table(
        {
            "ID": pa.array(["a"] * n),
            "V": pa.array([1] * n, pa.int32()),
            "ROWTIME": pa.array([900 + 10 * i for i in range(n)], pa.int64()),
            "ROWPARTITION": pa.array(np.zeros(n, dtype=np.int32)),
            "ROWOFFSET": pa.array(np.arange(n, dtype=np.int64)),
        }
    )
    got = grouped.process(batch, states[0]).rows.to_pylist()
    assert observable(pa.Table.from_pylist(got)) == observable(one_by_one.process(batch, states[1]).rows)
    # both stored sessions were merged away into one holding every record
    if per_record:
        got = got[:2] + got[-1:]
    assert [(r["__WINDOWSTART"], r["__WINDOWEND"], r["__DELETE"], r["C"]) for r in got] == [
        (0, 0, True, 1),
        (500, 500, True, 1),
        (0, 900 + 10 * (n - 1), False, n + 2),
    ]


@pytest.mark.parametrize("per_record", [False, True])
def test_a_session_aggregation_without_aggregate_functions_has_the_sessions_of_a_count(per_record: bool) -> None:
    bare = processor(
        STREAM,
        "SELECT ID, WINDOWSTART AS WS FROM S WINDOW SESSION (1 SECOND) GROUP BY ID EMIT CHANGES;",
        vectorized=True,
        per_record=per_record,
    )
    counted = processor(
        STREAM,
        "SELECT ID, COUNT(*) AS C FROM S WINDOW SESSION (1 SECOND) GROUP BY ID EMIT CHANGES;",
        vectorized=True,
        per_record=per_record,
    )
    states = duckdb.connect(), duckdb.connect()
    for b in range(3):
        batch = ordered_session_batch(random.Random(b), 300, b * 200_000, shuffled=False)
        got = [
            [(r["ID"], r["__WINDOWSTART"], r["__WINDOWEND"], r["__DELETE"]) for r in p.process(batch, s).rows.to_pylist()]
            for p, s in zip((bare, counted), states, strict=True)
        ]
        assert got[0] == got[1] and got[0]


@pytest.mark.parametrize("per_record", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_a_session_batch_with_some_keys_out_of_order_splits_by_key(
    per_record: bool, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keys whose records come in time order take one statement, the others the loop; the
    # output, interleaved in the records' order, and the state are those of the loop alone.
    query = (
        "SELECT ID, COUNT(*) AS C, SUM(V) AS S FROM S WINDOW SESSION (1 SECOND, GRACE PERIOD 3 SECONDS) "
        "GROUP BY ID HAVING SUM(V) % 4 <> 1 EMIT CHANGES;"
    )
    split = processor(STREAM, query, vectorized=True, per_record=per_record)
    one_by_one = processor(STREAM, query, vectorized=True, per_record=per_record)
    one_by_one._sessions_groupable = False
    splits = []
    keys_in_order = AggregateProcessor._session_keys_in_order

    def counted(self: AggregateProcessor, rows: pa.Table, state: duckdb.DuckDBPyConnection) -> pa.Array:
        ordered = keys_in_order(self, rows, state)
        splits.append((pc.sum(ordered).as_py(), len(ordered)))
        return ordered

    monkeypatch.setattr(AggregateProcessor, "_session_keys_in_order", counted)
    rng = random.Random(seed)
    states = duckdb.connect(), duckdb.connect()
    t0 = 0
    for _ in range(6):
        batch = ordered_session_batch(rng, 600, t0, shuffled=False)
        t0 = max(batch.column("ROWTIME").to_pylist())
        # one key's records out of order (some late), the others in order
        ids, times = batch.column("ID").to_pylist(), batch.column("ROWTIME").to_pylist()
        late = rng.choice("abcde")
        times = [t - rng.choice([0, 1500, 2500, 6000]) if k == late else t for k, t in zip(ids, times, strict=True)]
        batch = batch.set_column(2, "ROWTIME", pa.array(times, pa.int64()))
        assert observable(split.process(batch, states[0]).rows) == observable(one_by_one.process(batch, states[1]).rows)
        table = split.tables.groups
        assert states[0].sql(f"SELECT * FROM {table} ORDER BY ALL").fetchall() == states[1].sql(
            f"SELECT * FROM {table} ORDER BY ALL"
        ).fetchall()
    assert any(0 < ordered < n for ordered, n in splits)  # batches were split between the two ways


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("grace", ["", ", GRACE PERIOD 3 SECONDS"])
def test_session_batches_in_any_order_with_caching_aggregate_as_record_by_record(seed: int, grace: str) -> None:
    # Batches out of order that reach back into earlier batches' sessions, merging them (two
    # stored sessions into one: the loop's way), with and without records past the grace period.
    query = (
        "SELECT ID, COUNT(*) AS C, SUM(V) AS S, MAX(V) AS HI FROM S "
        f"WINDOW SESSION (1 SECOND{grace}) GROUP BY ID HAVING COUNT(*) % 5 <> 2 EMIT CHANGES;"
    )
    grouped = processor(STREAM, query, vectorized=True, per_record=False)
    one_by_one = processor(STREAM, query, vectorized=True, per_record=False)
    one_by_one._sessions_groupable = False
    rng = random.Random(seed)
    states = duckdb.connect(), duckdb.connect()
    for b in range(8):
        batch = session_batch(rng, rng.choice([150, 300]), b * 2500)
        times = batch.column("ROWTIME").to_pylist()
        batch = batch.set_column(2, "ROWTIME", pa.array([t * rng.choice([1, 1, 1, 2]) // 2 for t in times], pa.int64()))
        assert observable(grouped.process(batch, states[0]).rows) == observable(one_by_one.process(batch, states[1]).rows)
        table = grouped.tables.groups
        assert states[0].sql(f"SELECT * FROM {table} ORDER BY ALL").fetchall() == states[1].sql(
            f"SELECT * FROM {table} ORDER BY ALL"
        ).fetchall()
