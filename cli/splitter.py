"""Cut shell input into statements on ``;``, the way ksqlDB's lexer sees the text.

The shell sends one statement per request, so it has to know where each statement ends
without a parser: a ``;`` ends a statement only outside string literals (``'it''s'``),
quoted identifiers (``"a;b"``, ``\\`a;b\\```), line comments (``-- ;``) and block comments
(``/* ; */``). The same scan tells the line editor whether a buffer is complete, so that
Enter inside an open quote or before the final ``;`` starts a new line instead of running.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class _Mode(Enum):
    """Lexical context of the scanner at one character."""

    CODE = "code"
    STRING = "string"  # '...' with '' as an escaped quote
    DOUBLE_QUOTED = "double"  # "identifier"
    BACK_QUOTED = "back"  # `identifier`
    LINE_COMMENT = "line_comment"  # -- up to end of line
    BLOCK_COMMENT = "block_comment"  # /* ... */


# Quote character that opens (and closes) each quoted mode.
_QUOTES: dict[str, _Mode] = {"'": _Mode.STRING, '"': _Mode.DOUBLE_QUOTED, "`": _Mode.BACK_QUOTED}
_CLOSERS: dict[_Mode, str] = {mode: char for char, mode in _QUOTES.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """Result of splitting a text.

    ``statements`` are the complete statements, each stripped of surrounding whitespace and
    leading comments and ending with ``;``. ``rest`` is the unterminated tail (may be empty or
    only comments). ``open_mode`` names the quote or comment left open at the end, or None.
    """

    statements: tuple[str, ...]
    rest: str
    open_mode: str | None

    @property
    def rest_is_blank(self) -> bool:
        """True when nothing but whitespace and comments follows the last ``;``."""
        return not strip_leading_comments(self.rest).strip()


def split_statements(text: str) -> Split:
    """Split ``text`` into complete ``;``-terminated statements and an unterminated rest."""
    statements: list[str] = []
    mode = _Mode.CODE
    start = 0
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        pair = text[i : i + 2]
        match mode:
            case _Mode.CODE:
                if pair == "--":
                    mode, i = _Mode.LINE_COMMENT, i + 2
                    continue
                if pair == "/*":
                    mode, i = _Mode.BLOCK_COMMENT, i + 2
                    continue
                if char in _QUOTES:
                    mode = _QUOTES[char]
                elif char == ";":
                    statement = _clean(text[start : i + 1])
                    if statement != ";":
                        statements.append(statement)
                    start = i + 1
            case _Mode.LINE_COMMENT:
                if char == "\n":
                    mode = _Mode.CODE
            case _Mode.BLOCK_COMMENT:
                if pair == "*/":
                    mode, i = _Mode.CODE, i + 2
                    continue
            case _:
                closer = _CLOSERS[mode]
                if char == closer:
                    # A doubled quote inside a quoted text is an escaped quote, not the end.
                    if text[i + 1 : i + 2] == closer:
                        i += 2
                        continue
                    mode = _Mode.CODE
        i += 1
    open_mode = None if mode in (_Mode.CODE, _Mode.LINE_COMMENT) else mode.value
    return Split(statements=tuple(statements), rest=text[start:], open_mode=open_mode)


def is_complete(text: str) -> bool:
    """True when ``text`` holds at least one statement and nothing unfinished after it."""
    split = split_statements(text)
    return bool(split.statements) and split.open_mode is None and split.rest_is_blank


def strip_leading_comments(text: str) -> str:
    """Drop whitespace and comments before the first token of ``text``."""
    while True:
        text = text.lstrip()
        if text.startswith("--"):
            newline = text.find("\n")
            text = "" if newline < 0 else text[newline + 1 :]
        elif text.startswith("/*"):
            end = text.find("*/")
            text = "" if end < 0 else text[end + 2 :]
        else:
            return text


def _clean(statement: str) -> str:
    """A statement without leading comments or surrounding whitespace."""
    return strip_leading_comments(statement).strip()
