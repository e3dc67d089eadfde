"""The Grafana dashboard reads only metrics a real server exports: every metric name in its
queries (panels and template variables) is in the server's ``/metrics`` output."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ksqlpy.server.app import create_app
from tests.server.conftest import ServerThread, open_engine, server_config

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "ksqlpy.json"


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL text of the dashboard: panel targets and query variables."""
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["definition"])
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL text (label matchers, ``by (...)`` and label_values' label left out)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"label_values\(\s*([a-z_:][a-z0-9_:]*)\s*,[^)]*\)", r"\1", expr)
    return set(re.findall(r"\b(ksql[a-z0-9_]*)\b", expr))


def exported(text: str) -> tuple[set[str], set[str]]:
    """(names a query may use, names with samples) of a /metrics text: each family's samples,
    and the series names its type gives a family that has none yet (a labelled counter
    before its first increment)."""
    names: set[str] = set()
    sampled: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        for sample in family.samples:
            names.add(sample.name)
            sampled.add(sample.name)
    return names, sampled


@pytest.fixture(scope="module")
def metrics_text() -> Iterator[str]:
    config = server_config()
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    url = f"http://127.0.0.1:{config.listeners[0].port}"
    try:
        for sql in (
            "CREATE STREAM pv (id VARCHAR KEY, v INT) WITH (kafka_topic='pv', value_format='JSON', partitions=1);",
            "CREATE STREAM pv_big AS SELECT * FROM pv WHERE v > 1;",
            "INSERT INTO pv (id, v) VALUES ('a', 2);",
        ):
            response = httpx.post(f"{url}/ksql", json={"ksql": sql}, timeout=30)
            assert response.status_code == 200, response.text
        yield httpx.get(f"{url}/metrics", timeout=30).text
    finally:
        thread.stop()
        engine.close()


def test_dashboard_is_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"


def test_every_dashboard_metric_is_exported(metrics_text: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(q) for q in queries(dashboard)))
    names, sampled = exported(metrics_text)
    assert len(used) > 20
    assert sorted(used - names) == []
    # the engine and per-query families carry values on a server running a persistent query
    assert {
        "ksql_ksql_engine_query_stats_num_persistent_queries",
        "ksql_ksql_metrics_ksql_queries_query_status",
        "ksqlpy_query_records_consumed_total",
    } <= sampled


def test_metric_names_skip_labels() -> None:
    expr = 'sum by (ksql_query) (rate(ksqlpy_query_records_consumed_total{ksql_cluster=~"$c"}[5m]))'
    assert metric_names(expr) == {"ksqlpy_query_records_consumed_total"}
    assert metric_names("label_values(ksql_x_total, ksql_cluster)") == {"ksql_x_total"}
