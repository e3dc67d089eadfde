"""``GET /lineage`` over real HTTP: topics, streams, tables and queries with their edges and counts."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server.conftest import RunningServer
from tests.server.test_endpoints import fresh, ksql


def lineage(server: RunningServer) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/lineage", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    graph: dict[str, Any] = r.json()
    return graph


def test_lineage_of_a_csas_and_a_ctas(ksql_server: RunningServer) -> None:
    src, long_views, counts = fresh("PV"), fresh("LONG"), fresh("COUNTS")
    topic = src.lower()
    created = ksql(ksql_server, f"CREATE STREAM {src} (ID VARCHAR KEY, PAGE VARCHAR, D INT) "
                                f"WITH (kafka_topic='{topic}', value_format='JSON', partitions=2);")
    assert created.status_code == 200, created.text
    for i, (page, d) in enumerate([("home", 10), ("docs", 40), ("home", 50)]):
        assert ksql(ksql_server, f"INSERT INTO {src} (ID, PAGE, D) VALUES ('u{i}', '{page}', {d});").json() == []
    earliest = {"streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"}}
    csas = ksql(ksql_server, f"CREATE STREAM {long_views} AS SELECT * FROM {src} WHERE D > 30;", **earliest)
    ctas = ksql(ksql_server, f"CREATE TABLE {counts} AS SELECT PAGE, COUNT(*) AS N FROM {src} GROUP BY PAGE;",
                **earliest)
    assert csas.status_code == 200 and ctas.status_code == 200, (csas.text, ctas.text)
    csas_id = csas.json()[0]["commandStatus"]["queryId"]
    ctas_id = ctas.json()[0]["commandStatus"]["queryId"]
    assert ksql_server.engine.wait_idle(60)

    graph = lineage(ksql_server)
    nodes = {n["id"]: n for n in graph["nodes"]}
    edges = {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}

    assert nodes[f"topic:{topic}"] == {"id": f"topic:{topic}", "kind": "topic", "name": topic, "partitions": 2}
    assert nodes[f"source:{src}"]["kind"] == "stream" and nodes[f"source:{src}"]["partitions"] == 2
    assert nodes[f"source:{src}"]["valueFormat"] == "JSON"
    assert nodes[f"source:{long_views}"]["kind"] == "stream"
    assert nodes[f"source:{counts}"]["kind"] == "table"
    sink_topic = nodes[f"source:{counts}"]["topic"]
    assert nodes[f"topic:{sink_topic}"]["kind"] == "topic"
    assert {(q["name"], q["state"]) for q in graph["nodes"] if q["kind"] == "query"} >= {
        (csas_id, "RUNNING"), (ctas_id, "RUNNING")}

    assert (f"topic:{topic}", f"source:{src}", "reads") in edges
    for qid, sink in ((csas_id, long_views), (ctas_id, counts)):
        assert (f"source:{src}", f"query:{qid}", "reads") in edges
        assert (f"query:{qid}", f"source:{sink}", "writes") in edges
        sink_topic = nodes[f"source:{sink}"]["topic"]
        assert (f"source:{sink}", f"topic:{sink_topic}", "writes") in edges
        # a sink's topic is written by it, never read into it
        assert (f"topic:{sink_topic}", f"source:{sink}", "reads") not in edges

    # every record of the source was consumed by both queries; the filter let two of three through
    assert nodes[f"query:{csas_id}"]["recordsIn"] == 3
    assert nodes[f"query:{csas_id}"]["recordsOut"] == 2
    assert nodes[f"query:{ctas_id}"]["recordsIn"] == 3
    assert nodes[f"query:{ctas_id}"]["recordsOut"] >= 2  # one change per page at least
    assert all(e["source"] in nodes and e["target"] in nodes for e in graph["edges"])

    # each query's plan, as EXPLAIN lists it, with the records through each step
    csas_plan = nodes[f"query:{csas_id}"]["plan"]
    assert [(p["operation"], p["type"], p["depth"], p["records"]) for p in csas_plan] == [
        ("SINK", "streamSinkV1", 0, 2), ("PROJECT", "streamSelectV1", 1, 2),
        ("FILTER", "streamFilterV1", 2, 2), ("SOURCE", "streamSourceV1", 3, 3)]
    assert [p["id"] for p in csas_plan] == [long_views, "Project", "WhereFilter", "KsqlTopic/Source"]
    ctas_plan = {p["operation"]: p["records"] for p in nodes[f"query:{ctas_id}"]["plan"]}
    assert ctas_plan["SOURCE"] == 3 and ctas_plan["GROUP_BY"] == 3
    assert ctas_plan["AGGREGATE"] == ctas_plan["SINK"] == nodes[f"query:{ctas_id}"]["recordsOut"]
    assert not any(n["name"].startswith("_") for n in graph["nodes"] if n["kind"] == "topic")

    # a terminated query leaves the graph; its sink stays
    assert ksql(ksql_server, f"TERMINATE {csas_id};").status_code == 200
    after = lineage(ksql_server)
    assert f"query:{csas_id}" not in {n["id"] for n in after["nodes"]}
    assert f"source:{long_views}" in {n["id"] for n in after["nodes"]}


def test_root_sends_browsers_to_the_console(ksql_server: RunningServer) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    r = httpx.get(f"{ksql_server.url}/", headers={"Accept": browser})
    assert r.status_code == 307 and r.headers["location"] == "/console/"
    api = httpx.get(f"{ksql_server.url}/", headers={"Accept": "application/json"})
    assert api.status_code == 307 and api.headers["location"] == "/info"
    assert httpx.get(f"{ksql_server.url}/").headers["location"] == "/info"

    page = httpx.get(f"{ksql_server.url}/console", follow_redirects=True)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>ksqlpy console</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = httpx.get(f"{ksql_server.url}/console/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.get(f"{ksql_server.url}/console/static/nope.js").status_code == 404


def test_lineage_of_a_join(ksql_server: RunningServer) -> None:
    users, orders, enriched = fresh("USERS"), fresh("ORDERS"), fresh("ENRICHED")
    for text in ((f"CREATE TABLE {users} (ID VARCHAR PRIMARY KEY, NAME VARCHAR) "
                  f"WITH (kafka_topic='{users.lower()}', value_format='JSON', partitions=1);"),
                 (f"CREATE STREAM {orders} (ID VARCHAR KEY, USER_ID VARCHAR) "
                  f"WITH (kafka_topic='{orders.lower()}', value_format='JSON', partitions=1);")):
        assert ksql(ksql_server, text).status_code == 200
    csas = ksql(ksql_server, f"CREATE STREAM {enriched} AS SELECT O.USER_ID, O.ID, U.NAME FROM {orders} O "
                             f"JOIN {users} U ON O.USER_ID = U.ID;",
                streamsProperties={"ksql.streams.auto.offset.reset": "earliest"})
    assert csas.status_code == 200, csas.text
    query = f"query:{csas.json()[0]['commandStatus']['queryId']}"
    # the users first, all read before any order comes (a Kafka poll may hand out either topic first)
    for rows in (["INSERT INTO {u} (ID, NAME) VALUES ('u1', 'Ann');", "INSERT INTO {u} (ID, NAME) VALUES ('u2', 'Bo');"],
                 ["INSERT INTO {o} (ID, USER_ID) VALUES ('o1', 'u1');",
                  "INSERT INTO {o} (ID, USER_ID) VALUES ('o2', 'u3');",
                  "INSERT INTO {o} (ID, USER_ID) VALUES ('o3', 'u2');"]):
        for text in rows:
            assert ksql(ksql_server, text.format(u=users, o=orders)).status_code == 200
        assert ksql_server.engine.wait_idle(60)
    graph = lineage(ksql_server)
    plan = next(n for n in graph["nodes"] if n["id"] == query)["plan"]
    # both sources counted: three orders and two users read; two orders found their user
    assert sorted((p["id"], p["records"]) for p in plan if p["operation"] == "SOURCE") == [
        ("KafkaTopic_Left/Source", 3), ("KafkaTopic_Right/Source", 2)]
    assert {p["operation"]: p["records"] for p in plan if p["depth"] < 3} == {"SINK": 2, "PROJECT": 2, "JOIN": 2}
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    # the join query reads both of its sources, not the join's result
    assert {(f"source:{orders}", query), (f"source:{users}", query), (query, f"source:{enriched}")} <= edges
    assert {s for s, t in edges if t == query} == {f"source:{orders}", f"source:{users}"}
