"""ksqlDB's array and map functions, compiled to DuckDB list and map expressions.

Java collection semantics are kept where DuckDB's defaults differ: set operations (ARRAY_DISTINCT,
ARRAY_UNION, ...) keep the first occurrence's order and keep NULL as an element (a
``LinkedHashSet``), ARRAY_CONTAINS finds NULL elements, ARRAY_SORT puts NULLs last, SLICE is NULL
out of range (``List.subList`` throwing), and AS_VALUE is the identity that makes a key column a
value column.
"""

from __future__ import annotations

from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.registry import (
    REGISTRY,
    Call,
    Category,
    ScalarFunction,
    Variant,
    sql_template,
)

A = Category.ARRAY
M = Category.MAP


def _register(name: str, category: Category, description: str, *variants: Variant) -> None:
    REGISTRY.register(ScalarFunction(name=name, category=category, description=description, variants=variants))


# A list's distinct elements in first-occurrence order; list_position matches NULL elements too.
_DISTINCT = "list_filter({0}, lambda __dx, __di: list_position({0}, __dx) = __di)"


def _distinct_of(list_sql: str) -> str:
    return _DISTINCT.replace("{0}", f"({list_sql})")


_register(
    "ARRAY_DISTINCT", A, "Returns an array of all the distinct values, including NULL if present, from the "
    "input array. The output array elements will be in order of their first occurrence in the input.",
    Variant("input ARRAY<T>", returns="ARRAY<T>", compile=sql_template(_distinct_of("{0}"))),
)
_register(
    "ARRAY_UNION", A, "Returns an array of all the distinct elements from both input arrays, in the order "
    "they're encountered.",
    Variant(
        "left ARRAY<T>, right ARRAY<T>",
        returns="ARRAY<T>",
        compile=sql_template(
            "CASE WHEN {0} IS NULL OR {1} IS NULL THEN NULL ELSE " + _distinct_of("list_concat({0}, {1})") + " END"
        ),
    ),
)
_register(
    "ARRAY_INTERSECT", A, "Returns an array of all the distinct elements from the intersection of both "
    "input arrays, in the order they're found in the first array.",
    Variant(
        "left ARRAY<T>, right ARRAY<T>",
        returns="ARRAY<T>",
        compile=sql_template(
            "CASE WHEN {1} IS NULL THEN NULL ELSE "
            + _distinct_of("list_filter({0}, lambda __ix: list_position({1}, __ix) IS NOT NULL)")
            + " END"
        ),
    ),
)
_register(
    "ARRAY_EXCEPT", A, "Returns an array of all the distinct elements from an array, except for those also "
    "present in a second array. The order of entries in the first array is preserved.",
    Variant(
        "left ARRAY<T>, right ARRAY<T>",
        returns="ARRAY<T>",
        compile=sql_template(
            "CASE WHEN {1} IS NULL THEN NULL ELSE "
            + _distinct_of("list_filter({0}, lambda __ex: list_position({1}, __ex) IS NULL)")
            + " END"
        ),
    ),
)
_register(
    "ARRAY_REMOVE", A, "Removes all elements from the input array equal to element.",
    Variant(
        "array ARRAY<T>, victim T",
        returns="ARRAY<T>",
        compile=sql_template(
            "CASE WHEN {1} IS NULL THEN list_filter({0}, lambda __rx: __rx IS NOT NULL) "
            "ELSE list_filter({0}, lambda __rx: __rx IS NULL OR __rx <> {1}) END"
        ),
    ),
)
_register(
    "ARRAY_CONCAT", A, "Returns an array representing the concatenation of both input arrays.",
    Variant(
        "left ARRAY<T>, right ARRAY<T>",
        returns="ARRAY<T>",
        compile=sql_template(
            "CASE WHEN {0} IS NULL AND {1} IS NULL THEN NULL ELSE list_concat(coalesce({0}, []), coalesce({1}, [])) END"
        ),
    ),
)
_register(
    "ARRAY_CONTAINS", A, "Returns true if the array is non-null and contains the supplied value.",
    Variant(
        "array ARRAY<T>, val T",
        returns="BOOLEAN",
        compile=sql_template("coalesce(list_position({0}, {1}) IS NOT NULL, FALSE)"),
    ),
)
_register(
    "ARRAY_LENGTH", A, "Returns the length on an array.",
    Variant("array ARRAY<T>", returns="INT", compile=sql_template("CAST(len({0}) AS INTEGER)")),
)
_register(
    "ARRAY_MAX", A, "Return the maximum value from within an array of primitive values, according to their "
    "natural sort order. If the array is empty, or contains only NULLs, returns NULL.",
    Variant("input ARRAY<T>", returns="T", compile=sql_template("list_max({0})")),
)
_register(
    "ARRAY_MIN", A, "Return the minimum value from within an array of primitive values, according to their "
    "natural sort order. If the array is empty, or contains only NULLs, returns NULL.",
    Variant("input ARRAY<T>", returns="T", compile=sql_template("list_min({0})")),
)
_register(
    "ARRAY_SORT", A, "Sort an array of primitive values, according to their natural sort order. Any NULLs in "
    "the array will be placed at the end.",
    Variant("input ARRAY<T>", returns="ARRAY<T>", compile=sql_template("list_sort({0}, 'ASC', 'NULLS LAST')")),
    Variant(
        "input ARRAY<T>, direction STRING",
        returns="ARRAY<T>",
        compile=sql_template(
            "CASE upper({1}) WHEN 'ASC' THEN list_sort({0}, 'ASC', 'NULLS LAST') "
            "WHEN 'DESC' THEN list_sort({0}, 'DESC', 'NULLS LAST') ELSE NULL END"
        ),
    ),
)
# ksqlDB renders elements with Java's String.valueOf: NULL elements become "null".
_JOIN = "array_to_string(list_transform({0}, lambda __jx: coalesce(CAST(__jx AS VARCHAR), 'null')), {1})"
_register(
    "ARRAY_JOIN", A, "Creates a flat string representation of all the elements contained in the given array.",
    Variant("array ARRAY<T>", returns="STRING", compile=sql_template(_JOIN.replace("{1}", "','"))),
    Variant(
        "array ARRAY<T>, delimiter STRING",
        returns="STRING",
        compile=sql_template(_JOIN.replace("{1}", "coalesce({1}, '')")),
    ),
)
# List.subList(from - 1, to): NULL bounds mean the list's ends; out-of-range bounds are an error,
# which ksqlDB turns into NULL.
_register(
    "SLICE", A, "Slices a list based on the supplied indices. The indices start at index 1 and include both "
    "endpoints.",
    Variant(
        "list ARRAY<T>, from INT, to INT",
        returns="ARRAY<T>",
        compile=sql_template(
            "CASE WHEN coalesce({1}, 1) < 1 OR coalesce({2}, len({0})) > len({0}) "
            "OR coalesce({1}, 1) - 1 > coalesce({2}, len({0})) THEN NULL "
            "ELSE list_slice({0}, coalesce({1}, 1), coalesce({2}, len({0}))) END"
        ),
    ),
)


