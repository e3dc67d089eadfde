"""Evaluate compiled expressions in DuckDB over small Arrow tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from ksqlpy import sqltypes as st
from ksqlpy.parser import parse_expression
from ksqlpy.planner.expressions import ColumnScope, compile_expression
from ksqlpy.planner.functions import register_udfs

Evaluate = Callable[..., tuple[st.SqlType | None, list[Any]]]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    register_udfs(connection)
    return connection


@pytest.fixture(scope="module")
def evaluate(con: duckdb.DuckDBPyConnection) -> Evaluate:
    """``evaluate(text, columns={name: type}, rows=[{...}])`` -> (type, one value per row)."""

    def run(
        text: str,
        columns: Mapping[str, st.SqlType] | None = None,
        rows: Sequence[Mapping[str, Any]] = ({},),
    ) -> tuple[st.SqlType | None, list[Any]]:
        columns = dict(columns or {"DUMMY": st.INTEGER})
        table = pa.table(
            {n: pa.array([r.get(n) for r in rows], type=st.to_arrow(t)) for n, t in columns.items()}
        )
        compiled = compile_expression(parse_expression(text), ColumnScope.of(columns))
        con.register("input_rows", table)
        try:
            sql = compiled.sql.sql("duckdb")
            result = con.sql(f"SELECT {sql} AS v FROM input_rows").arrow().read_all()
        finally:
            con.unregister("input_rows")
        column = result.column("v")
        if compiled.type is not None:
            column = column.cast(st.to_arrow(compiled.type))
        return compiled.type, column.to_pylist()

    return run
