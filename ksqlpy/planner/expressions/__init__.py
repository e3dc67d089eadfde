"""ksqlDB expressions: type checking and compilation to DuckDB SQL.

    compiled = compile_expression(parse_expression("A * 2 > 10"), ColumnScope.of({"A": INTEGER}))
    compiled.type               # BOOLEAN
    compiled.sql.sql("duckdb")  # DuckDB SQL text, reading column "A"

Run the SQL on a connection prepared with ``ksqlpy.planner.functions.register_udfs(con)``.
"""

from __future__ import annotations

from ksqlpy.planner.expressions.compiler import (
    compile_expression,
    decimal_literal_type,
    infer_type,
    is_constant,
)
from ksqlpy.planner.expressions.formatter import format_expr, format_type
from ksqlpy.planner.expressions.scope import (
    ColumnScope,
    LambdaScope,
    Resolved,
    Scope,
    ScopeColumn,
    duckdb_column,
    duckdb_name,
    ksql_name,
    struct_field_name,
    struct_field_names,
    unresolved_column,
)
from ksqlpy.planner.functions.registry import Compiled

compile_expr = compile_expression
TypedExpr = Compiled

__all__ = [
    "ColumnScope",
    "Compiled",
    "LambdaScope",
    "Resolved",
    "Scope",
    "ScopeColumn",
    "TypedExpr",
    "compile_expr",
    "compile_expression",
    "decimal_literal_type",
    "duckdb_column",
    "duckdb_name",
    "format_expr",
    "format_type",
    "infer_type",
    "is_constant",
    "ksql_name",
    "struct_field_name",
    "struct_field_names",
    "unresolved_column",
]
