"""Type-check ksqlDB expressions and compile them to DuckDB SQL (sqlglot trees).

:func:`compile_expression` walks an AST expression once, bottom-up, producing a
:class:`~ksqlpy.planner.functions.registry.Compiled`: its ksqlDB type and the DuckDB expression
computing it (``.sql.sql("duckdb")`` is the text). Typing follows ksqlDB's
``ExpressionTypeManager``; values follow the Java code ksqlDB generates (see ``operators`` and
``casts`` for arithmetic, comparison and CAST). :func:`infer_type` is the same walk when only
the type is wanted.

The compiled SQL reads columns through the :class:`~ksqlpy.planner.expressions.scope.Scope`, calls
only DuckDB built-ins and the UDFs installed by ``register_udfs(con)``, and is NULL wherever
ksqlDB's evaluation would fail and log (bad casts, division by zero, ...).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import functools
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError, Position
from ksqlpy.parser import ast
from ksqlpy.planner.expressions import sqlbuild as sb
from ksqlpy.planner.expressions.casts import cast_value, check_cast
from ksqlpy.planner.expressions.formatter import format_expr
from ksqlpy.planner.expressions.operators import (
    arithmetic_type,
    check_comparison,
    compile_arithmetic,
    compile_comparison,
    compile_negate,
)
from ksqlpy.planner.expressions.scope import (
    LambdaScope,
    Resolved,
    Scope,
    struct_field_name,
    struct_field_names,
)
from ksqlpy.planner.functions import REGISTRY
from ksqlpy.planner.functions.registry import (
    LAMBDA_THROWS,
    NO_VALUE,
    ArgType,
    BaseParam,
    Call,
    Compiled,
    FunctionRegistry,
    LambdaArg,
    LambdaParam,
    Resolution,
    UnitArg,
)
from ksqlpy.planner.types import resolve_type

B = st.BaseType
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


@dataclass(slots=True)
class _Compiler:
    scope: Scope
    registry: FunctionRegistry
    custom_types: Mapping[str, st.SqlType]
    _lambda_ids: itertools.count[int] = field(default_factory=itertools.count)
    # Inside a lambda body: the NULL tests of operands that Java arithmetic would unbox (a
    # NullPointerException there makes ksqlDB's whole lambda function NULL). None elsewhere,
    # and while compiling a branch that Java may not evaluate.
    _unboxed: list[exp.Expression] | None = None

    # ---- entry

    def compile(self, e: ast.Expr, scope: Scope | None = None) -> Compiled:
        scope = scope if scope is not None else self.scope
        match e:
            case ast.NullLiteral():
                return Compiled(exp.Null(), None, None)
            case ast.BooleanLiteral(value=v):
                return Compiled(exp.true() if v else exp.false(), st.BOOLEAN, v)
            case ast.IntegerLiteral(value=v):
                t: st.SqlType = st.INTEGER if _INT_MIN <= v <= _INT_MAX else st.BIGINT
                return Compiled(sb.cast(sb.num(v), t), t, v)
            case ast.DecimalLiteral(text=text):
                t = decimal_literal_type(text)
                return Compiled(sb.cast(exp.Literal.string(text), t), t, decimal.Decimal(text))
            case ast.DoubleLiteral(value=v):
                return Compiled(sb.cast(exp.Literal.string(repr(v)), st.DOUBLE), st.DOUBLE, v)
            case ast.StringLiteral(value=v):
                return Compiled(exp.Literal.string(v), st.STRING, v)
            case ast.ColumnRef():
                resolved = scope.resolve(e)
                return Compiled(resolved.sql, resolved.type)
            case ast.IntervalUnit(unit=u):
                return Compiled(exp.Literal.string(u), None, unit=u)
            case ast.Dereference():
                return self._dereference(e, scope)
            case ast.Subscript():
                return self._subscript(e, scope)
            case ast.ArithmeticUnary(negative=neg, operand=o):
                value = self.compile(o, scope)
                if value.type is None or not st.is_numeric(value.type):
                    raise AnalysisError(
                        f"Error processing expression: {format_expr(e)}. "
                        f"Unary arithmetic is not supported on type {value.type or 'null'}.",
                        pos=e.pos,
                    )
                return Compiled(compile_negate(value) if neg else value.sql, value.type)
            case ast.ArithmeticBinary(op=op, left=l, right=r):
                left, right = self.compile(l, scope), self.compile(r, scope)
                result = arithmetic_type(e, left.type, right.type)
                if self._unboxed is not None and st.is_numeric(result):  # strings concatenate "null"
                    self._unboxed.extend(
                        exp.Is(this=sb.paren(x.sql.copy()), expression=exp.Null())
                        for x in (left, right)
                        if not x.is_constant
                    )
                return Compiled(compile_arithmetic(op, left, right, result), result)
            case ast.Comparison(op=op, left=l, right=r):
                l, r = time_literal(l, r), time_literal(r, l)
                left, right = self.compile(l, scope), self.compile(r, scope)
                check_comparison(e, left.type, right.type)
                return Compiled(compile_comparison(op, left, right), st.BOOLEAN)
            case ast.LogicalBinary(op=op):
                # A chain of one operator (a OR b OR c ...) folds from the right: Java's
                # short-circuit operators are associative, and only a right fold keeps the SQL
                # linear in size (a nullable left operand is repeated once per level).
                with self._lazy():
                    operands = [self._boolean(x, scope, "Logical operands") for x in _chain(e, op)]
                folded = operands[-1].sql
                for operand in reversed(operands[:-1]):
                    folded = _java_logical(op, operand.sql, folded)
                return Compiled(folded, st.BOOLEAN)
            case ast.Not(operand=o):
                value = self._boolean(o, scope, "NOT operand")
                return Compiled(exp.Not(this=sb.paren(value.sql)), st.BOOLEAN)
            case ast.IsNull(operand=o, negated=neg):
                value = self.compile(o, scope)
                test = exp.Is(this=sb.paren(value.sql), expression=exp.Null())
                return Compiled(exp.Not(this=test) if neg else test, st.BOOLEAN)
            case ast.Like():
                return self._like(e, scope)
            case ast.Between():
                return self._between(e, scope)
            case ast.InList():
                return self._in_list(e, scope)
            case ast.SearchedCase():
                with self._lazy():
                    return self._searched_case(e, scope)
            case ast.SimpleCase(operand=operand, whens=whens, default=default):
                searched = ast.SearchedCase(
                    whens=tuple(
                        ast.WhenClause(
                            condition=ast.Comparison(op=ast.ComparisonOp.EQUAL, left=operand, right=w.condition, pos=w.pos),
                            result=w.result,
                            pos=w.pos,
                        )
                        for w in whens
                    ),
                    default=default,
                    pos=e.pos,
                )
                with self._lazy():
                    return self._searched_case(searched, scope)
            case ast.Cast(operand=o, type=type_node):
                value = self.compile(o, scope)
                target = resolve_type(type_node, self.custom_types)
                try:
                    check_cast(value.type, target, e.pos)
                except AnalysisError as error:
                    if getattr(scope, "clause", None) != "SELECT":
                        raise
                    # ksqlDB names the clause an unsupported cast in the projection comes from
                    raise AnalysisError(f"Invalid Select: {error.message}", pos=error.pos) from None
                return Compiled(cast_value(value.sql, value.type, target), target)
            case ast.FunctionCall():
                return self._function(e, scope)
            case ast.Lambda():
                raise AnalysisError(f"Lambda {format_expr(e)} is only valid as a function argument.", pos=e.pos)
            case ast.CreateArray():
                return self._create_array(e, scope)
            case ast.CreateMap():
                return self._create_map(e, scope)
            case ast.CreateStruct():
                return self._create_struct(e, scope)
        raise AnalysisError(f"Unsupported expression: {format_expr(e)}", pos=getattr(e, "pos", None))

    # ---- helpers

    @contextlib.contextmanager
    def _lazy(self) -> Iterator[None]:
        """Compile operands Java evaluates only conditionally: their arithmetic cannot be said to throw."""
        saved, self._unboxed = self._unboxed, None
        try:
            yield
        finally:
            self._unboxed = saved

    def _boolean(self, e: ast.Expr, scope: Scope, what: str) -> Compiled:
        value = self.compile(e, scope)
        if value.type is not None and value.type != st.BOOLEAN:
            raise AnalysisError(
                f"Error processing expression: {format_expr(e)}. {what} must be BOOLEAN, but is {value.type}.",
                pos=getattr(e, "pos", None),
            )
        return value

    def _dereference(self, e: ast.Dereference, scope: Scope) -> Compiled:
        base = self.compile(e.base, scope)
        if not isinstance(base.type, st.Struct):
            raise AnalysisError(
                f"Expected STRUCT type for dereference of {format_expr(e.base)}, but got {base.type or 'null'}.",
                pos=e.pos,
            )
        fld = base.type.field(e.field)
        if fld is None:
            raise AnalysisError(f"Could not find field '{e.field}' in '{format_expr(e.base)}'.", pos=e.pos)
        name = struct_field_name(base.type, fld.name)
        return Compiled(sb.call("struct_extract", base.sql, exp.Literal.string(name)), fld.type)

    def _subscript(self, e: ast.Subscript, scope: Scope) -> Compiled:
        base, index = self.compile(e.base, scope), self.compile(e.index, scope)
        match base.type:
            case st.Array(element=element):
                if index.type is not None and index.type.base not in (B.INTEGER, B.BIGINT):
                    raise AnalysisError(
                        f"Array index must be INTEGER or BIGINT, but {format_expr(e.index)} is {index.type}.",
                        pos=e.pos,
                    )
                # list_extract is 1-based, counts negative indexes from the end and is NULL out of
                # range: exactly ksqlDB's ArrayAccess.
                return Compiled(sb.call("list_extract", base.sql, index.sql), element)
            case st.Map(key=key, value=value):
                wanted = cast_value(index.sql, index.type, key) if index.type != key else index.sql
                return Compiled(sb.call("map_extract_value", base.sql, wanted), value)
        hint = (
            f" Use the dereference operator for STRUCTS: {format_expr(e.base)}->{format_expr(e.index)}"
            if isinstance(base.type, st.Struct)
            else ""
        )
        raise AnalysisError(
            f"Subscript expression ({format_expr(e)}) do not apply to {base.type or 'null'}.{hint}", pos=e.pos
        )

    def _like(self, e: ast.Like, scope: Scope) -> Compiled:
        value, pattern = self.compile(e.value, scope), self.compile(e.pattern, scope)
        for side, node in ((value, e.value), (pattern, e.pattern)):
            if side.type is not None and side.type != st.STRING:
                raise AnalysisError(
                    f"Error processing expression: {format_expr(e)}. LIKE operands must be STRING, "
                    f"but {format_expr(node)} is {side.type}.",
                    pos=e.pos,
                )
        like: exp.Expression = exp.Like(this=value.sql, expression=pattern.sql)
        if e.escape is not None:
            like = exp.Escape(this=like, expression=exp.Literal.string(e.escape))
        else:
            # ksqlDB has no default escape character; DuckDB must not treat backslash as one.
            like = exp.Escape(this=like, expression=exp.Literal.string(""))
        result = exp.Coalesce(this=like, expressions=[exp.false()])
        return Compiled(exp.Not(this=sb.paren(result)) if e.negated else result, st.BOOLEAN)

    def _between(self, e: ast.Between, scope: Scope) -> Compiled:
        e = dataclasses.replace(e, low=time_literal(e.low, e.value), high=time_literal(e.high, e.value))
        # ksqlDB evaluates BETWEEN as (v >= low AND v <= high), each comparison FALSE on NULL.
        low = ast.Comparison(op=ast.ComparisonOp.GREATER_THAN_OR_EQUAL, left=e.value, right=e.low, pos=e.pos)
        high = ast.Comparison(op=ast.ComparisonOp.LESS_THAN_OR_EQUAL, left=e.value, right=e.high, pos=e.pos)
        both = exp.and_(self.compile(low, scope).sql, self.compile(high, scope).sql)
        return Compiled(exp.Not(this=sb.paren(both)) if e.negated else sb.paren(both), st.BOOLEAN)

    def _in_list(self, e: ast.InList, scope: Scope) -> Compiled:
        """``v IN (a, b, ...)`` with ksqlDB's list coercion (CoercionUtil).

        The value and the items that are neither string literals nor constructors must share a
        (widened) type. String literals are parsed as that type; other literals become strings
        when it is STRING; ARRAY/MAP/STRUCT constructors are coerced element by element (a
        struct by field name, missing fields NULL; a struct with other fields never matches).
        """
        value = self.compile(e.value, scope)
        items = [self.compile(i, scope) for i in e.items]
        common: st.SqlType | None = None
        for node, c in [(e.value, value), *zip(e.items, items)]:
            if c.type is None or isinstance(node, ast.StringLiteral):
                continue
            if node is not e.value and isinstance(node, _CONSTRUCTORS):
                continue
            if common is None:
                common = c.type
                continue
            widened = _widen_deep(common, c.type)
            if widened is None:
                if common == st.STRING and _is_literal(node):
                    continue
                raise _operator_error(common, c.type, node, e.pos)
            common = widened
        if common is None:
            common = next((c.type for c in items if c.type is not None and c.type != st.STRING), st.STRING)
        sqls: list[exp.Expression] = []
        for node, c in zip(e.items, items):
            if c.type is None:
                continue  # ksqlDB's InListEvaluator: NULL items never match
            try:
                sql = self._coerce_item(node, c, common, scope, top=True)
            except _Mismatch:
                raise _operator_error(common, c.type, node, e.pos) from None
            if sql is not None:
                sqls.append(sql)
        test = exp.In(this=value.sql, expressions=sqls or [exp.Null()])
        result = exp.Coalesce(this=test, expressions=[exp.false()])
        return Compiled(exp.Not(this=sb.paren(result)) if e.negated else result, st.BOOLEAN)

    def _coerce_item(
        self, node: ast.Expr, c: Compiled, target: st.SqlType, scope: Scope, *, top: bool = False
    ) -> exp.Expression | None:
        """An IN-list item as a ``target`` value; None when it can never equal one."""
        if c.type is None:
            return sb.cast(exp.Null(), target)
        if isinstance(node, ast.StringLiteral) and target != st.STRING:
            return _coerce_string_literal(node.value, target, node.pos)
        if target == st.STRING:
            if c.type == st.STRING:
                return c.sql
            if _is_literal(node):
                return exp.Literal.string(_literal_text(node))
            raise _Mismatch
        match node, target:
            case ast.CreateArray(items=nodes), st.Array(element=element):
                parts = [self._coerce_item(n, self.compile(n, scope), element, scope) for n in nodes]
                return None if any(p is None for p in parts) else exp.Array(expressions=parts)
            case ast.CreateMap(entries=entries), st.Map(key=kt, value=vt):
                pairs = []
                for kn, vn in entries:
                    k = self._coerce_item(kn, self.compile(kn, scope), kt, scope)
                    v = self._coerce_item(vn, self.compile(vn, scope), vt, scope)
                    if k is None or v is None:
                        return None
                    pairs.append(
                        sb.call(
                            "struct_pack",
                            exp.PropertyEQ(this=exp.to_identifier("k"), expression=k),
                            exp.PropertyEQ(this=exp.to_identifier("v"), expression=v),
                        )
                    )
                return sb.call("map_from_entries", exp.Array(expressions=pairs))
            case ast.CreateStruct(fields=fields), st.Struct(fields=wanted):
                given = dict(fields)
                if not set(given) <= {f.name for f in wanted}:
                    return None
                args = []
                for f, name in zip(wanted, struct_field_names([f.name for f in wanted]), strict=True):
                    n = given.get(f.name)
                    v = sb.cast(exp.Null(), f.type) if n is None else self._coerce_item(n, self.compile(n, scope), f.type, scope)
                    if v is None:
                        return None
                    args.append(exp.PropertyEQ(this=exp.to_identifier(name, quoted=True), expression=v))
                return sb.call("struct_pack", *args)
        if isinstance(c.type, st.Struct) and isinstance(target, st.Struct) and not _same_field_names(c.type, target):
            return None  # struct field names are case sensitive: never equal
        if _widen_deep(c.type, target) is None:
            raise _Mismatch
        if top or c.type == target:
            return c.sql
        return cast_value(c.sql, c.type, target)

    def _searched_case(self, e: ast.SearchedCase, scope: Scope) -> Compiled:
        whens: list[tuple[exp.Expression, exp.Expression]] = []
        result_type: st.SqlType | None = None
        results: list[Compiled] = []
        for w in e.whens:
            cond = self.compile(w.condition, scope)
            if cond.type != st.BOOLEAN:
                raise AnalysisError(
                    f"WHEN operand type should be boolean.\nType for '{format_expr(w.condition)}' is {cond.type}",
                    pos=w.pos,
                )
            res = self.compile(w.result, scope)
            if res.type is not None:
                if result_type is None:
                    result_type = res.type
                elif res.type != result_type:
                    raise AnalysisError(
                        "Invalid Case expression. Type for all 'THEN' clauses should be the same.\n"
                        f"THEN expression 'WHEN {format_expr(w.condition)} THEN {format_expr(w.result)}' "
                        f"has type: {res.type}.\nPrevious THEN expression(s) type: {result_type}.",
                        pos=w.pos,
                    )
            whens.append((cond.sql, res.sql))
            results.append(res)
        default = self.compile(e.default, scope) if e.default is not None else None
        if default is not None and default.type is not None:
            if result_type is not None and default.type != result_type:
                raise AnalysisError(
                    "Invalid Case expression. Type for the default clause should be the same as for 'THEN' clauses.\n"
                    f"THEN type: {result_type}.\nDEFAULT type: {default.type}.",
                    pos=e.pos,
                )
            result_type = default.type
        if result_type is None:
            raise AnalysisError("Invalid Case expression. All case branches have NULL type", pos=e.pos)
        typed = [(c, sb.cast(r, result_type) if isinstance(r, exp.Null) else r) for c, r in whens]
        default_sql = None if default is None else default.sql
        return Compiled(sb.case(typed, default_sql), result_type)

    def _common_type(self, values: list[Compiled], nodes: tuple[ast.Expr, ...], what: str) -> st.SqlType | None:
        """The type a list of values (array elements, map keys or values) coerces to: the
        widened type of the values that are not string literals (ksqlDB's CoercionUtil); string
        literals are then parsed as it, other literals become text when it is STRING."""
        common: st.SqlType | None = None
        for value, node in zip(values, nodes):
            if value.type is None or isinstance(node, ast.StringLiteral):
                continue
            if common is None:
                common = value.type
                continue
            widened = st.widen(common, value.type)
            if widened is None and isinstance(node, ast.CreateStruct):
                widened = _merge_structs(common, value.type)
            if widened is None:
                if common == st.STRING and _is_literal(node):
                    continue
                raise AnalysisError(
                    f"operator does not exist: {common} = {value.type} ({format_expr(node)})\n"
                    "Hint: You might need to add explicit type casts.",
                    pos=getattr(node, "pos", None),
                )
            common = widened
        if common is None and any(v.type is not None for v in values):
            common = st.STRING
        if common is not None and st.is_numeric(common):
            # numeric text widens the type as the DECIMAL it reads as ('2e1' with BIGINT: DECIMAL(19, 0))
            for node in nodes:
                if isinstance(node, ast.StringLiteral):
                    try:
                        number = decimal.Decimal(node.value.strip())
                    except decimal.InvalidOperation:
                        continue  # reported when the literal is coerced
                    if number.is_finite():
                        common = st.widen(common, decimal_literal_type(format(number, "f"))) or common
        return common

    def _coerced(self, node: ast.Expr, value: Compiled, target: st.SqlType) -> Compiled:
        """One constructor element as a ``target`` value (see :meth:`_common_type`)."""
        if isinstance(node, ast.StringLiteral) and target != st.STRING:
            sql = _coerce_string_literal(node.value, target, getattr(node, "pos", None), prefix="")
            return Compiled(cast_value(sql, _literal_sql_type(sql, target), target), target, value.value)
        if target == st.STRING and value.type not in (None, st.STRING) and _is_literal(node):
            return Compiled(exp.Literal.string(_literal_text(node)), target, value.value)
        return Compiled(cast_value(value.sql, value.type, target), target, value.value)

    def _create_array(self, e: ast.CreateArray, scope: Scope) -> Compiled:
        if not e.items:
            raise AnalysisError(
                "Array constructor cannot be empty. Please supply at least one element "
                "(see https://github.com/confluentinc/ksql/issues/4239).",
                pos=e.pos,
            )
        items = [self.compile(i, scope) for i in e.items]
        element = self._common_type(items, e.items, "array element")
        if element is None:
            raise AnalysisError(
                "Cannot construct an array with all NULL elements "
                "(see https://github.com/confluentinc/ksql/issues/4239). As a workaround, you may "
                "cast a NULL value to the desired type.",
                pos=e.pos,
            )
        sql = exp.Array(expressions=[self._coerced(n, i, element).sql for n, i in zip(e.items, items)])
        return Compiled(sql, st.Array(element))

    def _create_map(self, e: ast.CreateMap, scope: Scope) -> Compiled:
        if not e.entries:
            raise AnalysisError(
                "Map constructor cannot be empty. Please supply at least one key value pair "
                "(see https://github.com/confluentinc/ksql/issues/4239).",
                pos=e.pos,
            )
        keys = [self.compile(k, scope) for k, _ in e.entries]
        values = [self.compile(v, scope) for _, v in e.entries]
        key_type = self._common_type(keys, tuple(k for k, _ in e.entries), "map key")
        if key_type is None:
            raise AnalysisError(
                "Cannot construct a map with all NULL keys (see https://github.com/confluentinc/ksql/issues/4239). "
                "As a workaround, you may cast a NULL key to the desired type.",
                pos=e.pos,
            )
        value_type = self._common_type(values, tuple(v for _, v in e.entries), "map value")
        if value_type is None:
            raise AnalysisError(
                "Cannot construct a map with all NULL values (see https://github.com/confluentinc/ksql/issues/4239). "
                "As a workaround, you may cast a NULL value to the desired type.",
                pos=e.pos,
            )
        keys = [self._coerced(n, k, key_type) for (n, _), k in zip(e.entries, keys)]
        values = [self._coerced(n, v, value_type) for (_, n), v in zip(e.entries, values)]
        if key_type == st.STRING:  # a NULL key is written as "null", as Java's map printing does
            keys = [Compiled(exp.Coalesce(this=k.sql, expressions=[exp.Literal.string("null")]), k.type, k.value) for k in keys]
        # A later duplicate key wins, as in ksqlDB's map construction.
        sql = sb.call(
            "map_from_entries",
            exp.Array(
                expressions=[
                    sb.call(
                        "struct_pack",
                        exp.PropertyEQ(this=exp.to_identifier("k"), expression=cast_value(k.sql, k.type, key_type)),
                        exp.PropertyEQ(this=exp.to_identifier("v"), expression=cast_value(v.sql, v.type, value_type)),
                    )
                    for k, v in _last_key_wins(keys, values)
                ]
            ),
        )
        return Compiled(sql, st.Map(key_type, value_type))

    def _create_struct(self, e: ast.CreateStruct, scope: Scope) -> Compiled:
        fields: list[st.Field] = []
        args: list[exp.Expression] = []
        names = [name for name, _ in e.fields]
        if len(set(names)) != len(names):
            raise AnalysisError("Duplicate field names found in STRUCT", pos=e.pos)
        for (name, node), duck in zip(e.fields, struct_field_names(names), strict=True):
            value = self.compile(node, scope)
            # ksqlDB gives a NULL field with no type the type STRING.
            ftype = value.type if value.type is not None else st.STRING
            fields.append(st.Field(name, ftype))
            args.append(
                exp.PropertyEQ(
                    this=exp.to_identifier(duck, quoted=True), expression=cast_value(value.sql, value.type, ftype)
                )
            )
        if not fields:
            return Compiled(sb.cast(exp.Null(), st.Struct(())), st.Struct(()))
        return Compiled(sb.call("struct_pack", *args), st.Struct(tuple(fields)))

    # ---- function calls

    def _function(self, e: ast.FunctionCall, scope: Scope) -> Compiled:
        if self.registry.is_aggregate(e.name):
            raise AnalysisError(
                f"Aggregate function {e.name} is not valid in this context: {format_expr(e)}", pos=e.pos
            )
        compiled: list[Compiled | None] = []
        arg_types: list[st.SqlType | None | LambdaArg | UnitArg] = []
        for a in e.args:
            if isinstance(a, ast.Lambda):
                compiled.append(None)
                arg_types.append(LambdaArg(len(a.params)))
            else:
                c = self.compile(a, scope)
                compiled.append(c)
                arg_types.append(UnitArg(c.unit) if c.unit is not None else c.type)
        try:
            resolution = self.registry.resolve(e.name, arg_types, pos=e.pos)
        except AnalysisError as error:
            resolution = self._resolve_with_time_literals(e, compiled, arg_types, error)
        for i, a in enumerate(e.args):
            if not isinstance(a, ast.Lambda):
                continue
            inputs = resolution.lambda_inputs(i)
            if inputs is None:
                raise AnalysisError(f"Cannot infer the parameter types of lambda {format_expr(a)}.", pos=a.pos)
            body = self._lambda(a, inputs, scope)
            updated = resolution.with_lambda_result(i, body.type) if body.type is not None else resolution
            if updated is None:
                declared = resolution.params[i].type
                assert isinstance(declared, LambdaParam)
                raise AnalysisError(
                    f"Function '{resolution.function.name}' does not accept parameters "
                    f"({', '.join(_arg_text(t) for t in arg_types)}): lambda {format_expr(a)} returns "
                    f"{body.type}, expected {declared.result}.",
                    pos=a.pos,
                )
            resolution = updated
            compiled[i] = body
            arg_types[i] = body.type
        final_args: list[Compiled] = []
        for i, arg in enumerate(compiled):
            assert arg is not None
            c = arg
            declared = resolution.params[i].type
            target = resolution.param_type(i)
            if (
                isinstance(declared, BaseParam)
                and c.type is not None
                and target is not None
                and c.type != target
            ):
                c = Compiled(cast_value(c.sql, c.type, target), target, c.value, c.unit)
            elif c.type is None and c.unit is None and target is not None and not isinstance(declared, LambdaParam):
                c = Compiled(sb.cast(c.sql, target), target, c.value)
            final_args.append(c)
        value_types = [c.type for c in final_args]
        return_type = resolution.return_type(value_types)
        call = Call(resolution.function.name, tuple(final_args), return_type, resolution.bindings)
        return Compiled(resolution.variant.compile(call), return_type)

    def _resolve_with_time_literals(
        self, e: ast.FunctionCall, compiled: list[Compiled | None], arg_types: list[Any], error: AnalysisError
    ) -> Resolution:
        """Resolve again with string literals read as the one DATE/TIME/TIMESTAMP type the other
        arguments have (``GREATEST(d1, d2, '2022-06-14')``), as ksqlDB coerces such literals;
        re-raises the original error when that does not apply."""
        temporal = {t for t in arg_types if isinstance(t, st.SqlType) and t.base in (B.DATE, B.TIME, B.TIMESTAMP)}
        literals = [i for i, a in enumerate(e.args) if isinstance(a, ast.StringLiteral)]
        if len(temporal) != 1 or not literals:
            raise error
        target = temporal.pop()
        for i in literals:
            c = compiled[i]
            assert c is not None
            compiled[i] = Compiled(cast_value(c.sql, st.STRING, target), target)
            arg_types[i] = target
        return self.registry.resolve(e.name, arg_types, pos=e.pos)

    def _lambda(self, lam: ast.Lambda, inputs: tuple[st.SqlType, ...], scope: Scope) -> Compiled:
        """A DuckDB lambda whose parameters get fresh names, so they can never capture columns."""
        if len(set(lam.params)) != len(lam.params):
            raise AnalysisError(f"Lambda parameters must be unique: {format_expr(lam)}", pos=lam.pos)
        names = [f"__lambda{next(self._lambda_ids)}_{p.lower()}" for p in lam.params]
        bound = {p: Resolved(exp.column(n), t) for p, n, t in zip(lam.params, names, inputs)}
        saved, self._unboxed = self._unboxed, []
        try:
            body = self.compile(lam.body, LambdaScope(bound, scope))
            unboxed = self._unboxed
        finally:
            self._unboxed = saved
        sql = exp.Lambda(this=body.sql, expressions=[exp.to_identifier(n) for n in names])
        if unboxed:
            # the condition under which ksqlDB's generated Java throws for one element
            sql.meta[LAMBDA_THROWS] = functools.reduce(lambda a, b: exp.Or(this=a, expression=b), unboxed)
        return Compiled(sql, body.type)


def _merge_structs(common: st.SqlType, value: st.SqlType) -> st.SqlType | None:
    """A struct constructor joining a list of structs: the union of the fields, the
    constructor's first (ksqlDB's CoercionUtil), a field in both widened; None if they clash."""
    if not isinstance(common, st.Struct) or not isinstance(value, st.Struct):
        return None
    fields = []
    for name in dict.fromkeys([f.name for f in value.fields] + [f.name for f in common.fields]):
        mine, theirs = value.field(name), common.field(name)
        if mine is None or theirs is None:
            fields.append(mine or theirs)
            continue
        widened = st.widen(theirs.type, mine.type)
        if widened is None:
            return None
        fields.append(dataclasses.replace(mine, type=widened))
    return dataclasses.replace(common, fields=tuple(f for f in fields if f is not None))


def _arg_text(t: ArgType) -> str:
    from ksqlpy.planner.functions.registry import arg_type_text

    return arg_type_text(t)


def _widen_deep(a: st.SqlType, b: st.SqlType) -> st.SqlType | None:
    """The common type of two IN-list operands: numeric widening, element-wise for containers."""
    match a, b:
        case st.Array(element=x), st.Array(element=y):
            w = _widen_deep(x, y)
            return None if w is None else st.Array(w)
        case st.Map(key=kx, value=vx), st.Map(key=ky, value=vy):
            wk, wv = _widen_deep(kx, ky), _widen_deep(vx, vy)
            return None if wk is None or wv is None else st.Map(wk, wv)
        case st.Struct(fields=fa), st.Struct(fields=fb):
            if len(fa) != len(fb):
                return None
            fields = []
            for f, g in zip(fa, fb):
                w = _widen_deep(f.type, g.type)
                if w is None:
                    return None
                fields.append(st.Field(f.name, w))
            return st.Struct(tuple(fields))
    return st.widen(a, b)


#: columns holding epoch milliseconds that ksqlDB lets a query compare with timestamp text
_TIME_COLUMNS = frozenset({"ROWTIME", "WINDOWSTART", "WINDOWEND"})
_ISO = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?)?)?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?"
)


def time_literal(node: ast.Expr, other: ast.Expr) -> ast.Expr:
    """A string literal compared with ROWTIME or a window bound, as the epoch milliseconds it
    names (ksqlDB's StringToTimestampParser: partial ISO-8601, UTC unless a zone is given)."""
    if not (isinstance(node, ast.StringLiteral) and isinstance(other, ast.ColumnRef) and other.name in _TIME_COLUMNS):
        return node
    m = _ISO.fullmatch(node.value.strip())
    if m is None:
        return node
    year, month, day, hour, minute, second, frac, zone = m.groups()
    tz = dt.UTC
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        tz = dt.timezone(offset if zone[0] == "+" else -offset)
    value = dt.datetime(
        int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0),
        int((frac or "0").ljust(3, "0")) * 1000, tzinfo=tz,
    )
    millis = (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    return ast.IntegerLiteral(value=millis, pos=node.pos)


class _Mismatch(Exception):
    """An IN-list item whose type cannot be compared with the list's type."""


_CONSTRUCTORS = (ast.CreateArray, ast.CreateMap, ast.CreateStruct)


def _operator_error(common: st.SqlType, t: st.SqlType | None, node: ast.Expr, pos: Position | None) -> AnalysisError:
    return AnalysisError(
        f"Invalid Predicate: operator does not exist: {common} = {t} ({format_expr(node)})\n"
        "Hint: You might need to add explicit type casts.",
        pos=pos,
    )


def _same_field_names(a: st.Struct, b: st.Struct) -> bool:
    return [f.name for f in a.fields] == [f.name for f in b.fields]


_LITERALS = (ast.IntegerLiteral, ast.DecimalLiteral, ast.DoubleLiteral, ast.BooleanLiteral, ast.StringLiteral)


def _is_literal(node: ast.Expr) -> bool:
    return isinstance(node, _LITERALS)


def _literal_text(node: ast.Expr) -> str:
    match node:
        case ast.BooleanLiteral(value=v):
            return "true" if v else "false"
        case ast.DecimalLiteral(text=text):
            return text
        case ast.StringLiteral(value=v):
            return v
    return format_expr(node)


def _parse_boolean(text: str) -> bool | None:
    """ksqlDB's lenient boolean text: any prefix of true/yes or false/no, in any case."""
    lower = text.strip().lower()
    if lower and ("true".startswith(lower) or "yes".startswith(lower)):
        return True
    if lower and ("false".startswith(lower) or "no".startswith(lower)):
        return False
    return None


def _literal_sql_type(sql: exp.Expression, target: st.SqlType) -> st.SqlType:
    """The type of a parsed string literal (see :func:`_coerce_string_literal`)."""
    if isinstance(sql, exp.Cast) and st.is_numeric(target):
        return decimal_literal_type(sql.this.name)
    return target


def _coerce_string_literal(
    text: str, target: st.SqlType, pos: Position | None, *, prefix: str = "Invalid Predicate: "
) -> exp.Expression:
    """A string literal in a list of ``target`` values, parsed as ksqlDB parses it."""
    bad = AnalysisError(f'{prefix}invalid input syntax for type {target.base.value}: "{text}".', pos=pos)
    if st.is_numeric(target):
        try:
            number = decimal.Decimal(text.strip())
        except decimal.InvalidOperation:
            raise bad from None
        if not number.is_finite():
            raise bad
        digits = format(number, "f")
        return sb.cast(exp.Literal.string(digits), decimal_literal_type(digits))
    if target == st.BOOLEAN:
        parsed = _parse_boolean(text)
        if parsed is None:
            raise bad
        return exp.true() if parsed else exp.false()
    if target.base in (B.DATE, B.TIME, B.TIMESTAMP):
        return cast_value(exp.Literal.string(text), st.STRING, target)
    raise bad


def _last_key_wins(keys: list[Compiled], values: list[Compiled]) -> list[tuple[Compiled, Compiled]]:
    seen: dict[str, int] = {}
    pairs: list[tuple[Compiled, Compiled]] = []
    for k, v in zip(keys, values):
        if k.is_constant:
            text = repr(k.value)
            if text in seen:
                pairs[seen[text]] = (k, v)
                continue
            seen[text] = len(pairs)
        pairs.append((k, v))
    return pairs


def _chain(e: ast.Expr, op: ast.LogicalOp) -> list[ast.Expr]:
    """The operands of a chain of ``op`` (``a OR b OR c``), in order, however it nests."""
    out: list[ast.Expr] = []
    stack: list[ast.Expr] = [e]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.LogicalBinary) and node.op is op:
            stack.append(node.right)
            stack.append(node.left)
        else:
            out.append(node)
    return out


