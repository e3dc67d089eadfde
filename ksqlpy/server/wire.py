"""Wire handling: raw JSON bodies, property coercion, ``Accept`` negotiation, the JSON encoder.

ksqlDB never looks at a request's ``Content-Type`` and ignores unknown fields, so bodies are
parsed from raw bytes here, with ksqlDB's error texts for malformed input (400/40000).
"""

from __future__ import annotations

import base64
import decimal
import enum
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ksqlpy.server.errors import BAD_REQUEST, RestError

DELIMITED = "application/vnd.ksqlapi.delimited.v1"
JSON = "application/json"
KSQL_V1_JSON = "application/vnd.ksql.v1+json"
KSQL_V1_PROTOBUF = "application/vnd.ksql.v1+protobuf"


def dumps(value: Any) -> bytes:
    """Compact JSON, the server's one encoder; ``Decimal`` becomes a JSON number as ksqlDB
    writes it."""
    return orjson.dumps(value, default=_default)


def _default(value: Any) -> Any:
    match value:
        case decimal.Decimal():
            return orjson.Fragment(str(value))
        case enum.Enum():
            return value.value
        case bytes():
            return base64.b64encode(value).decode("ascii")
        case tuple() | frozenset() | set():
            return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


#: What each route can produce, first entry = answer to no ``Accept`` or ``*/*``.
PRODUCES: Mapping[str, tuple[str, ...]] = {
    "plain": (KSQL_V1_JSON, JSON),
    "query": (KSQL_V1_JSON, JSON, DELIMITED, KSQL_V1_PROTOBUF),
    "query-stream": (DELIMITED, JSON, KSQL_V1_JSON, KSQL_V1_PROTOBUF),
    "inserts-stream": (DELIMITED, JSON),
}


def negotiate(accept: str | None, produces: Sequence[str]) -> str | None:
    """The media type to answer with, or ``None`` when ``accept`` allows none of ``produces``.

    Follows ``Accept`` quality values; ``type/*`` and ``*/*`` wildcards match; ties keep the
    order of ``Accept``.
    """
    if accept is None or not accept.strip():
        return produces[0]
    ranges: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            name, _, value = p.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media and q > 0:
            ranges.append((-q, i, media.lower()))
    for _, _, media in sorted(ranges):
        for offered in produces:
            if _matches(media, offered):
                return offered
    return None


def _matches(media_range: str, offered: str) -> bool:
    if media_range in ("*/*", "*"):
        return True
    kind, _, sub = media_range.partition("/")
    okind, _, osub = offered.partition("/")
    return kind == okind and (sub == "*" or sub == osub)


def parse_object(body: bytes) -> dict[str, Any]:
    """A JSON object from raw request bytes (an empty body is ``{}``, as ksqlDB's readers see it)."""
    if not body.strip():
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RestError(BAD_REQUEST, f"Invalid JSON in request: {e}") from e
    if not isinstance(value, dict):
        raise RestError(BAD_REQUEST, "Invalid JSON in request: expected a JSON object")
    return value


def required_str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise RestError(BAD_REQUEST, f"Invalid JSON in request: Missing required creator property '{name}'")
    if not isinstance(value, str):
        raise RestError(BAD_REQUEST, f"Invalid JSON in request: '{name}' must be a string")
    return value


def optional_str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RestError(BAD_REQUEST, f"Invalid JSON in request: '{name}' must be a string")
    return value


def command_sequence_number(body: Mapping[str, Any]) -> int | None:
    """``commandSequenceNumber``: the command (as numbered in an earlier answer) the server is to
    have applied before it runs the request; absent or null: none."""
    value = body.get("commandSequenceNumber")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise RestError(BAD_REQUEST, "Invalid JSON in request: 'commandSequenceNumber' must be a number")
    return value


def properties(body: Mapping[str, Any], name: str) -> dict[str, str]:
    """A property map, values coerced to ksqlDB's string form (``true``, ``5``)."""
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RestError(BAD_REQUEST, f"Invalid JSON in request: '{name}' must be an object")
    return {str(k): _property_text(v) for k, v in value.items()}


def _property_text(value: Any) -> str:
    match value:
        case bool():
            return "true" if value else "false"
        case str():
            return value
        case None:
            return ""
    return str(value)
