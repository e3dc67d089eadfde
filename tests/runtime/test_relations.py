"""Columns whose names differ only in case (`` `pageid` `` and ``PAGEID``) are distinct in ksqlDB
though not in DuckDB: tables with both materialize and answer pull queries, and persistent,
push and aggregation queries read and write each column by its own name."""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from ksqlpy.planner.expressions import duckdb_name, ksql_name
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.relations import from_duckdb, to_duckdb

PAGES = (
    "CREATE TABLE pages (PAGEID STRING PRIMARY KEY, `pageid` STRING, `Pageid` INT) "
    "WITH (kafka_topic='pages', value_format='JSON', partitions=2);"
)
EVENTS = "CREATE STREAM events (`A` INT, `a` STRING) WITH (kafka_topic='events', value_format='JSON', partitions=1);"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = Engine.open({"ksql.streams.state.dir": str(tmp_path / "data"), "ksql.streams.auto.offset.reset": "earliest"})
    yield e
    e.close()


def pull(engine: Engine, text: str) -> tuple[list[str], list[tuple[object, ...]]]:
    query = engine.session().execute_query(text)
    try:
        rows = [r.values for r in query]
        assert query.error is None
        return [f.name for f in query.columns], rows
    finally:
        query.close()


def read_values(engine: Engine, topic: str) -> list[object]:
    with engine.store.open_reader([topic], start="earliest") as reader:
        batch = reader.poll(10_000, timeout=0.5)
    return [json.loads(v) for v in batch.column("value").to_pylist()]


def test_duckdb_names_never_meet_when_ksqldb_names_differ() -> None:
    names = ["A", "a", "Ab", "aB", "AB", "ab", "a~1", "A~1", "A~0", "pageid", "PAGEID", "Page_ID", "`x`", "é", "É"]
    mapped = [duckdb_name(n) for n in names]
    # DuckDB folds ASCII letters only
    fold = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
    assert len({m.translate(fold) for m in mapped}) == len(names)
    assert [ksql_name(m) for m in mapped] == names
    # names without ASCII lower-case letters (nor the mark) are their own DuckDB names
    assert [n for n in names if duckdb_name(n) == n] == ["A", "AB", "PAGEID", "é", "É"]
    assert duckdb_name("PAGEID") == "PAGEID" and duckdb_name("ROWTIME") == "ROWTIME"
    assert duckdb_name("pageid") == "pageid~3f" and duckdb_name("A~1") == "A~1~0"
    table = pa.table({"A": [1], "a": ["x"]})
    assert to_duckdb(table).column_names == ["A", "a~1"]
    assert from_duckdb(to_duckdb(table)) == table


