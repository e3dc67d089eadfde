"""``GET /metrics``: the server's figures in Prometheus text format.

Engine figures carry the names Confluent's JMX exporter gives ksqlDB's MBeans
(``ksql_ksql_engine_query_stats_*`` with a ``ksql_cluster`` label, per-query status as
``ksql_ksql_metrics_ksql_queries_query_status``), so dashboards built for ksqlDB find them.
Figures ksqlDB does not have are ``ksqlpy_*``: per query (records and bytes consumed and
produced, batch latency, late records, processing-log records), pull and push queries, HTTP
requests, failed authentications.

Engine and per-query figures are read at scrape time from the engine's own counters
(:class:`EngineCollector`); nothing is copied while queries run. Rates (``*_per_sec``) are
the change between scrapes over a sliding window, as Kafka's metrics sample over windows.
Request figures are counted by :class:`MetricsMiddleware`, which wraps the whole application
so rejected (401) and failed (500) requests count too.
"""

from __future__ import annotations

import contextvars
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.routing import Match

from ksqlpy.runtime.query import QueryState

# ``*_created`` timestamps double every counter's series and no ksqlDB dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

ENGINE = "ksql_ksql_engine_query_stats_"
QUERY = "ksqlpy_query_"

#: Seconds of history a rate is computed over (Kafka metrics: two 30 s samples).
RATE_WINDOW = 60.0

