"""Core functions next to the operators: lambda functions over arrays and maps (TRANSFORM,
FILTER, REDUCE) and the DuckDB helpers the expression compiler relies on.

Array lambdas compile to DuckDB's ``list_transform``/``list_filter``/``list_reduce``. DuckDB has no
lambdas over maps, so a map lambda runs over ``map_entries(m)`` with its ``(k, v)`` parameters
substituted by the entry's ``key`` and ``value`` (:func:`apply_lambda`), and the result is rebuilt
with ``map_from_entries``.

Where ksqlDB's generated Java would throw for some element (a NULL unboxed by arithmetic, see
``LAMBDA_THROWS``), or ``Collectors.toMap`` would (a NULL value, a repeated key), the whole call is
NULL. REDUCE over a map folds the entries in Java ``HashMap`` order, which the JSON deserializer's
maps iterate in, so a fold that does not commute gives ksqlDB's result.
"""

from __future__ import annotations

import math

import pyarrow as pa
from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.registry import (
    LAMBDA_THROWS,
    REGISTRY,
    Call,
    Category,
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


def _case_null(condition: exp.Expression | None, result: exp.Expression) -> exp.Expression:
    if condition is None:
        return result
    return exp.Case(ifs=[exp.If(this=condition, true=exp.Null())], default=result)


def _throws_over(items: exp.Expression, lam: exp.Expression,
                 *args: exp.Expression, item: str | None = None) -> exp.Expression | None:
    """True when ``lam`` throws for some element of list ``items``; None when it never can.

    With ``item``, each element is named so and ``args`` (over it) stand for the parameters.
    """
    throws = lam.meta.get(LAMBDA_THROWS)
    if throws is None:
        return None
    check = exp.Lambda(this=throws.copy(), expressions=[p.copy() for p in lam.expressions])
    if item is not None:
        check = exp.Lambda(this=apply_lambda(check, *args), expressions=[exp.to_identifier(item)])
    return _fn("list_bool_or", _fn("list_transform", items, check))


def _any(*conditions: exp.Expression | None) -> exp.Expression | None:
    present = [c for c in conditions if c is not None]
    if not present:
        return None
    folded = present[0]
    for c in present[1:]:
        folded = exp.Or(this=folded, expression=c)
    return folded


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
    # Collectors.toMap throws on a NULL value and on a repeated key
    pairs = f"{entry_name}_pair"
    null_value = _fn("list_bool_or", _fn("list_transform", entries.copy(), exp.Lambda(
        this=exp.Is(this=_field(exp.column(pairs), "value"), expression=exp.Null()),
        expressions=[exp.to_identifier(pairs)])))
    keys = _fn("list_transform", entries.copy(), exp.Lambda(
        this=_field(exp.column(pairs), "key"), expressions=[exp.to_identifier(pairs)]))
    repeated = exp.NEQ(this=_fn("len", _fn("list_distinct", keys)), expression=_fn("len", keys.copy()))
    fails = _any(
        _throws_over(_fn("map_entries", m.copy()), key_fn, k, v, item=entry_name),
        _throws_over(_fn("map_entries", m.copy()), value_fn, k, v, item=entry_name),
        null_value,
        repeated,
    )
    return _case_null(fails, _fn("map_from_entries", entries))


def _filter_map(call: Call) -> exp.Expression:
    m, predicate = call.sql
    entry_name = _entry_name(call)
    entry = exp.column(entry_name)
    keep = apply_lambda(predicate, _field(entry, "key"), _field(entry, "value"))
    kept = _fn("map_from_entries",
               _fn("list_filter", _fn("map_entries", m), _over_entries(m, keep, entry_name)))
    throws = _throws_over(_fn("map_entries", m.copy()), predicate, _field(entry, "key"),
                          _field(entry, "value"), item=entry_name)
    return _case_null(throws, kept)


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
    entries: exp.Expression = _fn("coalesce", _fn("map_entries", m), exp.Array(expressions=[]))
    map_type = call.args[0].type
    if isinstance(map_type, st.Map) and map_type.key == st.STRING:
        # ksqlDB folds in HashMap iteration order, not in the order the entries were written
        index = f"{entry_name}_index"
        order = _fn("ksql_java_hashmap_order", _fn("map_keys", m.copy()))
        entries = _fn("list_transform", _fn("coalesce", order, exp.Array(expressions=[])), exp.Lambda(
            this=exp.Bracket(this=entries, expressions=[exp.column(index)]),
            expressions=[exp.to_identifier(index)]))
    return _fn("list_reduce", entries, lam, initial)


def _transform_array(call: Call) -> exp.Expression:
    array, function = call.sql
    return _case_null(_throws_over(array.copy(), function), _fn("list_transform", array, function))


def _filter_array(call: Call) -> exp.Expression:
    array, function = call.sql
    return _case_null(_throws_over(array.copy(), function), _fn("list_filter", array, function))


def _java_string_hash(text: str) -> int:
    h = 0
    data = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):  # over UTF-16 code units, as String.hashCode
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h


def java_hashmap_order(keys: list[str]) -> list[int]:
    """1-based positions of ``keys`` in the iteration order of a ``new HashMap<>(keys.size())``
    they were put into in turn: by bucket of the table as grown, then by insertion (resizes keep
    a bucket's order)."""
    capacity = 1
    while capacity < len(keys):
        capacity *= 2
    while len(keys) > 0.75 * capacity:
        capacity *= 2

    def bucket(key: str) -> int:
        h = _java_string_hash(key)
        return (h ^ (h >> 16)) & (capacity - 1)

    return [i + 1 for i in sorted(range(len(keys)), key=lambda i: (bucket(keys[i]), i))]


def _hashmap_order(keys: pa.Array) -> pa.Array:
    return pa.array([None if ks is None else java_hashmap_order(ks) for ks in keys.to_pylist()],
                    type=pa.list_(pa.int64()))


REGISTRY.register_udf(
    PythonUdf(name="ksql_java_hashmap_order", params=("VARCHAR[]",), returns="BIGINT[]", fn=_hashmap_order)
)


REGISTRY.register(
    ScalarFunction(
        name="TRANSFORM",
        category=Category.LAMBDA,
        description="Apply a function to each element in an array or each entry in a map. "
        "Transform a map by applying a function to each key and each value.",
        variants=(
            Variant("array ARRAY<T>, function LAMBDA<(T) => O>", returns="ARRAY<O>",
                    compile=_transform_array),
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
                    compile=_filter_array),
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
