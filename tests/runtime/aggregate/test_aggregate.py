"""GROUP BY end to end on the embedded store: stream and table aggregation, HAVING, windows,
restart without loss or double counting, and the analyzer's ksqlDB errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.engine import Engine

PER_RECORD = {"ksql.streams.cache.max.bytes.buffering": "0"}


def open_engine(data: Path) -> Engine:
    return Engine.open({"ksql.streams.state.dir": str(data), "ksql.streams.auto.offset.reset": "earliest"})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = open_engine(tmp_path / "data")
    yield e
    e.close()


def execute(engine: Engine, text: str) -> None:
    from ksqlpy.runtime.session import Session

    Session(engine, PER_RECORD, {}).execute_all(text)


def produce(engine: Engine, topic: str, rows: list[tuple[str | None, object, int]]) -> None:
    engine.store.produce(
        topic,
        pa.table(
            {
                "timestamp": pa.array([ts for _, _, ts in rows], pa.int64()),
                "key": pa.array([None if k is None else k.encode() for k, _, _ in rows], pa.binary()),
                "value": pa.array(
                    [None if v is None else json.dumps(v).encode() for _, v, _ in rows], pa.binary()
                ),
            }
        ),
    )


def read(engine: Engine, topic: str) -> list[tuple[bytes | None, object, int]]:
    out: list[tuple[bytes | None, object, int]] = []
    with engine.store.open_reader([topic], start="earliest") as reader:
        for _ in range(20):
            batch = reader.poll(10_000, timeout=0.05)
            if batch.num_rows == 0 and out:
                break
            for k, v, ts in zip(
                batch.column("key").to_pylist(),
                batch.column("value").to_pylist(),
                batch.column("timestamp").to_pylist(),
            ):
                out.append((k, None if v is None else json.loads(v), ts))
    return out


STREAM = "CREATE STREAM S (ID STRING KEY, V INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);"


def test_stream_count_and_sum_one_output_per_record(engine: Engine) -> None:
    execute(
        engine, STREAM + "CREATE TABLE T AS SELECT ID, COUNT(*) AS C, SUM(V) AS TOTAL FROM S GROUP BY ID;"
    )
    rows = [("a", {"V": 1}, 10), ("b", {"V": 5}, 11), ("a", {"V": 2}, 12), ("a", {"V": None}, 13)]
    produce(engine, "s", rows)
    assert engine.wait_idle()
    out = read(engine, "T")
    assert [(k, v) for k, v, _ in out] == [
        (b"a", {"C": 1, "TOTAL": 1}),
        (b"b", {"C": 1, "TOTAL": 5}),
        (b"a", {"C": 2, "TOTAL": 3}),
        (b"a", {"C": 3, "TOTAL": 3}),
    ]
    assert [ts for _, _, ts in out] == [10, 11, 12, 13]


def test_table_aggregation_retracts_old_values(engine: Engine) -> None:
    execute(
        engine,
        "CREATE TABLE U (ID STRING PRIMARY KEY, NAME STRING) WITH (kafka_topic='u', value_format='JSON', partitions=1);"
        "CREATE TABLE N AS SELECT NAME, COUNT(*) AS C FROM U GROUP BY NAME;",
    )
    produce(
        engine,
        "u",
        [("1", {"NAME": "bob"}, 1), ("1", {"NAME": "jo"}, 2), ("2", {"NAME": "jo"}, 3), ("2", None, 4)],
    )
    assert engine.wait_idle()
    assert [(k, v) for k, v, _ in read(engine, "N")] == [
        (b"bob", {"C": 1}),
        (b"bob", {"C": 0}),
        (b"jo", {"C": 1}),
        (b"jo", {"C": 2}),
        (b"jo", {"C": 1}),
    ]


def test_having_emits_tombstone_only_after_a_passing_value(engine: Engine) -> None:
    execute(
        engine, STREAM + "CREATE TABLE T AS SELECT ID, SUM(V) AS TOTAL FROM S GROUP BY ID HAVING SUM(V) > 10;"
    )
    produce(engine, "s", [("a", {"V": 1}, 1), ("a", {"V": 20}, 2), ("a", {"V": -15}, 3), ("a", {"V": -1}, 4)])
    assert engine.wait_idle()
    assert [(k, v) for k, v, _ in read(engine, "T")] == [(b"a", {"TOTAL": 21}), (b"a", None)]


def test_tumbling_window_drops_late_records(engine: Engine) -> None:
    execute(
        engine,
        STREAM + "CREATE TABLE W AS SELECT ID, COUNT(*) AS C FROM S "
        "WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY ID;",
    )
    produce(engine, "s", [("a", {"V": 1}, 1000), ("a", {"V": 1}, 12_000), ("a", {"V": 1}, 2000)])
    assert engine.wait_idle()
    out = read(engine, "W")
    # windowed keys: the inner key then the window start as a big-endian long
    assert [(k[:-8], int.from_bytes(k[-8:], "big"), v) for k, v, _ in out] == [
        (b"a", 0, {"C": 1}),
        (b"a", 10_000, {"C": 1}),
    ]


def test_restart_neither_loses_nor_double_counts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = open_engine(data)
    execute(first, STREAM + "CREATE TABLE T AS SELECT ID, COUNT(*) AS C FROM S GROUP BY ID;")
    produce(first, "s", [("a", {"V": 1}, 1), ("a", {"V": 1}, 2)])
    assert first.wait_idle()
    first.close()
    second = open_engine(data)
    try:
        produce(second, "s", [("a", {"V": 1}, 3)])
        assert second.wait_idle()
        assert [v for _, v, _ in read(second, "T")] == [{"C": 1}, {"C": 2}, {"C": 3}]
    finally:
        second.close()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "SELECT V, COUNT(*) FROM S GROUP BY ID",
            "Non-aggregate SELECT expression(s) not part of GROUP BY: V",
        ),
        ("SELECT ID, COUNT(*) FROM S GROUP BY SUM(V)", "GROUP BY does not support aggregate functions: SUM"),
        ("SELECT ID, SUM(COUNT(*)) FROM S GROUP BY ID", "Aggregate functions can not be nested"),
        (
            "SELECT COUNT(*) AS C FROM S GROUP BY ID",
            "must include the grouping expression ID in its projection",
        ),
        (
            "SELECT ID, COUNT(*) FROM S GROUP BY ID HAVING V > 1",
            "Non-aggregate HAVING expression not part of GROUP BY: V",
        ),
        (
            "SELECT ID, COUNT(*) FROM S GROUP BY ID EMIT FINAL",
            "EMIT FINAL is only supported for windowed aggregations.",
        ),
        (
            "SELECT COUNT(*) FROM S",
            "does not support aggregate function [COUNT(ROWTIME)] without a GROUP BY clause.",
        ),
    ],
)
def test_analysis_errors(engine: Engine, query: str, message: str) -> None:
    execute(engine, STREAM)
    with pytest.raises(AnalysisError) as info:
        execute(engine, f"CREATE TABLE X AS {query};")
    assert message in str(info.value)


def test_push_query_with_group_by_uses_private_state(engine: Engine) -> None:
    s = engine.session({"auto.offset.reset": "earliest", **PER_RECORD})
    s.execute_all(STREAM)
    produce(engine, "s", [("a", {"V": 1}, 1), ("b", {"V": 2}, 2), ("a", {"V": 3}, 3)])
    q = s.execute_query("SELECT ID, SUM(V) AS TOTAL FROM S GROUP BY ID EMIT CHANGES LIMIT 3;")
    assert [f.name for f in q.columns] == ["ID", "TOTAL"]
    rows = []
    for _ in range(100):
        rows += q.poll(0.1)
        if q.done:
            break
    assert [row.values for row in rows] == [("a", 1), ("b", 2), ("a", 4)]
    q.close()
    with engine.store.state_cursor() as cur:
        tables = cur.sql("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'agg'").fetchall()
    assert not any(name.startswith("transient") for (name,) in tables)


def test_explain_shows_the_aggregation(engine: Engine) -> None:
    execute(
        engine,
        STREAM + "CREATE TABLE W AS SELECT ID, COUNT(*) AS C FROM S WINDOW TUMBLING (SIZE 1 MINUTE) "
        "GROUP BY ID HAVING COUNT(*) > 1;",
    )
    (qid,) = engine.queries
    [entity] = engine.session({}).execute_all(f"EXPLAIN {qid};")
    # default grace 24 h - size, so the default retention (size + grace) is one day
    prepared = "ID STRING KEY, ID STRING, ROWTIME BIGINT"
    aggregated = f"{prepared}, KSQL_AGG_VARIABLE_0 BIGINT, KSQL_AGG_VARIABLE_1 BIGINT, WINDOWSTART BIGINT, WINDOWEND BIGINT"
    source = "ID STRING KEY, V INTEGER, ROWTIME BIGINT, ROWPARTITION INTEGER, ROWOFFSET BIGINT, ID STRING"
    # ksqlDB's plan summary (COUNT(*) in the select list and in HAVING are two calls, as in
    # ksqlDB), then how ksqlpy runs the aggregation and where its table is materialized
    assert entity.execution_plan == (
        " > [ SINK ] | Schema: ID STRING KEY, C BIGINT | Logger: CTAS_W_0.W\n"
        "\t\t > [ PROJECT ] | Schema: ID STRING KEY, C BIGINT | Logger: CTAS_W_0.Aggregate.Project\n"
        f"\t\t\t\t > [ FILTER ] | Schema: {aggregated} | Logger: CTAS_W_0.Aggregate.HavingFilter\n"
        f"\t\t\t\t\t\t > [ AGGREGATE ] | Schema: {aggregated} | Logger: CTAS_W_0.Aggregate.Aggregate\n"
        f"\t\t\t\t\t\t\t\t > [ GROUP_BY ] | Schema: {prepared} | Logger: CTAS_W_0.Aggregate.GroupBy\n"
        f"\t\t\t\t\t\t\t\t\t\t > [ PROJECT ] | Schema: {prepared} | Logger: CTAS_W_0.Aggregate.Prepare\n"
        f"\t\t\t\t\t\t\t\t\t\t\t\t > [ SOURCE ] | Schema: {source} | Logger: CTAS_W_0.KsqlTopic.Source\n"
        ' > [ HAVING ] | (COALESCE("KSQL_AGG_VARIABLE_1" > CAST(1 AS INT), FALSE))\n'
        ' > [ AGGREGATE ] | GROUP BY "ID" | COUNT(ROWTIME) AS KSQL_AGG_VARIABLE_0, COUNT(ROWTIME) AS '
        "KSQL_AGG_VARIABLE_1 | WINDOW TUMBLING (SIZE 60000 ms, ADVANCE 60000 ms, GRACE 86340000 ms, "
        "RETENTION 86400000 ms) | EMIT CHANGES\n"
        ' > [ MATERIALIZE ] | mat."W" from topic W: pull queries read it'
    )
    assert entity.topology == (
        "Micro-batch pipeline: poll -> decode (Arrow) -> aggregate (DuckDB window functions over the batch "
        f'and state) -> encode -> produce + commit with the state changes (state in agg."{qid}")'
    )


def test_cached_output_is_the_last_change_per_group_of_a_batch(engine: Engine) -> None:
    from ksqlpy.runtime.session import Session

    Session(engine, {}, {}).execute_all(STREAM)
    produce(engine, "s", [("a", {"V": 1}, 1), ("b", {"V": 2}, 2), ("a", {"V": 3}, 3), ("a", {"V": 4}, 4)])
    Session(engine, {"ksql.streams.cache.max.bytes.buffering": "10000000"}, {}).execute_all(
        "CREATE TABLE T AS SELECT ID, SUM(V) AS TOTAL FROM S GROUP BY ID;"
    )
    assert engine.wait_idle()
    out = read(engine, "T")
    # The four records are one batch: one change per group, its last.
    assert sorted((k, v) for k, v, _ in out) == [(b"a", {"TOTAL": 8}), (b"b", {"TOTAL": 2})]


def test_table_source_rejects_functions_without_undo(engine: Engine) -> None:
    execute(
        engine,
        "CREATE TABLE U (ID STRING PRIMARY KEY, V INT) WITH (kafka_topic='u', value_format='JSON', partitions=1);",
    )
    with pytest.raises(AnalysisError, match="cannot be applied to a table source"):
        execute(engine, "CREATE TABLE X AS SELECT V, MAX(V) AS M FROM U GROUP BY V;")


def test_rows_with_a_null_grouping_value_are_dropped_and_logged(engine: Engine) -> None:
    execute(engine, STREAM + "CREATE TABLE T AS SELECT V, COUNT(*) AS C FROM S GROUP BY V;")
    produce(engine, "s", [("a", {"V": 1}, 1), ("b", {"V": None}, 2), ("c", {"V": 1}, 3)])
    assert engine.wait_idle()
    assert [v for _, v, _ in read(engine, "T")] == [{"C": 1}, {"C": 2}]
    (logged,) = [v for _, v, _ in read(engine, engine.plog.topic)]
    assert isinstance(logged, dict) and logged["LOGGER"] == "CTAS_T_0" and logged["LEVEL"] == "ERROR"
    assert logged["MESSAGE"] == {
        "TYPE": 1,
        "RECORDPROCESSINGERROR": {
            "ERRORMESSAGE": "Group-by column with index 0 resolved to null. The source row will be excluded from the table.",
            "RECORD": None,
            "CAUSE": ["topic s, partition 0, offset 1"],
        },
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "SELECT ID, SUM(V) AS T FROM S GROUP BY ID HAVING SUM(V) > 'x'",
            "Error in HAVING expression: Cannot compare SUM(V) (INTEGER) to 'x' (STRING)",
        ),
        (
            "SELECT ID, EXPLODE(ARRAY[V]), COUNT(*) FROM S GROUP BY ID",
            "Table functions cannot be used with aggregations.",
        ),
    ],
)
def test_errors_name_the_query_s_own_expressions(engine: Engine, query: str, message: str) -> None:
    execute(engine, STREAM)
    with pytest.raises(AnalysisError) as info:
        execute(engine, f"CREATE TABLE X AS {query};")
    assert message in str(info.value)


def _keys_in_different_partitions(partitions: int) -> tuple[str, str]:
    """Two string keys that Kafka's default partitioner puts in different partitions."""
    from ksqlpy.runtime.store.partitioner import partition_for_key

    first = "k0"
    other = next(
        f"k{i}" for i in range(1, 100) if partition_for_key(f"k{i}".encode(), partitions) != partition_for_key(b"k0", partitions)
    )
    return first, other


