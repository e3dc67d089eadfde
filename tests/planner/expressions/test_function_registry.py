"""The function registry resolves calls as ksqlDB's UdfIndex does and installs DuckDB UDFs."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError
from ksqlpy.planner.functions.registry import (
    ArrayParam,
    FunctionRegistry,
    GenericParam,
    LambdaArg,
    LambdaParam,
    PythonUdf,
    ScalarFunction,
    SqlMacro,
    Variant,
    parse_param_type,
    parse_params,
    sql_call,
)


def _least() -> FunctionRegistry:
    registry = FunctionRegistry()
    variants = tuple(
        Variant(f"val {t}, vals {t}...", returns=t, compile=sql_call("least"))
        for t in ("INT", "BIGINT", "DOUBLE", "DECIMAL", "STRING")
    )
    registry.register(ScalarFunction(name="least", description="smallest", variants=variants[:3] + variants[4:]))
    return registry


def test_type_text_round_trips_through_ksqldb_spelling() -> None:
    assert str(parse_param_type("array<t>")) == "ARRAY<T>"
    assert str(parse_param_type("MAP<STRING, ARRAY<INT>>")) == "MAP<VARCHAR, ARRAY<INT>>"
    assert parse_param_type("LAMBDA<(A, T) => A>") == LambdaParam(
        (GenericParam("A"), GenericParam("T")), GenericParam("A")
    )
    params = parse_params("list ARRAY<T>, values T...")
    assert [p.variadic for p in params] == [False, True]
    assert params[0].type == ArrayParam(GenericParam("T"))


def test_exact_match_beats_widening_and_names_are_case_insensitive() -> None:
    registry = _least()
    assert registry.resolve("LEAST", [st.BIGINT, st.BIGINT]).variant.returns_text == "BIGINT"
    assert registry.resolve("Least", [st.INTEGER]).variant.returns_text == "INT"


def test_equal_widenings_are_ambiguous_with_ksqldb_wording() -> None:
    with pytest.raises(AnalysisError) as err:
        _least().resolve("least", [st.INTEGER, st.BIGINT])
    assert str(err.value).startswith(
        "Function 'least' cannot be resolved due to ambiguous method parameters (INTEGER, BIGINT)."
    )


def test_no_match_lists_alternatives() -> None:
    with pytest.raises(AnalysisError) as err:
        _least().resolve("least", [st.STRING, st.INTEGER])
    lines = str(err.value).splitlines()
    assert lines[0] == "Function 'least' does not accept parameters (STRING, INTEGER)."
    assert lines[1] == "Valid alternatives are:"
    assert "least(VARCHAR val, VARCHAR... vals)" in lines


def test_generics_bind_once_and_lambdas_type_their_result() -> None:
    registry = FunctionRegistry()
    registry.register(
        ScalarFunction(
            name="TRANSFORM",
            description="map each element",
            variants=(Variant("a ARRAY<T>, f LAMBDA<(T) => U>", returns="ARRAY<U>", compile=sql_call("x")),),
        )
    )
    resolution = registry.resolve("transform", [st.Array(st.STRING), LambdaArg(1)])
    assert resolution.lambda_inputs(1) == (st.STRING,)
    typed = resolution.with_lambda_result(1, st.BIGINT)
    assert typed is not None and typed.return_type([st.Array(st.STRING), None]) == st.Array(st.BIGINT)
    with pytest.raises(AnalysisError):
        registry.resolve("transform", [st.Array(st.STRING), LambdaArg(2)])


def test_udfs_and_macros_install_once_per_connection() -> None:
    registry = FunctionRegistry()
    registry.register_udf(
        PythonUdf(name="t_upper", params=("VARCHAR",), returns="VARCHAR", fn=lambda a: pc.utf8_upper(a))
    )
    registry.register_udf(SqlMacro(name="t_twice", params=("x",), body="x * 2"))
    con = duckdb.connect()
    registry.install(con)
    registry.install(con)
    con.register("words", pa.table({"s": ["ab", None]}))
    rows = con.sql("SELECT t_upper(s), t_twice(21) FROM words").fetchall()
    assert rows == [("AB", 42), (None, 42)]
