"""``/metrics``: Prometheus text whose figures move with the work a real server does."""

from __future__ import annotations

import httpx
import orjson
import pyarrow as pa
from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import RunningServer
from tests.server.test_endpoints import EARLIEST, fresh, ksql, make_stream

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: RunningServer) -> Samples:
    r = httpx.get(f"{server.url}/metrics", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


#: the ``ksql_cluster`` label: the service id of the server under test (set by each test)
CLUSTER = {"id": "default_"}


def engine(samples: Samples, attr: str) -> float:
    return value(samples, f"ksql_ksql_engine_query_stats_{attr}", ksql_cluster=CLUSTER["id"])


def per_query(samples: Samples, name: str, query_id: str, **labels: str) -> float:
    return value(samples, f"ksqlpy_query_{name}", ksql_cluster=CLUSTER["id"], ksql_query=query_id, **labels)


def test_engine_and_query_figures_follow_the_work(ksql_server: RunningServer) -> None:
    CLUSTER["id"] = ksql_server.engine.config.service_id
    before = scrape(ksql_server)
    assert engine(before, "liveness_indicator") == 1
    source = make_stream(ksql_server)
    sink = fresh("SINK")
    created = ksql(
        ksql_server,
        f"CREATE STREAM {sink} AS SELECT * FROM {source} WHERE V > 0 EMIT CHANGES;",
        streamsProperties=EARLIEST,
    ).json()[0]
    query_id = created["commandStatus"]["queryId"]
    for i in range(4):  # V=0 is filtered out: 4 read, 3 written
        assert ksql(ksql_server, f"INSERT INTO {source} (ID, V) VALUES ('k{i}', {i});").json() == []
    # A record that is not JSON goes to the processing log and is counted against the query.
    ksql_server.engine.store.produce(source.lower(), pa.table({"key": [b"bad"], "value": [b"{not json"]}))
    assert ksql_server.engine.wait_idle()
    after = scrape(ksql_server)

    assert engine(after, "num_persistent_queries") == engine(before, "num_persistent_queries") + 1
    assert engine(after, "running_queries") == engine(before, "running_queries") + 1
    assert engine(after, "messages_consumed_total") == engine(before, "messages_consumed_total") + 5
    assert engine(after, "bytes_consumed_total") > engine(before, "bytes_consumed_total")
    assert engine(after, "messages_consumed_per_sec") > 0
    assert engine(after, "messages_produced_per_sec") > 0
    assert engine(after, "error_rate") > 0

    status = value(
        after,
        "ksql_ksql_metrics_ksql_queries_query_status",
        ksql_cluster=CLUSTER["id"],
        ksql_query=query_id,
        status="RUNNING",
    )
    assert status == 1
    assert per_query(after, "records_consumed_total", query_id) == 5
    assert per_query(after, "records_produced_total", query_id) == 3
    assert (
        per_query(after, "bytes_consumed_total", query_id)
        > per_query(after, "bytes_produced_total", query_id)
        > 0
    )
    assert per_query(after, "processing_log_records_total", query_id) == 1
    assert per_query(after, "late_records_dropped_total", query_id) == 0
    batches = per_query(after, "batch_latency_seconds_count", query_id)
    assert batches >= 1
    assert per_query(after, "batch_latency_seconds_bucket", query_id, le="+Inf") == batches

    # Terminated, the query leaves the figures.
    assert ksql(ksql_server, f"TERMINATE {query_id};").status_code == 200
    gone = scrape(ksql_server)
    assert engine(gone, "num_persistent_queries") == engine(before, "num_persistent_queries")
    assert (
        "ksqlpy_query_records_consumed_total",
        frozenset({("ksql_cluster", CLUSTER["id"]), ("ksql_query", query_id)}),
    ) not in gone


def test_pull_push_and_http_counts(ksql_server: RunningServer) -> None:
    name = make_stream(ksql_server, rows=2)
    before = scrape(ksql_server)

    push = orjson.dumps({"sql": f"SELECT * FROM {name} EMIT CHANGES LIMIT 2;", "properties": EARLIEST})
    r = httpx.post(f"{ksql_server.url}/query-stream", content=push, timeout=30)
    assert r.status_code == 200 and len(r.content.splitlines()) == 3
    pull = orjson.dumps({"sql": f"SELECT * FROM {name};", "properties": {}})
    r = httpx.post(f"{ksql_server.url}/query-stream", content=pull, timeout=30)
    assert r.status_code == 200 and len(r.content.splitlines()) == 3
    bad = orjson.dumps({"sql": "SELECT * FROM NO_SUCH_STREAM EMIT CHANGES;", "properties": {}})
    assert httpx.post(f"{ksql_server.url}/query-stream", content=bad, timeout=30).status_code == 400
    assert httpx.get(f"{ksql_server.url}/status/stream/nothing/create", timeout=30).status_code == 404

    after = scrape(ksql_server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("ksqlpy_push_query_requests_total") == 1
    assert moved("ksqlpy_push_query_start_latency_seconds_count") == 1
    assert moved("ksqlpy_pull_query_requests_total", outcome="success") == 1
    assert moved("ksqlpy_pull_query_latency_seconds_count") == 1
    assert moved("ksqlpy_http_requests_total", endpoint="/query-stream", method="POST", status="200") == 2
    assert moved("ksqlpy_http_requests_total", endpoint="/query-stream", method="POST", status="400") == 1
    # Paths with ids count under their route's template.
    templated = {"endpoint": "/status/{kind}/{entity}/{action}", "method": "GET", "status": "404"}
    assert moved("ksqlpy_http_requests_total", **templated) == 1
    assert value(after, "ksqlpy_http_requests_total", endpoint="/metrics", method="GET", status="200") >= 1
