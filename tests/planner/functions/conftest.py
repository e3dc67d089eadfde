"""Evaluate registered functions through DuckDB on small Arrow tables.

``evaluate("ROUND", [(st.DOUBLE, [1.5, -2.5])])`` resolves ``ROUND(DOUBLE)`` in the registry,
compiles the call with its rule, installs the Python UDFs on a DuckDB connection and returns the
result column as Python values. ``lit(value, type)`` passes a constant literal instead of a column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions import REGISTRY, Call, Compiled, register_udfs
from ksqlpy.planner.functions.registry import UnitArg


@dataclass(frozen=True)
class Lit:
    value: Any
    type: st.SqlType | None


@dataclass(frozen=True)
class Unit:
    unit: str


def lit(value: Any, type_: st.SqlType | None) -> Lit:
    return Lit(value, type_)


def _literal_sql(value: Any, type_: st.SqlType | None) -> exp.Expression:
    if value is None:
        node: exp.Expression = exp.Null()
    elif isinstance(value, bool):
        node = exp.Boolean(this=value)
    elif isinstance(value, bytes):
        return exp.Anonymous(this="unhex", expressions=[exp.Literal.string(value.hex())])
    elif isinstance(value, (int, float)):
        node = exp.Literal.number(value)
    else:
        node = exp.Literal.string(str(value))
    if type_ is None:
        return node
    return exp.Cast(this=node, to=exp.DataType.build(st.to_duckdb(type_), dialect="duckdb"))


Arg = tuple[st.SqlType, Sequence[Any]] | Lit | Unit


def compile_call(name: str, args: Sequence[Arg]) -> tuple[str, pa.Table, st.SqlType]:
    """The DuckDB SQL of ``name(args)`` over a table ``t``, the table, and the result type."""
    columns: dict[str, pa.Array] = {}
    compiled: list[Compiled] = []
    arg_types: list[Any] = []
    for i, arg in enumerate(args):
        if isinstance(arg, Lit):
            compiled.append(Compiled(_literal_sql(arg.value, arg.type), arg.type, arg.value))
            arg_types.append(arg.type)
        elif isinstance(arg, Unit):
            compiled.append(Compiled(exp.Null(), None, unit=arg.unit))
            arg_types.append(UnitArg(arg.unit))
        else:
            type_, values = arg
            columns[f"c{i}"] = pa.array(list(values), type=st.to_arrow(type_))
            compiled.append(Compiled(exp.column(f"c{i}"), type_))
            arg_types.append(type_)
    resolution = REGISTRY.resolve(name, arg_types)
    cast_args: list[Compiled] = []
    for i, c in enumerate(compiled):
        declared = resolution.param_type(i)
        if declared is not None and c.type is not None and declared != c.type:
            sql = exp.Cast(this=c.sql, to=exp.DataType.build(st.to_duckdb(declared), dialect="duckdb"))
            c = Compiled(sql, declared, c.value, c.unit)
        cast_args.append(c)
    types = [c.type for c in compiled]
    return_type = resolution.return_type(types)
    tree = resolution.variant.compile(Call(name, tuple(cast_args), return_type, resolution.bindings))
    return tree.sql(dialect="duckdb"), pa.table(columns) if columns else pa.table({"_": [0]}), return_type


def evaluate(name: str, args: Sequence[Arg], rows: int | None = None) -> list[Any]:
    """Run ``name(args)`` over the argument columns; one result per row."""
    sql, table, _ = compile_call(name, args)
    con = duckdb.connect()
    register_udfs(con)
    con.register("t", table)
    return [r[0] for r in con.execute(f"SELECT {sql} FROM t").fetchall()]


def evaluate_one(name: str, *args: Lit | Unit) -> Any:
    """``name`` over literal arguments only."""
    return evaluate(name, list(args))[0]


@pytest.fixture
def ev():  # type: ignore[no-untyped-def]
    return evaluate