def _java_logical(op: ast.LogicalOp, left: exp.Expression, right: exp.Expression) -> exp.Expression:
    """Java's short-circuit ``&&``/``||`` on nullable booleans: a NULL left operand gives NULL.

    When the left operand can never be NULL (comparisons, which ksqlDB makes FALSE on NULL
    input, literals, IS NULL tests, and AND/OR/NOT over those) SQL's own AND/OR is exactly
    that. Otherwise ``CASE WHEN l THEN r ELSE l END`` is ``l && r`` and ``CASE WHEN NOT l THEN
    r ELSE l END`` is ``l || r``; that form repeats ``l``, so it is kept for the rare nullable
    left operand (long condition chains of comparisons stay linear in size).
    """
    if _never_null(left):
        node = exp.And if op is ast.LogicalOp.AND else exp.Or
        return node(this=sb.paren(left), expression=sb.paren(right))
    test = left if op is ast.LogicalOp.AND else exp.Not(this=sb.paren(left))
    return sb.case([(test, right)], left.copy())


def _never_null(e: exp.Expression) -> bool:
    """Whether a compiled boolean expression can be seen, from its shape, never to be NULL."""
    while isinstance(e, exp.Paren):
        e = e.this
    match e:
        case exp.Boolean() | exp.Is():
            return True
        case exp.Coalesce():
            return any(_never_null(x) for x in [e.this, *e.expressions])
        case exp.Not():
            return _never_null(e.this)
        case exp.And() | exp.Or():
            return _never_null(e.this) and _never_null(e.expression)
    return False


