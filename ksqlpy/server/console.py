"""The web console: ``/console`` serves a page (plain JS modules, vendored libraries) that runs
statements, streams push queries, lists the catalog (functions and the processing log's newest bad
records too), draws the lineage graph (a query's plan with per-step record counts) and traces a key downstream;
``/lineage`` serves that graph.

The page talks only to the public REST API (``/ksql``, ``/query-stream``, ``/close-query``,
``/info``) plus ``/lineage`` and ``/trace`` (``server/trace.py``); every asset it loads comes from ``ksqlpy/server/console/static``
(package data), so the console works with no network. A browser asking for ``/`` (its ``Accept``
prefers ``text/html``) is sent here; API clients asking for ``/`` still get ``/info``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ksqlpy.server import wire
from ksqlpy.server.acl import Operation, topic
from ksqlpy.server.lineage import lineage_json
from ksqlpy.server.wire import dumps

#: The page and its assets, shipped as package data.
STATIC_DIR = Path(__file__).parent / "console" / "static"

#: The page loads nothing from elsewhere and talks only to this server; inline styles are allowed
#: because CodeMirror and uPlot position their elements with them. Data (stream names, rows) is
#: only ever put in the page as text, never as markup.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def prefers_html(request: Request) -> bool:
    """Whether the client would rather have a page than JSON (a browser, not curl or a client)."""
    accept = request.headers.get("accept")
    return wire.negotiate(accept, (wire.JSON, "text/html")) == "text/html"


def visible_lineage(graph: dict[str, Any], may_describe: Any) -> dict[str, Any]:
    """The lineage graph less the topics, streams and tables whose topic may not be described,
    the queries that touch them and the edges to any of those."""
    hidden = {
        n["id"]
        for n in graph["nodes"]
        if n["kind"] == "topic" and not may_describe(n["name"])
        or n["kind"] in ("stream", "table") and not may_describe(n.get("topic", ""))
    }
    for e in graph["edges"]:
        if e["source"].startswith("query:") and e["target"] in hidden:
            hidden.add(e["source"])
        if e["target"].startswith("query:") and e["source"] in hidden:
            hidden.add(e["target"])
    return {
        **graph,
        "nodes": [n for n in graph["nodes"] if n["id"] not in hidden],
        "edges": [e for e in graph["edges"] if e["source"] not in hidden and e["target"] not in hidden],
    }


def mount_console(app: FastAPI, server: Any) -> None:
    """Add ``/lineage``, ``/console`` and its static assets to ``app`` (``server`` is its KsqlServer)."""

    def lineage() -> dict[str, Any]:
        # Under the statement lock: a statement running meanwhile would change the catalog and
        # the query set while they are read.
        with server.statement_lock:
            return lineage_json(server.engine)

    @app.get("/lineage")
    async def lineage_endpoint(request: Request) -> Response:
        graph = await server.call(lineage)
        acl = server.authorizer
        if acl is not None:  # only what the user may DESCRIBE, as SHOW lists it
            graph = visible_lineage(graph, lambda name: acl.allowed(request.scope.get("ksqlpy.user"), topic(Operation.DESCRIBE, name)))
        return Response(content=dumps(graph), media_type="application/json")

    @app.get("/console")
    async def console_page() -> Response:
        return RedirectResponse("/console/", status_code=307)

    @app.get("/console/")
    async def console_index() -> Response:
        # no-cache: a browser revalidates the page after an upgrade instead of mixing versions.
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache",
                                     "Content-Security-Policy": CONTENT_SECURITY_POLICY})

    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