#: Pull query and push query start latency bounds, seconds.
QUERY_LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: The classic text format every Prometheus version reads (what ``generate_latest`` writes).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Rate:
    """Per-second rate of a growing total, from the samples of the last :data:`RATE_WINDOW`."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float]] = deque()

    def update(self, total: float, now: float) -> float:
        self.samples.append((now, total))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW:
            self.samples.popleft()
        first_t, first_v = self.samples[0]
        if now - first_t <= 0:
            return 0.0
        return max(0.0, (total - first_v) / (now - first_t))


class EngineCollector(Collector):
    """Reads the engine's queries and processing log at each scrape."""

    def __init__(self, engine: Any, service_id: str) -> None:
        self.engine = engine
        self.cluster = service_id
        self.consumed = Rate()
        self.produced = Rate()
        self.errors = Rate()
        self.per_query: dict[str, Rate] = {}

    def collect(self) -> Iterator[Metric]:
        if self.engine is None:
            return
        now = time.monotonic()
        queries = list(getattr(self.engine, "queries", {}).values())
        yield from self._engine_stats(queries, now)
        yield from self._query_stats(queries)

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        g = GaugeMetricFamily(ENGINE + name, doc, labels=["ksql_cluster"])
        g.add_metric([self.cluster], value)
        return g

    def _engine_stats(self, queries: list[Any], now: float) -> Iterable[Metric]:
        states = [q.state for q in queries]
        running = sum(s is QueryState.RUNNING for s in states)
        consumed = sum(q.records_in for q in queries)
        produced = sum(q.records_out for q in queries)
        plog = getattr(self.engine, "plog", None)
        errors = plog.count if plog is not None else 0
        rates = [self.per_query.setdefault(q.query_id, Rate()).update(q.records_in, now) for q in queries]
        for gone in set(self.per_query) - {q.query_id for q in queries}:
            del self.per_query[gone]
        active = [r for q, r in zip(queries, rates, strict=True) if q.state is QueryState.RUNNING]
        yield self._gauge("liveness_indicator", "1 while the server is up and reporting.", 1)
        yield self._gauge("num_persistent_queries", "Persistent queries in the engine.", len(queries))
        yield self._gauge("running_queries", "Persistent queries in state RUNNING.", running)
        yield self._gauge("num_active_queries", "Persistent queries that are running.", running)
        yield self._gauge(
            "error_queries", "Persistent queries in state ERROR.", sum(s is QueryState.ERROR for s in states)
        )
        yield self._gauge(
            "created_queries",
            "Persistent queries not started yet.",
            sum(s is QueryState.CREATED for s in states),
        )
        yield self._gauge("not_running_queries", "Persistent queries not running.", len(queries) - running)
        yield self._gauge("pending_shutdown_queries", "Queries shutting down (stops are synchronous).", 0)
        yield self._gauge(
            "rebalancing_queries", "Queries rebalancing (a ksqlpy server owns all partitions).", 0
        )
        yield self._gauge(
            "num_idle_queries",
            "Running persistent queries that found nothing new to read.",
            sum(q.state is QueryState.RUNNING and q.is_idle() for q in queries),
        )
        yield self._gauge("messages_consumed_total", "Records read by all persistent queries.", consumed)
        yield self._gauge(
            "bytes_consumed_total",
            "Key and value bytes read by all persistent queries.",
            sum(getattr(q, "bytes_in", 0) for q in queries),
        )
        yield self._gauge(
            "messages_consumed_per_sec",
            "Records read per second by all persistent queries.",
            self.consumed.update(consumed, now),
        )
        yield self._gauge(
            "messages_produced_per_sec",
            "Records written per second by all persistent queries.",
            self.produced.update(produced, now),
        )
        yield self._gauge(
            "messages_consumed_max", "Highest per-query read rate (records/s).", max(active, default=0.0)
        )
        yield self._gauge(
            "messages_consumed_min", "Lowest per-query read rate (records/s).", min(active, default=0.0)
        )
        yield self._gauge(
            "messages_consumed_avg",
            "Mean per-query read rate (records/s).",
            sum(active) / len(active) if active else 0.0,
        )
        yield self._gauge(
            "error_rate",
            "Records per second that went to the processing log instead of a sink.",
            self.errors.update(errors, now),
        )

    def _query_stats(self, queries: list[Any]) -> Iterable[Metric]:
        status = GaugeMetricFamily(
            "ksql_ksql_metrics_ksql_queries_query_status",
            "1 for each persistent query, labelled with its state.",
            labels=["ksql_cluster", "ksql_query", "status"],
        )
        labels = ["ksql_cluster", "ksql_query"]
        counters: dict[str, tuple[str, Callable[[Any], float]]] = {
            "records_consumed": ("Records the query read.", lambda q: q.records_in),
            "records_produced": ("Records the query wrote to its sink.", lambda q: q.records_out),
            "bytes_consumed": ("Key and value bytes the query read.", lambda q: getattr(q, "bytes_in", 0)),
            "bytes_produced": ("Key and value bytes the query wrote.", lambda q: getattr(q, "bytes_out", 0)),
            "late_records_dropped": (
                "Records a windowed aggregation dropped because their window had closed.",
                lambda q: getattr(q, "late_records", 0),
            ),
        }
        families = {
            name: CounterMetricFamily(QUERY + name, doc, labels=labels) for name, (doc, _) in counters.items()
        }
        plog_family = CounterMetricFamily(
            QUERY + "processing_log_records", "Processing-log entries the query wrote.", labels=labels
        )
        latency = HistogramMetricFamily(
            QUERY + "batch_latency_seconds", "Time to process one micro-batch, poll to commit.", labels=labels
        )
        plog = getattr(self.engine, "plog", None)
        plog_counts: dict[str, int] = dict(getattr(plog, "counts", {}))
        for q in queries:
            key = [self.cluster, q.query_id]
            status.add_metric([*key, q.state.value], 1)
            for name, (_, read) in counters.items():
                families[name].add_metric(key, read(q))
            plog_family.add_metric(key, plog_counts.get(q.query_id, 0))
            histogram = getattr(q, "batch_latency", None)
            if histogram is not None:
                snap = histogram.snapshot()
                buckets = [
                    (_bound(b), c) for b, c in zip((*snap.bounds, float("inf")), snap.cumulative, strict=True)
                ]
                latency.add_metric(key, buckets, snap.total)
        yield status
        yield from families.values()
        yield plog_family
        yield latency


