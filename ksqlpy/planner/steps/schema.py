"""Logical schemas of plans, and the schema each execution step produces.

A :class:`LogicalSchema` is ksqlDB's: an ordered list of key, value and header columns, written
as ```ID` STRING KEY, `V` INTEGER``. :func:`resolve_schema` computes a step's output schema from
its inputs', as ksqlDB's ``StepSchemaResolver`` does, so a plan carries only what ksqlDB writes
and everything else (the columns each operator sees) follows from it. Expressions in steps are
typed with the same compiler the analyzer uses.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ksqlpy import parser, sqltypes
from ksqlpy.errors import AnalysisError, PlanError
from ksqlpy.parser import ast
from ksqlpy.planner.catalog import Column, ColumnNamespace
from ksqlpy.planner.expressions.scope import ColumnScope, ScopeColumn
from ksqlpy.planner.steps import steps as s

KEY, VALUE, HEADERS = ColumnNamespace.KEY, ColumnNamespace.VALUE, ColumnNamespace.HEADERS

ROWTIME, ROWPARTITION, ROWOFFSET = "ROWTIME", "ROWPARTITION", "ROWOFFSET"
WINDOWSTART, WINDOWEND = "WINDOWSTART", "WINDOWEND"


@dataclass(frozen=True, slots=True)
class LogicalSchema:
    columns: tuple[Column, ...]

    @classmethod
    def of(cls, columns: Iterable[Column]) -> LogicalSchema:
        return cls(tuple(columns))

    @classmethod
    def parse(cls, text: str, types: Mapping[str, sqltypes.SqlType] | None = None) -> LogicalSchema:
        """A schema from ksqlDB's text (the ``schema``/``sourceSchema`` of plans)."""
        from ksqlpy.planner.types import resolve_type

        return cls(tuple(_column(e, resolve_type(e.type, types or {})) for e in _parse_cached(text)))

    @property
    def key(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.namespace is KEY)

    @property
    def value(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.namespace is VALUE)

    @property
    def headers(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.namespace is HEADERS)

    def find_value(self, name: str) -> Column | None:
        return next((c for c in self.value if c.name == name), None)

    def is_key_column(self, name: str) -> bool:
        return any(c.name == name for c in self.key)

    def text(self) -> str:
        return ", ".join(_column_text(c) for c in self.columns)

    __str__ = text

    def with_pseudo_and_key_columns_in_value(self, *, windowed: bool, pseudo_column_version: int = 1) -> LogicalSchema:
        """What a source step produces: the topic's columns plus, in the value, the headers, the
        pseudo columns, copies of the key columns and, for a windowed key, the window bounds."""
        pseudo = {ROWTIME, ROWPARTITION, ROWOFFSET, WINDOWSTART, WINDOWEND}
        keys = self.key
        values = tuple(c for c in self.value if c.name not in pseudo and not self.is_key_column(c.name))
        out = [*keys, *values, *self.headers]
        out += [_value(c.name, c.type) for c in self.headers]
        out.append(_value(ROWTIME, sqltypes.BIGINT))
        if pseudo_column_version >= 1:
            out += [_value(ROWPARTITION, sqltypes.INTEGER), _value(ROWOFFSET, sqltypes.BIGINT)]
        out += [_value(c.name, c.type) for c in keys]
        if windowed:
            out += [_value(WINDOWSTART, sqltypes.BIGINT), _value(WINDOWEND, sqltypes.BIGINT)]
        return LogicalSchema(tuple(out))

    def without_pseudo_and_key_columns_in_value(self) -> LogicalSchema:
        """The schema as records on a topic carry it: keys, headers, then the value columns that
        are neither pseudo columns nor copies of a key or header column."""
        pseudo = {ROWTIME, ROWPARTITION, ROWOFFSET, WINDOWSTART, WINDOWEND}
        names = {c.name for c in self.key} | {c.name for c in self.headers}
        values = tuple(c for c in self.value if c.name not in pseudo and c.name not in names)
        return LogicalSchema((*self.key, *self.headers, *values))

    def scope(self, clause: str | None = None) -> ColumnScope:
        """Expressions over this schema see its value columns, then its key columns."""
        cols = [ScopeColumn(c.name, c.type) for c in self.value]
        cols += [ScopeColumn(c.name, c.type) for c in self.key]
        return ColumnScope(tuple(cols), clause)


