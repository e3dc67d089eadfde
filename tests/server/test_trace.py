"""``POST /trace`` over real HTTP: a key's records followed through a filter (CSAS) and a GROUP BY
(CTAS) downstream, a time range, and bad requests answered 400."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.server.conftest import RunningServer
from tests.server.test_endpoints import fresh, ksql


def post_trace(server: RunningServer, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(f"{server.url}/trace", content=content, headers={"Content-Type": "application/json"},
                      timeout=60)


def traced(server: RunningServer, body: Any) -> dict[str, Any]:
    r = post_trace(server, body)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def make_chain(server: RunningServer) -> tuple[str, str, str, str, str]:
    """ORDERS -> (WHERE AMOUNT > 100) BIG -> (GROUP BY USER_ID) TOTALS, with four orders."""
    src, big, totals = fresh("ORDERS"), fresh("BIG"), fresh("TOTALS")
    created = ksql(server, f"CREATE STREAM {src} (ID VARCHAR KEY, USER_ID VARCHAR, AMOUNT INT) "
                           f"WITH (kafka_topic='{src.lower()}', value_format='JSON', partitions=2);")
    assert created.status_code == 200, created.text
    for oid, user, amount in [("o1", "u1", 250), ("o2", "u1", 50), ("o3", "u2", 500), ("o1", "u1", 300)]:
        inserted = ksql(server, f"INSERT INTO {src} (ID, USER_ID, AMOUNT) VALUES ('{oid}', '{user}', {amount});")
        assert inserted.json() == []
    earliest = {"streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"}}
    csas = ksql(server, f"CREATE STREAM {big} AS SELECT * FROM {src} WHERE AMOUNT > 100;", **earliest)
    ctas = ksql(server, f"CREATE TABLE {totals} AS SELECT USER_ID, SUM(AMOUNT) AS TOTAL FROM {big} "
                        "GROUP BY USER_ID;", **earliest)
    assert csas.status_code == 200 and ctas.status_code == 200, (csas.text, ctas.text)
    assert server.engine.wait_idle(60)
    return (src, big, totals, csas.json()[0]["commandStatus"]["queryId"],
            ctas.json()[0]["commandStatus"]["queryId"])


def test_trace_through_a_filter_and_a_group_by(ksql_server: RunningServer) -> None:
    src, big, totals, csas_id, ctas_id = make_chain(ksql_server)
    answer = traced(ksql_server, {"source": src.lower(), "key": "o1"})

    assert answer["source"] == src and answer["key"] == "o1"
    hops = {h["source"]: h for h in answer["hops"]}
    assert list(hops) == [src, big, totals]
    assert hops[src]["query"] is None and hops[src]["records"] == 2
    assert (hops[big]["query"], hops[big]["upstream"], hops[big]["keys"]) == (csas_id, src, [["o1"]])
    # GROUP BY USER_ID: the traced orders' USER_ID is the key downstream
    assert (hops[totals]["query"], hops[totals]["upstream"], hops[totals]["keys"]) == (ctas_id, big, [["u1"]])
    assert hops[totals]["kind"] == "table"
    assert answer["notFollowed"] == [] and answer["truncated"] is False

    records = answer["records"]
    times = [r["rowtime"] for r in records]
    assert times == sorted(times)
    by_source: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_source.setdefault(r["source"], []).append(r)
    orders = by_source[src]
    assert [(r["key"], r["value"]) for r in orders] == [
        ({"ID": "o1"}, {"USER_ID": "u1", "AMOUNT": 250}), ({"ID": "o1"}, {"USER_ID": "u1", "AMOUNT": 300})]
    assert all(r["query"] is None and r["topic"] == src.lower() for r in orders)
    # both orders pass the filter and keep their key and time; o2 (u1, 50) and o3 are not traced
    assert [(r["key"], r["value"]["AMOUNT"], r["rowtime"], r["query"]) for r in by_source[big]] == [
        ({"ID": "o1"}, 250, orders[0]["rowtime"], csas_id), ({"ID": "o1"}, 300, orders[1]["rowtime"], csas_id)]
    sums = by_source[totals]
    assert {r["query"] for r in sums} == {ctas_id}
    assert {tuple(r["key"].items()) for r in sums} == {(("USER_ID", "u1"),)}
    assert sums[-1]["value"] == {"TOTAL": 550}
    assert all(r["rowtime"] >= orders[0]["rowtime"] for r in sums)

    # a time range: only the second order, and what came of it
    later = traced(ksql_server, {"source": src, "key": "o1", "from": orders[1]["rowtime"]})
    assert [r["value"]["AMOUNT"] for r in later["records"] if r["source"] in (src, big)] == [300, 300]
    assert all(r["rowtime"] >= orders[1]["rowtime"] for r in later["records"])

    # a key the filter drops: found in the source, nowhere downstream
    small = traced(ksql_server, {"source": src, "key": "o2"})
    assert [r["source"] for r in small["records"]] == [src]
    assert [(h["source"], h["records"]) for h in small["hops"]] == [(src, 1), (big, 0)]

    # an unknown key: nothing at all
    assert traced(ksql_server, {"source": src, "key": "nope"})["records"] == []


def test_trace_bad_requests(ksql_server: RunningServer) -> None:
    src = fresh("KEYLESS")
    assert ksql(ksql_server, f"CREATE STREAM {src} (V INT) WITH (kafka_topic='{src.lower()}', "
                             "value_format='JSON', partitions=1);").status_code == 200
    cases = [
        ({"source": "NO_SUCH_STREAM", "key": "a"}, "NO_SUCH_STREAM does not exist."),
        ({"key": "a"}, "Trace needs 'source'"),
        ({"source": src}, "Trace needs 'key'"),
        ({"source": src, "key": "a", "from": "yesterday"}, "Trace 'from' must be a ROWTIME"),
        ({"source": src, "key": "a", "to": 2**63}, "Trace 'to' must be a ROWTIME"),
        ({"source": src, "key": "a"}, f"{src} has no key columns"),
        (b"{not json", "Invalid JSON in request"),
    ]
    for body, message in cases:
        r = post_trace(ksql_server, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error_code"] == 40000 and r.json()["message"].startswith(message), r.text


def test_trace_through_partition_by(ksql_server: RunningServer) -> None:
    src, by_user = fresh("ORDERS"), fresh("BY_USER")
    assert ksql(ksql_server, f"CREATE STREAM {src} (ID VARCHAR KEY, USER_ID VARCHAR, AMOUNT INT) "
                             f"WITH (kafka_topic='{src.lower()}', value_format='JSON', partitions=1);"
                ).status_code == 200
    for oid, user, amount in [("o1", "u1", 250), ("o2", "u1", 50), ("o1", "u1", 300)]:
        assert ksql(ksql_server, f"INSERT INTO {src} (ID, USER_ID, AMOUNT) VALUES ('{oid}', '{user}', {amount});"
                    ).json() == []
    csas = ksql(ksql_server, f"CREATE STREAM {by_user} AS SELECT UCASE(USER_ID) AS UID, ID, AMOUNT FROM {src} "
                             "PARTITION BY UCASE(USER_ID);",
                streamsProperties={"ksql.streams.auto.offset.reset": "earliest"})
    assert csas.status_code == 200, csas.text
    assert ksql_server.engine.wait_idle(60)

    answer = traced(ksql_server, {"source": src, "key": "o1"})
    # the new key is the traced orders' UCASE(USER_ID); o2 shares it but is not one of them
    assert [(h["source"], h["keys"], h["records"]) for h in answer["hops"]] == [
        (src, [["o1"]], 2), (by_user, [["U1"]], 2)]
    moved = [r for r in answer["records"] if r["source"] == by_user]
    assert [(r["key"], r["value"]) for r in moved] == [({"UID": "U1"}, {"ID": "o1", "AMOUNT": 250}),
                                                        ({"UID": "U1"}, {"ID": "o1", "AMOUNT": 300})]


def make_joins(server: RunningServer) -> dict[str, str]:
    """ORDERS joined with the USERS table (stream-table), with SHIPMENTS (stream-stream), a total
    per region over the stream-table join, and ITEMS joined with USERS by foreign key."""
    n = {name: fresh(name) for name in ("USERS", "ORDERS", "SHIPMENTS", "ITEMS", "ENRICHED", "SHIPPED",
                                        "BY_REGION", "OWNED")}
    for text in (
        (f"CREATE TABLE {n['USERS']} (ID VARCHAR PRIMARY KEY, NAME VARCHAR, REGION VARCHAR) "
         f"WITH (kafka_topic='{n['USERS'].lower()}', value_format='JSON', partitions=1);"),
        (f"CREATE STREAM {n['ORDERS']} (ID VARCHAR KEY, USER_ID VARCHAR, AMOUNT INT) "
         f"WITH (kafka_topic='{n['ORDERS'].lower()}', value_format='JSON', partitions=1);"),
        (f"CREATE STREAM {n['SHIPMENTS']} (ID VARCHAR KEY, ORDER_ID VARCHAR, CARRIER VARCHAR) "
         f"WITH (kafka_topic='{n['SHIPMENTS'].lower()}', value_format='JSON', partitions=1);"),
        (f"CREATE TABLE {n['ITEMS']} (ID VARCHAR PRIMARY KEY, USER_ID VARCHAR, TITLE VARCHAR) "
         f"WITH (kafka_topic='{n['ITEMS'].lower()}', value_format='JSON', partitions=1);"),
        f"INSERT INTO {n['USERS']} (ID, NAME, REGION) VALUES ('u1', 'Ann', 'eu');",
        f"INSERT INTO {n['USERS']} (ID, NAME, REGION) VALUES ('u2', 'Bob', 'us');",
        f"INSERT INTO {n['ITEMS']} (ID, USER_ID, TITLE) VALUES ('i1', 'u1', 'lamp');",
        f"INSERT INTO {n['ITEMS']} (ID, USER_ID, TITLE) VALUES ('i2', 'u2', 'desk');",
        f"INSERT INTO {n['ORDERS']} (ID, USER_ID, AMOUNT) VALUES ('o1', 'u1', 250);",
        f"INSERT INTO {n['ORDERS']} (ID, USER_ID, AMOUNT) VALUES ('o2', 'u2', 50);",
        f"INSERT INTO {n['ORDERS']} (ID, USER_ID, AMOUNT) VALUES ('o3', 'u1', 70);",
        f"INSERT INTO {n['SHIPMENTS']} (ID, ORDER_ID, CARRIER) VALUES ('s1', 'o1', 'ups');",
    ):
        assert ksql(server, text).status_code == 200
    earliest = {"streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"}}
    for text in (
        (f"CREATE STREAM {n['ENRICHED']} AS SELECT O.ID, O.USER_ID, U.NAME, O.AMOUNT "
         f"FROM {n['ORDERS']} O JOIN {n['USERS']} U ON O.USER_ID = U.ID;"),
        (f"CREATE STREAM {n['SHIPPED']} AS SELECT O.ID, O.AMOUNT, S.CARRIER "
         f"FROM {n['ORDERS']} O JOIN {n['SHIPMENTS']} S WITHIN 1 HOUR ON O.ID = S.ORDER_ID;"),
        (f"CREATE TABLE {n['BY_REGION']} AS SELECT U.REGION, SUM(O.AMOUNT) AS TOTAL "
         f"FROM {n['ORDERS']} O JOIN {n['USERS']} U ON O.USER_ID = U.ID GROUP BY U.REGION;"),
        (f"CREATE TABLE {n['OWNED']} AS SELECT I.ID, I.TITLE, U.NAME "
         f"FROM {n['ITEMS']} I JOIN {n['USERS']} U ON I.USER_ID = U.ID;"),
    ):
        r = ksql(server, text, **earliest)
        assert r.status_code == 200, r.text
        n[text.split()[2] + "_ID"] = r.json()[0]["commandStatus"]["queryId"]
    assert server.engine.wait_idle(60)
    return n


def by_hop(answer: dict[str, Any]) -> dict[str, list[tuple[Any, Any]]]:
    out: dict[str, list[tuple[Any, Any]]] = {h["source"]: [] for h in answer["hops"]}
    for r in answer["records"]:
        out[r["source"]].append((r["key"], r["value"]))
    return out


def test_trace_through_joins(ksql_server: RunningServer) -> None:
    n = make_joins(ksql_server)
    orders, users, enriched, shipped = n["ORDERS"], n["USERS"], n["ENRICHED"], n["SHIPPED"]

    # from the stream side: the order's own join result (not o3, the same user's other order),
    # keyed by the join key, and the shipment it joined within the window
    answer = traced(ksql_server, {"source": orders, "key": "o1"})
    hops = {h["source"]: h for h in answer["hops"]}
    assert list(hops) == [orders, enriched, shipped]
    assert (hops[enriched]["query"], hops[enriched]["upstream"], hops[enriched]["keys"]) == (
        n[f"{enriched}_ID"], orders, [["u1"]])
    assert hops[shipped]["keys"] == [["o1"]]
    assert (hops[orders]["joinedWith"], hops[enriched]["joinedWith"], hops[shipped]["joinedWith"]) == (
        [], [users], [n["SHIPMENTS"]])
    found = by_hop(answer)
    assert found[enriched] == [({"USER_ID": "u1"}, {"O_ID": "o1", "NAME": "Ann", "AMOUNT": 250})]
    assert found[shipped] == [({"O_ID": "o1"}, {"AMOUNT": 250, "CARRIER": "ups"})]
    # the join result keeps the order's ROWTIME
    times = {r["source"]: r["rowtime"] for r in answer["records"]}
    assert times[enriched] == times[orders]
    # GROUP BY U.REGION needs the user's columns, which an order does not carry
    assert [(f["query"], f["sink"]) for f in answer["notFollowed"]] == [(n[f"{n['BY_REGION']}_ID"], n["BY_REGION"])]
    assert "other side (U_REGION)" in answer["notFollowed"][0]["reason"]

    # from the table side: every order of the user joined after it, the region's total (GROUP BY
    # a column of the traced side), and by foreign key the items that reference the user
    answer = traced(ksql_server, {"source": users, "key": "u1"})
    hops = {h["source"]: h for h in answer["hops"]}
    assert set(hops) == {users, enriched, n["BY_REGION"], n["OWNED"]}
    assert answer["notFollowed"] == []
    found = by_hop(answer)
    assert [v["O_ID"] for _, v in found[enriched]] == ["o1", "o3"]
    assert hops[n["BY_REGION"]]["keys"] == [["eu"]]
    assert found[n["BY_REGION"]][-1] == ({"REGION": "eu"}, {"TOTAL": 320})
    assert hops[n["OWNED"]]["keys"] == [["i1"]]
    assert found[n["OWNED"]] == [({"I_ID": "i1"}, {"TITLE": "lamp", "NAME": "Ann"})]

    # from the other stream of the stream-stream join, and from the left table of the foreign-key join
    answer = traced(ksql_server, {"source": n["SHIPMENTS"], "key": "s1"})
    assert by_hop(answer)[shipped] == [({"O_ID": "o1"}, {"AMOUNT": 250, "CARRIER": "ups"})]
    answer = traced(ksql_server, {"source": n["ITEMS"], "key": "i2"})
    assert by_hop(answer)[n["OWNED"]] == [({"I_ID": "i2"}, {"TITLE": "desk", "NAME": "Bob"})]


def test_trace_through_a_table_table_join_and_not_a_rekeyed_one(ksql_server: RunningServer) -> None:
    users, prefs, regions, orders = fresh("USERS"), fresh("PREFS"), fresh("REGIONS"), fresh("ORDERS")
    profile, labelled = fresh("PROFILE"), fresh("LABELLED")
    for text in (
        (f"CREATE TABLE {users} (ID VARCHAR PRIMARY KEY, NAME VARCHAR, REGION VARCHAR) "
         f"WITH (kafka_topic='{users.lower()}', value_format='JSON', partitions=1);"),
        (f"CREATE TABLE {prefs} (ID VARCHAR PRIMARY KEY, LANG VARCHAR) "
         f"WITH (kafka_topic='{prefs.lower()}', value_format='JSON', partitions=1);"),
        (f"CREATE TABLE {regions} (CODE VARCHAR PRIMARY KEY, LABEL VARCHAR) "
         f"WITH (kafka_topic='{regions.lower()}', value_format='JSON', partitions=1);"),
        (f"CREATE STREAM {orders} (ID VARCHAR KEY, USER_ID VARCHAR) "
         f"WITH (kafka_topic='{orders.lower()}', value_format='JSON', partitions=1);"),
        f"INSERT INTO {users} (ID, NAME, REGION) VALUES ('u1', 'Ann', 'eu');",
        f"INSERT INTO {users} (ID, NAME, REGION) VALUES ('u2', 'Bob', 'us');",
        f"INSERT INTO {prefs} (ID, LANG) VALUES ('u1', 'de');",
        f"INSERT INTO {prefs} (ID, LANG) VALUES ('u2', 'en');",
        f"INSERT INTO {regions} (CODE, LABEL) VALUES ('eu', 'Europe');",
        f"INSERT INTO {orders} (ID, USER_ID) VALUES ('o1', 'u1');",
    ):
        assert ksql(ksql_server, text).status_code == 200
    earliest = {"streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"}}
    ctas = ksql(ksql_server, f"CREATE TABLE {profile} AS SELECT U.ID, U.NAME, P.LANG FROM {users} U "
                             f"JOIN {prefs} P ON U.ID = P.ID;", **earliest)
    # the second join is on a column of the first one's result: it is re-keyed in between
    csas = ksql(ksql_server, f"CREATE STREAM {labelled} AS SELECT U.REGION, O.ID AS OID, R.LABEL FROM {orders} O "
                             f"JOIN {users} U ON O.USER_ID = U.ID JOIN {regions} R ON U.REGION = R.CODE;",
                **earliest)
    assert ctas.status_code == 200 and csas.status_code == 200, (ctas.text, csas.text)
    rekeyed_id = csas.json()[0]["commandStatus"]["queryId"]
    assert ksql_server.engine.wait_idle(60)

    # either table of the table-table join reaches the joined row of its key, and no other
    for source in (users, prefs):
        answer = traced(ksql_server, {"source": source, "key": "u1"})
        assert by_hop(answer)[profile] == [({"U_ID": "u1"}, {"NAME": "Ann", "LANG": "de"})]
    assert [(f["query"], f["sink"]) for f in answer["notFollowed"]] == []
    answer = traced(ksql_server, {"source": users, "key": "u1"})
    assert [(f["query"], f["sink"]) for f in answer["notFollowed"]] == [(rekeyed_id, labelled)]
    assert "re-keyed" in answer["notFollowed"][0]["reason"]
    # the last join's own input is followed: its key is the join key
    answer = traced(ksql_server, {"source": regions, "key": "eu"})
    assert by_hop(answer)[labelled] == [({"REGION": "eu"}, {"OID": "o1", "LABEL": "Europe"})]
