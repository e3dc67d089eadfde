"""The web console in a real headless Chromium against a real server: statements typed into the
editor and run with Ctrl+Enter, a push query's rows arriving as rows are inserted, stopping it,
an error underlined where the server says it is, and the lineage graph."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx
import orjson
import pytest

from tests.console.conftest import SCREENSHOTS
from tests.server.conftest import RunningServer

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

#: Generous: the machine may be busy; a wait returns as soon as its condition holds.
WAIT = 60
_names = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}{next(_names)}_{int(time.time() * 1000) % 100000}"


def ksql(server: RunningServer, text: str) -> Any:
    r = httpx.post(f"{server.url}/ksql", content=orjson.dumps({"ksql": text, "streamsProperties": {}}), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def open_console(browser: Any, server: RunningServer) -> None:
    browser.get(f"{server.url}/")  # a browser asking for / lands on the console
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    assert browser.current_url == f"{server.url}/console/"


def page_errors(browser: Any) -> list[str]:
    """Errors the page logged since the last call: script errors, CSP refusals, failed loads."""
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def type_and_run(browser: Any, text: str) -> None:
    """Replace the editor's text by typing ``text`` into it, then press Ctrl+Enter."""
    browser.find_element(By.CSS_SELECTOR, ".CodeMirror").click()
    area = browser.find_element(By.CSS_SELECTOR, ".CodeMirror textarea")
    area.send_keys(Keys.CONTROL, "a")
    area.send_keys(Keys.DELETE)
    area.send_keys(text)
    area.send_keys(Keys.CONTROL, Keys.ENTER)


def wait_for(browser: Any, condition: Any, what: str) -> Any:
    return WebDriverWait(browser, WAIT).until(condition, message=f"waiting for {what}")


def run_finished(browser: Any) -> bool:
    return bool(browser.find_element(By.ID, "run").is_enabled())


def push_rows(browser: Any) -> list[list[str]]:
    rows = browser.find_elements(By.CSS_SELECTOR, ".result.push tbody tr")
    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def test_push_query_rows_arrive_and_stop(browser: Any, console_server: RunningServer) -> None:
    open_console(browser, console_server)
    name = fresh("CLICKS")
    type_and_run(browser, f"CREATE STREAM {name} (USER_ID VARCHAR KEY, PAGE VARCHAR, MS INT) "
                          f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1);\n"
                          f"SELECT USER_ID, PAGE, MS FROM {name} EMIT CHANGES;")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".result.push .state.running"), "the push query")
    created = browser.find_elements(By.CSS_SELECTOR, ".result .message")[0].text
    assert created == "Stream created"
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, ".result.push th .col")]
    assert headers == ["USER_ID", "PAGE", "MS"]
    assert push_rows(browser) == []
    # the new stream shows in the catalog sidebar
    wait_for(browser, lambda d: name in d.find_element(By.ID, "catalog-streams").text, "the catalog")

    for i, page in enumerate(["home", "docs", "pricing"]):
        ksql(console_server, f"INSERT INTO {name} (USER_ID, PAGE, MS) VALUES ('u{i}', '{page}', {10 * i});")
    wait_for(browser, lambda d: len(push_rows(d)) == 3, "three rows")
    assert push_rows(browser) == [["u0", "home", "0"], ["u1", "docs", "10"], ["u2", "pricing", "20"]]
    assert browser.find_element(By.CSS_SELECTOR, ".result.push .count").text == "3 rows"
    wait_for(browser, lambda d: "rows/s" in d.find_element(By.CSS_SELECTOR, ".result.push .rate").text, "the rate")
    browser.save_screenshot(str(SCREENSHOTS / "editor-push-query.png"))

    # paused: rows are counted but the table holds still until resumed
    browser.find_element(By.CSS_SELECTOR, ".result.push button.pause").click()
    ksql(console_server, f"INSERT INTO {name} (USER_ID, PAGE, MS) VALUES ('u3', 'blog', 30);")
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".result.push .count").text == "4 rows", "4 rows")
    assert len(push_rows(browser)) == 3
    browser.find_element(By.CSS_SELECTOR, ".result.push button.pause").click()
    assert push_rows(browser)[-1] == ["u3", "blog", "30"]

    assert len(console_server.engine.transient) == 1
    browser.find_element(By.CSS_SELECTOR, ".result.push button.stop").click()
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".result.push .state").text == "ended", "the end")
    # stopping closed the query on the server, not only the page's stream
    wait_for(browser, lambda d: not console_server.engine.transient, "the server to close the query")
    # and the catalog no longer lists it
    wait_for(browser, lambda d: "transient_" not in d.find_element(By.ID, "catalog-queries").text, "the catalog")
    browser.save_screenshot(str(SCREENSHOTS / "editor-stopped.png"))
    assert page_errors(browser) == []


