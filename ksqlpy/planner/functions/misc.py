"""Building blocks shared by the scalar function families, and the few functions of no family.

* :func:`rowwise` turns a per-value Python function into a vectorized DuckDB UDF body
  (Arrow arrays in, Arrow array out) for the functions DuckDB has no equivalent for. A value
  that makes the function raise becomes NULL: ksqlDB logs a UDF failure to the processing log and
  emits NULL for that expression, it does not drop the record.
* :func:`udf` registers such a body under a DuckDB name and returns the compile rule calling it.
* :func:`cast_to` and :func:`fn` build the sqlglot nodes the compile rules return.

Functions of no family: UUID, RANDOM.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.registry import (
    REGISTRY,
    Call,
    Category,
    PythonUdf,
    ScalarFunction,
    Variant,
    sql_template,
)

log = logging.getLogger(__name__)

CompileRule = Callable[[Call], exp.Expression]


def _values(array: pa.Array | pa.ChunkedArray) -> list[Any]:
    values: list[Any] = array.to_pylist()
    return values


def rowwise(
    func: Callable[..., Any],
    returns: pa.DataType,
    *,
    arity: int,
    null_in_null_out: bool = True,
) -> Callable[..., pa.Array]:
    """A DuckDB Arrow UDF body applying ``func`` to each row.

    With ``null_in_null_out`` a row with any NULL argument yields NULL without calling ``func``
    (most ksqlDB UDFs begin with that check). Exceptions from ``func`` yield NULL for that row.
    DuckDB inspects the body's signature, so the returned callable takes exactly ``arity``
    positional parameters.
    """

    def body(*arrays: pa.Array) -> pa.Array:
        columns = [_values(a) for a in arrays]
        out: list[Any] = []
        for row in zip(*columns):
            if null_in_null_out and any(v is None for v in row):
                out.append(None)
                continue
            try:
                out.append(func(*row))
            except Exception as exc:  # a failing UDF yields NULL, as in ksqlDB
                log.debug("scalar function %s failed: %s", getattr(func, "__name__", func), exc)
                out.append(None)
        return pa.array(out, type=returns)

    return _with_arity(body, arity)


def _with_arity(body: Callable[..., pa.Array], arity: int) -> Callable[..., pa.Array]:
    names = ", ".join(f"a{i}" for i in range(arity))
    namespace: dict[str, Any] = {"body": body}
    exec(f"def udf({names}):\n    return body({names})\n", namespace)  # exact signature for DuckDB
    return namespace["udf"]  # type: ignore[no-any-return]


_ARROW_OF_DUCKDB: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "BLOB": pa.binary(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIME": pa.time64("us"),
    "TIMESTAMP": pa.timestamp("us"),
    "VARCHAR[]": pa.list_(pa.string()),
    "BLOB[]": pa.list_(pa.binary()),
    "MAP(VARCHAR, VARCHAR)": pa.map_(pa.string(), pa.string()),
}


def udf(
    name: str,
    params: Sequence[str],
    returns: str,
    func: Callable[..., Any],
    *,
    null_in_null_out: bool = True,
    side_effects: bool = False,
) -> CompileRule:
    """Register a row-wise Python UDF on DuckDB and return the rule that calls it.

    ``params``/``returns`` are DuckDB type names. With ``null_in_null_out`` a NULL argument gives
    NULL without calling ``func``, so ``func`` sees only values.
    """
    body = rowwise(func, _ARROW_OF_DUCKDB[returns], arity=len(params), null_in_null_out=null_in_null_out)
    REGISTRY.register_udf(
        PythonUdf(
            name=name,
            params=tuple(params),
            returns=returns,
            fn=body,
            # NULL checks happen in ``rowwise``: DuckDB's default handling forbids NULL results,
            # and failing rows must become NULL.
            null_handling="special",
            side_effects=side_effects,
        )
    )
    return call_rule(name)


def arrow_udf(
    name: str,
    params: Sequence[str],
    returns: str,
    body: Callable[..., pa.Array],
    *,
    null_in_null_out: bool = True,
) -> CompileRule:
    """Register an already-vectorized Arrow UDF body and return the rule that calls it."""
    REGISTRY.register_udf(
        PythonUdf(
            name=name,
            params=tuple(params),
            returns=returns,
            fn=_with_arity(body, len(params)),
            null_handling="default" if null_in_null_out else "special",
        )
    )
    return call_rule(name)


def call_rule(name: str) -> CompileRule:
    """Call DuckDB function ``name`` with the (already cast) arguments."""

    def compile_call(call: Call) -> exp.Expression:
        return fn(name, *call.sql)

    return compile_call


def fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=[a.copy() for a in args])


def cast_to(node: exp.Expression, sql_type: st.SqlType | str) -> exp.Expression:
    """``CAST(node AS type)``; ``sql_type`` is a SQL type or DuckDB type text."""
    text = sql_type if isinstance(sql_type, str) else st.to_duckdb(sql_type)
    return exp.Cast(this=node.copy(), to=exp.DataType.build(text, dialect="duckdb"))


def sql(text: str) -> exp.Expression:
    """Parse DuckDB SQL text (used for constant fragments)."""
    tree = sqlglot.parse_one(text, read="duckdb")
    assert isinstance(tree, exp.Expression)  # sqlglot types parse results as the Expr base
    return tree


def list_of(args: Sequence[exp.Expression]) -> exp.Expression:
    """A DuckDB list literal ``[a, b, ...]`` (how variadic arguments reach a Python UDF)."""
    return exp.Array(expressions=[a.copy() for a in args])


# ---------------------------------------------------------------------------------------------
# UUID, RANDOM


def _uuid_from_bytes(value: bytes) -> str:
    return str(uuid.UUID(bytes=value))


REGISTRY.register(
    ScalarFunction(
        name="UUID",
        category=Category.STRING,
        description="Create a Universally Unique Identifier (UUID) generated according to RFC 4122. "
        "A call to UUID() returns a value conforming to UUID version 4, sometimes called "
        "\"random UUID\", as described in RFC 4122. A call to UUID(bytes) returns a value "
        "conforming to UUID. The value is a 128-bit number represented as a string of five "
        "hexadecimal numbers aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.",
        variants=(
            Variant("", returns="STRING", compile=sql_template("CAST(uuid() AS VARCHAR)")),
            Variant(
                "bytes BYTES",
                returns="STRING",
                compile=udf("ksql_uuid_from_bytes", ("BLOB",), "VARCHAR", _uuid_from_bytes),
            ),
        ),
    )
)

REGISTRY.register(
    ScalarFunction(
        name="RANDOM",
        category=Category.MATHEMATICAL,
        description="Returns a random DOUBLE value between 0.0 and 1.0.",
        variants=(Variant("", returns="DOUBLE", compile=sql_template("random()")),),
    )
)