def _sorted(rows: list[tuple[bytes, int, object]]) -> list[tuple[bytes, int, object]]:
    return sorted(rows, key=lambda r: (r[0], r[1], json.dumps(r[2])))


def _window_counts(engine: Engine, topic: str) -> list[tuple[bytes, int, object]]:
    return _sorted([(k[:-8], int.from_bytes(k[-8:], "big"), v) for k, v, _ in read(engine, topic)])


def test_stream_time_is_kept_per_source_partition(engine: Engine) -> None:
    """A partition far ahead in time does not make another partition's records late."""
    ahead, behind = _keys_in_different_partitions(2)
    execute(
        engine,
        "CREATE STREAM S2 (ID STRING KEY, V INT) WITH (kafka_topic='s2', value_format='JSON', partitions=2);"
        "CREATE TABLE W AS SELECT ID, COUNT(*) AS C FROM S2 "
        "WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY ID;",
    )
    produce(engine, "s2", [(ahead, {"V": 1}, 50_000)])
    assert engine.wait_idle()
    # Late for the first partition's stream time, on time for the second's own.
    produce(engine, "s2", [(behind, {"V": 1}, 1000), (behind, {"V": 1}, 2000)])
    assert engine.wait_idle()
    # ... and a record late in its own partition is still dropped.
    produce(engine, "s2", [(ahead, {"V": 1}, 3000)])
    assert engine.wait_idle()
    assert _window_counts(engine, "W") == _sorted(
        [(behind.encode(), 0, {"C": 1}), (behind.encode(), 0, {"C": 2}), (ahead.encode(), 50_000, {"C": 1})]
    )
    (query,) = engine.queries.values()
    assert query.late_records == 1
    [described] = engine.session({}).execute_all("DESCRIBE W EXTENDED;")
    assert "late-records-dropped: 1" in described.statistics


