"""The ksqlDB-compatible REST API as an ASGI application: ``create_app(engine) -> FastAPI``.

Request/response endpoints (``/ksql``, ``/info``, ``/status`` ...) are FastAPI routes that read
raw bodies and answer ``application/json`` built by ``server/entities.py``; the streaming
endpoints are raw ASGI apps from ``server/streams.py``. Blocking engine calls run on worker
threads of a dedicated limiter (:meth:`KsqlServer.call`), never on the event loop and never in
anyio's shared default pool; push queries wait on the event loop, not on threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from ksqlpy import parser
from ksqlpy.errors import KsqlpyError
from ksqlpy.runtime import results as r
from ksqlpy.server import entities, wire
from ksqlpy.server.acl import AccessDenied, Authorizer, Operation, Topics, authorizer
from ksqlpy.server.acl import topic as acl_topic
from ksqlpy.server.auth import AuthMiddleware, auth_settings
from ksqlpy.server.cluster import ClusterAgent
from ksqlpy.server.config import ServerConfig
from ksqlpy.server.console import mount_console, prefers_html
from ksqlpy.server.errors import (
    BAD_REQUEST,
    COMMAND_QUEUE_CATCHUP_TIMEOUT,
    INTERNAL,
    NOT_FOUND,
    RestError,
    code_of,
    describe_failure,
    generic_error,
)
from ksqlpy.server.health import HealthCheck, ServerState, ServerStateMiddleware, lifespan
from ksqlpy.server.limits import ClientGone, PayloadTooLarge, check_statement, read_body
from ksqlpy.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ksqlpy.server.metrics import MetricsMiddleware, ServerMetrics, note_query
from ksqlpy.server.pullroute import PullRouter
from ksqlpy.server.quotas import QuotaMiddleware, Quotas, RateLimited, statement_kind
from ksqlpy.server.streams import (
    InsertsEndpoint,
    QueryEndpoint,
    bad_target,
    normalize_target,
    target_problem,
)
from ksqlpy.server.trace import trace_error, trace_json
from ksqlpy.server.transport import AbsoluteTargetMiddleware
from ksqlpy.server.websocket import serve_websocket_query
from ksqlpy.server.wire import dumps

log = logging.getLogger("ksqlpy.server")
T = TypeVar("T")

#: Worker threads for blocking engine calls (statements, query start/stop, inserts).
ENGINE_THREADS = 16


class KsqlServer:
    """State shared by the endpoints: the engine, its thread limiter, live push queries."""

    def __init__(self, engine: Any, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.max_push_queries = config.max_push_queries
        self.limiter = anyio.CapacityLimiter(ENGINE_THREADS)
        self.push_queries: set[str] = set()
        # Statements and query starts run one at a time, as ksqlDB's command runner executes
        # them; this also keeps concurrent clients from racing inside the metastore.
        self.statement_lock = threading.Lock()
        if getattr(engine, "runner", None) is not None:
            # commands from the cluster's other servers apply between statements, not during one
            engine.runner.guard = self.statement_lock
        listener = config.listeners[0] if config.listeners else None
        self.host = f"{listener.host}:{listener.port}" if listener else "localhost:8088"
        #: membership, heartbeats and lags (``server/cluster.py``); started once the engine is
        self.cluster = ClusterAgent(engine, config)
        #: pull queries over tables whose partitions other servers hold (``server/pullroute.py``)
        self.router = PullRouter(engine, self.cluster)
        self.server_state = ServerState()
        self.health = HealthCheck(self, self.server_state)
        #: the access-control rules (``server/acl.py``); None: every statement is allowed
        self.authorizer: Authorizer | None = None
        self.quotas = Quotas(config)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking engine call on the server's own worker threads."""
        return await anyio.to_thread.run_sync(partial(fn, *args), limiter=self.limiter)

    # --- push query accounting ---------------------------------------------------------------

    def register_push(self, query_id: str, user: str | None = None) -> None:
        """Count a push query; raises ``RateLimited`` past the server's or the user's limit."""
        self.quotas.admit_push(user, len(self.push_queries), self.max_push_queries)
        self.push_queries.add(query_id)

    def unregister_push(self, query_id: str, user: str | None = None) -> None:
        if query_id in self.push_queries:
            self.push_queries.discard(query_id)
            self.quotas.release_push(user)

    # --- blocking work, run via call() -------------------------------------------------------

    def await_command(self, seq: int | None) -> None:
        """Wait until this server applied command ``seq`` (a ``commandSequenceNumber`` a client
        got from any server of the cluster), as ksqlDB does before running the request; 503
        after ksqlDB's ``ksql.server.command.response.timeout.ms`` (5000) of waiting."""
        if seq is None or self.engine is None:
            return
        deadline = time.monotonic() + self.cluster.settings.command_response_timeout_ms / 1000
        while self.engine.last_command_offset < seq:
            if time.monotonic() > deadline:
                raise RestError(
                    COMMAND_QUEUE_CATCHUP_TIMEOUT,
                    f"Timed out while waiting for a previous command to execute. command sequence number: {seq}",
                )
            time.sleep(0.01)

    def execute(
        self,
        text: str,
        properties: Mapping[str, str],
        variables: Mapping[str, str],
        user: str | None = None,
        address: str = "unknown",
    ) -> tuple[int, Any]:
        """``/ksql``: run every statement; on a failure, report it with the earlier entities.

        With access control, each statement is checked just before it runs, against the
        catalog as the statements before it left it."""
        done: list[dict[str, Any]] = []
        acl = self.authorizer
        quota = self.quotas.quota_of(user)
        insert_quota = quota is not None and quota.insert_bytes_per_second is not None
        split = acl is not None or insert_quota
        try:
            with self.statement_lock:
                session = self.engine.session(properties, variables)
                for statement in parser.split_statements(text) if split else [text]:
                    if acl is not None:
                        acl.check_statement(user, address, statement, Topics(self.engine), session.variables)
                    if insert_quota and statement_kind(statement.strip()) == "insert":
                        self.quotas.admit_insert(user, len(statement.encode()))
                    for result in session.execute(statement):
                        if result is not None:
                            if acl is not None:
                                result = acl.visible(user, result)
                                started = getattr(result, "query_id", None)
                                if isinstance(result, r.CommandStatusEntity) and started:
                                    # authorized now, for good: the query runs as its creator
                                    log.info("Persistent query %s runs as user %r", started, user or "ANONYMOUS")
                            done.append(entities.entity_json(result, self.host))
                            self.cluster.decorate(done[-1])
        except (AccessDenied, RateLimited) as e:
            return e.code.status, e.body()
        except Exception as e:  # noqa: BLE001 - mapped to ksqlDB's error responses
            code, body = describe_failure(
                e, context=f"/ksql running {text!r}", statement_text=text, entities=done
            )
            return code.status, body
        return 200, done

    def start_query(
        self,
        text: str,
        properties: Mapping[str, str],
        variables: Mapping[str, str],
        authorization: str | None = None,
    ) -> Any:
        """Start ``text``; a pull query over a table whose partitions live on other servers of
        the cluster is answered by them (see ``server/pullroute.py``), with the caller's
        ``authorization`` header, as ksqlDB forwards it."""
        target = self.router.target(text, properties, variables)
        if target is not None:
            answered = self.router.answer(
                target,
                text,
                properties,
                variables,
                lambda props: self._start_here(text, props, variables),
                authorization=authorization,
            )
            return answered
        return self._start_here(text, properties, variables)

    def start_ready_query(self, text: str, properties: Mapping[str, str], variables: Mapping[str, str]) -> Any:
        """``text`` answered right away when it is a key lookup this server answers itself from a
        plan and state that are ready (see :meth:`Session.start_ready_pull`), else None. It does
        not block, so endpoints call it on the event loop and spare the lookup two thread hops."""
        if self.cluster.clustered:
            return None  # the lookup may be routed to another server: start_query decides
        answered = self.engine.session(properties, variables).start_ready_pull(text)
        if answered is not None:
            note_query(answered)
        return answered

    def _start_here(self, text: str, properties: Mapping[str, str], variables: Mapping[str, str]) -> Any:
        session = self.engine.session(properties, variables)
        # A repeated pull query over a table only reads: it does not wait for statements (nor
        # they for its read-your-writes catch-up), and concurrent pull queries run in parallel.
        answered = session.start_prepared_pull(text)
        if answered is not None:
            note_query(answered)
            return answered
        with self.statement_lock:
            # Other pull queries over tables are planned under the lock and answered outside it:
            # no statement waits behind their catch-up.
            answer = session.plan_pull(text)
            if answer is None:
                query = session.execute_query(text)
                note_query(query)
                return query
        answered = answer()
        if answered is not None:
            note_query(answered)
            return answered
        with self.statement_lock:  # not answerable as planned: run it as usual, which says why
            query = session.execute_query(text)
        note_query(query)
        return query

    def authorize(self, scope: Mapping[str, Any], text: str, variables: Mapping[str, str]) -> None:
        """Raise :class:`AccessDenied` unless the request's user may run the statements of ``text``."""
        acl = self.authorizer
        if acl is None:
            return
        catalog = Topics(self.engine)
        for statement in parser.split_statements(text):
            acl.check_statement(scope.get("ksqlpy.user"), address_of(scope), statement, catalog, variables)

    def authorize_reads(self, scope: Mapping[str, Any], what: str, topics: set[str]) -> None:
        """Raise :class:`AccessDenied` unless the request's user may READ every one of ``topics``."""
        acl = self.authorizer
        if acl is None or not topics:
            return
        needs = [acl_topic(Operation.READ, t) for t in sorted(topics)]
        acl.check(scope.get("ksqlpy.user"), address_of(scope), what, needs)

    def authorize_insert(self, scope: Mapping[str, Any], target: str) -> None:
        """``/inserts-stream``: WRITE on the target stream's topic."""
        acl = self.authorizer
        source = self.engine.catalog.find(target)
        if acl is None or source is None:
            return
        acl.check(scope.get("ksqlpy.user"), address_of(scope), f"/inserts-stream into {target}",
                  [acl_topic(Operation.WRITE, source.topic)])

    def check_insert_target(self, target: str) -> str:
        """The stored name of a stream that may take ``/inserts-stream`` rows, else an error."""
        name = normalize_target(target)
        if name is None:
            raise bad_target(f"{target} does not exist.")
        quoted = name.replace("`", "``")
        try:
            described = list(self.engine.session().execute(f"DESCRIBE `{quoted}`;"))
        except KsqlpyError as e:
            raise bad_target(str(e)) from None
        problem = target_problem(described[0] if described else None, name)
        if problem is not None:
            raise bad_target(problem)
        return name

    def insert_rows(
        self, target: str, lines: list[bytes], properties: Mapping[str, str]
    ) -> tuple[int, BaseException | None]:
        """Insert rows in order: how many went in, and the error of the row after them (its
        values did not convert, or its line is not JSON), if one failed."""
        rows: list[Mapping[str, Any]] = []
        bad_json = False
        for line in lines:
            try:
                rows.append(wire.parse_object(line))
            except RestError:
                bad_json = True
                break
        try:
            self.engine.insert_rows(target, rows, properties)
        except Exception as e:
            if not isinstance(e, KsqlpyError):
                log.error("Insert into %s failed", target, exc_info=e)
            return getattr(e, "index", 0), e
        if bad_json:
            return len(rows), RestError(BAD_REQUEST, "Invalid JSON in inserts stream")
        return len(rows), None

    def command_statuses(self) -> Mapping[str, r.CommandStatus]:
        statuses = self.engine.command_statuses
        found: Mapping[str, r.CommandStatus] = statuses() if callable(statuses) else statuses
        return found


