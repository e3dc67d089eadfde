"""ksqlDB's statement language: text in, typed AST (:mod:`ksqlpy.parser.ast`) out.

    text --substitute_variables--> text --lark LALR(ksql.lark)--> tree --AstBuilder--> Statements

``parse`` reads every ``;``-terminated statement of a text in one pass (positions count lines
and columns from the start of the whole text, as ksqlDB's do); ``parse_statement`` and
``parse_expression`` read exactly one. Syntax errors raise :class:`~ksqlpy.errors.ParseError`
at the offending token, worded as ksqlDB words them (``line 1:8: Syntax Error`` followed by the
tokens that were expected). The formatter (:mod:`ksqlpy.parser.formatter`) prints trees back.

Input is bounded before anything recursive sees it: a statement nested deeper than
:data:`MAX_NESTING` levels (parentheses, CASE, AND/OR chains, ARRAY<...> types) and a numeric
literal longer than :data:`MAX_NUMBER_CHARS` are syntax errors at their position, since the AST
builder, the analyzer and SQL generation all recurse once per level.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from lark import Lark, Token, Tree, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.exceptions import VisitError
from lark.lexer import BasicLexer, ContextualLexer

from ksqlpy.errors import KsqlpyError, ParseError, Position
from ksqlpy.parser import ast
from ksqlpy.parser.builder import AstBuilder
from ksqlpy.parser.variables import split_statements, substitute_variables

__all__ = [
    "MAX_NESTING",
    "MAX_NUMBER_CHARS",
    "RESERVED_WORDS",
    "build_lexers",
    "parse",
    "parse_expression",
    "parse_statement",
    "split_statements",
    "substitute_variables",
]

_GRAMMAR = Path(__file__).with_name("ksql.lark")

# How ksqlDB (ANTLR) names the tokens that are not fixed strings in "Expecting ..." lists;
# keywords and punctuation print as their text in quotes.
_TOKEN_DISPLAY: dict[str, str] = {
    "SQ_STRING": "STRING",
    "FLOAT_VALUE": "FLOATING_POINT_VALUE",
    "$END": "<EOF>",
    "NEQ": "'<>'",
}
_NAMED_TOKENS = (
    "STRING",
    "INTEGER_VALUE",
    "DECIMAL_VALUE",
    "FLOATING_POINT_VALUE",
    "IDENTIFIER",
    "DIGIT_IDENTIFIER",
    "QUOTED_IDENTIFIER",
    "BACKQUOTED_IDENTIFIER",
    "<EOF>",
)
# Past this many alternatives ksqlDB's message says no more than "Syntax Error".
_MAX_EXPECTED_SHOWN = 8

#: Deepest parse tree accepted. A nesting level (a parenthesis, an AND, an ARRAY<) adds one or
#: two tree levels; every recursive pass after the parser (AST builder, analyzer, SQL
#: generation) spends several Python frames per level, and Python allows about a thousand.
MAX_NESTING = 128
#: Longest numeric literal accepted: far past any valid BIGINT, DOUBLE or DECIMAL(38), and short
#: enough that converting it is cheap (Python refuses int() of more than 4,300 digits).
MAX_NUMBER_CHARS = 1000


@functools.cache
def _lark() -> Lark:
    return Lark(
        _GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        start=["start", "expression_only", "schema_only"],
        propagate_positions=True,
        maybe_placeholders=True,
        cache=True,
        # IDENTIFIER must come last: lark chains a callback after its keyword check with a
        # closure over its loop variable, so only the last entry's chain tests the right type.
        lexer_callbacks={
            "INTEGER_VALUE": _reject_long_number,
            "DECIMAL_VALUE": _reject_long_number,
            "FLOAT_VALUE": _reject_long_number,
            "IDENTIFIER": _reject_reserved,
        },
    )


#: Held while a lexer state's scanner may be built: lark compiles each state's scanner on its
#: first use and installs its callbacks (the checks below) after assigning them, so two threads
#: building one at once could lex a token with the checks half installed.
_lexing = threading.Lock()


def build_lexers() -> None:
    """Compile every lexer state's scanner now (~0.1 s in all, one state at a time), rather
    than as statements first use them: the first statement of each shape a server parses cost
    up to ~35 ms more than the next."""
    lexer = cast(ContextualLexer, _lark().parser.lexer)  # lexer="contextual"
    states = {id(state): cast(BasicLexer, state) for state in lexer.lexers.values()}
    for state in states.values():  # states sharing their terminals share their scanner
        with _lexing:
            state.scanner  # noqa: B018 - built on first access


def _reject_long_number(token: Token) -> Token:
    if len(token.value) > MAX_NUMBER_CHARS:
        raise ParseError(
            f"Invalid numeric literal: {token.value[:20]}... ({len(token.value)} characters; "
            f"at most {MAX_NUMBER_CHARS} are accepted)",
            pos=Position(token.line or 1, token.column or 1),
        )
    return token


@functools.cache
def _reserved_words() -> frozenset[str]:
    """Keywords that ksqlDB reserves: valid identifiers only when quoted."""
    parser = _lark()
    return frozenset(
        symbol.name for rule in parser.rules if rule.origin.name == "_reserved" for symbol in rule.expansion
    )


def _reject_reserved(token: Token) -> Token:
    # The contextual lexer yields IDENTIFIER for a keyword that the parser state cannot take;
    # for a reserved word that is exactly where ksqlDB reports a syntax error.
    word = token.value.upper()
    if word in _reserved_words():
        raise ParseError(
            f'Syntax Error\n"{word}" is a reserved keyword and it can\'t be used as an identifier. '
            f"You can use it as an identifier by escaping it as `{word}`",
            pos=Position(token.line or 1, token.column or 1),
        )
    return token


def __getattr__(name: str) -> Any:
    if name == "RESERVED_WORDS":
        return _reserved_words()
    raise AttributeError(name)


@functools.cache
def _fixed_strings() -> dict[str, str]:
    return {t.name: t.pattern.value for t in _lark().terminals if t.pattern.type == "str"}


def _display(terminal: str) -> str:
    if terminal in _TOKEN_DISPLAY:
        return _TOKEN_DISPLAY[terminal]
    fixed = _fixed_strings().get(terminal)
    return terminal if fixed is None else f"'{fixed.upper()}'"


def _expecting(expected: set[str]) -> str:
    names = sorted(
        {_display(t) for t in expected},
        key=lambda n: (not n.startswith("'"), _NAMED_TOKENS.index(n) if n in _NAMED_TOKENS else 0, n),
    )
    if not names or len(names) > _MAX_EXPECTED_SHOWN:
        return ""
    return names[0] if len(names) == 1 else "{" + ", ".join(names) + "}"


def _syntax_error(error: UnexpectedInput, text: str) -> ParseError:
    """Translates lark's error into ksqlDB's wording, positioned at the offending token."""
    match error:
        case UnexpectedToken(token=token) if token.type == "$END":
            near = "<EOF>"
            pos = _end_position(text)
        case UnexpectedToken(token=token):
            near = str(token.value)
            pos = Position(token.line or 1, token.column or 1)
        case UnexpectedCharacters():
            # lark declares pos_in_stream as None on the base class; the lexer always sets an int here
            at = cast(int, error.pos_in_stream)
            near = text[at] if at < len(text) else "<EOF>"
            pos = Position(error.line, error.column)
        case _:
            near = "<EOF>"
            pos = _end_position(text)
    expected: set[str] = set(getattr(error, "expected", None) or getattr(error, "allowed", None) or ())
    message = _message(expected)
    if isinstance(error, UnexpectedToken) and error.token.type != "$END" and _undecided_statement(error):
        # ANTLR had not yet told which statement this is: its "no viable alternative" wording
        message = f"Syntax Error\nSyntax error at or near '{near}' at line {pos.line}:{pos.column}"
    return ParseError(
        message,
        pos=pos,
        hint=f"Syntax error at or near '{near}'",
    )


def _undecided_statement(error: UnexpectedToken) -> bool:
    """Whether the statement's keywords read so far still begin more than one kind of
    statement (``ASSERT`` begins ASSERT TOPIC and ASSERT SCHEMA), as ksqlDB's ANTLR parser
    finds when the next token fits none of them: it reports no viable alternative there."""
    parser_state = getattr(getattr(error, "interactive_parser", None), "parser_state", None)
    if parser_state is None:
        return False
    values = list(parser_state.value_stack)
    # the statements before this one are reduced into the start rule's repetition
    done = [i for i, v in enumerate(values) if isinstance(v, Tree) and str(v.data).startswith("__start")]
    read = values[done[-1] + 1 :] if done else values
    keywords = _fixed_strings()
    if not read or not all(isinstance(v, Token) and v.type in keywords for v in read):
        return False
    prefix = tuple(v.type for v in read)
    kinds = {kind for kind, opening in _statement_openings() if opening[: len(prefix)] == prefix}
    return len(kinds) > 1


@functools.cache
def _statement_openings() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each kind of statement with the keywords it opens with, one entry per way of opening
    (``("assert_topic", ("ASSERT", "NOT", "EXISTS", "TOPIC"))``); an opening ends at its first
    symbol that is not a keyword."""
    rules: dict[str, list[Any]] = {}
    for rule in _lark().rules:
        rules.setdefault(rule.origin.name, []).append(rule)
    keywords = _fixed_strings()

    def openings(symbols: Sequence[Any], depth: int) -> list[tuple[str, ...]]:
        if not symbols:
            return [()]
        first, rest = symbols[0], symbols[1:]
        if first.is_term:
            if first.name not in keywords:
                return [()]
            return [(first.name, *tail) for tail in openings(rest, depth)]
        if depth == 0 or first.name not in rules:
            return [()]
        out = []
        for rule in rules[first.name]:
            for head in openings(rule.expansion, depth - 1):
                complete = len(head) == _keyword_run(rule.expansion, keywords)
                out += [head + tail for tail in openings(rest, depth)] if complete else [head]
        return out

    found = []
    for rule in rules["statement"]:
        kind = rule.alias or rule.expansion[0].name
        found += [(kind, opening) for opening in openings(rule.expansion, 2)]
    return tuple(found)


