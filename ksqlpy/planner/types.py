"""Resolving written types (AST type nodes) to SQL types, custom types included."""

from __future__ import annotations

from collections.abc import Mapping

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError
from ksqlpy.parser import ast


def resolve_type(node: ast.TypeNode, custom: Mapping[str, sqltypes.SqlType]) -> sqltypes.SqlType:
    """The SQL type a type node denotes; named types are looked up in ``custom``."""
    match node:
        case ast.PrimitiveType(name=name):
            found = sqltypes.PRIMITIVES_BY_NAME.get(name.upper())
            if found is None:
                return _named(name, custom, node)
            return found
        case ast.DecimalType(precision=p, scale=s):
            if p < 1:
                raise AnalysisError("DECIMAL precision must be >= 1", pos=node.pos)
            if s < 0 or s > p:
                raise AnalysisError(
                    f"DECIMAL scale must be between 0 and precision {p}: {s}", pos=node.pos
                )
            return sqltypes.Decimal(p, s)
        case ast.ArrayType(element=e):
            return sqltypes.Array(resolve_type(e, custom))
        case ast.MapType(key=k, value=v):
            return sqltypes.Map(resolve_type(k, custom), resolve_type(v, custom))
        case ast.StructType(fields=fields):
            return sqltypes.Struct(
                tuple(sqltypes.Field(f.name, resolve_type(f.type, custom)) for f in fields)
            )
        case ast.NamedType(name=name):
            return _named(name, custom, node)
    raise TypeError(node)


def _named(name: str, custom: Mapping[str, sqltypes.SqlType], node: ast.TypeNode) -> sqltypes.SqlType:
    found = custom.get(name) or custom.get(name.upper())
    if found is None:
        raise AnalysisError(f"Unknown type: {name}", pos=node.pos)
    return found