class InternalErrorMiddleware:
    """Turn any exception an endpoint lets escape into ksqlDB's 500 answer, logged with context.

    Before the response started: 500 with ``{"@type":"generic_error","error_code":50000,...}``.
    After (a failure mid-stream): the body is ended so the client is never left hanging.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        progress = {"started": False, "ended": False}

        async def tracked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                progress["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                progress["ended"] = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as e:
            context = f"{scope.get('method', '')} {scope.get('path', '')}"
            _, body = describe_failure(e, context=context)
            if code_of(e) is not INTERNAL:  # describe_failure logs only internal failures
                log.error("Unexpected %s escaped %s", type(e).__name__, context, exc_info=e)
            try:
                if not progress["started"]:
                    payload = dumps(generic_error(INTERNAL, body["message"]))
                    await send({"type": "http.response.start", "status": INTERNAL.status,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(payload)).encode())]})
                    await send({"type": "http.response.body", "body": payload, "more_body": False})
                elif not progress["ended"]:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            except Exception:
                log.debug("could not report the failure of %s", context, exc_info=True)


def address_of(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown"


def _host_info(body: Mapping[str, Any], name: str) -> str:
    """ksqlDB's ``KsqlHostInfoEntity``: ``"host:port"``, or ``{"host": ..., "port": ...}``."""
    value = body.get(name)
    if isinstance(value, dict) and isinstance(value.get("host"), str) and isinstance(value.get("port"), int):
        return f"{value['host']}:{value['port']}"
    if isinstance(value, str) and value.rpartition(":")[2].isdigit():
        return value
    raise RestError(BAD_REQUEST, f"Invalid JSON in request: '{name}' must be \"host:port\"")


