"""The metastore's model: streams, tables, their columns and formats, registered types.

A :class:`Source` is everything ksqlDB knows about a stream or table: its logical schema (key,
value and header columns), the topic behind it and how records on that topic are serialized.
The :class:`Catalog` is the in-memory metastore the analyzer resolves names against; the
runtime's command log rebuilds it on start by replaying the statements that shaped it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError, Position
from ksqlpy.parser.ast import SourceKind


class ColumnNamespace(enum.Enum):
    KEY = "KEY"
    VALUE = "VALUE"
    HEADERS = "HEADERS"


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    name: str
    type: sqltypes.SqlType
    namespace: ColumnNamespace = ColumnNamespace.VALUE
    header_key: str | None = None  # for a HEADER('k') column

    @property
    def is_key(self) -> bool:
        return self.namespace is ColumnNamespace.KEY


class WindowType(enum.Enum):
    TUMBLING = "TUMBLING"
    HOPPING = "HOPPING"
    SESSION = "SESSION"


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowInfo:
    type: WindowType
    size_ms: int | None = None  # None for SESSION
    #: how long the table's window store keeps a window past the observed stream time (a
    #: windowed aggregation's RETENTION, else size + grace); None keeps every window (tables
    #: declared over a windowed topic)
    retention_ms: int | None = None
    #: how a windowed aggregation's table emits: "CHANGES" or "FINAL" (None: not an aggregation's)
    emit_strategy: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatInfo:
    """A key or value format with its properties (e.g. delimiter) and serde features."""

    format: str  # JSON, DELIMITED, KAFKA, NONE, AVRO, PROTOBUF, JSON_SR
    properties: Mapping[str, str] = field(default_factory=dict)
    wrap_single_value: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """A stream or a table."""

    name: str
    kind: SourceKind
    topic: str
    columns: tuple[Column, ...]
    key_format: FormatInfo
    value_format: FormatInfo
    timestamp_column: str | None = None
    timestamp_format: str | None = None
    window: WindowInfo | None = None
    is_source: bool = False  # CREATE SOURCE STREAM/TABLE: read-only
    statement: str = ""
    partitions: int = 1
    replicas: int = 1
    #: reading for a persistent stream query: null-value records are rows too (marked as
    #: tombstones), because ksqlDB forwards them to the sink with a null value
    null_values: bool = False

    @property
    def key_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.namespace is ColumnNamespace.KEY)

    @property
    def value_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.namespace is ColumnNamespace.VALUE)

    @property
    def header_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.namespace is ColumnNamespace.HEADERS)

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    @property
    def is_table(self) -> bool:
        return self.kind is SourceKind.TABLE

    def with_columns(self, columns: tuple[Column, ...]) -> Source:
        return replace(self, columns=columns)


#: Pseudo columns every source has (ksqlDB's system columns), with their types.
PSEUDO_COLUMNS: dict[str, sqltypes.SqlType] = {
    "ROWTIME": sqltypes.BIGINT,
    "ROWPARTITION": sqltypes.INTEGER,
    "ROWOFFSET": sqltypes.BIGINT,
}
WINDOW_BOUND_COLUMNS: dict[str, sqltypes.SqlType] = {
    "WINDOWSTART": sqltypes.BIGINT,
    "WINDOWEND": sqltypes.BIGINT,
}
RESERVED_COLUMN_NAMES = frozenset(PSEUDO_COLUMNS) | frozenset(WINDOW_BOUND_COLUMNS)


@dataclass(slots=True)
class Catalog:
    """The metastore: sources and custom types, by name (names as stored: case-sensitive)."""

    sources: dict[str, Source] = field(default_factory=dict)
    types: dict[str, sqltypes.SqlType] = field(default_factory=dict)

    def source(self, name: str, pos: Position | None = None) -> Source:
        found = self.sources.get(name)
        if found is None:
            raise AnalysisError(f"{name} does not exist.", pos=pos)
        return found

    def alternatives(self, name: str) -> str:
        """ksqlDB's hint for a name that differs from existing sources only in case, or ''."""
        matches = sorted((s for s in self.sources.values() if s.name.upper() == name.upper()), key=lambda s: s.name)
        if not matches:
            return ""
        if len(matches) > 1:
            names = [f'"{s.name}" ({s.kind.value})' for s in matches]
            listed = names[0] + " or " + names[1] if len(names) == 2 else ", ".join(names[:-1]) + ", or " + names[-1]
            return f"\nDid you mean {listed}? Hint: wrap the source name in double quotes to make it case-sensitive."
        found = matches[0].name
        if any(c.islower() for c in found):
            return f'\nDid you mean "{found}"? Hint: wrap the source name in double quotes to make it case-sensitive.'
        return f"\nDid you mean {found}? Hint: try removing double quotes from the source name."

    def find(self, name: str) -> Source | None:
        return self.sources.get(name)

    def add(self, source: Source) -> None:
        self.sources[source.name] = source

    def remove(self, name: str) -> None:
        self.sources.pop(name, None)

    def __iter__(self) -> Iterator[Source]:
        return iter(sorted(self.sources.values(), key=lambda s: s.name))
