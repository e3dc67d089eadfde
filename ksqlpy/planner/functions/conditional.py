"""ksqlDB's null-handling functions: COALESCE, IFNULL, NULLIF (generic over one type ``T``).

They compile to DuckDB's functions of the same meaning; the registry's generic binding enforces
ksqlDB's rule that all arguments share one type.
"""

from __future__ import annotations

from ksqlpy.planner.functions.registry import REGISTRY, Category, ScalarFunction, Variant, sql_call

REGISTRY.register(ScalarFunction(
    name="COALESCE",
    category=Category.CONDITIONAL,
    description="Returns the first parameter that is not NULL.",
    variants=(Variant("first T, others T...", returns="T", compile=sql_call("coalesce")),),
))
REGISTRY.register(ScalarFunction(
    name="IFNULL",
    category=Category.CONDITIONAL,
    description="Returns expression if not NULL, otherwise the alternative value.",
    variants=(Variant("expression T, altValue T", returns="T", compile=sql_call("coalesce")),),
))
REGISTRY.register(ScalarFunction(
    name="NULLIF",
    category=Category.CONDITIONAL,
    description="Returns NULL if expr1 is equal to expr2; otherwise, returns expr1.",
    variants=(Variant("expr1 T, expr2 T", returns="T", compile=sql_call("nullif")),),
))