def json_response(value: Any, status: int = 200) -> Response:
    return Response(content=dumps(value), status_code=status, media_type="application/json")


def rest_error_response(error: RestError, request: Request) -> Response:
    response = json_response(error.body(), error.code.status)
    if isinstance(error, PayloadTooLarge) and request.scope.get("http_version") != "2":
        response.headers["connection"] = "close"  # the rest of the body is never read
    return response


def error_response(error: BaseException, context: str) -> Response:
    code, body = describe_failure(error, context=context)
    return json_response(body, code.status)


def create_app(engine: Any, config: ServerConfig | None = None) -> FastAPI:
    """The REST API over ``engine`` (a ``ksqlpy.runtime.engine.Engine``)."""
    server = KsqlServer(engine, config or ServerConfig())
    app = FastAPI(
        docs_url=None, redoc_url=None, openapi_url=None, title="ksqlpy",
        lifespan=lifespan(server, server.server_state),
    )
    app.state.ksql = server
    metrics = ServerMetrics(engine, server.config.service_id, server.push_queries)
    app.state.metrics = metrics
    auth = auth_settings(server.config)

    def roles_of(name: str) -> frozenset[str]:
        found = auth.users.users().get(name) if auth is not None else None
        return found.roles if found is not None else frozenset()

    server.authorizer = authorizer(server.config, roles_of, metrics.acl_denials)

    def acceptable(request: Request) -> bool:
        return wire.negotiate(request.headers.get("accept"), wire.PRODUCES["plain"]) is not None

    not_found = PlainTextResponse("Not Found", status_code=404)

    async def limited_body(request: Request) -> bytes:
        try:
            return await read_body(request.receive, request.headers.raw, server.config.max_request_bytes)
        except ClientGone:
            raise RestError(BAD_REQUEST, "The client disconnected before its request was read") from None

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    @app.post("/ksql")
    async def ksql(request: Request) -> Response:
        if not acceptable(request):
            return not_found
        try:
            body = wire.parse_object(await limited_body(request))
            text = wire.optional_str(body, "ksql")
            check_statement(text, server.config.max_statement_chars)
            props = wire.properties(body, "streamsProperties")
            variables = wire.properties(body, "sessionVariables")
            await server.call(server.await_command, wire.command_sequence_number(body))
        except RestError as e:
            return rest_error_response(e, request)
        user = request.scope.get("ksqlpy.user")
        status, payload = await server.call(
            server.execute, text, props, variables, user, address_of(request.scope)
        )
        return json_response(payload, status)

    @app.post("/ksql/terminate")
    async def terminate_cluster(request: Request) -> Response:
        user = request.scope.get("ksqlpy.user")  # TERMINATE needs ALTER on the cluster
        status, payload = await server.call(
            server.execute, "TERMINATE ALL;", {}, {}, user, address_of(request.scope)
        )
        if status != 200:
            return json_response(payload, status)
        entity = r.CommandStatusEntity(
            statement_text="TERMINATE CLUSTER;",
            command_id="cluster/TerminateCluster/terminate",
            message="Cluster terminated.",
        )
        return json_response([entities.entity_json(entity, server.host)])

    @app.post("/close-query")
    async def close_query(request: Request) -> Response:
        try:
            body = wire.parse_object(await limited_body(request))
            query_id = wire.required_str(body, "queryId")
        except RestError as e:
            return rest_error_response(e, request)
        if not await server.call(engine.close_query, query_id):
            error = RestError(BAD_REQUEST, f"No query with id {query_id}")
            return json_response(error.body(), 400)
        return Response(status_code=200)

    @app.post("/trace")
    async def trace(request: Request) -> Response:
        # The console's "trace an event": a key's records and what queries derived from them.
        try:
            body = wire.parse_object(await limited_body(request))
            answer = await server.call(trace_json, engine, server.statement_lock, body)
            # every topic the trace read, the source's and each hop's, needs READ
            server.authorize_reads(request.scope, "/trace", {hop["topic"] for hop in answer["hops"]})
        except (AccessDenied, RateLimited) as e:
            return json_response(e.body(), e.code.status)
        except RestError as e:
            return rest_error_response(e, request)
        except KsqlpyError as e:
            return json_response(generic_error(BAD_REQUEST, trace_error(e)), BAD_REQUEST.status)
        except Exception as e:  # noqa: BLE001 - a bug: logged, answered as ksqlDB answers internal errors
            return error_response(e, "trace")
        return json_response(answer)

    @app.get("/info")
    async def info(request: Request) -> Response:
        if not acceptable(request):
            return not_found
        return json_response(entities.server_info_json(await server.call(engine.server_info)))

    @app.get("/healthcheck")
    async def healthcheck(request: Request) -> Response:
        if not acceptable(request):
            return not_found
        report = await server.call(server.health.report)
        return json_response(report.json(), 200 if server.server_state.ready else 503)

    @app.get("/clusterStatus")
    async def cluster_status(request: Request) -> Response:
        if not server.config.heartbeat_enabled:
            return Response(status_code=404)
        return json_response(await server.call(server.cluster.status_json))

    internal = server.config.internal_listener

    def public_listener(request: Request) -> bool:
        """Whether an internal endpoint was called on a public listener while an internal one
        is configured (ksqlDB's ``InternalEndpointHandler``)."""
        local = request.scope.get("server")
        return internal is not None and (local is None or local[1] != internal.port)

    internal_only = generic_error(INTERNAL, "Can't call internal endpoint on public listener")

    @app.post("/heartbeat")
    async def heartbeat(request: Request) -> Response:
        if public_listener(request):
            return json_response(internal_only, 400)
        try:
            body = wire.parse_object(await limited_body(request))
            host = _host_info(body, "hostInfo")
            timestamp = body.get("timestamp")
            if not isinstance(timestamp, int) or isinstance(timestamp, bool):
                raise RestError(BAD_REQUEST, "Invalid JSON in request: 'timestamp' must be a number")
        except RestError as e:
            return rest_error_response(e, request)
        if server.config.heartbeat_enabled:
            server.cluster.receive_heartbeat(host, timestamp)
        return json_response({"isOk": True})

    @app.post("/lag")
    async def lag(request: Request) -> Response:
        if public_listener(request):
            return json_response(internal_only, 400)
        try:
            body = wire.parse_object(await limited_body(request))
            host = _host_info(body, "ksqlHost")
            lags = body.get("hostStoreLags")
            if not isinstance(lags, dict):
                raise RestError(BAD_REQUEST, "Invalid JSON in request: 'hostStoreLags' must be an object")
        except RestError as e:
            return rest_error_response(e, request)
        if server.cluster.settings.lag_reporting:
            server.cluster.receive_lags(host, lags)
        return json_response({"isOk": True})

    @app.get("/status")
    async def statuses(request: Request) -> Response:
        if not acceptable(request):
            return not_found
        return json_response(entities.command_statuses_json(await server.call(server.command_statuses)))

    @app.get("/status/{kind}/{entity}/{action}")
    async def status(request: Request, kind: str, entity: str, action: str) -> Response:
        if not acceptable(request):
            return not_found
        found = await server.call(engine.command_status, f"{kind}/{entity}/{action}")
        if found is None:
            return json_response(RestError(NOT_FOUND, "Command not found").body(), 404)
        return json_response(entities.command_status_json(found))

    @app.get("/is_valid_property/{name}")
    async def is_valid_property(request: Request, name: str) -> Response:
        if not acceptable(request):
            return not_found
        try:
            await server.call(engine.check_property, name)
        except KsqlpyError as e:
            return json_response(RestError(BAD_REQUEST, str(e)).body(), 400)
        except Exception as e:  # noqa: BLE001
            return error_response(e, "/is_valid_property")
        return json_response(True)

    @app.get("/")
    async def root(request: Request) -> Response:
        return RedirectResponse("/console/" if prefers_html(request) else "/info", status_code=307)

    @app.get("/v1/metadata")
    async def metadata() -> Response:
        info = await server.call(engine.server_info)
        return json_response({"version": info.version, "clusterId": entities.cluster_id_json(info)})

    @app.get("/v1/metadata/id")
    async def metadata_id() -> Response:
        return json_response(entities.cluster_id_json(await server.call(engine.server_info)))

    @app.get("/chc/live")
    async def live() -> Response:
        return json_response({})

    @app.get("/chc/ready")
    async def ready() -> Response:
        return json_response({}, 200 if server.server_state.ready else 503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        headers = {"content-type": METRICS_CONTENT_TYPE}
        return Response(content=metrics.render(), media_type=None, headers=headers)

    @app.websocket("/ws/query")
    async def ws_query(websocket: WebSocket) -> None:
        await serve_websocket_query(server, websocket)

    # First in the router: a request goes to the first route matching it, each tried in turn
    # (a regular expression apiece, twice, as the metrics look the route up too), and these
    # carry the most requests; no other route matches their paths.
    app.router.routes[0:0] = [
        Route("/query", QueryEndpoint(server, legacy=True), methods=["POST"]),
        Route("/query-stream", QueryEndpoint(server, legacy=False), methods=["POST"]),
        Route("/inserts-stream", InsertsEndpoint(server), methods=["POST"]),
    ]
    mount_console(app, server)
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(ServerStateMiddleware, state=server.server_state)
    server.quotas.refusals = metrics.quota_refusals
    app.add_middleware(QuotaMiddleware, quotas=server.quotas)
    app.add_middleware(AuthMiddleware, settings=auth, failures=metrics.auth_failures)
    app.add_middleware(AbsoluteTargetMiddleware)
    # Outermost, so requests refused or failed by the layers inside still count.
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    return app
