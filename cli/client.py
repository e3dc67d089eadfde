"""A small blocking client of the ksqlDB REST API (``/info``, ``/ksql``, ``/query-stream``,
``/close-query``), built on httpx.

The shell is its only user. Errors come back as :class:`ServerError` (the server's error
object, untouched) or :class:`ServerUnreachable`; nothing here prints. A push query is a
:class:`QueryStream` that yields rows as the server writes them, over HTTP/1.1 chunks or an
HTTP/2 stream (cleartext, prior knowledge), and can be closed from the client side.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

# /query-stream answers newline-delimited JSON: a metadata object, then one array per row.
DELIMITED = "application/vnd.ksqlapi.delimited.v1"
KSQL_JSON = "application/vnd.ksql.v1+json"

# Never give up on a slow statement or a quiet push query; only connecting is bounded.
_TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=30.0, pool=30.0)
#: ksqlDB's port, assumed for a server named without one.
DEFAULT_PORT = 8088


_ACCESS_MESSAGES = {
    401: "Could not authenticate successfully with the supplied credentials.",
    403: "You are forbidden from using this cluster.",
}


class ServerUnreachable(Exception):
    """No HTTP conversation with the server was possible."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"Could not connect to the server at {url}. Check that the server is running "
            f"(ksqlpy server) and that the address is right. ({reason})"
        )


def server_url(address: str) -> str:
    """The base URL of ``address``: ``localhost:8088`` and ``localhost`` mean
    ``http://localhost:8088``, as a ksqlDB server is usually named; a URL stays as it is."""
    address = address.strip().rstrip("/")
    if "://" in address:
        return address
    host, sep, port = address.rpartition(":")
    # "host:port", "[::1]:8088" and "::1" (an IPv6 address without a port, bracketed here)
    if sep and port.isdigit() and (not host.count(":") or host.startswith("[")):
        return f"http://{address}"
    if address.count(":") > 1 and not address.startswith("["):
        address = f"[{address}]"
    return f"http://{address}:{DEFAULT_PORT}"