def decimal_literal_type(text: str) -> st.Decimal:
    """ksqlDB's type for a decimal literal: its BigDecimal precision and scale.

    ``5.0`` is DECIMAL(2, 1); a fraction's leading zeros are not digits of the precision, but the
    precision is never below the scale (``0.05`` is DECIMAL(2, 2)).
    """
    value = decimal.Decimal(text)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    scale = max(-exponent, 0)
    unscaled = abs(int(value.scaleb(scale)))
    return st.Decimal(max(len(str(unscaled)), scale, 1), scale)


def compile_expression(
    expr: ast.Expr,
    scope: Scope,
    *,
    registry: FunctionRegistry | None = None,
    custom_types: Mapping[str, st.SqlType] | None = None,
) -> Compiled:
    """Type-check ``expr`` in ``scope`` and compile it to DuckDB SQL.

    Raises :class:`~ksqlpy.errors.AnalysisError` with ksqlDB's wording for unknown columns or
    functions, type mismatches and unsupported casts. ``result.type`` is None only for an untyped
    NULL literal.
    """
    return _Compiler(scope, registry or REGISTRY, custom_types or {}).compile(expr)


def infer_type(
    expr: ast.Expr,
    scope: Scope,
    *,
    registry: FunctionRegistry | None = None,
    custom_types: Mapping[str, st.SqlType] | None = None,
) -> st.SqlType | None:
    """The ksqlDB type of ``expr`` (None for an untyped NULL); raises as :func:`compile_expression`."""
    return compile_expression(expr, scope, registry=registry, custom_types=custom_types).type


def is_constant(compiled: Compiled) -> bool:
    return compiled.value is not NO_VALUE


__all__ = ["compile_expression", "decimal_literal_type", "infer_type", "is_constant"]
