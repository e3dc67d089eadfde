"""Expressions printed as ksqlDB prints them in error messages (its ``ExpressionFormatter``).

Binary operations are parenthesised (``(A + 1)``), string literals single-quoted, booleans
lower-case, and a double literal in scientific notation; messages such as
``Cannot compare ID (INTEGER) to 'x' (STRING) with GREATER_THAN_OR_EQUAL.`` embed this text.
"""

from __future__ import annotations

import re

from ksqlpy.parser import ast

_PLAIN_NAME = re.compile(r"[A-Z_0-9]+")


def format_name(name: str) -> str:
    """An identifier, back-quoted when it would not read back the same unquoted (reserved
    words included)."""
    from ksqlpy import parser

    if _PLAIN_NAME.fullmatch(name) and not name.isdigit() and name not in parser.RESERVED_WORDS:
        return name
    return "`" + name.replace("`", "``") + "`"


def format_type(t: ast.TypeNode) -> str:
    match t:
        case ast.PrimitiveType(name=n):
            return n
        case ast.DecimalType(precision=p, scale=s):
            return f"DECIMAL({p}, {s})"
        case ast.ArrayType(element=e):
            return f"ARRAY<{format_type(e)}>"
        case ast.MapType(key=k, value=v):
            return f"MAP<{format_type(k)}, {format_type(v)}>"
        case ast.StructType(fields=fs):
            return "STRUCT<" + ", ".join(f"{format_name(f.name)} {format_type(f.type)}" for f in fs) + ">"
        case ast.NamedType(name=n):
            return n
    raise TypeError(t)


def _double_text(value: float) -> str:
    # ksqlDB prints double literals in scientific notation with as few digits as round-trip.
    candidate = f"{value:.16E}"
    for precision in range(17):
        candidate = f"{value:.{precision}E}"
        if float(candidate) == value:
            break
    mantissa, _, exponent = candidate.partition("E")
    return f"{mantissa}E{int(exponent)}"


def format_expr(e: ast.Expr) -> str:
    match e:
        case ast.NullLiteral():
            return "null"
        case ast.BooleanLiteral(value=v):
            return "true" if v else "false"
        case ast.IntegerLiteral(value=v):
            return str(v)
        case ast.DecimalLiteral(text=t):
            return t
        case ast.DoubleLiteral(value=v):
            return _double_text(v)
        case ast.StringLiteral(value=v):
            return "'" + v.replace("'", "''") + "'"
        case ast.ColumnRef(name=n, source=s):
            return f"{format_name(s)}.{format_name(n)}" if s else format_name(n)
        case ast.Dereference(base=b, field=f):
            return f"{format_expr(b)}->{format_name(f)}"
        case ast.Subscript(base=b, index=i):
            return f"{format_expr(b)}[{format_expr(i)}]"
        case ast.ArithmeticUnary(negative=neg, operand=o):
            inner = format_expr(o)
            sign = "-" if neg else "+"
            return f"{sign} {inner}" if inner.startswith(sign) else f"{sign}{inner}"
        case ast.ArithmeticBinary(op=op, left=l, right=r):
            return f"({format_expr(l)} {op.value} {format_expr(r)})"
        case ast.Comparison(op=ast.ComparisonOp.IS_NOT_DISTINCT_FROM, left=l, right=r):
            # ksqlDB's parser reads IS NOT DISTINCT FROM as NOT (... IS DISTINCT FROM ...)
            return f"(NOT ({format_expr(l)} IS DISTINCT FROM {format_expr(r)}))"
        case ast.Comparison(op=op, left=l, right=r):
            return f"({format_expr(l)} {op.value} {format_expr(r)})"
        case ast.LogicalBinary(op=op, left=l, right=r):
            return f"({format_expr(l)} {op.value} {format_expr(r)})"
        case ast.Not(operand=o):
            return f"(NOT {format_expr(o)})"
        case ast.IsNull(operand=o, negated=neg):
            return f"({format_expr(o)} IS {'NOT ' if neg else ''}NULL)"
        case ast.Like(value=v, pattern=p, escape=esc, negated=neg):
            text = f"({format_expr(v)} LIKE {format_expr(p)}" + (f" ESCAPE '{esc}'" if esc else "") + ")"
            return f"(NOT {text})" if neg else text
        case ast.Between(value=v, low=lo, high=hi, negated=neg):
            text = f"({format_expr(v)} BETWEEN {format_expr(lo)} AND {format_expr(hi)})"
            return f"(NOT {text})" if neg else text
        case ast.InList(value=v, items=items, negated=neg):
            text = f"({format_expr(v)} IN (" + ", ".join(format_expr(i) for i in items) + "))"
            return f"(NOT {text})" if neg else text
        case ast.SearchedCase(whens=ws, default=d):
            parts = ["CASE", *(f"WHEN {format_expr(w.condition)} THEN {format_expr(w.result)}" for w in ws)]
            if d is not None:
                parts.append(f"ELSE {format_expr(d)}")
            return "(" + " ".join([*parts, "END"]) + ")"
        case ast.SimpleCase(operand=o, whens=ws, default=d):
            parts = ["CASE", format_expr(o)]
            parts += [f"WHEN {format_expr(w.condition)} THEN {format_expr(w.result)}" for w in ws]
            if d is not None:
                parts.append(f"ELSE {format_expr(d)}")
            return "(" + " ".join([*parts, "END"]) + ")"
        case ast.Cast(operand=o, type=t):
            return f"CAST({format_expr(o)} AS {format_type(t)})"
        case ast.IntervalUnit(unit=u):
            return u
        case ast.FunctionCall(name=n, args=args, star=star):
            inner = "*" if star else ", ".join(format_expr(a) for a in args)
            return f"{n}({inner})"
        case ast.Lambda(params=ps, body=b):
            return "(" + ", ".join(ps) + ") => " + format_expr(b)
        case ast.CreateArray(items=items):
            return "ARRAY[" + ", ".join(format_expr(i) for i in items) + "]"
        case ast.CreateMap(entries=entries):
            return "MAP(" + ", ".join(f"{format_expr(k)}:={format_expr(v)}" for k, v in entries) + ")"
        case ast.CreateStruct(fields=fields):
            return "STRUCT(" + ", ".join(f"{format_name(n)}:={format_expr(v)}" for n, v in fields) + ")"
    raise TypeError(e)
