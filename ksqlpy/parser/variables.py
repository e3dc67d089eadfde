"""Text-level services that run before the grammar: ``${name}`` substitution, statement splitting.

Both walk the text with one small scanner that knows ksqlDB's quoting (``'...'`` strings with
``''`` escapes, ``"..."`` and ```...``` identifiers) and comments (``--`` to end of line,
``/* ... */``), so that a ``;`` or ``${`` inside a string or comment is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from ksqlpy.errors import ParseError, Position

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_@]*)\}")
_VALID_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_@]*")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_QUOTES = "'\"`"


def _segments(text: str) -> Iterator[tuple[str, int, int]]:
    """Splits ``text`` into (kind, start, end) runs: ``code``, ``string``, ``quoted``, ``comment``."""
    i, n, start = 0, len(text), 0
    while i < n:
        ch = text[i]
        if ch in _QUOTES or text.startswith(("--", "/*"), i):
            if start < i:
                yield "code", start, i
            if ch in _QUOTES:
                end = i + 1
                while end < n:
                    if text[end] == ch:
                        if end + 1 < n and text[end + 1] == ch:  # doubled quote: escaped
                            end += 2
                            continue
                        break
                    end += 1
                end = min(end + 1, n)
                yield ("string" if ch == "'" else "quoted"), i, end
            elif text.startswith("--", i):
                newline = text.find("\n", i)
                end = n if newline < 0 else newline
                yield "comment", i, end
            else:
                close = text.find("*/", i + 2)
                end = n if close < 0 else close + 2
                yield "comment", i, end
            i = start = end
        else:
            i += 1
    if start < n:
        yield "code", start, n


def split_statements(text: str) -> list[str]:
    """The statements of ``text``, each trimmed and ending with ``;`` (the last ``;`` optional).

    Comments between statements are dropped; comments inside a statement stay in its text.
    """
    statements: list[str] = []
    current: list[str] = []

    def flush() -> None:
        statement = "".join(current).strip()
        current.clear()
        if statement:
            statements.append(statement + ";")

    for kind, start, end in _segments(text):
        chunk = text[start:end]
        if kind == "comment" and not "".join(current).strip():
            continue  # a comment before a statement is not part of it
        if kind != "code":
            current.append(chunk)
            continue
        *complete, rest = chunk.split(";")
        for piece in complete:
            current.append(piece)
            flush()
        current.append(rest)
    flush()
    return statements


def _position(text: str, offset: int) -> Position:
    line = text.count("\n", 0, offset) + 1
    return Position(line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


def _check_value(value: str, text: str, offset: int) -> None:
    """ksqlDB accepts a variable outside quotes only where its value reads as an identifier or literal."""
    unquoted = value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"`" else value
    if _VALID_IDENTIFIER.fullmatch(unquoted):
        return
    is_string = len(value) >= 2 and value[0] == value[-1] == "'"
    if is_string or _NUMBER.fullmatch(value):
        return
    pos = _position(text, offset)
    raise ParseError(
        f"Illegal argument at Line: {pos.line}, Col: {pos.column}. Identifier names cannot start with '@' "
        "and may only contain alphanumeric values and '_'.",
        pos=pos,
    )


def substitute_variables(text: str, variables: Mapping[str, str]) -> str:
    """Replaces each ``${name}`` of a defined variable (names match ignoring case).

    Inside a string literal the value is spliced in with its quotes doubled; outside, the value
    must read as an identifier or a literal, as ksqlDB requires. Undefined variables stay as
    written, so that the parser reports them where they stand.
    """
    if "${" not in text:
        return text
    by_name = {name.upper(): value for name, value in variables.items()}
    out: list[str] = []
    for kind, start, end in _segments(text):
        chunk = text[start:end]
        if kind not in ("code", "string"):
            out.append(chunk)
            continue

        def replace(match: re.Match[str], kind: str = kind, base: int = start) -> str:
            value = by_name.get(match.group(1).upper())
            if value is None:
                return match.group(0)
            if kind == "string":
                return value.replace("'", "''")
            _check_value(value, text, base + match.start())
            return value

        out.append(_VARIABLE.sub(replace, chunk))
    return "".join(out)