@dataclass(kw_only=True, eq=False)
class ServerError(Exception):
    """An error object sent by the server (``generic_error`` or ``statement_error``)."""

    status: int
    error_code: int
    message: str
    statement_text: str | None = None
    entities: tuple[Mapping[str, Any], ...] = ()

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_body(cls, status: int, body: bytes | str) -> ServerError:
        """Read an error response; a body that is not ksqlDB's error object is kept as text.

        401 and 403 read as ksqlDB's shell words them, since the server's "Unauthorized" does
        not say what to do."""
        if status in _ACCESS_MESSAGES:
            return cls(status=status, error_code=status * 100, message=_ACCESS_MESSAGES[status])
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "message" not in data:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return cls(status=status, error_code=status * 100, message=text.strip() or f"HTTP {status}")
        return cls.from_object(data, status=status)

    @classmethod
    def from_object(cls, data: Mapping[str, Any], *, status: int = 500) -> ServerError:
        """Read an error object, e.g. one written in the middle of a query stream."""
        return cls(
            status=status,
            error_code=int(data.get("error_code") or status * 100),
            message=str(data.get("message", "")),
            statement_text=data.get("statementText"),
            entities=tuple(data.get("entities") or ()),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryHeader:
    """What the server says about a query before its rows."""

    query_id: str | None
    column_names: tuple[str, ...]
    column_types: tuple[str, ...]


@dataclass(slots=True, kw_only=True)
class QueryStream:
    """One running query: its header and an iterator of rows.

    Iterating yields each row (a list of JSON values) as soon as its line arrives. An error
    line raises :class:`ServerError`. ``final_message`` is set when the server sent one.
    """

    header: QueryHeader
    _lines: Iterator[str]
    _response: httpx.Response
    _array_form: bool = False
    final_message: str | None = None
    _pending: list[Any] = field(default_factory=list)

    def __iter__(self) -> Iterator[list[Any]]:
        yield from self._pending
        self._pending.clear()
        for line in self._lines:
            item = _parse_line(line, array_form=self._array_form)
            if item is None:
                continue
            match item:
                case list():
                    yield item
                case {"row": {"columns": list() as columns}}:
                    yield columns
                case {"finalMessage": str() as message}:
                    self.final_message = message
                case {"errorMessage": dict() as error}:
                    raise ServerError.from_object(error)
                case {"@type": str(), "message": str()}:
                    raise ServerError.from_object(item)
                case _:
                    # consistency/continuation tokens and unknown objects carry no rows.
                    continue

    def close(self) -> None:
        """Drop the connection's stream; the server stops a push query when its client goes."""
        self._response.close()


class RestClient:
    """Blocking REST client bound to one server URL."""

    def __init__(
        self,
        url: str,
        *,
        http2: bool = False,
        credentials: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = server_url(url)
        self.http2 = http2
        #: (user, password) sent as HTTP BASIC authentication with every request
        self.credentials = credentials
        #: how an https server is verified (and the client certificate), None for the system CAs
        self.tls = tls
        self._http = self._connect()

    def _connect(self) -> httpx.Client:
        # http1=False with http2=True speaks HTTP/2 over cleartext from the first byte
        # ("prior knowledge"), which ksqlDB's listener accepts next to HTTP/1.1.
        return httpx.Client(
            base_url=self.url,
            http1=not self.http2,
            http2=self.http2,
            timeout=_TIMEOUT,
            headers={"Accept": KSQL_JSON},
            auth=httpx.BasicAuth(*self.credentials) if self.credentials else None,
            verify=self.tls if self.tls is not None else True,
        )

    def reset(self) -> None:
        """Start over with fresh connections (after a stream was cut off mid-read)."""
        self._http.close()
        self._http = self._connect()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def info(self) -> Mapping[str, Any]:
        """The ``KsqlServerInfo`` object of ``GET /info``."""
        body = self._request("GET", "/info")
        info = body.get("KsqlServerInfo", body) if isinstance(body, dict) else {}
        return info if isinstance(info, dict) else {}

    def ksql(
        self,
        text: str,
        *,
        properties: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> list[Mapping[str, Any]]:
        """Run non-query statements on ``/ksql``; returns the entity list."""
        payload = {
            "ksql": text,
            "streamsProperties": dict(properties or {}),
            "sessionVariables": dict(variables or {}),
        }
        body = self._request("POST", "/ksql", json=payload)
        return list(body) if isinstance(body, list) else []

    def close_query(self, query_id: str) -> None:
        """Stop a push query started on ``/query-stream``."""
        self._request("POST", "/close-query", json={"queryId": query_id})

    def query(
        self,
        sql: str,
        *,
        properties: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> QueryStream:
        """Start a SELECT or PRINT on ``/query-stream`` and wait for its header.

        The caller must close the returned stream (or read it to the end).
        """
        payload = {
            "sql": sql,
            "properties": dict(properties or {}),
            "sessionVariables": dict(variables or {}),
        }
        request = self._http.build_request(
            "POST", "/query-stream", json=payload, headers={"Accept": DELIMITED}
        )
        response = self._send(request, stream=True)
        try:
            if response.status_code >= 400:
                raise ServerError.from_body(response.status_code, response.read())
            return _open_stream(response)
        except BaseException:
            response.close()
            raise

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(self._http.build_request(method, path, **kwargs), stream=False)
        if response.status_code >= 400:
            raise ServerError.from_body(response.status_code, response.content)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError as error:
            raise ServerError(
                status=response.status_code, error_code=50000, message=f"Unreadable answer: {error}"
            ) from error

    def _send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        try:
            return self._http.send(request, stream=stream)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise ServerUnreachable(self.url, _reason(error)) from error
        except httpx.RemoteProtocolError as error:
            raise ServerUnreachable(self.url, f"the server closed the connection: {error}") from error


def _open_stream(response: httpx.Response) -> QueryStream:
    """Read up to the header line; a row read while looking for it waits in ``_pending``."""
    array_form = response.headers.get("content-type", "").startswith(KSQL_JSON)
    lines = response.iter_lines()

    def stream(header: QueryHeader) -> QueryStream:
        return QueryStream(header=header, _lines=lines, _response=response, _array_form=array_form)

    for line in lines:
        item = _parse_line(line, array_form=array_form)
        match item:
            case None:
                continue
            case {"queryId": _} | {"columnNames": _}:
                header = QueryHeader(
                    query_id=item.get("queryId"),
                    column_names=tuple(item.get("columnNames") or ()),
                    column_types=tuple(item.get("columnTypes") or ()),
                )
                return stream(header)
            case {"header": {"schema": str() as schema, **rest}}:
                names, types = _parse_schema(schema)
                query_id = rest.get("queryId")
                return stream(
                    QueryHeader(
                        query_id=str(query_id) if query_id else None, column_names=names, column_types=types
                    )
                )
            case {"errorMessage": dict() as error}:
                raise ServerError.from_object(error)
            case {"@type": str(), "message": str()}:
                raise ServerError.from_object(item)
            case _:
                # PRINT on the delimited format has no metadata line: its lines are the rows.
                headless = stream(QueryHeader(query_id=None, column_names=(), column_types=()))
                headless._pending.append(item if isinstance(item, list) else [line])
                return headless
    return stream(QueryHeader(query_id=None, column_names=(), column_types=()))


def _parse_line(line: str, *, array_form: bool) -> Any:
    """One line of a query response as JSON.

    In the array form (``application/vnd.ksql.v1+json``) each line is one element of a JSON
    array written one element per line, so the ``[``, ``,`` and ``]`` around it are dropped.
    A line that is not JSON (PRINT output) comes back as a one-column row.
    """
    text = line.strip()
    if array_form:
        text = text.removeprefix("[").removesuffix(",")
        if text.endswith("}]"):
            text = text[:-1]
    if not text or text in ("[", "]"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return [line]


def _parse_schema(schema: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a ``/query`` header schema (`` `A` STRING, `B` ARRAY<INT> ``) into names and types."""
    names: list[str] = []
    types: list[str] = []
    depth = 0
    part = ""
    for char in schema + ",":
        if char == "," and depth == 0:
            name, _, type_ = part.strip().partition(" ")
            names.append(name.strip("`"))
            types.append(type_.removesuffix(" KEY").strip())
            part = ""
            continue
        depth += {"<": 1, ">": -1, "(": 1, ")": -1}.get(char, 0)
        part += char
    return tuple(names), tuple(types)


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return "connection refused" if "refused" in text.lower() else text
