"""Turns lark's parse tree of ``ksql.lark`` into the typed nodes of :mod:`ksqlpy.parser.ast`.

One :class:`AstBuilder` transforms one parsed text. Each method bears the name of the grammar
rule (or alias) it builds; it receives the rule's ``meta`` (for positions and statement text)
and its already-built children. Keyword tokens stay in the tree so that optional words
(``NOT``, ``EXTENDED``, ``IF NOT EXISTS``) are read by presence; see :func:`_has`.

Checks that ksqlDB makes while building its AST (not in its grammar) live here too: KEY versus
PRIMARY KEY by source kind, numeric literal ranges, lambda parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lark import Token, Transformer, Tree, v_args
from lark.tree import Meta

from ksqlpy.errors import ParseError, Position
from ksqlpy.parser import ast

_INT64_MAX = 2**63 - 1

# Type names written as identifiers (ksqlDB's `baseType`), normalised to ast.PrimitiveType names.
PRIMITIVE_TYPES: dict[str, str] = {
    "BOOLEAN": "BOOLEAN",
    "INT": "INTEGER",
    "INTEGER": "INTEGER",
    "BIGINT": "BIGINT",
    "DOUBLE": "DOUBLE",
    "STRING": "STRING",
    "VARCHAR": "STRING",
    "BYTES": "BYTES",
    "DATE": "DATE",
    "TIME": "TIME",
    "TIMESTAMP": "TIMESTAMP",
}

_ARITHMETIC_OPS: dict[str, ast.ArithmeticOp] = {op.value: op for op in ast.ArithmeticOp}
_COMPARISON_OPS: dict[str, ast.ComparisonOp] = {
    "=": ast.ComparisonOp.EQUAL,
    "<>": ast.ComparisonOp.NOT_EQUAL,
    "!=": ast.ComparisonOp.NOT_EQUAL,
    "<": ast.ComparisonOp.LESS_THAN,
    "<=": ast.ComparisonOp.LESS_THAN_OR_EQUAL,
    ">": ast.ComparisonOp.GREATER_THAN,
    ">=": ast.ComparisonOp.GREATER_THAN_OR_EQUAL,
}
_SHOW_KINDS: dict[str, ast.ShowKind] = {
    "list_properties": ast.ShowKind.PROPERTIES,
    "list_streams": ast.ShowKind.STREAMS,
    "list_tables": ast.ShowKind.TABLES,
    "list_functions": ast.ShowKind.FUNCTIONS,
    "list_connectors": ast.ShowKind.CONNECTORS,
    "list_types": ast.ShowKind.TYPES,
    "list_variables": ast.ShowKind.VARIABLES,
    "list_queries": ast.ShowKind.QUERIES,
}
_NUMERIC_LITERALS = (ast.IntegerLiteral, ast.DecimalLiteral, ast.DoubleLiteral)


class NodeLocationParseError(ParseError):
    """A ParseError that ksqlDB words with its node location (``Line: 1, Col: 21: ...``)."""

    def render(self) -> str:
        if self.pos is None:
            return self.message
        return f"Line: {self.pos.line}, Col: {self.pos.column}: {self.message}"


class LiteralParseError(ParseError):
    """A literal ksqlDB's AST builder rejects (its ParsingException), worded as its parser reports
    it: ``Failed to prepare statement: line 2:40: ...``. ksqlDB adds one to the already 1-based
    column of the literal, so the column is one past it."""

    def render(self) -> str:
        if self.pos is None:
            return f"Failed to prepare statement: {self.message}"
        return f"Failed to prepare statement: line {self.pos.line}:{self.pos.column + 1}: {self.message}"


@dataclass(frozen=True, slots=True)
class _Clause:
    """A query clause on its way into :class:`ast.Query` (its field name and value)."""

    field: str
    value: Any


def _has(children: Iterable[Any], token_type: str) -> bool:
    """Whether an optional keyword is present among a rule's children."""
    return any(isinstance(c, Token) and c.type == token_type for c in children)


def _token(children: Iterable[Any], token_type: str) -> Token | None:
    for c in children:
        if isinstance(c, Token) and c.type == token_type:
            return c
    return None


def _nodes(children: Iterable[Any], kind: type | tuple[type, ...]) -> list[Any]:
    return [c for c in children if isinstance(c, kind) and not isinstance(c, Token)]


def tok_pos(token: Token) -> Position:
    return Position(token.line or 1, token.column or 1)


def unquote(text: str, quote: str) -> str:
    """Strips one pair of ``quote`` and undoes doubled quotes inside (ksqlDB's escaping)."""
    return text[1:-1].replace(quote * 2, quote)


