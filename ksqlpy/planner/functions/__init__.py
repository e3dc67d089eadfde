"""ksqlDB's built-in functions, registered in :data:`~ksqlpy.planner.functions.registry.REGISTRY`.

Each ``builtins_<family>.py`` module of this package registers one family of functions when
imported; importing this package imports them all, so ``REGISTRY`` is complete once
``ksqlpy.planner.functions`` is imported. A new family needs only a new ``builtins_*`` module.
"""

from __future__ import annotations

import importlib
import pkgutil

from ksqlpy.planner.functions.registry import (
    REGISTRY,
    AggregateFunction,
    Call,
    Category,
    Compiled,
    FunctionKind,
    FunctionRegistry,
    Param,
    PythonUdf,
    Resolution,
    ScalarFunction,
    SqlMacro,
    Variant,
    register_udfs,
    sql_call,
    sql_template,
)


def _load_builtins() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("builtins_"):
            importlib.import_module(f"{__name__}.{info.name}")


_load_builtins()

__all__ = [
    "REGISTRY",
    "AggregateFunction",
    "Call",
    "Category",
    "Compiled",
    "FunctionKind",
    "FunctionRegistry",
    "Param",
    "PythonUdf",
    "Resolution",
    "ScalarFunction",
    "SqlMacro",
    "Variant",
    "register_udfs",
    "sql_call",
    "sql_template",
]
