"""Prints AST nodes back as ksqlDB SQL that parses to an equal tree.

Style is ksqlDB's: upper-case keywords, identifiers back-quoted only when they would not read
back as the same name (lower case, odd characters, or a keyword). Expressions get parentheses
only where precedence needs them; ``format_expression(parse_expression(s))`` is canonical.
"""

from __future__ import annotations

import re

from ksqlpy.parser import ast

_PLAIN_IDENTIFIER = re.compile(r"[A-Z_][A-Z0-9_@]*")


def _keywords() -> frozenset[str]:
    # Imported late: the parser package imports this module's siblings first.
    from ksqlpy.parser import _fixed_strings

    return frozenset(value.upper() for value in _fixed_strings().values() if value.isalpha())


_KEYWORDS: frozenset[str] | None = None


def format_identifier(name: str) -> str:
    """``name`` as written in SQL: bare when it reads back unchanged, else back-quoted."""
    global _KEYWORDS
    if _KEYWORDS is None:
        _KEYWORDS = _keywords()
    if _PLAIN_IDENTIFIER.fullmatch(name) and name not in _KEYWORDS:
        return name
    return "`" + name.replace("`", "``") + "`"


def format_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --------------------------------------------------------------------------------------------
# Types


def format_type(node: ast.TypeNode) -> str:
    match node:
        case ast.PrimitiveType(name=name):
            return name
        case ast.DecimalType(precision=p, scale=s):
            return f"DECIMAL({p}, {s})"
        case ast.ArrayType(element=element):
            return f"ARRAY<{format_type(element)}>"
        case ast.MapType(key=key, value=value):
            return f"MAP<{format_type(key)}, {format_type(value)}>"
        case ast.StructType(fields=fields):
            inner = ", ".join(f"{format_identifier(f.name)} {format_type(f.type)}" for f in fields)
            return f"STRUCT<{inner}>"
        case ast.NamedType(name=name):
            return format_identifier(name)
    raise TypeError(f"not a type node: {node!r}")


# --------------------------------------------------------------------------------------------
# Expressions

# Binding strength, loosest first, following the grammar's rule levels.
_OR, _AND, _NOT, _PREDICATE, _CONCAT, _ADDITIVE, _MULTIPLICATIVE, _UNARY, _PRIMARY = range(1, 10)
_ARITHMETIC_LEVEL = {
    ast.ArithmeticOp.ADD: _ADDITIVE,
    ast.ArithmeticOp.SUBTRACT: _ADDITIVE,
    ast.ArithmeticOp.MULTIPLY: _MULTIPLICATIVE,
    ast.ArithmeticOp.DIVIDE: _MULTIPLICATIVE,
    ast.ArithmeticOp.MODULUS: _MULTIPLICATIVE,
}
_NUMERIC = (ast.IntegerLiteral, ast.DecimalLiteral, ast.DoubleLiteral)


def _level(node: ast.Expr) -> int:
    match node:
        case ast.LogicalBinary(op=ast.LogicalOp.OR):
            return _OR
        case ast.LogicalBinary():
            return _AND
        case ast.Not():
            return _NOT
        case ast.Comparison() | ast.Between() | ast.InList() | ast.Like() | ast.IsNull():
            return _PREDICATE
        case ast.ArithmeticBinary(op=op):
            return _ARITHMETIC_LEVEL[op]
        case ast.ArithmeticUnary():
            return _UNARY
        case ast.IntegerLiteral(value=v) if v < 0:
            return _UNARY
        case ast.DoubleLiteral(value=v) if str(v).startswith("-"):
            return _UNARY
        case ast.DecimalLiteral(text=t) if t.startswith("-"):
            return _UNARY
        case ast.Lambda():
            return 0
    return _PRIMARY


def _at(node: ast.Expr, level: int) -> str:
    """``node`` printed where the grammar needs binding strength ``level`` or tighter."""
    text = format_expression(node)
    return text if _level(node) >= level else f"({text})"


def _double(value: float) -> str:
    text = repr(value).upper()
    return text if "E" in text else text + "E0"


def _args(items: tuple[ast.Expr, ...]) -> str:
    return ", ".join(format_expression(i) for i in items)


