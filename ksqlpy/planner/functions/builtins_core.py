"""Core functions next to the operators: lambda functions over arrays and maps (TRANSFORM,
FILTER, REDUCE) and the DuckDB helpers the expression compiler relies on.

Array lambdas compile to DuckDB's ``list_transform``/``list_filter``/``list_reduce``. DuckDB has no
lambdas over maps, so a map lambda runs over ``map_entries(m)`` with its ``(k, v)`` parameters
substituted by the entry's ``key`` and ``value`` (:func:`apply_lambda`), and the result is rebuilt
with ``map_from_entries``.
"""

from __future__ import annotations

import math

import pyarrow as pa
from sqlglot import exp

from ksqlpy.planner.functions.registry import (
    REGISTRY,
    Call,
    Category,
    CompileRule,
    PythonUdf,
    ScalarFunction,
    Variant,
)


def apply_lambda(lam: exp.Expression, *args: exp.Expression) -> exp.Expression:
    """The body of compiled lambda ``lam`` with its parameters replaced by ``args``.

    Lambda parameters have names unique to their compilation, so plain substitution is safe.
    """
    assert isinstance(lam, exp.Lambda)
    names = {p.name: a for p, a in zip(lam.expressions, args)}

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name in names:
            return names[node.name].copy()
        return node

    body: exp.Expression = lam.this
    return body.copy().transform(replace)


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _field(e: exp.Expression, name: str) -> exp.Expression:
    return _fn("struct_extract", e, exp.Literal.string(name))


def _over_entries(m: exp.Expression, body: exp.Expression, entry: str) -> exp.Expression:
    return exp.Lambda(this=body, expressions=[exp.to_identifier(entry)])


def _entry_name(call: Call) -> str:
    # Unique per call site: derived from the lambda's own (already unique) parameter names.
    lam = next(a.sql for a in call.args if isinstance(a.sql, exp.Lambda))
    return f"{lam.expressions[0].name}_entry"


def _transform_map(call: Call) -> exp.Expression:
    m, key_fn, value_fn = call.sql
    entry_name = _entry_name(call)
    entry = exp.column(entry_name)
    k, v = _field(entry, "key"), _field(entry, "value")
    pair = _fn(
        "struct_pack",
        exp.PropertyEQ(this=exp.to_identifier("key"), expression=apply_lambda(key_fn, k, v)),
        exp.PropertyEQ(this=exp.to_identifier("value"), expression=apply_lambda(value_fn, k, v)),
    )
    entries = _fn("list_transform", _fn("map_entries", m), _over_entries(m, pair, entry_name))
    return _fn("map_from_entries", entries)


def _filter_map(call: Call) -> exp.Expression:
    m, predicate = call.sql
    entry_name = _entry_name(call)
    entry = exp.column(entry_name)
    keep = apply_lambda(predicate, _field(entry, "key"), _field(entry, "value"))
    kept = _fn("list_filter", _fn("map_entries", m), _over_entries(m, keep, entry_name))
    return _fn("map_from_entries", kept)


def _reduce_array(call: Call) -> exp.Expression:
    array, initial, reducer = call.sql
    # ksqlDB: a NULL array reduces to the initial state.
    reduced = _fn("list_reduce", _fn("coalesce", array, exp.Array(expressions=[])), reducer, initial)
    return reduced


def _reduce_map(call: Call) -> exp.Expression:
    m, initial, reducer = call.sql
    entry_name = _entry_name(call)
    state_name = f"{entry_name}_state"
    entry = exp.column(entry_name)
    step = apply_lambda(reducer, exp.column(state_name), _field(entry, "key"), _field(entry, "value"))
    lam = exp.Lambda(this=step, expressions=[exp.to_identifier(state_name), exp.to_identifier(entry_name)])
    entries = _fn("coalesce", _fn("map_entries", m), exp.Array(expressions=[]))
    return _fn("list_reduce", entries, lam, initial)


def _list_lambda(duckdb_name: str) -> CompileRule:
    def compile_call(call: Call) -> exp.Expression:
        return _fn(duckdb_name, *call.sql)

    return compile_call


REGISTRY.register(
    ScalarFunction(
        name="TRANSFORM",
        category=Category.LAMBDA,
        description="Apply a function to each element in an array or each entry in a map. "
        "Transform a map by applying a function to each key and each value.",
        variants=(
            Variant("array ARRAY<T>, function LAMBDA<(T) => O>", returns="ARRAY<O>",
                    compile=_list_lambda("list_transform")),
            Variant("map MAP<K, V>, key_function LAMBDA<(K, V) => K1>, value_function LAMBDA<(K, V) => V1>",
                    returns="MAP<K1, V1>", compile=_transform_map),
        ),
    )
)

REGISTRY.register(
    ScalarFunction(
        name="FILTER",
        category=Category.LAMBDA,
        description="Filter an array or map with a boolean function: keep the elements or entries "
        "for which it returns true.",
        variants=(
            Variant("array ARRAY<T>, function LAMBDA<(T) => BOOLEAN>", returns="ARRAY<T>",
                    compile=_list_lambda("list_filter")),
            Variant("map MAP<K, V>, function LAMBDA<(K, V) => BOOLEAN>", returns="MAP<K, V>",
                    compile=_filter_map),
        ),
    )
)

REGISTRY.register(
    ScalarFunction(
        name="REDUCE",
        category=Category.LAMBDA,
        description="Reduce an array or map to a single value, starting from an initial state "
        "and folding each element or entry into it.",
        variants=(
            Variant("array ARRAY<T>, initialState S, function LAMBDA<(S, T) => S>", returns="S",
                    compile=_reduce_array),
            Variant("map MAP<K, V>, initialState S, function LAMBDA<(S, K, V) => S>", returns="S",
                    compile=_reduce_map),
        ),
    )
)


# ---- DOUBLE -> STRING in Java's Double.toString scientific form (|x| < 1e-3 or >= 1e7).


def _java_scientific(x: float) -> str:
    digits = repr(x)  # shortest round-trip digits, as Java 19+ prints
    mantissa, _, exponent = f"{float(digits):.17e}".partition("e")
    for precision in range(17):
        candidate = f"{x:.{precision}e}"
        if float(candidate) == x:
            mantissa, _, exponent = candidate.partition("e")
            break
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}E{int(exponent)}"


def _double_sci_string(values: pa.Array) -> pa.Array:
    # Only values outside [1e-3, 1e7) reach here (the cast's CASE routes the rest), so few rows.
    return pa.array(
        [None if v is None or math.isnan(v) else _java_scientific(v) for v in values.to_pylist()],
        type=pa.string(),
    )


REGISTRY.register_udf(
    PythonUdf(name="ksql_double_sci_string", params=("DOUBLE",), returns="VARCHAR", fn=_double_sci_string)
)
