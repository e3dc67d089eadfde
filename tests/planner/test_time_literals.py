"""ROWTIME compared with timestamp text: the text names epoch milliseconds (partial ISO-8601)."""

from __future__ import annotations

import duckdb
import pytest

from ksqlpy import sqltypes as st
from ksqlpy.parser import parse_expression
from ksqlpy.planner.expressions import compile_expression
from ksqlpy.planner.expressions.scope import ColumnScope, ScopeColumn

SCOPE = ColumnScope((ScopeColumn("ROWTIME", st.BIGINT, "S"),))


def _matches(text: str, rowtime: int) -> bool:
    sql = compile_expression(parse_expression(text), SCOPE).sql.sql(dialect="duckdb")
    return duckdb.connect().execute(f'SELECT {sql} FROM (SELECT {rowtime}::BIGINT AS "ROWTIME")').fetchone()[0]


@pytest.mark.parametrize(
    ("text", "rowtime", "expected"),
    [
        ("ROWTIME > '2018-01-01T00:00:00.001'", 1514764800001, False),
        ("ROWTIME > '2018-01-01T00:00:00.001'", 1514764800002, True),
        ("ROWTIME >= '2018'", 1514764800000, True),
        ("ROWTIME >= '2018'", 1514764799999, False),
        ("ROWTIME > '2019-01-01T00:00:00+0445'", 1546300800000, True),  # 04:45 ahead of UTC
        ("ROWTIME BETWEEN '2018-01-01T00:00:00.001' AND '2018-01-01T00:00:01'", 1514764801000, True),
    ],
)
def test_timestamp_text_compares_as_epoch_millis(text: str, rowtime: int, expected: bool) -> None:
    assert _matches(text, rowtime) is expected


def test_string_literals_take_the_temporal_type_of_the_other_arguments() -> None:
    scope = ColumnScope((ScopeColumn("D", st.DATE, "S"),))
    compiled = compile_expression(parse_expression("GREATEST(D, '2022-06-14')"), scope)
    assert compiled.type == st.DATE
    sql = compiled.sql.sql(dialect="duckdb")
    result = duckdb.connect().execute(f"SELECT {sql} FROM (SELECT DATE '2020-01-01' AS \"D\")").fetchone()[0]
    assert str(result) == "2022-06-14"