def format_expression(node: ast.Expr) -> str:
    """One expression as SQL text."""
    match node:
        case ast.NullLiteral():
            return "NULL"
        case ast.BooleanLiteral(value=value):
            return "TRUE" if value else "FALSE"
        case ast.IntegerLiteral(value=value):
            return str(value)
        case ast.DecimalLiteral(text=text):
            return text
        case ast.DoubleLiteral(value=value):
            return _double(value)
        case ast.StringLiteral(value=value):
            return format_string(value)
        case ast.ColumnRef(name=name, source=None):
            return format_identifier(name)
        case ast.ColumnRef(name=name, source=str() as source):
            return f"{format_identifier(source)}.{format_identifier(name)}"
        case ast.Dereference(base=base, field=field_name):
            return f"{_at(base, _PRIMARY)}->{format_identifier(field_name)}"
        case ast.Subscript(base=base, index=index):
            return f"{_at(base, _PRIMARY)}[{_at(index, _CONCAT)}]"
        case ast.ArithmeticUnary(negative=negative, operand=operand):
            sign = "-" if negative else "+"
            # A number right after a sign would read back as a signed literal.
            inner = f"({format_expression(operand)})" if isinstance(operand, _NUMERIC) else _at(operand, _UNARY)
            if inner.startswith(("-", "+")):
                inner = f"({inner})"  # `--` would start a comment
            return sign + inner
        case ast.ArithmeticBinary(op=op, left=left, right=right):
            level = _ARITHMETIC_LEVEL[op]
            return f"{_at(left, level)} {op.value} {_at(right, level + 1)}"
        case ast.Comparison(op=op, left=left, right=right):
            return f"{_at(left, _CONCAT)} {op.value} {_at(right, _CONCAT)}"
        case ast.LogicalBinary(op=op, left=left, right=right):
            level = _OR if op is ast.LogicalOp.OR else _AND
            return f"{_at(left, level)} {op.value} {_at(right, level + 1)}"
        case ast.Not(operand=operand):
            return f"NOT {_at(operand, _NOT)}"
        case ast.IsNull(operand=operand, negated=negated):
            return f"{_at(operand, _CONCAT)} IS {'NOT ' if negated else ''}NULL"
        case ast.Like(value=value, pattern=pattern, escape=escape, negated=negated):
            text = f"{_at(value, _CONCAT)} {'NOT ' if negated else ''}LIKE {_at(pattern, _CONCAT)}"
            return text if escape is None else f"{text} ESCAPE {format_string(escape)}"
        case ast.Between(value=value, low=low, high=high, negated=negated):
            keyword = "NOT BETWEEN" if negated else "BETWEEN"
            return f"{_at(value, _CONCAT)} {keyword} {_at(low, _CONCAT)} AND {_at(high, _CONCAT)}"
        case ast.InList(value=value, items=items, negated=negated):
            return f"{_at(value, _CONCAT)} {'NOT ' if negated else ''}IN ({_args(items)})"
        case ast.SearchedCase(whens=whens, default=default):
            return _case("CASE", whens, default)
        case ast.SimpleCase(operand=operand, whens=whens, default=default):
            return _case(f"CASE {_at(operand, _CONCAT)}", whens, default)
        case ast.Cast(operand=operand, type=type_):
            return f"CAST({format_expression(operand)} AS {format_type(type_)})"
        case ast.IntervalUnit(unit=unit):
            return unit
        case ast.FunctionCall(star=True, name=name):
            return f"{format_identifier(name)}(*)"
        case ast.FunctionCall(name=name, args=args, distinct=distinct):
            return f"{format_identifier(name)}({'DISTINCT ' if distinct else ''}{_args(args)})"
        case ast.Lambda(params=params, body=body):
            names = ", ".join(format_identifier(p) for p in params)
            head = names if len(params) == 1 else f"({names})"
            return f"{head} => {format_expression(body)}"
        case ast.CreateArray(items=items):
            return f"ARRAY[{_args(items)}]"
        case ast.CreateMap(entries=entries):
            return "MAP(" + ", ".join(f"{format_expression(k)} := {format_expression(v)}" for k, v in entries) + ")"
        case ast.CreateStruct(fields=fields):
            inner = ", ".join(f"{format_identifier(k)} := {format_expression(v)}" for k, v in fields)
            return f"STRUCT({inner})"
    raise TypeError(f"not an expression node: {node!r}")


def _case(head: str, whens: tuple[ast.WhenClause, ...], default: ast.Expr | None) -> str:
    parts = [head]
    parts += [f"WHEN {format_expression(w.condition)} THEN {format_expression(w.result)}" for w in whens]
    if default is not None:
        parts.append(f"ELSE {format_expression(default)}")
    parts.append("END")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Queries


def _duration(d: ast.Duration) -> str:
    return f"{d.value} {d.unit}"


def _window_options(retention: ast.Duration | None, grace: ast.Duration | None) -> str:
    text = "" if retention is None else f", RETENTION {_duration(retention)}"
    return text if grace is None else f"{text}, GRACE PERIOD {_duration(grace)}"


