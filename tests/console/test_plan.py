"""The lineage view's query plan in a real headless Chromium: a click on a query node shows its
step tree, indented as EXPLAIN prints it, with the records through each step, and the live graph
moves the counts as records arrive."""

from __future__ import annotations

from typing import Any

import pytest

from tests.console.conftest import SCREENSHOTS
from tests.console.test_console import fresh, ksql, open_console, page_errors, wait_for
from tests.server.conftest import RunningServer

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By


def plan_rows(browser: Any) -> list[tuple[str, int, str]]:
    """(operation, depth, records) of each step the plan view shows, top to bottom."""
    # read in one script: the live graph may replace the table between two WebDriver calls
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#lineage-detail #plan-steps tr.plan-step')]"
        ".map((r) => [r.dataset.operation, r.dataset.depth, r.dataset.records]);")
    return [(op, int(depth), records) for op, depth, records in rows]


def insert(server: RunningServer, stream: str, amounts: list[int]) -> None:
    for i, amount in enumerate(amounts):
        ksql(server, f"INSERT INTO {stream} (ID, AMOUNT) VALUES ('o{i}', {amount});")
    assert server.engine.wait_idle(60)


def test_a_query_node_shows_its_plan_with_record_counts(browser: Any, console_server: RunningServer) -> None:
    src, big = fresh("PAYMENTS"), fresh("BIG_PAYMENTS")
    ksql(console_server, f"CREATE STREAM {src} (ID VARCHAR KEY, AMOUNT INT) "
                         f"WITH (kafka_topic='{src.lower()}', value_format='JSON', partitions=1);")
    csas = ksql(console_server, f"CREATE STREAM {big} AS SELECT ID, AMOUNT FROM {src} WHERE AMOUNT > 100;")
    query = csas[0]["commandStatus"]["queryId"]
    insert(console_server, src, [50, 250, 20, 400, 100])  # two of five pass the filter

    open_console(browser, console_server)
    browser.find_element(By.ID, "tab-lineage").click()
    node = f"#lineage-graph g.node[data-id='query:{query}']"
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, node), "the lineage graph")
    browser.find_element(By.CSS_SELECTOR, node).click()
    wait_for(browser, lambda d: plan_rows(d), "the plan")

    # the step tree as EXPLAIN nests it: 5 read, 2 passed the filter, 2 projected, 2 written
    assert plan_rows(browser) == [("SINK", 0, "2"), ("PROJECT", 1, "2"), ("FILTER", 2, "2"), ("SOURCE", 3, "5")]
    cells = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
             for tr in browser.find_elements(By.CSS_SELECTOR, "#plan-steps tr.plan-step")]
    assert cells == [["> [ SINK ]", big, "2"], ["> [ PROJECT ]", "Project", "2"],
                     ["> [ FILTER ]", "WhereFilter", "2"], ["> [ SOURCE ]", "KsqlTopic/Source", "5"]]
    # each step is indented under its parent
    lefts = [float(td.rect["x"]) + float(td.value_of_css_property("padding-left").removesuffix("px"))
             for td in browser.find_elements(By.CSS_SELECTOR, "#plan-steps td.plan-op")]
    assert lefts == sorted(lefts) and len(set(lefts)) == 4
    browser.save_screenshot(str(SCREENSHOTS / "lineage-plan.png"))

    # live: new records move the counts of the plan on screen
    browser.find_element(By.ID, "lineage-live").click()
    insert(console_server, src, [500, 1, 2])
    wait_for(browser, lambda d: plan_rows(d) == [("SINK", 0, "3"), ("PROJECT", 1, "3"), ("FILTER", 2, "3"),
                                                 ("SOURCE", 3, "8")], "the live counts")

    # EXPLAIN is one click away, and stays while the live graph moves
    browser.find_element(By.CSS_SELECTOR, "#lineage-detail button.link").click()
    wait_for(browser, lambda d: f"ID : {query}" in " ".join(d.find_element(By.ID, "lineage-detail").text.split()),
             "EXPLAIN")
    insert(console_server, src, [900])
    wait_for(browser, lambda d: "in 9" in d.find_element(By.CSS_SELECTOR, node).text, "the graph's new count")
    assert f"ID : {query}" in " ".join(browser.find_element(By.ID, "lineage-detail").text.split())
    assert plan_rows(browser) == []
    browser.find_element(By.ID, "lineage-live").click()
    assert page_errors(browser) == []
