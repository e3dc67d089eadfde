"""PARTITION BY: new keys from expressions over the input, named as ksqlDB names them."""

from __future__ import annotations

import pytest
from stateless_io import produce, read, schema

from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.engine import Engine

INPUT = "CREATE STREAM INPUT (ID INT KEY, NAME STRING, AGE INT) WITH (kafka_topic='input', format='JSON', partitions=1);"


def test_partition_by_a_value_column_moves_the_old_key_into_the_value(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(INPUT + "CREATE STREAM OUTPUT AS SELECT * FROM INPUT PARTITION BY NAME;")
    assert schema(engine, "OUTPUT") == [("NAME", "STRING", True), ("AGE", "INTEGER", False), ("ID", "INTEGER", False)]
    produce(engine, "input", [(b"10", {"NAME": "bob", "AGE": 22})])
    assert engine.wait_idle()
    assert read(engine, "OUTPUT") == [(b'"bob"', {"AGE": 22, "ID": 10})]


def test_partition_by_expressions_take_their_names_from_the_projection(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(INPUT + "CREATE STREAM OUTPUT AS SELECT ABS(ID), AGE + 1 AS K2, NAME FROM INPUT PARTITION BY AGE + 1, ABS(ID);")
    assert schema(engine, "OUTPUT") == [
        ("K2", "INTEGER", True), ("KSQL_COL_0", "INTEGER", True), ("NAME", "STRING", False)
    ]
    produce(engine, "input", [(b"-3", {"NAME": "a", "AGE": 4})])
    assert engine.wait_idle()
    assert read(engine, "OUTPUT") == [(b'{"K2":5,"KSQL_COL_0":3}', {"NAME": "a"})]


def test_partition_by_null_drops_the_key(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(INPUT + "CREATE STREAM OUTPUT AS SELECT ID, NAME FROM INPUT PARTITION BY NULL;")
    source = engine.catalog.find("OUTPUT")
    assert source is not None and source.key_format.format == "NONE" and not source.key_columns
    produce(engine, "input", [(b"1", {"NAME": "x"})])
    assert engine.wait_idle()
    assert read(engine, "OUTPUT") == [(None, {"ID": 1, "NAME": "x"})]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT ID, NAME FROM INPUT PARTITION BY AGE", "must include the partitioning expression INPUT.AGE"),
        ("SELECT NAME, NAME AS N2, ID FROM INPUT PARTITION BY NAME", "key column (`NAME`) more than once"),
        ("SELECT NAME AS X, ID FROM INPUT PARTITION BY X", "PARTITION BY column 'X' cannot be resolved"),
        ("SELECT * FROM INPUT PARTITION BY NULL, ID", "Cannot PARTITION BY multiple columns including NULL"),
    ],
)
def test_partition_by_errors(engine: Engine, query: str, message: str) -> None:
    s = engine.session()
    s.execute_all(INPUT)
    with pytest.raises(AnalysisError, match=message.replace("(", r"\(").replace(")", r"\)")):
        s.execute_all(f"CREATE STREAM OUTPUT AS {query};")


def test_records_without_a_value_are_forwarded_with_their_new_key(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(INPUT + "CREATE STREAM OUTPUT AS SELECT ID + 1 AS K, NAME FROM INPUT PARTITION BY ID + 1;")
    produce(engine, "input", [(b"1", None), (b"2", {"NAME": "b"})])
    assert engine.wait_idle()
    assert read(engine, "OUTPUT") == [(b"2", None), (b"3", {"NAME": "b"})]


def test_a_where_clause_drops_records_without_a_value(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(INPUT + "CREATE STREAM OUTPUT AS SELECT * FROM INPUT WHERE ID > 0;")
    produce(engine, "input", [(b"1", None), (b"2", {"NAME": "b"})])
    assert engine.wait_idle()
    assert read(engine, "OUTPUT") == [(b"2", {"NAME": "b", "AGE": None})]