def _window(window: ast.Window) -> str:
    match window:
        case ast.TumblingWindow(size=size, retention=retention, grace=grace):
            return f"TUMBLING (SIZE {_duration(size)}{_window_options(retention, grace)})"
        case ast.HoppingWindow(size=size, advance=advance, retention=retention, grace=grace):
            options = _window_options(retention, grace)
            return f"HOPPING (SIZE {_duration(size)}, ADVANCE BY {_duration(advance)}{options})"
        case ast.SessionWindow(gap=gap, retention=retention, grace=grace):
            return f"SESSION ({_duration(gap)}{_window_options(retention, grace)})"
    raise TypeError(f"not a window: {window!r}")


def _table(table: ast.Table) -> str:
    name = format_identifier(table.name)
    return name if table.alias is None else f"{name} AS {format_identifier(table.alias)}"


def _within(within: ast.Within) -> str:
    if within.before == within.after:
        text = f"WITHIN {_duration(within.before)}"
    else:
        text = f"WITHIN ({_duration(within.before)}, {_duration(within.after)})"
    return text if within.grace is None else f"{text} GRACE PERIOD {_duration(within.grace)}"


def _relation(relation: ast.Relation) -> str:
    match relation:
        case ast.Table():
            return _table(relation)
        case ast.Join(left=left, rights=rights):
            parts = [_table(left)]
            for right in rights:
                parts.append(f"{right.type.value} JOIN {_table(right.source)}")
                if right.within is not None:
                    parts.append(_within(right.within))
                parts.append(f"ON {format_expression(right.on)}")
            return " ".join(parts)
    raise TypeError(f"not a relation: {relation!r}")


def _select_item(item: ast.SelectItem) -> str:
    match item:
        case ast.AllColumns(source=None):
            return "*"
        case ast.AllColumns(source=str() as source):
            return f"{format_identifier(source)}.*"
        case ast.StructAll(base=base):
            return f"{_at(base, _PRIMARY)}->*"
        case ast.SingleColumn(expr=expr, alias=alias):
            text = format_expression(expr)
            return text if alias is None else f"{text} AS {format_identifier(alias)}"
    raise TypeError(f"not a select item: {item!r}")


def _grouping(exprs: tuple[ast.Expr, ...]) -> str:
    return ", ".join(_at(e, _CONCAT) for e in exprs) if exprs else "()"


