"""Syntax highlighting of the shell's input line (a prompt_toolkit lexer).

A small hand-written tokenizer, not the server's grammar: it only needs to tell keywords,
types, strings, quoted identifiers, numbers, comments and variables (``${name}``) apart, and
it must cope with half-typed input. Block comments and strings may span lines, so the
lexer scans the whole document once and hands out each line's fragments.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.lexers import Lexer
from prompt_toolkit.styles import Style

from cli.vocabulary import FUNCTIONS, KEYWORDS, PSEUDO_COLUMNS, TYPES

# Token patterns, tried in order at each position. Unterminated strings and comments run to
# the end of the text so that typing an opening quote colours the rest as a string.
_TOKEN = re.compile(
    r"""
      (?P<comment>--[^\n]*|/\*(?:.|\n)*?(?:\*/|\Z))
    | (?P<string>'(?:[^']|'')*(?:'|\Z))
    | (?P<quoted>`(?:[^`]|``)*(?:`|\Z)|"(?:[^"]|"")*(?:"|\Z))
    | (?P<variable>\$\{[^}\s]*\}?)
    | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)
    | (?P<word>[A-Za-z_][A-Za-z0-9_@]*)
    | (?P<operator>[-+*/%<>=!|:,;.()\[\]]+)
    | (?P<other>\s+|.)
    """,
    re.VERBOSE,
)

STYLE = Style.from_dict(
    {
        "keyword": "bold ansiblue",
        "type": "ansicyan",
        "function": "ansimagenta",
        "pseudo": "italic ansicyan",
        "string": "ansigreen",
        "quoted": "ansiyellow",
        "number": "ansiyellow",
        "comment": "italic ansibrightblack",
        "variable": "bold ansimagenta",
        "operator": "",
    }
)


def word_class(word: str) -> str:
    """Style class of a bare word: keyword, type, function, pseudo column or nothing."""
    upper = word.upper()
    for words, name in ((KEYWORDS, "class:keyword"), (TYPES, "class:type"), (FUNCTIONS, "class:function")):
        if upper in words:
            return name
    return "class:pseudo" if upper in PSEUDO_COLUMNS else ""


def tokens(text: str) -> StyleAndTextTuples:
    """The whole text as (style, text) fragments."""
    fragments: StyleAndTextTuples = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        value = match.group()
        match kind:
            case "word":
                style = word_class(value)
            case "other":
                style = ""
            case _:
                style = f"class:{kind}"
        fragments.append((style, value))
    return fragments


def _by_line(fragments: StyleAndTextTuples) -> list[StyleAndTextTuples]:
    """Cut fragments at newlines: prompt_toolkit asks for one line at a time."""
    lines: list[StyleAndTextTuples] = [[]]
    for style, text, *_ in fragments:
        parts = text.split("\n")
        for index, part in enumerate(parts):
            if index:
                lines.append([])
            if part:
                lines[-1].append((style, part))
    return lines


class KsqlLexer(Lexer):
    """prompt_toolkit lexer for ksqlDB statements."""

    def lex_document(self, document: Document) -> Callable[[int], StyleAndTextTuples]:
        lines = _by_line(tokens(document.text))

        def get_line(number: int) -> StyleAndTextTuples:
            return lines[number] if number < len(lines) else []

        return get_line