def test_table_with_key_and_value_names_differing_in_case(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(PAGES + "CREATE TABLE q_pages AS SELECT * FROM pages;")
    session.execute_all(
        "INSERT INTO pages (PAGEID, `pageid`, `Pageid`) VALUES ('P1', 'lower', 5);"
        "INSERT INTO pages (PAGEID, `pageid`, `Pageid`) VALUES ('P2', 'other', 7);"
    )
    assert pull(engine, "SELECT * FROM q_pages WHERE PAGEID = 'P1';") == (
        ["PAGEID", "pageid", "Pageid"],
        [("P1", "lower", 5)],
    )
    # a scan, a WHERE on the lower-case column, an expression over both, a ksqlpy function
    assert pull(engine, "SELECT `pageid`, `Pageid` * 2 AS twice FROM q_pages WHERE `pageid` = 'other';") == (
        ["pageid", "TWICE"],
        [("other", 14)],
    )
    assert pull(engine, "SELECT PAGEID, UCASE(`pageid`) AS up FROM q_pages WHERE PAGEID = 'P2';") == (
        ["PAGEID", "UP"],
        [("P2", "OTHER")],
    )
    assert engine.materializers["Q_PAGES"].error is None and engine.materializers["PAGES"].error is None


def test_stream_with_columns_differing_in_case(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(
        EVENTS
        + "CREATE STREAM copied AS SELECT * FROM events;"
        + "CREATE STREAM picked AS SELECT `a`, `A` + 1 AS `b` FROM events WHERE `a` = 'x';"
    )
    session.execute_all(
        "INSERT INTO events (`A`, `a`) VALUES (1, 'x');"
        "INSERT INTO events (`A`, `a`) VALUES (2, 'y');"
    )
    assert engine.wait_idle()
    assert read_values(engine, "COPIED") == [{"A": 1, "a": "x"}, {"A": 2, "a": "y"}]
    assert read_values(engine, "PICKED") == [{"a": "x", "b": 2}]
    push = session.execute_query("SELECT * FROM events WHERE `A` = 2 EMIT CHANGES LIMIT 1;")
    try:
        assert [f.name for f in push.columns] == ["A", "a"]
        assert [r.values for r in push] == [(2, "y")]
    finally:
        push.close()


def test_aggregation_with_names_differing_in_case(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(
        EVENTS + "CREATE TABLE counts AS SELECT `a`, COUNT(*) AS `n`, SUM(`A`) AS N FROM events GROUP BY `a`;"
    )
    session.execute_all(
        "INSERT INTO events (`A`, `a`) VALUES (1, 'x');"
        "INSERT INTO events (`A`, `a`) VALUES (2, 'y');"
        "INSERT INTO events (`A`, `a`) VALUES (4, 'x');"
    )
    assert pull(engine, "SELECT * FROM counts WHERE `a` = 'x';") == (["a", "n", "N"], [("x", 2, 5)])
    assert pull(engine, "SELECT * FROM counts WHERE N > 1;") == (["a", "n", "N"], [("x", 2, 5), ("y", 1, 2)])


def test_table_materialized_before_lower_case_names_had_duckdb_names(tmp_path: Path) -> None:
    config = {"ksql.streams.state.dir": str(tmp_path / "data"), "ksql.streams.auto.offset.reset": "earliest"}
    with Engine.open(config) as first:
        first.session().execute_all(
            "CREATE TABLE pages (`id` STRING PRIMARY KEY, `pageid` STRING) WITH (kafka_topic='pages', "
            "value_format='JSON', partitions=1);"
            "CREATE TABLE q_pages AS SELECT * FROM pages;"
            "INSERT INTO pages (`id`, `pageid`) VALUES ('a', 'x');"
        )
        assert pull(first, "SELECT * FROM q_pages WHERE `id` = 'a';") == (["id", "pageid"], [("a", "x")])
    # As an earlier ksqlpy left it: the columns under their ksqlDB names.
    with duckdb.connect(str(tmp_path / "data" / "ksqlpy.duckdb")) as con:
        for table in ("PAGES", "Q_PAGES"):
            for name in ("id", "pageid"):
                con.execute(f'ALTER TABLE mat."{table}" RENAME COLUMN "{duckdb_name(name)}" TO "{name}"')
    with Engine.open(config) as second:
        second.session().execute_all("INSERT INTO pages (`id`, `pageid`) VALUES ('b', 'y');")
        assert pull(second, "SELECT * FROM q_pages;") == (["id", "pageid"], [("a", "x"), ("b", "y")])
        # the kept rows were renamed in place, not read again from the topic
        assert second.materializers["Q_PAGES"].records_in == 1


def test_struct_fields_differing_in_case(engine: Engine) -> None:
    """DuckDB refuses a struct whose field names differ only in case; ksqlDB builds one, reads
    each field by its own name, and writes both."""
    session = engine.session()
    session.execute_all(
        "CREATE STREAM src (ID INT KEY, S STRUCT<`X` INT, `x` STRING>, V STRING) "
        "WITH (kafka_topic='src', value_format='JSON', partitions=1);"
        "CREATE STREAM built AS SELECT ID, STRUCT(FOO := V, `foo` := UCASE(V)) AS B, "
        "S->`x` AS LOWER_X, S->`X` AS UPPER_X, S FROM src;"
        "CREATE STREAM picked AS SELECT ID, B->`foo` AS F, B->FOO AS G FROM built;"
    )
    session.execute_all("INSERT INTO src (ID, S, V) VALUES (1, STRUCT(`X` := 7, `x` := 'seven'), 'v');")
    assert engine.wait_idle()
    assert read_values(engine, "BUILT") == [
        {"B": {"FOO": "v", "foo": "V"}, "LOWER_X": "seven", "UPPER_X": 7, "S": {"X": 7, "x": "seven"}}
    ]
    assert read_values(engine, "PICKED") == [{"F": "V", "G": "v"}]


def test_struct_field_renames_round_trip() -> None:
    struct = pa.struct([("FOO", pa.string()), ("foo", pa.int32())])
    table = pa.table(
        {
            "s": pa.array([{"FOO": "a", "foo": 1}, None], struct),
            "l": pa.array([[{"FOO": "b", "foo": 2}], None], pa.list_(struct)),
        }
    )
    inside = to_duckdb(table)
    assert inside.schema.field("s~1").type.names == ["FOO", "foo~7"]
    assert inside.column("s~1").to_pylist() == [{"FOO": "a", "foo~7": 1}, None]
    assert from_duckdb(inside) == table
    # a field whose name merely holds the mark is no DuckDB name: it stays as it is
    plain = pa.table({"S": pa.array([{"a~1": 1}], pa.struct([("a~1", pa.int32())]))})
    assert from_duckdb(plain) == plain