def _value(name: str, t: sqltypes.SqlType) -> Column:
    return Column(name=name, type=t, namespace=VALUE)


def _column(e: ast.TableElement, t: sqltypes.SqlType) -> Column:
    match e.constraint:
        case ast.ColumnConstraint.KEY | ast.ColumnConstraint.PRIMARY_KEY:
            return Column(name=e.name, type=t, namespace=KEY)
        case ast.ColumnConstraint.HEADERS:
            return Column(name=e.name, type=t, namespace=HEADERS)
        case ast.ColumnConstraint.HEADER:
            return Column(name=e.name, type=t, namespace=HEADERS, header_key=e.header_key)
    return Column(name=e.name, type=t)


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> tuple[ast.TableElement, ...]:
    return parser.parse_schema(text)


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _column_text(c: Column) -> str:
    if c.namespace is HEADERS and c.header_key is not None:
        suffix = f" HEADER('{c.header_key}')"
    elif c.namespace is VALUE:
        suffix = ""
    else:
        suffix = " " + c.namespace.value
    return f"{quote_name(c.name)} {type_text(c.type)}{suffix}"


def type_text(t: sqltypes.SqlType) -> str:
    """A type as ksqlDB writes it in schemas (struct field names quoted)."""
    match t:
        case sqltypes.Array(element=e):
            return f"ARRAY<{type_text(e)}>"
        case sqltypes.Map(key=k, value=v):
            return f"MAP<{type_text(k)}, {type_text(v)}>"
        case sqltypes.Struct(fields=fields):
            return "STRUCT<" + ", ".join(f"{quote_name(f.name)} {type_text(f.type)}" for f in fields) + ">"
    return str(t)


# ------------------------------------------------------------------------------ generated names


_NUMBERED = re.compile(r"(?P<name>.*?)?(?:_(?P<number>\d+))?")


class AliasGenerator:
    """ksqlDB's generated column names: ``KSQL_COL_<n>`` for expressions, a struct field's name
    (numbered when taken) for dereferences; never a name any of ``schemas`` already uses."""

    def __init__(self, schemas: Iterable[LogicalSchema]) -> None:
        self.used: dict[str, set[int]] = {}
        for schema in schemas:
            for c in schema.columns:
                m = _NUMBERED.fullmatch(c.name)
                assert m is not None
                self.used.setdefault(m.group("name") or "", set()).add(int(m.group("number") or 0))
        self.next: dict[str, int] = {}

    def _next(self, prefix: str) -> str:
        used = self.used.get(prefix, set())
        idx = self.next.get(prefix, 0)
        while idx in used:
            idx += 1
        self.next[prefix] = idx + 1
        if idx == 0 and prefix != "KSQL_COL":
            return prefix
        return f"{prefix}_{idx}"

    def ksql_col(self) -> str:
        return self._next("KSQL_COL")

    def alias_for(self, e: ast.Expr) -> str:
        if isinstance(e, ast.Dereference):
            m = _NUMBERED.fullmatch(e.field)
            assert m is not None
            return self._next(m.group("name") or "")
        return self.ksql_col()


# ------------------------------------------------------------------------------ step schemas


@functools.lru_cache(maxsize=4096)
def parse_expression(text: str) -> ast.Expr:
    return parser.parse_expression(text)


def split_select(text: str) -> tuple[str, str]:
    """``"(A + 1) AS B"`` → ``("(A + 1)", "B")``: a select expression's expression and alias."""
    expr, sep, alias = text.rpartition(" AS ")
    if not sep:
        raise PlanError(f"Not a select expression (expected '<expression> AS <name>'): {text}")
    alias = alias.strip()
    if alias.startswith("`") and alias.endswith("`"):
        alias = alias[1:-1].replace("``", "`")
    return expr, alias


