"""CAST(struct AS STRING) prints as Java's Struct.toString()."""

from __future__ import annotations

import duckdb

from ksqlpy.parser import parse_expression
from ksqlpy.planner.expressions import compile_expression
from ksqlpy.planner.expressions.scope import ColumnScope


def _value(text: str) -> object:
    compiled = compile_expression(parse_expression(text), ColumnScope([]))
    return duckdb.connect().execute("SELECT " + compiled.sql.sql(dialect="duckdb")).fetchone()[0]


def test_struct_to_string_skips_null_fields() -> None:
    assert _value("CAST(STRUCT(F0 := 1, `f1` := CAST(NULL AS INT), S := 'x') AS STRING)") == "Struct{F0=1,S=x}"
    assert _value("CAST(CAST(NULL AS STRUCT<A INT>) AS STRING)") is None