def test_stream_time_follows_the_repartitioned_group_key(engine: Engine) -> None:
    """Grouping by a value column: ksqlDB repartitions by the new key, so stream time is that
    of the group's partition, even though every record came from the same source partition."""
    ahead, behind = _keys_in_different_partitions(2)
    execute(
        engine,
        "CREATE STREAM S2 (ID STRING KEY, G STRING) WITH (kafka_topic='s2', value_format='JSON', partitions=2);"
        "CREATE TABLE W AS SELECT G, COUNT(*) AS C FROM S2 "
        "WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY G;",
    )
    produce(engine, "s2", [("same", {"G": ahead}, 50_000), ("same", {"G": behind}, 1000), ("same", {"G": ahead}, 2000)])
    assert engine.wait_idle()
    assert _window_counts(engine, "W") == _sorted(
        [(behind.encode(), 0, {"C": 1}), (ahead.encode(), 50_000, {"C": 1})]
    )


def _agg_tables(engine: Engine) -> list[str]:
    con = engine.store.state_cursor()
    try:
        return [n for (n,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'agg'").fetchall()]
    finally:
        con.close()


def test_terminate_deletes_the_aggregation_state_but_create_or_replace_keeps_it(engine: Engine) -> None:
    execute(engine, STREAM + "CREATE TABLE T AS SELECT ID, COUNT(*) AS C FROM S GROUP BY ID;")
    produce(engine, "s", [("a", {"V": 1}, 1000)])
    assert engine.wait_idle()
    (query_id,) = engine.queries
    assert sorted(_agg_tables(engine)) == [query_id, query_id + "_meta"]
    execute(engine, "CREATE OR REPLACE TABLE T AS SELECT ID, COUNT(*) AS C FROM S GROUP BY ID;")
    produce(engine, "s", [("a", {"V": 1}, 2000)])
    assert engine.wait_idle()
    # The replacing query counted on from the state it took over.
    assert read(engine, "T")[-1][1] == {"C": 2}
    execute(engine, f"TERMINATE {query_id};")
    assert _agg_tables(engine) == []
