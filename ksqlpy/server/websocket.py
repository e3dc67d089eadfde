"""``GET /ws/query``: the legacy websocket query endpoint used by old UIs.

Messages: the result schema (DESCRIBE-style field objects), then one ``{"row":…}`` per row;
the server closes with 1000 ``done`` at the end, 1003 for a bad request or statement, 1011 when
the query fails while running.

A pull query is admitted by the server's pull-query limits (``ksql.query.pull.max.qps``,
``ksql.query.pull.max.concurrent.requests``) before the handshake: past them, the upgrade is
refused with the HTTP answer ``/query`` gives, 429 and ksqlDB's ``42900`` body, so a client sees
the same refusal on either endpoint. On a cluster a pull query over a table is started as
``POST /query`` starts it (:meth:`KsqlServer.start_query`): a key lookup goes to a server holding
the key's partition, a scan to the holders of every partition (``server/pullroute.py``), with
the caller's ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from ksqlpy.runtime import results as r
from ksqlpy.server import wire
from ksqlpy.server.entities import field_json
from ksqlpy.server.errors import BAD_REQUEST, RestError, message_of
from ksqlpy.server.push import QueryFeed
from ksqlpy.server.quotas import RateLimited
from ksqlpy.server.wire import dumps

if TYPE_CHECKING:
    from ksqlpy.server.app import KsqlServer

NORMAL, UNSUPPORTED, INTERNAL = 1000, 1003, 1011


async def serve_websocket_query(server: KsqlServer, websocket: WebSocket) -> None:
    try:
        ticket = server.quotas.admit_query(_statement_text(websocket))
    except RateLimited as e:
        await _refuse(websocket, e)
        return
    try:
        await _serve(server, websocket)
    finally:
        ticket.release()


def _statement_text(websocket: WebSocket) -> str:
    """The request's statement, for the pull-query limits; a request that does not carry one is
    no pull query (the handshake goes ahead and the close reason says what is wrong)."""
    raw = websocket.query_params.get("request")
    try:
        body = wire.parse_object(raw.encode("utf-8")) if raw is not None else {}
        return wire.optional_str(body, "ksql")
    except RestError:
        return ""


async def _refuse(websocket: WebSocket, error: RateLimited) -> None:
    """Refuse the upgrade with an HTTP answer, as hypercorn lets an ASGI app do before accepting."""
    body = dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await websocket.send(
        {"type": "websocket.http.response.start", "status": error.code.status, "headers": headers}
    )
    await websocket.send({"type": "websocket.http.response.body", "body": body, "more_body": False})


async def _serve(server: KsqlServer, websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        version = websocket.query_params.get("version")
        if version is not None and version != "1":
            raise RestError(BAD_REQUEST, f"Received invalid api version: {version}")
        raw = websocket.query_params.get("request")
        if raw is None:
            raise RestError(BAD_REQUEST, "Error parsing query: missing request")
        body = wire.parse_object(raw.encode("utf-8"))
        text = wire.optional_str(body, "ksql")
        props = wire.properties(body, "streamsProperties")
        variables = wire.properties(body, "sessionVariables")
        await server.call(server.authorize, websocket.scope, text, variables)
        query = await server.call(
            server.start_query, text, props, variables, websocket.headers.get("authorization")
        )
    except Exception as e:  # noqa: BLE001 - every failure closes the socket with its text
        await websocket.close(code=UNSUPPORTED, reason=_reason(message_of(e)))
        return
    user = websocket.scope.get("ksqlpy.user")
    registered = False
    try:
        if not query.is_pull:
            try:
                server.register_push(query.query_id, user)
            except RestError as e:  # past the server's or the user's push-query limit
                await websocket.close(code=UNSUPPORTED, reason=_reason(e.message))
                return
            registered = True
        await _stream(query, websocket)
    finally:
        if registered:
            server.unregister_push(query.query_id, user)
        with anyio.CancelScope(shield=True):
            await server.call(query.close)


async def _stream(query: Any, websocket: WebSocket) -> None:
    feed = QueryFeed(query)

    async def watch() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        feed.stop()

    watcher = asyncio.create_task(watch())
    try:
        fields = [field_json(r.FieldInfo(name=c.name, type=c.type)) for c in query.columns]
        await websocket.send_text(dumps(fields).decode())
        async for rows in feed.batches():
            for row in rows:
                body: dict[str, Any] = {"columns": row.values}
                if row.tombstone:
                    body["tombstone"] = True
                await websocket.send_text(dumps({"row": body}).decode())
        if feed.stopped:
            return
        if query.error is not None:
            await websocket.close(code=INTERNAL, reason=_reason(message_of(query.error)))
        else:
            await websocket.close(code=NORMAL, reason="done")
    except (WebSocketDisconnect, RuntimeError):
        pass  # client went away mid-write
    finally:
        watcher.cancel()


def _reason(text: str) -> str:
    """Close reasons are limited to 123 bytes."""
    encoded = text.encode("utf-8")[:123]
    return encoded.decode("utf-8", errors="ignore")