def _generate_series(call: Call) -> exp.Expression:
    step = "{2}" if len(call.args) == 3 else "CASE WHEN {0} <= {1} THEN 1 ELSE -1 END"
    element = st.to_duckdb(call.return_type.element) if isinstance(call.return_type, st.Array) else "BIGINT"
    text = (
        f"CASE WHEN {step} = 0 THEN NULL ELSE "
        f"CAST(generate_series(CAST({{0}} AS BIGINT), CAST({{1}} AS BIGINT), CAST({step} AS BIGINT)) "
        f"AS {element}[]) END"
    )
    return sql_template(text)(call)


_register(
    "GENERATE_SERIES", A, "Construct an array of a range of values.",
    Variant("start INT, end INT", returns="ARRAY<INT>", compile=_generate_series),
    Variant("start INT, end INT, step INT", returns="ARRAY<INT>", compile=_generate_series),
    Variant("start BIGINT, end BIGINT", returns="ARRAY<BIGINT>", compile=_generate_series),
    Variant("start BIGINT, end BIGINT, step INT", returns="ARRAY<BIGINT>", compile=_generate_series),
)

# ---------------------------------------------------------------------------------------------
# Maps

_register(
    "MAP_KEYS", M, "Returns an array that contains all of the keys from the specified map.",
    Variant("input MAP<STRING, T>", returns="ARRAY<STRING>", compile=sql_template("map_keys({0})")),
)
_register(
    "MAP_VALUES", M, "Returns an array that contains all of the values from the specified map.",
    Variant("input MAP<STRING, T>", returns="ARRAY<T>", compile=sql_template("map_values({0})")),
)
_register(
    "MAP_UNION", M, "Returns a new map containing the union of all entries from both input maps. If a key is "
    "present in both input maps then the corresponding value from map2 will be returned.",
    Variant(
        "map1 MAP<STRING, T>, map2 MAP<STRING, T>",
        returns="MAP<STRING, T>",
        compile=sql_template(
            "CASE WHEN {0} IS NULL AND {1} IS NULL THEN NULL "
            "WHEN {0} IS NULL THEN {1} WHEN {1} IS NULL THEN {0} ELSE map_concat({0}, {1}) END"
        ),
    ),
)
_register(
    "AS_MAP", M, "Construct a map from a list of keys and a list of values.",
    Variant(
        "keys ARRAY<STRING>, vals ARRAY<T>",
        returns="MAP<STRING, T>",
        compile=sql_template(
            "map_from_entries(list_transform(list_filter(generate_series(1, least(len({0}), len({1}))), "
            "lambda __mi: {0}[__mi] IS NOT NULL), lambda __mi: struct_pack(k := {0}[__mi], v := {1}[__mi])))"
        ),
    ),
)

# ---------------------------------------------------------------------------------------------
# AS_VALUE: a key column copied into the value (the identity on values).

REGISTRY.register(
    ScalarFunction(
        name="AS_VALUE",
        category=Category.OTHER,
        description="Used exclusively in the projection of a query to allow a key column to be copied "
        "into the value schema. Has no effect if used anywhere else.",
        variants=(Variant("val T", returns="T", compile=sql_template("{0}")),),
    )
)