def identifier_value(token: Token) -> str:
    """The name an identifier token stands for: unquoted upper-cased, quoted as written."""
    match token.type:
        case "QUOTED_IDENTIFIER":
            return unquote(token.value, '"')
        case "BACKQUOTED_IDENTIFIER":
            return unquote(token.value, "`")
        case _:
            return str(token.value).upper()


@v_args(meta=True)
class AstBuilder(Transformer[Token, Any]):
    """Builds ast nodes from one lark tree; ``source`` is the parsed text (for statement text)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self._source = source
        # Numeric literals written inside parentheses: `-(1)` stays a unary minus, `-1` folds.
        self._parenthesized: set[int] = set()

    # -- helpers ---------------------------------------------------------------------------

    def _text(self, meta: Meta) -> str:
        return self._source[meta.start_pos : meta.end_pos].strip() + ";"

    @staticmethod
    def _pos(meta: Meta) -> Position | None:
        return None if meta.empty else Position(meta.line, meta.column)

    # -- top level -------------------------------------------------------------------------

    def start(self, meta: Meta, children: list[Any]) -> list[ast.Statement]:
        return [c for c in children if c is not None]

    def expression_only(self, meta: Meta, children: list[Any]) -> ast.Expr:
        return children[0]  # type: ignore[no-any-return]

    def schema_only(self, meta: Meta, children: list[Any]) -> tuple[ast.TableElement, ...]:
        return tuple(c for c in children if c is not None)

    # -- identifiers -----------------------------------------------------------------------

    def identifier(self, meta: Meta, children: list[Any]) -> Token:
        (tok,) = children
        return Token.new_borrow_pos("NAME", identifier_value(tok), tok)

    alias_name = identifier

    def nonreserved(self, meta: Meta, children: list[Any]) -> Token:
        (tok,) = children
        return tok  # type: ignore[no-any-return]

    nonreserved_alias = nonreserved

    def source_name(self, meta: Meta, children: list[Any]) -> Token:
        return children[0]  # type: ignore[no-any-return]

    def variable_name(self, meta: Meta, children: list[Any]) -> Token:
        return children[0]  # type: ignore[no-any-return]

    def resource_name(self, meta: Meta, children: list[Any]) -> str:
        (tok,) = children
        return unquote(tok.value, "'") if tok.type == "SQ_STRING" else str(tok)

    # -- literals --------------------------------------------------------------------------

    def null_literal(self, meta: Meta, children: list[Any]) -> ast.NullLiteral:
        return ast.NullLiteral(pos=self._pos(meta))

    def boolean_literal(self, meta: Meta, children: list[Any]) -> ast.BooleanLiteral:
        return ast.BooleanLiteral(value=children[0].type == "TRUE", pos=self._pos(meta))

    def string_literal(self, meta: Meta, children: list[Any]) -> ast.StringLiteral:
        return ast.StringLiteral(value=unquote(children[0].value, "'"), pos=self._pos(meta))

    def integer_literal(self, meta: Meta, children: list[Any]) -> ast.IntegerLiteral:
        tok: Token = children[0]
        value = int(tok.value)
        # 2**63 is only valid negated; the unary minus (or negative_number) checks again.
        if value > _INT64_MAX + 1 or (value > _INT64_MAX and not self._after_minus(tok)):
            raise LiteralParseError(f"Invalid numeric literal: {tok.value}", pos=tok_pos(tok))
        return ast.IntegerLiteral(value=value, pos=tok_pos(tok))

    def decimal_literal(self, meta: Meta, children: list[Any]) -> ast.DecimalLiteral:
        tok: Token = children[0]
        return ast.DecimalLiteral(text=tok.value, pos=tok_pos(tok))

    def double_literal(self, meta: Meta, children: list[Any]) -> ast.DoubleLiteral:
        tok: Token = children[0]
        value = float(tok.value)
        if math.isinf(value):
            raise LiteralParseError(f"Number overflows DOUBLE: {tok.value}", pos=tok_pos(tok))
        return ast.DoubleLiteral(value=value, pos=tok_pos(tok))

    def _after_minus(self, tok: Token) -> bool:
        # Scans back from the token instead of slicing the text before it: a slice per literal
        # made statements with many literals quadratic in their length.
        i = (tok.start_pos or 0) - 1
        while i >= 0 and self._source[i].isspace():
            i -= 1
        return i >= 0 and self._source[i] == "-"

    def signed_literal(self, meta: Meta, children: list[Any]) -> ast.Literal:
        return children[0]  # type: ignore[no-any-return]

    def negative_number(self, meta: Meta, children: list[Any]) -> ast.Literal:
        return _negate(children[1], self._pos(meta))

    # -- expressions -----------------------------------------------------------------------

    def logical_binary(self, meta: Meta, children: list[Any]) -> ast.LogicalBinary:
        left, op, right = children
        return ast.LogicalBinary(op=ast.LogicalOp(op.type), left=left, right=right, pos=self._pos(meta))

    def logical_not(self, meta: Meta, children: list[Any]) -> ast.Not:
        return ast.Not(operand=children[1], pos=self._pos(meta))

    def comp_op(self, meta: Meta, children: list[Any]) -> ast.ComparisonOp:
        return _COMPARISON_OPS[children[0].value]

    def comparison(self, meta: Meta, children: list[Any]) -> ast.Comparison:
        left, op, right = children
        return ast.Comparison(op=op, left=left, right=right, pos=self._pos(meta))

    def between(self, meta: Meta, children: list[Any]) -> ast.Between:
        value, low, high = _exprs(children)
        return ast.Between(value=value, low=low, high=high, negated=_has(children, "NOT"), pos=self._pos(meta))

    def in_list(self, meta: Meta, children: list[Any]) -> ast.InList:
        value, *items = _exprs(children)
        return ast.InList(value=value, items=tuple(items), negated=_has(children, "NOT"), pos=self._pos(meta))

    def like(self, meta: Meta, children: list[Any]) -> ast.Like:
        value, pattern = _exprs(children)
        escape = _token(children, "SQ_STRING")
        return ast.Like(
            value=value,
            pattern=pattern,
            escape=None if escape is None else unquote(escape.value, "'"),
            negated=_has(children, "NOT"),
            pos=self._pos(meta),
        )

    def is_null(self, meta: Meta, children: list[Any]) -> ast.IsNull:
        return ast.IsNull(operand=children[0], negated=_has(children, "NOT"), pos=self._pos(meta))

    def distinct_from(self, meta: Meta, children: list[Any]) -> ast.Comparison:
        left, right = _exprs(children)
        op = ast.ComparisonOp.IS_NOT_DISTINCT_FROM if _has(children, "NOT") else ast.ComparisonOp.IS_DISTINCT_FROM
        return ast.Comparison(op=op, left=left, right=right, pos=self._pos(meta))

    def concat(self, meta: Meta, children: list[Any]) -> ast.FunctionCall:
        # ksqlDB reads `a || b` as CONCAT(a, b).
        return ast.FunctionCall(name="CONCAT", args=tuple(children), pos=self._pos(meta))

    def arithmetic_binary(self, meta: Meta, children: list[Any]) -> ast.ArithmeticBinary:
        left, op, right = children
        return ast.ArithmeticBinary(op=_ARITHMETIC_OPS[op.value], left=left, right=right, pos=self._pos(meta))

    def arithmetic_unary(self, meta: Meta, children: list[Any]) -> ast.Expr:
        op, operand = children
        negative = op.type == "MINUS"
        # As in ksqlDB's grammar, a sign written right before a number is part of the literal.
        if isinstance(operand, _NUMERIC_LITERALS) and id(operand) not in self._parenthesized:
            return _negate(operand, self._pos(meta)) if negative else operand
        if isinstance(operand, ast.IntegerLiteral) and operand.value > _INT64_MAX:
            raise LiteralParseError(f"Invalid numeric literal: {operand.value}", pos=operand.pos)
        return ast.ArithmeticUnary(negative=negative, operand=operand, pos=self._pos(meta))

    def parenthesized(self, meta: Meta, children: list[Any]) -> ast.Expr:
        (inner,) = children
        self._parenthesized.add(id(inner))
        return inner  # type: ignore[no-any-return]

    def when_clause(self, meta: Meta, children: list[Any]) -> ast.WhenClause:
        condition, result = _exprs(children)
        return ast.WhenClause(condition=condition, result=result, pos=self._pos(meta))

    def _case_default(self, children: list[Any]) -> ast.Expr | None:
        for i, c in enumerate(children):
            if isinstance(c, Token) and c.type == "ELSE":
                return children[i + 1]  # type: ignore[no-any-return]
        return None

    def simple_case(self, meta: Meta, children: list[Any]) -> ast.SimpleCase:
        return ast.SimpleCase(
            operand=children[1],
            whens=tuple(_nodes(children, ast.WhenClause)),
            default=self._case_default(children),
            pos=self._pos(meta),
        )

    def searched_case(self, meta: Meta, children: list[Any]) -> ast.SearchedCase:
        return ast.SearchedCase(
            whens=tuple(_nodes(children, ast.WhenClause)),
            default=self._case_default(children),
            pos=self._pos(meta),
        )

    def cast(self, meta: Meta, children: list[Any]) -> ast.Cast:
        operand, type_ = _exprs(children)
        return ast.Cast(operand=operand, type=type_, pos=self._pos(meta))

    def create_array(self, meta: Meta, children: list[Any]) -> ast.CreateArray:
        return ast.CreateArray(items=tuple(_exprs(children)), pos=self._pos(meta))

    def map_entry(self, meta: Meta, children: list[Any]) -> tuple[ast.Expr, ast.Expr]:
        return (children[0], children[1])

    def create_map(self, meta: Meta, children: list[Any]) -> ast.CreateMap:
        return ast.CreateMap(entries=tuple(_nodes(children, tuple)), pos=self._pos(meta))

    def struct_entry(self, meta: Meta, children: list[Any]) -> tuple[str, ast.Expr]:
        return (str(children[0]), children[1])

    def create_struct(self, meta: Meta, children: list[Any]) -> ast.CreateStruct:
        return ast.CreateStruct(fields=tuple(_nodes(children, tuple)), pos=self._pos(meta))

    def function_star(self, meta: Meta, children: list[Any]) -> ast.FunctionCall:
        return ast.FunctionCall(name=str(children[0]).upper(), star=True, pos=self._pos(meta))

    def function_call(self, meta: Meta, children: list[Any]) -> ast.FunctionCall:
        name, *rest = children
        return ast.FunctionCall(
            name=str(name).upper(),
            args=tuple(_exprs(rest)),
            distinct=_has(rest, "DISTINCT"),
            pos=self._pos(meta),
        )

    def interval_unit(self, meta: Meta, children: list[Any]) -> ast.IntervalUnit:
        return ast.IntervalUnit(unit=children[0].value.upper(), pos=self._pos(meta))

    def lambda_expr(self, meta: Meta, children: list[Any]) -> ast.Lambda:
        params, body = children
        if isinstance(params, ast.ColumnRef) and params.source is None:
            return ast.Lambda(params=(params.name,), body=body, pos=self._pos(meta))
        raise ParseError("Syntax Error\nExpecting a lambda parameter name before '=>'", pos=self._pos(meta))

    def lambda_params(self, meta: Meta, children: list[Any]) -> ast.Lambda:
        *params, body = children
        return ast.Lambda(params=tuple(str(p) for p in params), body=body, pos=self._pos(meta))

    def subscript(self, meta: Meta, children: list[Any]) -> ast.Subscript:
        base, index = children
        return ast.Subscript(base=base, index=index, pos=self._pos(meta))

    def column_ref(self, meta: Meta, children: list[Any]) -> ast.ColumnRef:
        return ast.ColumnRef(name=str(children[0]), pos=self._pos(meta))

    def qualified_column_ref(self, meta: Meta, children: list[Any]) -> ast.ColumnRef:
        source, name = children
        return ast.ColumnRef(name=str(name), source=str(source), pos=self._pos(meta))

    def dereference(self, meta: Meta, children: list[Any]) -> ast.Dereference:
        base, field_name = children
        return ast.Dereference(base=base, field=str(field_name), pos=self._pos(meta))

    # -- types -----------------------------------------------------------------------------

    def array_type(self, meta: Meta, children: list[Any]) -> ast.ArrayType:
        return ast.ArrayType(element=children[1], pos=self._pos(meta))

    def map_type(self, meta: Meta, children: list[Any]) -> ast.MapType:
        return ast.MapType(key=children[1], value=children[2], pos=self._pos(meta))

    def struct_type_field(self, meta: Meta, children: list[Any]) -> ast.StructTypeField:
        name, type_ = children
        return ast.StructTypeField(name=str(name), type=type_, pos=self._pos(meta))

    def struct_type(self, meta: Meta, children: list[Any]) -> ast.StructType:
        return ast.StructType(fields=tuple(_nodes(children, ast.StructTypeField)), pos=self._pos(meta))

    def decimal_type(self, meta: Meta, children: list[Any]) -> ast.DecimalType:
        _, precision, scale = children
        return ast.DecimalType(precision=int(precision), scale=int(scale), pos=self._pos(meta))

    def type_parameter(self, meta: Meta, children: list[Any]) -> Token:
        return children[0]  # type: ignore[no-any-return]

    def base_type(self, meta: Meta, children: list[Any]) -> ast.TypeNode:
        # ksqlDB accepts and ignores type parameters such as VARCHAR(STRING).
        name = children[0]
        primitive = PRIMITIVE_TYPES.get(str(name))
        if primitive is not None and name.type == "NAME":
            return ast.PrimitiveType(name=primitive, pos=self._pos(meta))
        return ast.NamedType(name=str(name), pos=self._pos(meta))

    # -- queries ---------------------------------------------------------------------------

    def select_single(self, meta: Meta, children: list[Any]) -> ast.SingleColumn:
        expr = children[0]
        alias = next((c for c in children[1:] if isinstance(c, Token) and c.type == "NAME"), None)
        return ast.SingleColumn(expr=expr, alias=None if alias is None else str(alias), pos=self._pos(meta))

    def select_struct_all(self, meta: Meta, children: list[Any]) -> ast.StructAll:
        return ast.StructAll(base=children[0], pos=self._pos(meta))

    def select_all(self, meta: Meta, children: list[Any]) -> ast.AllColumns:
        source = _token(children, "NAME")
        return ast.AllColumns(source=None if source is None else str(source), pos=self._pos(meta))

    def aliased_relation(self, meta: Meta, children: list[Any]) -> ast.Table:
        names = [c for c in children if isinstance(c, Token) and c.type == "NAME"]
        alias = str(names[1]) if len(names) > 1 else None
        return ast.Table(name=str(names[0]), alias=alias, pos=self._pos(meta))

    def inner_join(self, meta: Meta, children: list[Any]) -> ast.JoinType:
        return ast.JoinType.INNER

    def full_join(self, meta: Meta, children: list[Any]) -> ast.JoinType:
        return ast.JoinType.FULL

    def left_join(self, meta: Meta, children: list[Any]) -> ast.JoinType:
        return ast.JoinType.LEFT

    def right_join(self, meta: Meta, children: list[Any]) -> ast.JoinType:
        return ast.JoinType.RIGHT

    def joined_source(self, meta: Meta, children: list[Any]) -> ast.JoinedSource:
        join_type, _, source, within, _, on = children
        return ast.JoinedSource(type=join_type, source=source, on=on, within=within, pos=self._pos(meta))

    def relation(self, meta: Meta, children: list[Any]) -> ast.Relation:
        left, *rights = children
        if not rights:
            return left  # type: ignore[no-any-return]
        return ast.Join(left=left, rights=tuple(rights), pos=self._pos(meta))

    def duration(self, meta: Meta, children: list[Any]) -> ast.Duration:
        value, unit = children
        return ast.Duration(value=int(value), unit=unit, pos=self._pos(meta))

    def window_unit(self, meta: Meta, children: list[Any]) -> str:
        return children[0].value.upper()  # type: ignore[no-any-return]

    def within(self, meta: Meta, children: list[Any]) -> ast.Within:
        durations = _nodes(children, ast.Duration)
        grace = next((c.value for c in children if isinstance(c, _Clause)), None)
        before, after = (durations[0], durations[-1])
        return ast.Within(before=before, after=after, grace=grace, pos=self._pos(meta))

    def retention(self, meta: Meta, children: list[Any]) -> _Clause:
        return _Clause("retention", children[1])

    def grace_period(self, meta: Meta, children: list[Any]) -> _Clause:
        return _Clause("grace", children[2])

    def _window_options(self, children: list[Any]) -> dict[str, ast.Duration]:
        return {c.field: c.value for c in children if isinstance(c, _Clause)}

    def tumbling_window(self, meta: Meta, children: list[Any]) -> ast.TumblingWindow:
        (size,) = _nodes(children, ast.Duration)
        return ast.TumblingWindow(size=size, **self._window_options(children), pos=self._pos(meta))

    def hopping_window(self, meta: Meta, children: list[Any]) -> ast.HoppingWindow:
        size, advance = _nodes(children, ast.Duration)
        return ast.HoppingWindow(size=size, advance=advance, **self._window_options(children), pos=self._pos(meta))

    def session_window(self, meta: Meta, children: list[Any]) -> ast.SessionWindow:
        (gap,) = _nodes(children, ast.Duration)
        return ast.SessionWindow(gap=gap, **self._window_options(children), pos=self._pos(meta))

    def window_clause(self, meta: Meta, children: list[Any]) -> _Clause:
        return _Clause("window", children[-1])

    def where_clause(self, meta: Meta, children: list[Any]) -> _Clause:
        return _Clause("where", children[1])

    def having_clause(self, meta: Meta, children: list[Any]) -> _Clause:
        return _Clause("having", children[1])

    def group_by_clause(self, meta: Meta, children: list[Any]) -> _Clause:
        return _Clause("group_by", _grouping("GROUP BY", children[2:]))

    def partition_by_clause(self, meta: Meta, children: list[Any]) -> _Clause:
        return _Clause("partition_by", _grouping("PARTITION BY", children[2:]))

    def emit_clause(self, meta: Meta, children: list[Any]) -> _Clause:
        return _Clause("refinement", ast.Refinement(children[1].type))

    def limit_clause(self, meta: Meta, children: list[Any]) -> _Clause:
        value = children[1]
        if not isinstance(value, ast.IntegerLiteral):
            raise ParseError("Failed to prepare statement: Value must be integer for command: LIMIT", pos=getattr(value, "pos", None))
        # A negative LIMIT parses; the planner rejects it with ksqlDB's message.
        return _Clause("limit", value.value)

    def interval_clause(self, meta: Meta, children: list[Any]) -> _Clause:
        return _Clause("interval", int(children[1]))

    def query(self, meta: Meta, children: list[Any]) -> ast.Query:
        from_at = next(i for i, c in enumerate(children) if isinstance(c, Token) and c.type == "FROM")
        items = _nodes(children[1:from_at], (ast.SingleColumn, ast.AllColumns, ast.StructAll))
        clauses = {c.field: c.value for c in children[from_at + 1 :] if isinstance(c, _Clause)}
        return ast.Query(select=tuple(items), from_=children[from_at + 1], **clauses, pos=self._pos(meta))

    # -- statements ------------------------------------------------------------------------

    def query_statement(self, meta: Meta, children: list[Any]) -> ast.QueryStatement:
        return ast.QueryStatement(query=children[0], text=self._text(meta), pos=self._pos(meta))

    def _show(self, meta: Meta, children: list[Any], what: ast.ShowKind) -> ast.Show:
        return ast.Show(what=what, extended=_has(children, "EXTENDED"), text=self._text(meta), pos=self._pos(meta))

    def __default__(self, data: Any, children: list[Any], meta: Meta) -> Any:
        kind = _SHOW_KINDS.get(str(data))
        if kind is not None:
            return self._show(meta, children, kind)
        # lark's own default (an unannotated method): keep the node as a tree
        return Tree(data, children, meta)

    def list_topics(self, meta: Meta, children: list[Any]) -> ast.Show:
        kind = ast.ShowKind.ALL_TOPICS if _has(children, "ALL") else ast.ShowKind.TOPICS
        return self._show(meta, children, kind)

    def describe_source(self, meta: Meta, children: list[Any]) -> ast.DescribeSource:
        return ast.DescribeSource(
            name=str(children[1]), extended=_has(children, "EXTENDED"), text=self._text(meta), pos=self._pos(meta)
        )

    def describe_streams(self, meta: Meta, children: list[Any]) -> ast.DescribeSource:
        return ast.DescribeSource(
            name=None,
            all_of=ast.SourceKind.STREAM,
            extended=_has(children, "EXTENDED"),
            text=self._text(meta),
            pos=self._pos(meta),
        )

    def describe_tables(self, meta: Meta, children: list[Any]) -> ast.DescribeSource:
        return ast.DescribeSource(
            name=None,
            all_of=ast.SourceKind.TABLE,
            extended=_has(children, "EXTENDED"),
            text=self._text(meta),
            pos=self._pos(meta),
        )

    def describe_function(self, meta: Meta, children: list[Any]) -> ast.DescribeFunction:
        return ast.DescribeFunction(name=str(children[2]).upper(), text=self._text(meta), pos=self._pos(meta))

    def print_topic(self, meta: Meta, children: list[Any]) -> ast.PrintTopic:
        clauses = {c.field: c.value for c in children if isinstance(c, _Clause)}
        return ast.PrintTopic(
            topic=children[1],
            from_beginning=_has(children, "BEGINNING"),
            interval=clauses.get("interval"),
            limit=clauses.get("limit"),
            text=self._text(meta),
            pos=self._pos(meta),
        )

    @staticmethod
    def _query_id(children: list[Any]) -> str | None:
        target = children[1]
        return None if target.type == "ALL" else str(target)

    def terminate_query(self, meta: Meta, children: list[Any]) -> ast.TerminateQuery:
        return ast.TerminateQuery(query_id=self._query_id(children), text=self._text(meta), pos=self._pos(meta))

    def pause_query(self, meta: Meta, children: list[Any]) -> ast.PauseQuery:
        return ast.PauseQuery(query_id=self._query_id(children), text=self._text(meta), pos=self._pos(meta))

    def resume_query(self, meta: Meta, children: list[Any]) -> ast.ResumeQuery:
        return ast.ResumeQuery(query_id=self._query_id(children), text=self._text(meta), pos=self._pos(meta))

    def set_property(self, meta: Meta, children: list[Any]) -> ast.SetProperty:
        name, value = (unquote(c.value, "'") for c in children if c.type == "SQ_STRING")
        return ast.SetProperty(name=name, value=value, text=self._text(meta), pos=self._pos(meta))

    def unset_property(self, meta: Meta, children: list[Any]) -> ast.UnsetProperty:
        return ast.UnsetProperty(name=unquote(children[1].value, "'"), text=self._text(meta), pos=self._pos(meta))

    def define_variable(self, meta: Meta, children: list[Any]) -> ast.DefineVariable:
        name, value = children[1], children[-1]
        return ast.DefineVariable(
            name=name.value, value=unquote(value.value, "'"), text=self._text(meta), pos=self._pos(meta)
        )

    def undefine_variable(self, meta: Meta, children: list[Any]) -> ast.UndefineVariable:
        return ast.UndefineVariable(name=children[1].value, text=self._text(meta), pos=self._pos(meta))

    def source_kind(self, meta: Meta, children: list[Any]) -> ast.SourceKind:
        return ast.SourceKind(children[0].type)

    def property(self, meta: Meta, children: list[Any]) -> ast.Property:
        name, value = children[0], children[-1]
        key = unquote(name.value, "'") if name.type == "SQ_STRING" else str(name)
        return ast.Property(name=key.upper(), value=value, pos=self._pos(meta))

    def properties(self, meta: Meta, children: list[Any]) -> tuple[ast.Property, ...]:
        return tuple(children)

    def key_constraint(self, meta: Meta, children: list[Any]) -> ast.ColumnConstraint:
        return ast.ColumnConstraint.PRIMARY_KEY if _has(children, "PRIMARY") else ast.ColumnConstraint.KEY

    def headers_constraint(self, meta: Meta, children: list[Any]) -> ast.ColumnConstraint:
        return ast.ColumnConstraint.HEADERS

    def header_constraint(self, meta: Meta, children: list[Any]) -> tuple[ast.ColumnConstraint, str]:
        return (ast.ColumnConstraint.HEADER, unquote(children[1].value, "'"))

    def table_element(self, meta: Meta, children: list[Any]) -> ast.TableElement:
        name, type_, constraint = children
        header_key = None
        if isinstance(constraint, tuple):
            constraint, header_key = constraint
        return ast.TableElement(
            name=str(name), type=type_, constraint=constraint, header_key=header_key, pos=self._pos(meta)
        )

    def table_elements(self, meta: Meta, children: list[Any]) -> tuple[ast.TableElement, ...]:
        return tuple(children)

    def create_source(self, meta: Meta, children: list[Any]) -> ast.CreateSource:
        kind = next(c for c in children if isinstance(c, ast.SourceKind))
        elements = next((c for c in children if isinstance(c, tuple) and c and isinstance(c[0], ast.TableElement)), ())
        for element in elements:
            _check_key_constraint(kind, element)
        properties = next((c for c in children if isinstance(c, tuple) and c and isinstance(c[0], ast.Property)), ())
        return ast.CreateSource(
            kind=kind,
            name=str(_token(children, "NAME")),
            elements=elements,
            properties=properties,
            or_replace=_has(children, "REPLACE"),
            if_not_exists=_has(children, "EXISTS"),
            is_source=_has(children, "SOURCE"),
            text=self._text(meta),
            pos=self._pos(meta),
        )

    def create_as_select(self, meta: Meta, children: list[Any]) -> ast.CreateAsSelect:
        properties = next((c for c in children if isinstance(c, tuple)), ())
        kind = next(c for c in children if isinstance(c, ast.SourceKind))
        if children[-1].limit is not None:
            raise ParseError(
                f"CREATE {kind.value} AS SELECT statements don't support LIMIT clause.", pos=self._pos(meta)
            )
        return ast.CreateAsSelect(
            kind=kind,
            name=str(_token(children, "NAME")),
            query=children[-1],
            properties=properties,
            or_replace=_has(children, "REPLACE"),
            if_not_exists=_has(children, "EXISTS"),
            text=self._text(meta),
            pos=self._pos(meta),
        )

    def insert_into(self, meta: Meta, children: list[Any]) -> ast.InsertInto:
        properties = next((c for c in children if isinstance(c, tuple)), ())
        return ast.InsertInto(
            target=str(children[2]), query=children[-1], properties=properties, text=self._text(meta), pos=self._pos(meta)
        )

    def column_list(self, meta: Meta, children: list[Any]) -> list[str]:
        return [str(c) for c in children]

    def values(self, meta: Meta, children: list[Any]) -> tuple[ast.Expr, ...]:
        return tuple(_exprs(children))

    def insert_values(self, meta: Meta, children: list[Any]) -> ast.InsertValues:
        columns = next((c for c in children if isinstance(c, list)), None)
        values = children[-1]
        if columns is not None and len(columns) != len(values):
            # ksqlDB checks this while building the statement, before it looks at the target.
            raise ParseError(
                "Failed to prepare statement: Expected number columns and values to match: "
                f"{len(columns)}, {len(values)}",
                pos=self._pos(meta),
            )
        return ast.InsertValues(
            target=str(children[2]),
            columns=None if columns is None else tuple(columns),
            values=children[-1],
            text=self._text(meta),
            pos=self._pos(meta),
        )

    def drop_source(self, meta: Meta, children: list[Any]) -> ast.DropSource:
        return ast.DropSource(
            kind=children[1],
            name=str(_token(children, "NAME")),
            if_exists=_has(children, "EXISTS"),
            delete_topic=_has(children, "DELETE"),
            text=self._text(meta),
            pos=self._pos(meta),
        )

    def explain(self, meta: Meta, children: list[Any]) -> ast.Explain:
        target = children[1]
        text, pos = self._text(meta), self._pos(meta)
        if isinstance(target, Token):
            return ast.Explain(query_id=str(target), text=text, pos=pos)
        if isinstance(target, ast.Query):
            target = ast.QueryStatement(query=target, text=text[len("EXPLAIN") :].strip(), pos=target.pos)
        return ast.Explain(statement=target, text=text, pos=pos)

    def register_type(self, meta: Meta, children: list[Any]) -> ast.RegisterType:
        return ast.RegisterType(
            name=str(_token(children, "NAME")),
            type=children[-1],
            if_not_exists=_has(children, "EXISTS"),
            text=self._text(meta),
            pos=self._pos(meta),
        )

    def drop_type(self, meta: Meta, children: list[Any]) -> ast.DropType:
        return ast.DropType(
            name=str(_token(children, "NAME")), if_exists=_has(children, "EXISTS"), text=self._text(meta), pos=self._pos(meta)
        )

    def alter_option(self, meta: Meta, children: list[Any]) -> ast.TableElement:
        return ast.TableElement(name=str(children[-2]), type=children[-1], pos=self._pos(meta))

    def alter_source(self, meta: Meta, children: list[Any]) -> ast.AlterSource:
        return ast.AlterSource(
            kind=children[1],
            name=str(children[2]),
            add_columns=tuple(_nodes(children, ast.TableElement)),
            text=self._text(meta),
            pos=self._pos(meta),
        )

    def timeout(self, meta: Meta, children: list[Any]) -> _Clause:
        return _Clause("timeout", children[1])

    def assert_topic(self, meta: Meta, children: list[Any]) -> ast.AssertTopic:
        timeout = next((c.value for c in children if isinstance(c, _Clause)), None)
        return ast.AssertTopic(
            topic=next(c for c in children if type(c) is str),
            properties=next((c for c in children if isinstance(c, tuple)), ()),
            exists=not _has(children, "NOT"),
            timeout=timeout,
            text=self._text(meta),
            pos=self._pos(meta),
        )

    def assert_schema(self, meta: Meta, children: list[Any]) -> ast.AssertSchema:
        timeout = next((c.value for c in children if isinstance(c, _Clause)), None)
        subject = None
        schema_id = None
        for i, c in enumerate(children):
            if isinstance(c, Token) and c.type == "SUBJECT":
                subject = str(children[i + 1])
            elif isinstance(c, Token) and c.type == "ID":
                literal = children[i + 1]
                if not isinstance(literal, ast.IntegerLiteral):
                    raise ParseError("ID must be an integer", pos=getattr(literal, "pos", None))
                schema_id = literal.value
        return ast.AssertSchema(
            subject=subject,
            id=schema_id,
            exists=not _has(children, "NOT"),
            timeout=timeout,
            text=self._text(meta),
            pos=self._pos(meta),
        )


def _grouping(clause: str, children: list[Any]) -> tuple[ast.Expr, ...]:
    exprs = tuple(_exprs(children))
    if not exprs:  # `()`: ksqlDB's GroupBy / PartitionBy nodes refuse an empty list
        raise ParseError(f"{clause} requires at least one expression")
    return exprs


def _exprs(children: Iterable[Any]) -> list[Any]:
    """The children that are built nodes (expressions, types), skipping keyword tokens and gaps."""
    return [c for c in children if c is not None and not isinstance(c, Token)]


def _negate(literal: ast.Literal, pos: Position | None) -> ast.Literal:
    match literal:
        case ast.IntegerLiteral(value=value):
            return ast.IntegerLiteral(value=-value, pos=pos)
        case ast.DecimalLiteral(text=text):
            return ast.DecimalLiteral(text=text[1:] if text.startswith("-") else "-" + text, pos=pos)
        case ast.DoubleLiteral(value=value):
            return ast.DoubleLiteral(value=-value, pos=pos)
    raise ParseError("Syntax Error", pos=pos)


def _check_key_constraint(kind: ast.SourceKind, element: ast.TableElement) -> None:
    """ksqlDB's AstBuilder: streams take KEY columns, tables PRIMARY KEY columns."""
    match kind, element.constraint:
        case ast.SourceKind.TABLE, ast.ColumnConstraint.KEY:
            raise NodeLocationParseError(
                f"Column `{element.name}` is a 'KEY' column: please use 'PRIMARY KEY' for tables.", pos=element.pos
            )
        case ast.SourceKind.STREAM, ast.ColumnConstraint.PRIMARY_KEY:
            raise NodeLocationParseError(
                f"Column `{element.name}` is a 'PRIMARY KEY' column: please use 'KEY' for streams.", pos=element.pos
            )