def _bound(b: float) -> str:
    return "+Inf" if b == float("inf") else repr(b)


#: The current request's record, so the engine call that starts a query can say what kind it is.
_REQUEST: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "ksqlpy_request", default=None
)


def note_query(query: Any) -> None:
    """Mark the current request as a pull or push query (called where the query starts)."""
    record = _REQUEST.get()
    if record is not None and query is not None:
        record["kind"] = "pull" if getattr(query, "is_pull", False) else "push"


class ServerMetrics:
    """One registry per server (tests run several servers in one process)."""

    def __init__(self, engine: Any, service_id: str, push_queries: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(EngineCollector(engine, service_id))
        self.http_requests = Counter(
            "ksqlpy_http_requests",
            "HTTP requests answered, by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.pull_queries = Counter(
            "ksqlpy_pull_query_requests",
            "Pull queries answered, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.pull_latency = Histogram(
            "ksqlpy_pull_query_latency_seconds",
            "Pull query time, request to last byte of the response.",
            buckets=QUERY_LATENCY_BOUNDS,
            registry=self.registry,
        )
        self.push_queries = Counter(
            "ksqlpy_push_query_requests", "Push queries started.", registry=self.registry
        )
        self.push_latency = Histogram(
            "ksqlpy_push_query_start_latency_seconds",
            "Push query time from request to its first response bytes.",
            buckets=QUERY_LATENCY_BOUNDS,
            registry=self.registry,
        )
        self.active_push = Gauge(
            "ksqlpy_push_queries_active", "Push queries streaming to clients now.", registry=self.registry
        )
        if push_queries is not None:
            self.active_push.set_function(lambda: len(push_queries))
        self.auth_failures = Counter(
            "ksqlpy_authentication_failures",
            "Requests refused for missing or wrong credentials, by reason.",
            ["reason"],
            registry=self.registry,
        )

        self.acl_denials = Counter(
            "ksqlpy_authorization_denials",
            "Statements refused by the access-control rules, by operation and resource.",
            ["operation", "resource"],
            registry=self.registry,
        )

        self.quota_refusals = Counter(
            "ksqlpy_quota_refusals",
            "Requests refused with 429 for a quota, by limit.",
            ["limit"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def endpoint_of(routes: Iterable[Any], scope: dict[str, Any]) -> str:
    """The route template a request goes to (``/status/{kind}/{entity}/{action}``), so labels
    stay few whatever the ids in paths; ``other`` for paths no route serves."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "other"))
        if match is Match.PARTIAL and partial is None:  # the path is served, not with this method
            partial = str(getattr(route, "path", "other"))
    return partial or "other"


class MetricsMiddleware:
    """Counts every HTTP and WebSocket request by endpoint and status, and times queries."""

    def __init__(self, app: Any, metrics: ServerMetrics, routes: Any) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        record: dict[str, Any] = {"status": None, "kind": None, "first_body": False}
        token = _REQUEST.set(record)
        metrics = self.metrics

        async def counted(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                record["status"] = message["status"]
            elif kind == "websocket.accept":
                record["status"] = 101
            elif kind == "websocket.close" and record["status"] is None:
                record["status"] = 403
            elif (
                kind in ("http.response.body", "websocket.send")
                and not record["first_body"]
                and (message.get("body") or message.get("text") or message.get("bytes"))
            ):
                record["first_body"] = True
                if record["kind"] == "push":
                    metrics.push_latency.observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            _REQUEST.reset(token)
            status = record["status"] if record["status"] is not None else 500
            method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
            metrics.http_requests.labels(endpoint_of(self.routes, scope), method, str(status)).inc()
            if record["kind"] == "pull":
                metrics.pull_queries.labels("success" if status < 400 else "error").inc()
                metrics.pull_latency.observe(time.perf_counter() - started)
            elif record["kind"] == "push":
                metrics.push_queries.inc()