def expression_type(text: str, schema: LogicalSchema, types: Mapping[str, sqltypes.SqlType] | None = None) -> sqltypes.SqlType:
    from ksqlpy.planner.expressions import compile_expression

    compiled = compile_expression(parse_expression(text), schema.scope(), custom_types=types)
    if compiled.type is None:
        raise AnalysisError(f"Can't infer a type of null: {text}")
    return compiled.type


def aggregate_return_type(text: str, schema: LogicalSchema) -> sqltypes.SqlType:
    from ksqlpy.planner.expressions import compile_expression
    from ksqlpy.planner.functions import aggregates  # noqa: F401 - registers the aggregate library
    from ksqlpy.planner.functions.aggregate import NOT_CONSTANT, AggregateArg, resolve_aggregate

    call = parse_expression(text)
    if not isinstance(call, ast.FunctionCall):
        raise PlanError(f"Not an aggregate call: {text}")
    args: list[AggregateArg] = []
    if call.star:
        args.append(AggregateArg(type=sqltypes.BIGINT, star=True))
    for a in call.args:
        compiled = compile_expression(a, schema.scope())
        constant = compiled.value if compiled.is_constant else NOT_CONSTANT
        args.append(AggregateArg(type=compiled.type, constant=constant))
    return resolve_aggregate(call.name, args).return_type


def resolve_schema(step: s.ExecutionStep, types: Mapping[str, sqltypes.SqlType] | None = None) -> LogicalSchema:
    """The schema of the records ``step`` produces."""
    return resolve_all(step, types)[id(step)]


def resolve_all(
    root: s.ExecutionStep, types: Mapping[str, sqltypes.SqlType] | None = None
) -> dict[int, LogicalSchema]:
    """Every step's output schema under ``root``, by ``id(step)``."""
    out: dict[int, LogicalSchema] = {}

    def visit(step: s.ExecutionStep) -> LogicalSchema:
        inputs = [visit(src) for src in step.sources]
        try:
            schema = _resolve(step, inputs, types or {})
        except AnalysisError as e:
            raise PlanError(f"Step '{step.context}' ({step.TYPE}) does not resolve: {e.message}") from None
        out[id(step)] = schema
        return schema

    visit(root)
    return out


def _resolve(step: s.ExecutionStep, inputs: list[LogicalSchema], types: Mapping[str, sqltypes.SqlType]) -> LogicalSchema:
    match step:
        case s.SourceStep():
            windowed = isinstance(step, s.WindowedStreamSource | s.WindowedTableSource)
            version = 0 if step.pseudo_column_version is None else step.pseudo_column_version
            return LogicalSchema.parse(step.source_schema, types).with_pseudo_and_key_columns_in_value(
                windowed=windowed, pseudo_column_version=version
            )
        case s.StreamSelect() | s.TableSelect():
            return _select(step, inputs[0], types)
        case s.FilterStep() | s.StreamGroupByKey() | s.TableSuppress() | s.SinkStep():
            return inputs[0]
        case s.StreamSelectKeyV1():
            (source,) = inputs
            key_type = expression_type(step.key_expression, source, types)
            return LogicalSchema((Column(name="ROWKEY", type=key_type, namespace=KEY), *source.value))
        case s.StreamSelectKey() | s.TableSelectKey():
            return _partition_by(step.key_expressions, inputs[0], types)
        case s.StreamFlatMap():
            (source,) = inputs
            out = [*source.key, *source.value]
            for i, call in enumerate(step.table_functions):
                out.append(_value(f"KSQL_SYNTH_{i}", expression_type(call, source, types)))
            return LogicalSchema(tuple(out))
        case s.GroupByStep():
            return _group_by(step, inputs[0], types)
        case s.AggregateStep():
            (source,) = inputs
            out = list(source.key)
            for name in step.non_aggregate_columns:
                col = source.find_value(name)
                if col is None:
                    raise PlanError(f"Aggregation column '{name}' is not in its input.")
                out.append(col)
            out += [
                _value(f"KSQL_AGG_VARIABLE_{i}", aggregate_return_type(call, source))
                for i, call in enumerate(step.aggregation_functions)
            ]
            if isinstance(step, s.StreamWindowedAggregate):
                out += [_value(WINDOWSTART, sqltypes.BIGINT), _value(WINDOWEND, sqltypes.BIGINT)]
            return LogicalSchema(tuple(out))
        case s.ForeignKeyTableTableJoin():
            left, right = inputs
            return LogicalSchema((*left.key, *left.value, *right.value))
        case s.StreamStreamJoin() | s.StreamTableJoin() | s.TableTableJoin():
            left, right = inputs
            return _join(step.key_col_name or "ROWKEY", left, right)
    raise PlanError(f"No schema rule for step type '{step.TYPE}'.")


