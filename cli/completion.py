"""Tab completion: keywords, shell commands, and stream/table/column names from the server.

:class:`SchemaCache` remembers the sources the server knows (SHOW STREAMS, SHOW TABLES) and
their columns (DESCRIBE); it is re-read on the first Tab after a statement that may have
changed the catalog. :class:`KsqlCompleter` offers source names after words that expect a source
(FROM, JOIN, DESCRIBE, ...), property names inside ``SET '``, and everything else otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from cli.client import RestClient, ServerError, ServerUnreachable
from cli.render import source_names
from cli.vocabulary import FUNCTIONS, KEYWORDS, PROPERTIES, PSEUDO_COLUMNS, SHELL_COMMANDS, TYPES

# After these words the next word is a stream or table name.
_SOURCE_CONTEXT = frozenset({"FROM", "JOIN", "DESCRIBE", "INTO", "STREAM", "TABLE", "EXTENDED"})
# After these, a column or expression is expected.
_COLUMN_CONTEXT = frozenset({"SELECT", "WHERE", "BY", "ON", "AND", "OR", "HAVING", ","})

_WORD_BEFORE_CURSOR = re.compile(r"[`\w.@]*$")
_PREVIOUS_WORD = re.compile(r"([\w]+|,)\s+[`\w.@]*$")
_SET_PROPERTY = re.compile(r"^\s*(?:SET|UNSET)\s+'([^']*)$", re.IGNORECASE)

# Most sources DESCRIBEd on one refresh: completion must not flood the server.
_MAX_DESCRIBED = 50


@dataclass(slots=True)
class SchemaCache:
    """Sources and their column names, as last fetched from the server."""

    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Set after statements that may change the catalog; the next Tab re-reads it, so that
    # statements themselves never wait for completion data.
    stale: bool = True

    def refresh(self, client: RestClient, properties: Mapping[str, Any] | None = None) -> None:
        """Re-read sources and columns; leaves the cache as it was if the server is unreachable."""
        try:
            names = source_names(client.ksql("SHOW STREAMS; SHOW TABLES;", properties=properties))
        except (ServerError, ServerUnreachable):
            return
        sources: dict[str, tuple[str, ...]] = {}
        for name in names[:_MAX_DESCRIBED]:
            sources[name] = self._columns(client, name)
        for name in names[_MAX_DESCRIBED:]:
            sources[name] = ()
        self.sources = sources
        self.stale = False

    @staticmethod
    def _columns(client: RestClient, name: str) -> tuple[str, ...]:
        try:
            entities = client.ksql(f"DESCRIBE {_quote(name)};")
        except (ServerError, ServerUnreachable):
            return ()
        columns: list[str] = []
        for entity in entities:
            description = entity.get("sourceDescription") or {}
            columns += [str(f["name"]) for f in description.get("fields") or () if "name" in f]
        return tuple(columns)

    @property
    def columns(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for names in self.sources.values():
            seen.update(dict.fromkeys(names))
        return tuple(seen)


def _quote(name: str) -> str:
    """A source name as it must be written: back-quoted unless it is plain upper case."""
    return name if re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) else "`" + name.replace("`", "``") + "`"


def _cased(word: str, prefix: str) -> str:
    """Keywords follow the case the user started typing in."""
    return word.lower() if prefix and prefix.islower() else word


class KsqlCompleter(Completer):
    """Completes the word before the cursor."""

    def __init__(self, cache: SchemaCache, refresh: Callable[[], None] = lambda: None) -> None:
        self.cache = cache
        self.refresh = refresh

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        if self.cache.stale:
            self.refresh()
        before = document.text_before_cursor
        prop = _SET_PROPERTY.search(before)
        if prop:
            yield from _matching(PROPERTIES, prop.group(1), keep_case=True)
            return
        prefix = _WORD_BEFORE_CURSOR.search(before)
        word = prefix.group() if prefix else ""
        previous_match = _PREVIOUS_WORD.search(before)
        previous = previous_match.group(1).upper() if previous_match else ""
        sources = tuple(_quote(name) for name in self.cache.sources)
        if previous in _SOURCE_CONTEXT:
            yield from _matching(sources, word, keep_case=True)
            return
        if not before[: len(before) - len(word)].strip():
            # First word of the input: statements and shell commands.
            yield from _matching(SHELL_COMMANDS, word, keep_case=True)
        candidates: list[Iterable[str]] = (
            [self.cache.columns, PSEUDO_COLUMNS] if previous in _COLUMN_CONTEXT else []
        )
        yield from _matching([name for group in candidates for name in group], word, keep_case=True)
        yield from _matching(sorted(KEYWORDS | TYPES | FUNCTIONS), word, keep_case=False)
        yield from _matching(sources, word, keep_case=True)


def _matching(words: Iterable[str], prefix: str, *, keep_case: bool) -> Iterator[Completion]:
    bare = prefix.lstrip("`").upper()
    for word in words:
        if word.lstrip("`").upper().startswith(bare) and word != prefix:
            yield Completion(word if keep_case else _cased(word, prefix), start_position=-len(prefix))
