"""ksqlDB's table functions: EXPLODE and CUBE_EXPLODE.

Each compiles to DuckDB's ``unnest`` over a list, used in a select list: a NULL or empty list
yields no rows, and several table functions in one select list are zipped row by row, the
shorter padded with NULLs (ksqlDB's ``KudtfFlatMapper``).
"""

from __future__ import annotations

from ksqlpy.planner.functions.registry import REGISTRY, Category, TableFunction, Variant, sql_template

REGISTRY.register(
    TableFunction(
        name="explode",
        category=Category.TABLE,
        description="Explodes an array. This function outputs one value for each element of the array.",
        variants=(
            Variant("input ARRAY<DECIMAL>", returns=lambda types: types[0].element, compile=sql_template("unnest({0})")),  # type: ignore[union-attr]
            Variant("list ARRAY<T>", returns="T", compile=sql_template("unnest({0})")),
        ),
    )
)

# Every combination of the elements, each kept or replaced by NULL, in ksqlDB's order (bit i of
# the combination number, counted from the last element, keeps that element). A NULL element is
# only ever NULL, so combinations that would "keep" it are duplicates and are left out.
_CUBE = (
    "unnest(list_transform("
    "list_filter(range(CAST(pow(2, len({0})) AS BIGINT)), lambda __cm: "
    "len(list_filter(range(1, len({0}) + 1), lambda __ci: (__cm >> (len({0}) - __ci)) & 1 = 1 AND {0}[__ci] IS NULL)) = 0), "
    "lambda __cm: list_transform(range(1, len({0}) + 1), lambda __ci: "
    "CASE WHEN (__cm >> (len({0}) - __ci)) & 1 = 1 THEN {0}[__ci] ELSE NULL END)))"
)

REGISTRY.register(
    TableFunction(
        name="CUBE_EXPLODE",
        category=Category.TABLE,
        description="Takes as argument a list of columns and outputs all possible combinations of them.",
        variants=(Variant("input ARRAY<T>", returns="ARRAY<T>", compile=sql_template(_CUBE)),),
    )
)
