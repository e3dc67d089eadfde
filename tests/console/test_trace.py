"""The console's Trace view in a real headless Chromium against a real server: a key traced
through a filter (CSAS) and a GROUP BY (CTAS), shown hop by hop and in time order, and a bad
source answered with the server's message."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.console.conftest import SCREENSHOTS
from tests.console.test_console import fresh, ksql, open_console, page_errors, wait_for
from tests.server.conftest import RunningServer

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By


def cells(node: Any) -> list[list[str]]:
    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in node.find_elements(By.CSS_SELECTOR, "tbody tr")]


def submit_trace(browser: Any, source: str, key: str) -> None:
    for field, value in (("trace-source", source), ("trace-key", key)):
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    browser.find_element(By.ID, "trace-run").click()


def test_trace_a_key_downstream(browser: Any, console_server: RunningServer) -> None:
    src, big, totals = fresh("ORDERS"), fresh("BIG"), fresh("TOTALS")
    ksql(console_server, f"CREATE STREAM {src} (ID VARCHAR KEY, USER_ID VARCHAR, AMOUNT INT) "
                         f"WITH (kafka_topic='{src.lower()}', value_format='JSON', partitions=2);")
    for oid, user, amount in [("o1", "u1", 250), ("o2", "u1", 50), ("o3", "u2", 500), ("o1", "u1", 300)]:
        ksql(console_server, f"INSERT INTO {src} (ID, USER_ID, AMOUNT) VALUES ('{oid}', '{user}', {amount});")
    for text in (f"CREATE STREAM {big} AS SELECT * FROM {src} WHERE AMOUNT > 100;",
                 f"CREATE TABLE {totals} AS SELECT USER_ID, SUM(AMOUNT) AS TOTAL FROM {big} GROUP BY USER_ID;"):
        r = httpx.post(f"{console_server.url}/ksql", timeout=30, content=orjson.dumps(
            {"ksql": text, "streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"}}))
        assert r.status_code == 200, r.text
    assert console_server.engine.wait_idle(60)

    open_console(browser, console_server)
    browser.find_element(By.ID, "tab-trace").click()
    # on the trace view, a stream's click in the catalog picks it to trace
    stream = f"//ul[@id='catalog-streams']/li[text()='{src}']"
    wait_for(browser, lambda d: d.find_elements(By.XPATH, stream), "the catalog")
    browser.find_element(By.XPATH, stream).click()
    assert browser.find_element(By.ID, "trace-source").get_attribute("value") == src
    browser.find_element(By.ID, "trace-key").send_keys("o1")
    browser.find_element(By.ID, "trace-run").click()
    output = "return document.getElementById('trace-output').dataset.state"
    wait_for(browser, lambda d: d.execute_script(output) == "done", "the trace")

    hops = browser.find_elements(By.CSS_SELECTOR, "#trace-output .trace-hop")
    assert [h.get_attribute("data-source") for h in hops] == [src, big, totals]
    assert hops[0].get_attribute("data-query") == ""
    assert hops[1].get_attribute("data-query").startswith("CSAS_")
    assert hops[2].get_attribute("data-query").startswith("CTAS_")
    assert f"from {big}" in hops[2].find_element(By.CSS_SELECTOR, ".hop-head").text
    # the source's two orders with key o1, both through the filter, then the user's running total
    assert [row[-2:] for row in cells(hops[0])] == [["ID=o1", "USER_ID=u1, AMOUNT=250"],
                                                  ["ID=o1", "USER_ID=u1, AMOUNT=300"]]
    assert [row[-2:] for row in cells(hops[1])] == [["ID=o1", "USER_ID=u1, AMOUNT=250"],
                                                  ["ID=o1", "USER_ID=u1, AMOUNT=300"]]
    totals_rows = cells(hops[2])
    assert {row[-2] for row in totals_rows} == {"USER_ID=u1"}
    assert totals_rows[-1][-1] == "TOTAL=550"
    assert "searched for key u1" in hops[2].text

    timeline = cells(browser.find_element(By.CSS_SELECTOR, "#trace-output .trace-timeline"))
    assert len(timeline) == 4 + len(totals_rows)
    times = [row[0] for row in timeline]
    assert times == sorted(times)  # ISO text sorts as time does
    assert [row[1] for row in timeline if row[1] != totals] == [src.lower(), big, src.lower(), big]
    status = browser.find_element(By.ID, "trace-status").text
    assert status == f"{len(timeline)} records in 3 of 3 topics"
    browser.save_screenshot(str(SCREENSHOTS / "trace.png"))

    # a key the filter drops stops at the source
    submit_trace(browser, src, "o2")
    wait_for(browser, lambda d: "1 record in 1 of 2 topics" == d.find_element(By.ID, "trace-status").text,
             "the second trace")
    hops = browser.find_elements(By.CSS_SELECTOR, "#trace-output .trace-hop")
    assert [h.get_attribute("data-source") for h in hops] == [src, big]
    assert hops[1].find_element(By.CSS_SELECTOR, ".muted:last-child").text == "no records"
    browser.save_screenshot(str(SCREENSHOTS / "trace-filtered.png"))

    submit_trace(browser, "NO_SUCH_STREAM", "o1")
    wait_for(browser, lambda d: d.execute_script(output) == "error", "the error")
    message = browser.find_element(By.CSS_SELECTOR, "#trace-output .result.error .message").text
    assert message == "NO_SUCH_STREAM does not exist. Trace a stream or table that SHOW STREAMS or SHOW TABLES lists."
    browser.save_screenshot(str(SCREENSHOTS / "trace-error.png"))
    # the 400 is logged by the browser; nothing else went wrong
    assert [e for e in page_errors(browser) if "/trace - Failed to load resource" not in e] == []


def test_trace_through_a_join(browser: Any, console_server: RunningServer) -> None:
    users, orders, enriched = fresh("USERS"), fresh("ORDERS"), fresh("ENRICHED")
    ksql(console_server, f"CREATE TABLE {users} (ID VARCHAR PRIMARY KEY, NAME VARCHAR) "
                         f"WITH (kafka_topic='{users.lower()}', value_format='JSON', partitions=1);")
    ksql(console_server, f"CREATE STREAM {orders} (ID VARCHAR KEY, USER_ID VARCHAR, AMOUNT INT) "
                         f"WITH (kafka_topic='{orders.lower()}', value_format='JSON', partitions=1);")
    for user, name in (("u1", "Ann"), ("u2", "Bob")):
        ksql(console_server, f"INSERT INTO {users} (ID, NAME) VALUES ('{user}', '{name}');")
    for oid, user, amount in [("o1", "u1", 250), ("o2", "u2", 50), ("o3", "u1", 70)]:
        ksql(console_server, f"INSERT INTO {orders} (ID, USER_ID, AMOUNT) VALUES ('{oid}', '{user}', {amount});")
    r = httpx.post(f"{console_server.url}/ksql", timeout=30, content=orjson.dumps(
        {"ksql": f"CREATE STREAM {enriched} AS SELECT O.USER_ID, O.ID AS ORDER_ID, U.NAME, O.AMOUNT "
                 f"FROM {orders} O JOIN {users} U ON O.USER_ID = U.ID;",
         "streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"}}))
    assert r.status_code == 200, r.text
    join_id = r.json()[0]["commandStatus"]["queryId"]
    assert console_server.engine.wait_idle(60)

    open_console(browser, console_server)
    browser.find_element(By.ID, "tab-trace").click()
    output = "return document.getElementById('trace-output').dataset.state"
    # from the table side: every order of the user that joined it
    submit_trace(browser, users, "u1")
    wait_for(browser, lambda d: d.execute_script(output) == "done"
             and d.find_elements(By.CSS_SELECTOR, f"#trace-output .trace-hop[data-source='{users}']"), "the trace")
    hops = browser.find_elements(By.CSS_SELECTOR, "#trace-output .trace-hop")
    assert [(h.get_attribute("data-source"), h.get_attribute("data-query")) for h in hops] == [
        (users, ""), (enriched, join_id)]
    assert hops[1].find_element(By.CSS_SELECTOR, ".hop-head").text.endswith(
        f"written by {join_id} from {users} joined with {orders}")
    assert "searched for key u1" in hops[1].text
    assert [row[-2:] for row in cells(hops[1])] == [["USER_ID=u1", "ORDER_ID=o1, NAME=Ann, AMOUNT=250"],
                                                  ["USER_ID=u1", "ORDER_ID=o3, NAME=Ann, AMOUNT=70"]]
    assert browser.find_element(By.ID, "trace-status").text == "3 records in 2 of 2 topics"
    browser.save_screenshot(str(SCREENSHOTS / "trace-join-table-side.png"))

    # from the stream side: the order's own result, under the join key
    submit_trace(browser, orders, "o3")
    wait_for(browser, lambda d: d.find_element(By.ID, "trace-status").text == "2 records in 2 of 2 topics",
             "the second trace")
    hops = browser.find_elements(By.CSS_SELECTOR, "#trace-output .trace-hop")
    assert [h.get_attribute("data-source") for h in hops] == [orders, enriched]
    assert [row[-2:] for row in cells(hops[1])] == [["USER_ID=u1", "ORDER_ID=o3, NAME=Ann, AMOUNT=70"]]
    assert browser.find_elements(By.CSS_SELECTOR, "#trace-output .not-followed") == []
    assert page_errors(browser) == []