def format_query(query: ast.Query) -> str:
    parts = [f"SELECT {', '.join(_select_item(i) for i in query.select)}", f"FROM {_relation(query.from_)}"]
    if query.window is not None:
        parts.append(f"WINDOW {_window(query.window)}")
    if query.where is not None:
        parts.append(f"WHERE {format_expression(query.where)}")
    if query.group_by:
        parts.append(f"GROUP BY {_grouping(query.group_by)}")
    if query.partition_by:
        parts.append(f"PARTITION BY {_grouping(query.partition_by)}")
    if query.having is not None:
        parts.append(f"HAVING {format_expression(query.having)}")
    if query.refinement is not None:
        parts.append(f"EMIT {query.refinement.value}")
    if query.limit is not None:
        parts.append(f"LIMIT {query.limit}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Statements


def _properties(properties: tuple[ast.Property, ...]) -> str:
    if not properties:
        return ""
    items = ", ".join(f"{_property_name(p.name)}={format_expression(p.value)}" for p in properties)
    return f" WITH ({items})"


def _property_name(name: str) -> str:
    return name if _PLAIN_IDENTIFIER.fullmatch(name) and name not in _KEYWORDS_OR_EMPTY() else format_string(name)


def _KEYWORDS_OR_EMPTY() -> frozenset[str]:
    format_identifier("X")  # loads the keyword set
    return _KEYWORDS or frozenset()


def _element(element: ast.TableElement) -> str:
    text = f"{format_identifier(element.name)} {format_type(element.type)}"
    match element.constraint:
        case None:
            return text
        case ast.ColumnConstraint.HEADER:
            return f"{text} HEADER({format_string(element.header_key or '')})"
        case constraint:
            return f"{text} {constraint.value}"


def _resource(name: str) -> str:
    return name if _PLAIN_IDENTIFIER.fullmatch(name) and name not in _KEYWORDS_OR_EMPTY() else format_string(name)


def _create_head(kind: ast.SourceKind, name: str, or_replace: bool, if_not_exists: bool, source: bool) -> str:
    words = ["CREATE"]
    if or_replace:
        words.append("OR REPLACE")
    if source:
        words.append("SOURCE")
    words.append(kind.value)
    if if_not_exists:
        words.append("IF NOT EXISTS")
    words.append(format_identifier(name))
    return " ".join(words)


def _query_target(query_id: str | None) -> str:
    return "ALL" if query_id is None else format_identifier(query_id)


def _timeout(timeout: ast.Duration | None) -> str:
    return "" if timeout is None else f" TIMEOUT {_duration(timeout)}"


def _body(stmt: ast.Statement) -> str:
    match stmt:
        case ast.QueryStatement(query=query):
            return format_query(query)
        case ast.CreateSource():
            head = _create_head(stmt.kind, stmt.name, stmt.or_replace, stmt.if_not_exists, stmt.is_source)
            elements = f" ({', '.join(_element(e) for e in stmt.elements)})" if stmt.elements else ""
            return head + elements + _properties(stmt.properties)
        case ast.CreateAsSelect():
            head = _create_head(stmt.kind, stmt.name, stmt.or_replace, stmt.if_not_exists, False)
            return f"{head}{_properties(stmt.properties)} AS {format_query(stmt.query)}"
        case ast.InsertInto(target=target, query=query, properties=properties):
            return f"INSERT INTO {format_identifier(target)}{_properties(properties)} {format_query(query)}"
        case ast.InsertValues(target=target, columns=columns, values=values):
            cols = "" if columns is None else f" ({', '.join(format_identifier(c) for c in columns)})"
            vals = ", ".join(_at(v, _CONCAT) for v in values)
            return f"INSERT INTO {format_identifier(target)}{cols} VALUES ({vals})"
        case ast.DropSource(kind=kind, name=name, if_exists=if_exists, delete_topic=delete_topic):
            return (
                f"DROP {kind.value}{' IF EXISTS' if if_exists else ''} {format_identifier(name)}"
                f"{' DELETE TOPIC' if delete_topic else ''}"
            )
        case ast.TerminateQuery(query_id=query_id):
            return f"TERMINATE {_query_target(query_id)}"
        case ast.PauseQuery(query_id=query_id):
            return f"PAUSE {_query_target(query_id)}"
        case ast.ResumeQuery(query_id=query_id):
            return f"RESUME {_query_target(query_id)}"
        case ast.Show(what=what, extended=extended):
            return f"SHOW {what.value}{' EXTENDED' if extended else ''}"
        case ast.DescribeSource(name=None, all_of=all_of, extended=extended):
            kinds = "TABLES" if all_of is ast.SourceKind.TABLE else "STREAMS"
            return f"DESCRIBE {kinds}{' EXTENDED' if extended else ''}"
        case ast.DescribeSource(name=str() as name, extended=extended):
            return f"DESCRIBE {format_identifier(name)}{' EXTENDED' if extended else ''}"
        case ast.DescribeFunction(name=name):
            return f"DESCRIBE FUNCTION {format_identifier(name)}"
        case ast.Explain(query_id=query_id, statement=None):
            return f"EXPLAIN {format_identifier(query_id or '')}"
        case ast.Explain(statement=inner) if inner is not None:
            return f"EXPLAIN {_body(inner)}"
        case ast.PrintTopic(topic=topic, from_beginning=from_beginning, interval=interval, limit=limit):
            text = f"PRINT {_resource(topic)}"
            text += " FROM BEGINNING" if from_beginning else ""
            text += "" if interval is None else f" INTERVAL {interval}"
            return text + ("" if limit is None else f" LIMIT {limit}")
        case ast.SetProperty(name=name, value=value):
            return f"SET {format_string(name)}={format_string(value)}"
        case ast.UnsetProperty(name=name):
            return f"UNSET {format_string(name)}"
        case ast.DefineVariable(name=name, value=value):
            return f"DEFINE {name}={format_string(value)}"
        case ast.UndefineVariable(name=name):
            return f"UNDEFINE {name}"
        case ast.RegisterType(name=name, type=type_, if_not_exists=if_not_exists):
            exists = " IF NOT EXISTS" if if_not_exists else ""
            return f"CREATE TYPE{exists} {format_identifier(name)} AS {format_type(type_)}"
        case ast.DropType(name=name, if_exists=if_exists):
            return f"DROP TYPE{' IF EXISTS' if if_exists else ''} {format_identifier(name)}"
        case ast.AlterSource(kind=kind, name=name, add_columns=columns):
            adds = ", ".join(f"ADD COLUMN {_element(c)}" for c in columns)
            return f"ALTER {kind.value} {format_identifier(name)} {adds}"
        case ast.AssertTopic(topic=topic, properties=properties, exists=exists, timeout=timeout):
            head = "ASSERT TOPIC" if exists else "ASSERT NOT EXISTS TOPIC"
            return f"{head} {_resource(topic)}{_properties(properties)}{_timeout(timeout)}"
        case ast.AssertSchema(subject=subject, id=schema_id, exists=exists, timeout=timeout):
            text = "ASSERT SCHEMA" if exists else "ASSERT NOT EXISTS SCHEMA"
            text += "" if subject is None else f" SUBJECT {_resource(subject)}"
            text += "" if schema_id is None else f" ID {schema_id}"
            return text + _timeout(timeout)
    raise TypeError(f"not a statement: {stmt!r}")


def format_statement(stmt: ast.Statement) -> str:
    """One statement as SQL text, ending with ``;``."""
    return _body(stmt) + ";"
