"""The console's catalog in a real headless Chromium against a real server: the functions from
SHOW FUNCTIONS, filtered and described (DESCRIBE FUNCTION), and the processing log's newest bad
records, read by a pull query over KSQL_PROCESSING_LOG."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from tests.console.conftest import SCREENSHOTS
from tests.console.test_console import fresh, ksql, open_console, page_errors, wait_for
from tests.server.conftest import RunningServer

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By


def test_functions_filtered_and_described(browser: Any, console_server: RunningServer) -> None:
    shown = ksql(console_server, "SHOW FUNCTIONS;")[0]["functions"]
    open_console(browser, console_server)
    items = "#catalog-functions li"
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, items)) == len(shown), "the functions")
    assert browser.find_element(By.ID, "functions-count").text == str(len(shown))

    browser.find_element(By.ID, "functions-filter").send_keys("substr")
    names = [li.get_attribute("data-name") for li in browser.find_elements(By.CSS_SELECTOR, items)]
    assert names == sorted(f["name"] for f in shown if "SUBSTR" in f["name"])
    assert "SUBSTRING" in names
    assert browser.find_element(By.ID, "functions-count").text == f"{len(names)} of {len(shown)}"

    browser.find_element(By.CSS_SELECTOR, f"{items}[data-name='SUBSTRING']").click()
    wait_for(browser, lambda d: "DESCRIBE FUNCTION SUBSTRING;" in d.find_element(By.ID, "results").text, "DESCRIBE")
    text = browser.find_element(By.CSS_SELECTOR, "#results pre.text").text
    lines = [line.strip() for line in text.splitlines()]
    assert "Name        : SUBSTRING" in lines and "Type        : SCALAR" in lines
    assert "Variation   : SUBSTRING(str VARCHAR, pos INT)" in lines
    assert "Variation   : SUBSTRING(str VARCHAR, pos INT, length INT)" in lines
    assert lines.count("Returns     : VARCHAR") == 2
    browser.save_screenshot(str(SCREENSHOTS / "catalog-function.png"))

    # a category filters too: the aggregates
    box = browser.find_element(By.ID, "functions-filter")
    box.clear()
    box.send_keys("aggregate")
    names = [li.get_attribute("data-name") for li in browser.find_elements(By.CSS_SELECTOR, items)]
    assert "SUM" in names and "SUBSTRING" not in names
    assert page_errors(browser) == []


def test_processing_log_newest_bad_records(browser: Any, console_server: RunningServer) -> None:
    src, sink = fresh("READINGS"), fresh("COPY")
    ksql(console_server, f"CREATE STREAM {src} (ID VARCHAR KEY, V INT) "
                         f"WITH (kafka_topic='{src.lower()}', value_format='JSON', partitions=1);")
    created = ksql(console_server, f"CREATE STREAM {sink} AS SELECT * FROM {src};")
    query_id = created[0]["commandStatus"]["queryId"]
    # 22 records that are not JSON, one good one between them; the card keeps the newest 20
    store = console_server.engine.store
    store.produce(src.lower(), pa.table({"key": [b"bad"] * 11, "value": [b"{not json"] * 11}))
    ksql(console_server, f"INSERT INTO {src} (ID, V) VALUES ('ok', 1);")
    store.produce(src.lower(), pa.table({"key": [b"bad"] * 11, "value": [b"[1, 2"] * 11}))
    assert console_server.engine.wait_idle(60)

    open_console(browser, console_server)
    browser.find_element(By.ID, "plog-open").click()
    card = "return document.querySelector('.result.plog') && document.querySelector('.result.plog').dataset.state"
    wait_for(browser, lambda d: d.execute_script(card) == "done", "the processing log")
    assert browser.find_element(By.CSS_SELECTOR, ".result.plog .plog-status").text == "20 newest of 22"
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in browser.find_elements(By.CSS_SELECTOR, ".result.plog tbody tr")]
    assert len(rows) == 20
    assert {(r[1], r[2], r[3], r[4]) for r in rows} == {(query_id, "ERROR", "deserialization", src.lower())}
    # newest first: offsets 22 down to 2 (offset 11 is the good record)
    offsets = [int(r[5].rsplit("offset ", 1)[1]) for r in rows]
    assert offsets == [o for o in range(22, 0, -1) if o != 11][:20]
    assert all(r[6].startswith(f"Failed to deserialize value from topic: {src.lower()}.") for r in rows)
    browser.save_screenshot(str(SCREENSHOTS / "catalog-processing-log.png"))

    # the whole log: the same newest 20
    window = browser.find_element(By.CSS_SELECTOR, ".result.plog select.plog-window")
    assert [o.text for o in window.find_elements(By.TAG_NAME, "option")] == [
        "last hour", "last 24 hours", "last 7 days", "all"]
    window.find_element(By.XPATH, "option[text()='all']").click()
    wait_for(browser, lambda d: d.execute_script(card) == "done"
             and d.find_element(By.CSS_SELECTOR, ".result.plog .plog-status").text == "20 newest of 22", "all")
    assert page_errors(browser) == []
