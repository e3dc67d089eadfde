"""The typed syntax tree of ksqlDB's statement language.

The parser (``builder.py``) builds these nodes from the lark tree; the planner reads them; the
formatter (``formatter.py``) prints them back as SQL. Nodes are frozen, hold tuples rather than
lists, and carry the :class:`~ksqlpy.errors.Position` of their first token in ``pos`` (ignored by
equality, so trees compare by meaning).

Identifiers are stored as ksqlDB stores them: unquoted ones upper-cased, quoted ones
(```x``` or ``"x"``) exactly as written.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar, dataclass_transform

from ksqlpy.errors import Position

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def _node(cls: type[_T]) -> type[_T]:
    """A syntax-tree node: a frozen, slotted, keyword-only dataclass."""
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


def _pos() -> Position | None:
    return field(default=None, compare=False, repr=False)


# --------------------------------------------------------------------------------------------
# Types as written in statements (resolved to ksqlpy.sqltypes by the planner)


@_node
class PrimitiveType:
    name: str  # BOOLEAN, INTEGER, BIGINT, DOUBLE, STRING, BYTES, DATE, TIME, TIMESTAMP (INT/VARCHAR normalised)
    pos: Position | None = _pos()


@_node
class DecimalType:
    precision: int
    scale: int
    pos: Position | None = _pos()


@_node
class ArrayType:
    element: TypeNode
    pos: Position | None = _pos()


@_node
class MapType:
    key: TypeNode
    value: TypeNode
    pos: Position | None = _pos()


@_node
class StructTypeField:
    name: str
    type: TypeNode
    pos: Position | None = _pos()


@_node
class StructType:
    fields: tuple[StructTypeField, ...]
    pos: Position | None = _pos()


@_node
class NamedType:
    """A type registered with CREATE TYPE, referred to by name."""

    name: str
    pos: Position | None = _pos()


TypeNode: TypeAlias = PrimitiveType | DecimalType | ArrayType | MapType | StructType | NamedType


# --------------------------------------------------------------------------------------------
# Expressions


@_node
class NullLiteral:
    pos: Position | None = _pos()


@_node
class BooleanLiteral:
    value: bool
    pos: Position | None = _pos()


@_node
class IntegerLiteral:
    """An integer literal: INTEGER if it fits 32 bits, else BIGINT (as ksqlDB types it)."""

    value: int
    pos: Position | None = _pos()


@_node
class DecimalLiteral:
    """A literal with a decimal point and no exponent, e.g. ``1.50``: DECIMAL in ksqlDB."""

    text: str
    pos: Position | None = _pos()


@_node
class DoubleLiteral:
    """A literal with an exponent, e.g. ``1.5E3``: DOUBLE in ksqlDB."""

    value: float
    pos: Position | None = _pos()


@_node
class StringLiteral:
    value: str
    pos: Position | None = _pos()


@_node
class ColumnRef:
    """A column, optionally qualified by a source name or alias (``S.COL``).

    Also used for bare names that the analyzer resolves as lambda parameters.
    """

    name: str
    source: str | None = None
    pos: Position | None = _pos()


@_node
class Dereference:
    """Struct field access: ``base->field``."""

    base: Expr
    field: str
    pos: Position | None = _pos()


@_node
class Subscript:
    """``base[index]``: 1-based array index (negative counts from the end) or map lookup."""

    base: Expr
    index: Expr
    pos: Position | None = _pos()


class ArithmeticOp(enum.Enum):
    ADD = "+"
    SUBTRACT = "-"
    MULTIPLY = "*"
    DIVIDE = "/"
    MODULUS = "%"


@_node
class ArithmeticUnary:
    negative: bool
    operand: Expr
    pos: Position | None = _pos()


@_node
class ArithmeticBinary:
    op: ArithmeticOp
    left: Expr
    right: Expr
    pos: Position | None = _pos()


class ComparisonOp(enum.Enum):
    EQUAL = "="
    NOT_EQUAL = "<>"
    LESS_THAN = "<"
    LESS_THAN_OR_EQUAL = "<="
    GREATER_THAN = ">"
    GREATER_THAN_OR_EQUAL = ">="
    IS_DISTINCT_FROM = "IS DISTINCT FROM"
    IS_NOT_DISTINCT_FROM = "IS NOT DISTINCT FROM"


@_node
class Comparison:
    op: ComparisonOp
    left: Expr
    right: Expr
    pos: Position | None = _pos()


class LogicalOp(enum.Enum):
    AND = "AND"
    OR = "OR"


@_node
class LogicalBinary:
    op: LogicalOp
    left: Expr
    right: Expr
    pos: Position | None = _pos()


@_node
class Not:
    operand: Expr
    pos: Position | None = _pos()


@_node
class IsNull:
    operand: Expr
    negated: bool = False  # IS NOT NULL
    pos: Position | None = _pos()


@_node
class Like:
    value: Expr
    pattern: Expr
    escape: str | None = None
    negated: bool = False
    pos: Position | None = _pos()


@_node
class Between:
    value: Expr
    low: Expr
    high: Expr
    negated: bool = False
    pos: Position | None = _pos()


@_node
class InList:
    value: Expr
    items: tuple[Expr, ...]
    negated: bool = False
    pos: Position | None = _pos()


@_node
class WhenClause:
    condition: Expr  # for a simple CASE, the value compared with the operand
    result: Expr
    pos: Position | None = _pos()


@_node
class SearchedCase:
    """``CASE WHEN cond THEN r ... [ELSE d] END``."""

    whens: tuple[WhenClause, ...]
    default: Expr | None = None
    pos: Position | None = _pos()


@_node
class SimpleCase:
    """``CASE operand WHEN v THEN r ... [ELSE d] END``."""

    operand: Expr
    whens: tuple[WhenClause, ...]
    default: Expr | None = None
    pos: Position | None = _pos()


@_node
class Cast:
    operand: Expr
    type: TypeNode
    pos: Position | None = _pos()


@_node
class IntervalUnit:
    """A bare time unit passed as a function argument, e.g. ``TIMESTAMPADD(SECONDS, 5, ts)``."""

    unit: str  # upper-case, as written: SECONDS, MILLISECONDS, DAYS, ...
    pos: Position | None = _pos()


@_node
class FunctionCall:
    """``NAME(args)``; ``COUNT(*)`` has ``star=True`` and no args. ``name`` is upper-case."""

    name: str
    args: tuple[Expr, ...] = ()
    star: bool = False
    distinct: bool = False
    pos: Position | None = _pos()


@_node
class Lambda:
    """``x => body`` or ``(x, y) => body``; parameter names upper-cased like identifiers."""

    params: tuple[str, ...]
    body: Expr
    pos: Position | None = _pos()


@_node
class CreateArray:
    """``ARRAY[a, b, ...]``."""

    items: tuple[Expr, ...]
    pos: Position | None = _pos()


@_node
class CreateMap:
    """``MAP(k1 := v1, k2 := v2)``."""

    entries: tuple[tuple[Expr, Expr], ...]
    pos: Position | None = _pos()


@_node
class CreateStruct:
    """``STRUCT(name := value, ...)``."""

    fields: tuple[tuple[str, Expr], ...]
    pos: Position | None = _pos()


Expr: TypeAlias = (
    NullLiteral
    | BooleanLiteral
    | IntegerLiteral
    | DecimalLiteral
    | DoubleLiteral
    | StringLiteral
    | ColumnRef
    | Dereference
    | Subscript
    | ArithmeticUnary
    | ArithmeticBinary
    | Comparison
    | LogicalBinary
    | Not
    | IsNull
    | Like
    | Between
    | InList
    | SearchedCase
    | SimpleCase
    | Cast
    | IntervalUnit
    | FunctionCall
    | Lambda
    | CreateArray
    | CreateMap
    | CreateStruct
)

Literal: TypeAlias = NullLiteral | BooleanLiteral | IntegerLiteral | DecimalLiteral | DoubleLiteral | StringLiteral


# --------------------------------------------------------------------------------------------
# Queries


@_node
class SingleColumn:
    """A projected expression with an optional ``AS alias``."""

    expr: Expr
    alias: str | None = None
    pos: Position | None = _pos()


@_node
class AllColumns:
    """``*`` or ``source.*``."""

    source: str | None = None
    pos: Position | None = _pos()


@_node
class StructAll:
    """``base->*``: every field of a struct expression, each as its own column."""

    base: Expr
    pos: Position | None = _pos()


SelectItem: TypeAlias = SingleColumn | AllColumns | StructAll


@_node
class Duration:
    """``10 SECONDS``: a count and a unit as written (unit upper-case, plural or singular)."""

    value: int
    unit: str
    pos: Position | None = _pos()

    @property
    def millis(self) -> int:
        return self.value * TIME_UNIT_MILLIS[self.unit]


TIME_UNIT_MILLIS: dict[str, int] = {
    "MILLISECOND": 1,
    "MILLISECONDS": 1,
    "SECOND": 1000,
    "SECONDS": 1000,
    "MINUTE": 60_000,
    "MINUTES": 60_000,
    "HOUR": 3_600_000,
    "HOURS": 3_600_000,
    "DAY": 86_400_000,
    "DAYS": 86_400_000,
    "WEEK": 7 * 86_400_000,  # not a window unit in ksqlDB; kept for TIMESTAMPADD-style units
    "WEEKS": 7 * 86_400_000,
}


@_node
class TumblingWindow:
    size: Duration
    retention: Duration | None = None
    grace: Duration | None = None
    pos: Position | None = _pos()


@_node
class HoppingWindow:
    size: Duration
    advance: Duration
    retention: Duration | None = None
    grace: Duration | None = None
    pos: Position | None = _pos()


@_node
class SessionWindow:
    gap: Duration
    retention: Duration | None = None
    grace: Duration | None = None
    pos: Position | None = _pos()


Window: TypeAlias = TumblingWindow | HoppingWindow | SessionWindow


@_node
class Table:
    """A named source in FROM/JOIN, with an optional alias."""

    name: str
    alias: str | None = None
    pos: Position | None = _pos()


class JoinType(enum.Enum):
    INNER = "INNER"
    LEFT = "LEFT"
    RIGHT = "RIGHT"
    FULL = "FULL"


@_node
class Within:
    """``WITHIN 10 SECONDS`` or ``WITHIN (1 SECOND, 2 SECONDS)`` [``GRACE PERIOD g``]."""

    before: Duration
    after: Duration
    grace: Duration | None = None
    pos: Position | None = _pos()


@_node
class JoinedSource:
    type: JoinType
    source: Table
    on: Expr
    within: Within | None = None
    pos: Position | None = _pos()


@_node
class Join:
    """``left JOIN r1 ... ON ... [JOIN r2 ... ON ...]``: joins apply left to right."""

    left: Table
    rights: tuple[JoinedSource, ...]
    pos: Position | None = _pos()


Relation: TypeAlias = Table | Join


class Refinement(enum.Enum):
    CHANGES = "CHANGES"
    FINAL = "FINAL"


@_node
class Query:
    select: tuple[SelectItem, ...]
    from_: Relation
    where: Expr | None = None
    window: Window | None = None
    group_by: tuple[Expr, ...] = ()
    partition_by: tuple[Expr, ...] = ()
    having: Expr | None = None
    refinement: Refinement | None = None  # EMIT CHANGES / EMIT FINAL; None for a pull query
    limit: int | None = None
    pos: Position | None = _pos()


# --------------------------------------------------------------------------------------------
# Statements


class SourceKind(enum.Enum):
    STREAM = "STREAM"
    TABLE = "TABLE"


@_node
class Property:
    """One ``NAME = literal`` of a WITH clause; ``name`` is upper-case."""

    name: str
    value: Literal
    pos: Position | None = _pos()


class ColumnConstraint(enum.Enum):
    KEY = "KEY"
    PRIMARY_KEY = "PRIMARY KEY"
    HEADERS = "HEADERS"  # the whole header list: ARRAY<STRUCT<KEY STRING, VALUE BYTES>>
    HEADER = "HEADER"  # one header's value: HEADER('key'), BYTES


@_node
class TableElement:
    name: str
    type: TypeNode
    constraint: ColumnConstraint | None = None
    header_key: str | None = None  # for HEADER('key')
    pos: Position | None = _pos()


@_node
class CreateSource:
    """``CREATE [OR REPLACE] [SOURCE] STREAM|TABLE [IF NOT EXISTS] name (elements) WITH (...)``."""

    kind: SourceKind
    name: str
    elements: tuple[TableElement, ...]
    properties: tuple[Property, ...] = ()
    or_replace: bool = False
    if_not_exists: bool = False
    is_source: bool = False  # CREATE SOURCE TABLE/STREAM: read-only, materialized for pull queries
    text: str = ""
    pos: Position | None = _pos()


@_node
class CreateAsSelect:
    """``CREATE [OR REPLACE] STREAM|TABLE [IF NOT EXISTS] name [WITH (...)] AS query``."""

    kind: SourceKind
    name: str
    query: Query
    properties: tuple[Property, ...] = ()
    or_replace: bool = False
    if_not_exists: bool = False
    text: str = ""
    pos: Position | None = _pos()


@_node
class InsertInto:
    """``INSERT INTO target [WITH (...)] query``."""

    target: str
    query: Query
    properties: tuple[Property, ...] = ()
    text: str = ""
    pos: Position | None = _pos()


@_node
class InsertValues:
    """``INSERT INTO target [(col, ...)] VALUES (expr, ...)``."""

    target: str
    columns: tuple[str, ...] | None
    values: tuple[Expr, ...]
    text: str = ""
    pos: Position | None = _pos()


@_node
class QueryStatement:
    """A SELECT on its own: a push query (EMIT CHANGES/FINAL) or a pull query."""

    query: Query
    text: str = ""
    pos: Position | None = _pos()


@_node
class DropSource:
    kind: SourceKind
    name: str
    if_exists: bool = False
    delete_topic: bool = False
    text: str = ""
    pos: Position | None = _pos()


@_node
class TerminateQuery:
    """``TERMINATE id`` or ``TERMINATE ALL`` (``query_id`` None)."""

    query_id: str | None
    text: str = ""
    pos: Position | None = _pos()


@_node
class PauseQuery:
    query_id: str | None  # None: ALL
    text: str = ""
    pos: Position | None = _pos()


@_node
class ResumeQuery:
    query_id: str | None  # None: ALL
    text: str = ""
    pos: Position | None = _pos()


class ShowKind(enum.Enum):
    STREAMS = "STREAMS"
    TABLES = "TABLES"
    QUERIES = "QUERIES"
    TOPICS = "TOPICS"
    ALL_TOPICS = "ALL TOPICS"
    PROPERTIES = "PROPERTIES"
    FUNCTIONS = "FUNCTIONS"
    TYPES = "TYPES"
    VARIABLES = "VARIABLES"
    CONNECTORS = "CONNECTORS"


@_node
class Show:
    """``SHOW|LIST <what> [EXTENDED]``."""

    what: ShowKind
    extended: bool = False
    text: str = ""
    pos: Position | None = _pos()


@_node
class DescribeSource:
    """``DESCRIBE name [EXTENDED]``; ``DESCRIBE STREAMS|TABLES [EXTENDED]`` has ``name`` None and ``all_of`` set."""

    name: str | None
    extended: bool = False
    all_of: SourceKind | None = None
    text: str = ""
    pos: Position | None = _pos()


@_node
class DescribeFunction:
    name: str
    text: str = ""
    pos: Position | None = _pos()


@_node
class Explain:
    """``EXPLAIN query_id`` or ``EXPLAIN <statement>``."""

    query_id: str | None = None
    statement: CreateAsSelect | InsertInto | QueryStatement | None = None
    text: str = ""
    pos: Position | None = _pos()


@_node
class PrintTopic:
    topic: str  # as written: quoted topic names keep case, unquoted are upper-cased
    from_beginning: bool = False
    interval: int | None = None
    limit: int | None = None
    text: str = ""
    pos: Position | None = _pos()


@_node
class SetProperty:
    name: str  # as written inside the quotes
    value: str
    text: str = ""
    pos: Position | None = _pos()


@_node
class UnsetProperty:
    name: str
    text: str = ""
    pos: Position | None = _pos()


@_node
class DefineVariable:
    name: str  # variable names are case-insensitive; stored upper-case? ksqlDB keeps as written, matches ignoring case
    value: str
    text: str = ""
    pos: Position | None = _pos()


@_node
class UndefineVariable:
    name: str
    text: str = ""
    pos: Position | None = _pos()


@_node
class RegisterType:
    """``CREATE TYPE [IF NOT EXISTS] name AS type``."""

    name: str
    type: TypeNode
    if_not_exists: bool = False
    text: str = ""
    pos: Position | None = _pos()


@_node
class DropType:
    name: str
    if_exists: bool = False
    text: str = ""
    pos: Position | None = _pos()


@_node
class AlterSource:
    """``ALTER STREAM|TABLE name ADD [COLUMN] col type, ...``."""

    kind: SourceKind
    name: str
    add_columns: tuple[TableElement, ...]
    text: str = ""
    pos: Position | None = _pos()


@_node
class AssertTopic:
    """``ASSERT [NOT EXISTS] TOPIC name [WITH (...)] [TIMEOUT d]``."""

    topic: str
    properties: tuple[Property, ...] = ()
    exists: bool = True
    timeout: Duration | None = None
    text: str = ""
    pos: Position | None = _pos()


@_node
class AssertSchema:
    """``ASSERT [NOT EXISTS] SCHEMA [SUBJECT s] [ID n] [TIMEOUT d]``."""

    subject: str | None = None
    id: int | None = None
    exists: bool = True
    timeout: Duration | None = None
    text: str = ""
    pos: Position | None = _pos()


Statement: TypeAlias = (
    CreateSource
    | CreateAsSelect
    | InsertInto
    | InsertValues
    | QueryStatement
    | DropSource
    | TerminateQuery
    | PauseQuery
    | ResumeQuery
    | Show
    | DescribeSource
    | DescribeFunction
    | Explain
    | PrintTopic
    | SetProperty
    | UnsetProperty
    | DefineVariable
    | UndefineVariable
    | RegisterType
    | DropType
    | AlterSource
    | AssertTopic
    | AssertSchema
)
