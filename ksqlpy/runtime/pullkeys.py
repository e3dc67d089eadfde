"""Pull query texts as shapes with parameters: the same query with other key literals.

Clients look keys up with one text per key (``... WHERE ID = 'u17'``), so a plan kept by text
helps only when a key repeats. Here a statement's text is cut into its literals and the rest:
its *shape* is the text with each simple literal (a string without quotes or backslashes, an
integer of nine digits at most) replaced by a placeholder, which :mod:`ksqlpy.runtime.pull`
keys its plans with parameters by. Planning with *sentinel* literals in place of the key
values leaves them recognizable in the plan's SQL, where :func:`bind` puts a request's values.

Only literals of those two kinds are parameters: their DuckDB SQL is their ksqlDB text (a
string needs no re-escaping, an integer is an INT whatever its digits), so binding never
has to evaluate anything and cannot fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Tokens of a statement, in order; only the ``str`` and ``int`` groups are literals.
_TOKEN = re.compile(
    r"""(?P<str>'(?:[^']|'')*')"""
    r"""|(?P<quoted>"(?:[^"]|"")*"|`(?:[^`]|``)*`)"""
    r"""|(?P<comment>--[^\n]*|/\*.*?\*/)"""
    r"""|(?P<word>[A-Za-z_$@][A-Za-z0-9_$@]*)"""
    r"""|(?P<int>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?[A-Za-z0-9_]*)"""
    r"""|(?P<other>[^'"`A-Za-z_$@0-9-/]+|.)""",
    re.DOTALL,
)
_SIMPLE_STRING = re.compile(r"'[^'\\\x00]*'")
_SIMPLE_INT = re.compile(r"0|[1-9]\d{0,8}")

#: What a parameter of each kind looks like in a shape (no statement holds a NUL).
STRING_SLOT = "\x00s"
INT_SLOT = "\x00i"


@dataclass(frozen=True, slots=True)
class Shape:
    """A statement's text with its simple literals taken out: ``text`` holds a slot where each
    of ``values`` (their ksqlDB text, which is also their DuckDB SQL) stood."""

    text: str
    values: tuple[str, ...]


def shape_of(statement: str) -> Shape | None:
    """The shape of ``statement``; None when it cannot have one (a NUL in it, a variable)."""
    if "\x00" in statement or "${" in statement:
        return None
    parts: list[str] = []
    values: list[str] = []
    for m in _TOKEN.finditer(statement):
        token = m.group()
        if m.lastgroup == "str" and _SIMPLE_STRING.fullmatch(token):
            parts.append(STRING_SLOT)
            values.append(token)
        elif m.lastgroup == "int" and _SIMPLE_INT.fullmatch(token):
            parts.append(INT_SLOT)
            values.append(token)
        else:
            parts.append(token)
    return Shape("".join(parts), tuple(values))


def sentinel(kind: str, index: int) -> str:
    """A literal standing for parameter ``index`` while a shape is planned: a string or a
    nine-digit integer (an INT, like every integer parameter) no statement is likely to hold."""
    return f"'ksqlpy#param#{index}'" if kind == STRING_SLOT else str(987_654_300 + index)


def fill(shape: Shape, values: list[str]) -> str:
    """The statement of ``shape`` with ``values`` in its slots."""
    pieces = re.split("(\x00[si])", shape.text)
    out: list[str] = []
    it = iter(values)
    for piece in pieces:
        out.append(next(it) if piece in (STRING_SLOT, INT_SLOT) else piece)
    return "".join(out)


def slot_kinds(shape: Shape) -> list[str]:
    """The kind (:data:`STRING_SLOT` or :data:`INT_SLOT`) of each slot, in order."""
    return re.findall("\x00[si]", shape.text)


def sentinel_pattern(sentinels: dict[str, int]) -> re.Pattern[str]:
    """Finds the sentinels in planned SQL (an integer not as part of a longer number or name)."""
    alternatives = sorted(sentinels, key=len, reverse=True)
    return re.compile(
        "|".join(
            re.escape(s) if s.startswith("'") else rf"(?<![\w.]){re.escape(s)}(?![\w.])" for s in alternatives
        )
    )


def bind(sql: str, pattern: re.Pattern[str], sentinels: dict[str, int], values: tuple[str, ...]) -> str:
    """``sql`` planned with sentinels, with each replaced by its parameter's value."""
    return pattern.sub(lambda m: values[sentinels[m.group()]], sql)