def test_pull_query_and_error_position(browser: Any, console_server: RunningServer) -> None:
    open_console(browser, console_server)
    type_and_run(browser, "SHOW STREAMS;\nCREATE STREEM oops (a INT) WITH (kafka_topic='x');")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".result.error"), "the error")
    error = browser.find_element(By.CSS_SELECTOR, ".result.error .message").text
    assert error.startswith("line 1:8: Syntax Error")
    marks = browser.find_elements(By.CSS_SELECTOR, ".CodeMirror .cm-error-mark")
    assert [m.text for m in marks] == ["STREEM"]
    # the statement before the error ran, and printed as the shell prints it
    assert "Stream Name" in browser.find_element(By.CSS_SELECTOR, ".result table.rows").text
    browser.save_screenshot(str(SCREENSHOTS / "editor-error.png"))

    table = fresh("COUNTS")
    source = fresh("VIEWS")
    ksql(console_server, f"CREATE STREAM {source} (ID VARCHAR KEY, PAGE VARCHAR) "
                         f"WITH (kafka_topic='{source.lower()}', value_format='JSON', partitions=1);")
    for page in ("a", "b", "a"):
        ksql(console_server, f"INSERT INTO {source} (ID, PAGE) VALUES ('x', '{page}');")
    type_and_run(browser, "SET 'auto.offset.reset' = 'earliest';\n"
                          f"CREATE TABLE {table} AS SELECT PAGE, COUNT(*) AS N FROM {source} GROUP BY PAGE;")
    wait_for(browser, run_finished, "the run")
    assert console_server.engine.wait_idle(WAIT)
    type_and_run(browser, f"SELECT PAGE, N FROM {table} WHERE PAGE = 'a';")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".result.pull .state.done"), "the pull query")
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, ".result.pull tbody td")]
    assert cells == ["a", "2"]
    # the failed statement answered 400, which the browser logs; nothing else went wrong
    assert [e for e in page_errors(browser) if "/ksql - Failed to load resource" not in e] == []