def _keyword_run(expansion: Sequence[Any], keywords: Mapping[str, str]) -> int:
    """How many keyword terminals ``expansion`` starts with, if it is nothing but those."""
    if all(s.is_term and s.name in keywords for s in expansion):
        return len(expansion)
    return -1


def _message(expected: set[str]) -> str:
    # ksqlDB's REST message continues with "\nStatement: <text>", leaving an empty line when
    # there is no short list of expected tokens; keep the same shape.
    shown = _expecting(expected)
    return f"Syntax Error\nExpecting {shown}" if shown else "Syntax Error\n"


def _end_position(text: str) -> Position:
    lines = text.split("\n")
    return Position(len(lines), len(lines[-1]) + 1)


def _check_nesting(tree: Tree[Token]) -> None:
    """Raise at the first subtree deeper than :data:`MAX_NESTING` (iteratively: the check
    itself must not recurse)."""
    stack: list[tuple[Tree[Token], int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise ParseError(
                f"Statement is too deeply nested: more than {MAX_NESTING} levels of expressions or "
                "types. Flatten it: fewer parentheses, IN (...) instead of long OR chains, simpler "
                "nested types.",
                pos=_tree_position(node),
            )
        stack.extend((child, depth + 1) for child in reversed(node.children) if isinstance(child, Tree))


def _tree_position(node: Tree[Token]) -> Position | None:
    meta = node.meta
    if getattr(meta, "empty", True):
        return None
    return Position(meta.line, meta.column)


def _run(text: str, start: str) -> Any:
    try:
        with _lexing:
            tree = _lark().parse(text, start=start)
    except UnexpectedInput as error:
        raise _syntax_error(error, text) from None
    _check_nesting(tree)
    try:
        return AstBuilder(text).transform(tree)
    except VisitError as error:
        if isinstance(error.orig_exc, KsqlpyError):
            raise error.orig_exc from None
        if isinstance(error.orig_exc, (ValueError, OverflowError, RecursionError)):
            # A value the builder could not convert (an out-of-range number, say): the
            # statement's fault, reported where the offending rule starts.
            node = error.obj if isinstance(error.obj, Tree) else tree
            raise ParseError(f"Invalid {error.rule}: {error.orig_exc}", pos=_tree_position(node)) from None
        raise


def parse(text: str) -> list[ast.Statement]:
    """Every statement of ``text`` (each ``;``-terminated; the last ``;`` may be left out)."""
    try:
        return list(_parse_text(text))
    except ParseError as error:
        if error.statement_text is None:
            error.statement_text = text.strip()
        raise


@functools.lru_cache(maxsize=256)
def _parse_text(text: str) -> tuple[ast.Statement, ...]:
    """Parsed texts: a statement is parsed again by each layer that reads it (the server to
    route it, the session to run it, the command log to replay it), a parse costs milliseconds,
    and the tree is immutable. Failures are not kept (``lru_cache`` keeps only results)."""
    return tuple(_run(text, "start"))


def parse_statement(text: str) -> ast.Statement:
    """Exactly one statement."""
    statements = parse(text)
    if len(statements) != 1:
        raise ParseError(f"Expected exactly one statement, found {len(statements)}", statement_text=text)
    return statements[0]


def parse_expression(text: str) -> ast.Expr:
    """One expression, e.g. ``a + 1 > b`` (for tests and tools)."""
    return _run(text, "expression_only")  # type: ignore[no-any-return]


def parse_schema(text: str) -> tuple[ast.TableElement, ...]:
    """A schema as ksqlDB writes it in plans: ```ID` STRING KEY, `V` INTEGER``."""
    return _run(text, "schema_only")  # type: ignore[no-any-return]