def _select(step: s.StreamSelect | s.TableSelect, source: LogicalSchema, types: Mapping[str, sqltypes.SqlType]) -> LogicalSchema:
    names = list(step.key_column_names or ()) or [c.name for c in source.key]
    selected = getattr(step, "selected_keys", None)
    chosen = set(selected) if selected is not None else {c.name for c in source.key}
    out = [
        Column(name=names[i], type=c.type, namespace=KEY)
        for i, c in enumerate(source.key)
        if c.name in chosen
    ]
    for text in step.select_expressions:
        expr, alias = split_select(text)
        out.append(_value(alias, expression_type(expr, source, types)))
    return LogicalSchema(tuple(out))


def _partition_by(exprs: tuple[str, ...], source: LogicalSchema, types: Mapping[str, sqltypes.SqlType]) -> LogicalSchema:
    parsed = [parse_expression(e) for e in exprs]
    if len(parsed) == 1 and isinstance(parsed[0], ast.NullLiteral):
        return LogicalSchema(source.value)
    aliases = AliasGenerator([source])
    keys: list[Column] = []
    appended: list[Column] = []
    for text, e in zip(exprs, parsed, strict=True):
        t = expression_type(text, source, types)
        if isinstance(e, ast.ColumnRef):
            col = source.find_value(e.name)
            if col is None:
                raise PlanError(f"Unknown partition by column: {e.name}")
            keys.append(Column(name=col.name, type=t, namespace=KEY))
        else:
            name = aliases.alias_for(e)
            keys.append(Column(name=name, type=t, namespace=KEY))
            appended.append(_value(name, t))
    return LogicalSchema((*keys, *source.value, *appended))


def _group_by(step: s.GroupByStep, source: LogicalSchema, types: Mapping[str, sqltypes.SqlType]) -> LogicalSchema:
    aliases = AliasGenerator([source])
    keys: list[Column] = []
    for text in step.group_by_expressions:
        e = parse_expression(text)
        t = expression_type(text, source, types)
        name = e.name if isinstance(e, ast.ColumnRef) else aliases.alias_for(e)
        keys.append(Column(name=name, type=t, namespace=KEY))
    if isinstance(step, s.StreamGroupByV1 | s.TableGroupByV1) and len(keys) > 1:
        # ksqlDB before 0.15 grouped by several expressions into one STRING key, joined by '|+|'
        keys = [Column(name=keys[0].name, type=sqltypes.STRING, namespace=KEY)]
    return LogicalSchema((*keys, *source.value))


def _join(key_name: str, left: LogicalSchema, right: LogicalSchema) -> LogicalSchema:
    if len(left.key) != 1 or len(right.key) != 1:
        raise PlanError("JOINs are only supported on one key column.")
    lt, rt = left.key[0].type, right.key[0].type
    if lt != rt:
        raise PlanError(f"Invalid join. Key types differ: {lt} vs {rt}")
    out = [Column(name=key_name, type=lt, namespace=KEY), *left.value, *right.value]
    if left.find_value(key_name) is None and right.find_value(key_name) is None:
        out.append(_value(key_name, lt))
    return LogicalSchema(tuple(out))