def test_lineage_graph(browser: Any, console_server: RunningServer) -> None:
    src, sink, counts = fresh("ORDERS"), fresh("BIG"), fresh("PER_USER")
    ksql(console_server, f"CREATE STREAM {src} (ID VARCHAR KEY, USER_ID VARCHAR, AMOUNT INT) "
                         f"WITH (kafka_topic='{src.lower()}', value_format='JSON', partitions=2);")
    ksql(console_server, f"INSERT INTO {src} (ID, USER_ID, AMOUNT) VALUES ('o1', 'u1', 250);")
    csas = ksql(console_server, f"CREATE STREAM {sink} AS SELECT * FROM {src} WHERE AMOUNT > 100;")
    ctas = ksql(console_server, f"CREATE TABLE {counts} AS SELECT USER_ID, COUNT(*) AS N FROM {src} GROUP BY USER_ID;")
    csas_id = csas[0]["commandStatus"]["queryId"]
    ctas_id = ctas[0]["commandStatus"]["queryId"]

    open_console(browser, console_server)
    browser.find_element(By.ID, "tab-lineage").click()
    node = f"#lineage-graph g.node[data-id='query:{csas_id}']"
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, node), "the lineage graph")
    kinds = {g.get_attribute("data-id"): g.get_attribute("data-kind")
             for g in browser.find_elements(By.CSS_SELECTOR, "#lineage-graph g.node")}
    assert kinds[f"topic:{src.lower()}"] == "topic"
    assert kinds[f"source:{src}"] == "stream" and kinds[f"source:{sink}"] == "stream"
    assert kinds[f"source:{counts}"] == "table"
    assert kinds[f"query:{csas_id}"] == "query" and kinds[f"query:{ctas_id}"] == "query"
    edges = {(p.get_attribute("data-source"), p.get_attribute("data-target"))
             for p in browser.find_elements(By.CSS_SELECTOR, "#lineage-graph path.edge")}
    assert {(f"topic:{src.lower()}", f"source:{src}"), (f"source:{src}", f"query:{csas_id}"),
            (f"query:{csas_id}", f"source:{sink}"), (f"source:{src}", f"query:{ctas_id}"),
            (f"query:{ctas_id}", f"source:{counts}")} <= edges

    # laid out left to right: the source stream left of its query, the query left of its sink
    def left(node_id: str) -> float:
        box = browser.find_element(By.CSS_SELECTOR, f"#lineage-graph g.node[data-id='{node_id}']").rect
        return float(box["x"])

    assert left(f"source:{src}") < left(f"query:{csas_id}") < left(f"source:{sink}")

    browser.find_element(By.CSS_SELECTOR, f"#lineage-graph g.node[data-id='source:{sink}']").click()
    wait_for(browser, lambda d: "Kafka topic" in d.find_element(By.ID, "lineage-detail").text, "DESCRIBE")
    detail = browser.find_element(By.ID, "lineage-detail").text
    assert f"Name : {sink}" in " ".join(detail.split())
    assert f"reads {csas_id}" not in " ".join(detail.split()) and f"writes {csas_id}" in " ".join(detail.split())
    # a query shows its plan (see test_plan), and EXPLAIN a click further
    browser.find_element(By.CSS_SELECTOR, f"#lineage-graph g.node[data-id='query:{csas_id}']").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#lineage-detail #plan-steps"), "the plan")
    browser.find_element(By.CSS_SELECTOR, "#lineage-detail button.link").click()
    wait_for(browser, lambda d: f"ID : {csas_id}" in " ".join(d.find_element(By.ID, "lineage-detail").text.split()),
             "EXPLAIN")
    browser.save_screenshot(str(SCREENSHOTS / "lineage.png"))
    assert page_errors(browser) == []


def test_catalog_describes_and_prints(browser: Any, console_server: RunningServer) -> None:
    name = fresh("EVENTS")
    ksql(console_server, f"CREATE STREAM {name} (ID VARCHAR KEY, V INT) "
                         f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1);")
    for i in range(2):
        ksql(console_server, f"INSERT INTO {name} (ID, V) VALUES ('k{i}', {i});")
    open_console(browser, console_server)

    stream = f"//ul[@id='catalog-streams']/li[text()='{name}']"
    wait_for(browser, lambda d: d.find_elements(By.XPATH, stream), "the catalog")
    browser.find_element(By.XPATH, stream).click()
    wait_for(browser, lambda d: f"DESCRIBE {name};" in d.find_element(By.ID, "results").text, "DESCRIBE")
    fields = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#results table.rows td")]
    assert fields[:4] == ["ID", "VARCHAR(STRING) (key)", "V", "INTEGER"]

    # a topic's click puts a PRINT of it in the editor; Ctrl+Enter runs it
    browser.find_element(By.XPATH, f"//ul[@id='catalog-topics']/li[text()='{name.lower()}']").click()
    area = browser.find_element(By.CSS_SELECTOR, ".CodeMirror textarea")
    area.send_keys(Keys.CONTROL, Keys.ENTER)
    wait_for(browser, lambda d: len(push_rows(d)) == 2, "the topic's two records")
    notes = browser.find_element(By.CSS_SELECTOR, ".result.push .notes").text.split("\n")
    assert notes == ["Key format: KAFKA_STRING", "Value format: JSON or KAFKA_STRING"]
    printed = [cells[0] for cells in push_rows(browser)]
    assert all("key: k" in line and "value: {" in line for line in printed), printed
    assert '"V":1' in printed[1].replace(" ", "")
    browser.find_element(By.CSS_SELECTOR, ".result.push button.stop").click()
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".result.push .state").text == "ended", "the end")
    browser.save_screenshot(str(SCREENSHOTS / "catalog-print.png"))
    assert page_errors(browser) == []
