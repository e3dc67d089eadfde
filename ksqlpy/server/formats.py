"""How query results are framed on the wire: the three response formats of ksqlDB.

A format turns the parts of a query's life (its header, each row, its end, a failure) into
byte chunks; the caller writes each chunk as one send, so on HTTP/2 each becomes its own DATA
frame. ``None`` means "nothing to write".

* :class:`LegacyFormat` - ``/query``'s JSON array (``application/vnd.ksql.v1+json``):
  ``[{"header":…},\\n{"row":…},\\n{"finalMessage":"Limit Reached"}]``.
* :class:`DelimitedFormat` - ``/query-stream`` default: metadata line, then one JSON array per
  line, each ending in ``\\n``.
* :class:`JsonArrayFormat` - ``/query-stream`` with ``application/json``: the same items as one
  JSON array without newlines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ksqlpy import sqltypes
from ksqlpy.server import wire
from ksqlpy.server.entities import schema_text
from ksqlpy.server.wire import dumps

#: ``StreamingQuery.end_reason`` -> the legacy ``finalMessage``.
FINAL_MESSAGES = {"LIMIT": "Limit Reached", "COMPLETED": "Query Completed"}


class QueryFormat(ABC):
    """Framing for one query response."""

    #: Each chunk is one line: chunks may be written together, and the HTTP/2 transport still
    #: sends each line as its own DATA frame.
    line_framed = False

    media_type: str

    @abstractmethod
    def header(
        self,
        query_id: str,
        columns: Sequence[sqltypes.Field],
        key_columns: Sequence[str],
        header_columns: Sequence[tuple[str, str | None]] = (),
    ) -> bytes: ...

    @abstractmethod
    def row(self, values: Sequence[Any], tombstone: bool) -> bytes | None: ...

    @abstractmethod
    def end(self, final_message: str | None) -> bytes | None:
        """Close the response; ``final_message`` is set when a push query ended."""

    @abstractmethod
    def error(self, error: dict[str, Any]) -> bytes:
        """A failure after the header was written; ends the response."""

    def text_line(self, line: str) -> bytes:
        """One PRINT line (plain text, whatever the format)."""
        return line.encode("utf-8") + b"\n"


def metadata(query_id: str, columns: Sequence[sqltypes.Field]) -> dict[str, Any]:
    return {
        "queryId": query_id,
        "columnNames": [c.name for c in columns],
        "columnTypes": [str(c.type) for c in columns],
    }


class LegacyFormat(QueryFormat):
    media_type = wire.KSQL_V1_JSON

    def header(
        self,
        query_id: str,
        columns: Sequence[sqltypes.Field],
        key_columns: Sequence[str],
        header_columns: Sequence[tuple[str, str | None]] = (),
    ) -> bytes:
        return b"[" + dumps({"header": {"queryId": query_id, "schema": schema_text(columns, key_columns, header_columns)}})

    def row(self, values: Sequence[Any], tombstone: bool) -> bytes:
        body: dict[str, Any] = {"columns": values}
        if tombstone:
            body["tombstone"] = True
        return b",\n" + dumps({"row": body})

    def end(self, final_message: str | None) -> bytes:
        if final_message is None:
            return b"]"
        return b",\n" + dumps({"finalMessage": final_message}) + b"]"

    def error(self, error: dict[str, Any]) -> bytes:
        return b",\n" + dumps({"errorMessage": error}) + b"]"


class DelimitedFormat(QueryFormat):
    media_type = wire.DELIMITED
    line_framed = True

    def header(
        self,
        query_id: str,
        columns: Sequence[sqltypes.Field],
        key_columns: Sequence[str],
        header_columns: Sequence[tuple[str, str | None]] = (),
    ) -> bytes:
        return dumps(metadata(query_id, columns)) + b"\n"

    def row(self, values: Sequence[Any], tombstone: bool) -> bytes | None:
        return None if tombstone else dumps(values) + b"\n"

    def end(self, final_message: str | None) -> None:
        return None

    def error(self, error: dict[str, Any]) -> bytes:
        return dumps(error) + b"\n"


class JsonArrayFormat(QueryFormat):
    media_type = wire.JSON

    def header(
        self,
        query_id: str,
        columns: Sequence[sqltypes.Field],
        key_columns: Sequence[str],
        header_columns: Sequence[tuple[str, str | None]] = (),
    ) -> bytes:
        return b"[" + dumps(metadata(query_id, columns))

    def row(self, values: Sequence[Any], tombstone: bool) -> bytes | None:
        return None if tombstone else b"," + dumps(values)

    def end(self, final_message: str | None) -> bytes:
        return b"]"

    def error(self, error: dict[str, Any]) -> bytes:
        return b"," + dumps(error) + b"]"


def query_format(media_type: str) -> QueryFormat:
    """The framing for a negotiated media type (protobuf is answered as the legacy JSON)."""
    match media_type:
        case wire.DELIMITED:
            return DelimitedFormat()
        case wire.JSON:
            return JsonArrayFormat()
    return LegacyFormat()
