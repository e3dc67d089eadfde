"""The console under load: 20 push queries open in one page while the test inserts about 10 000
records/s through ``/inserts-stream`` for a few seconds. The page is served over https, as it must
be for that many: a browser opens at most 6 HTTP/1.1 connections to a server and each running
push query holds one, while over TLS it speaks HTTP/2 and multiplexes them on one connection. Every query gets every row, each table
keeps only its newest rows, and the page answers scripts meanwhile. How long the page took to
draw each frame of rows (``window.__renderTimes``: DOM update through style, layout and paint)
is printed, median and p99; speed is reported, never asserted."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from ksqlpy.server.app import create_app
from tests.console.conftest import SCREENSHOTS
from tests.console.test_console import fresh, open_console, page_errors, run_finished, type_and_run, wait_for
from tests.server.certs import PASSWORD, Pki, make_pki
from tests.server.conftest import RunningServer, ServerThread, free_port, open_engine, server_config

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

QUERIES = 20
RATE = 10_000  # records/s asked of the inserter
SECONDS = 3.0
BATCH = 500  # records per /inserts-stream request
PUSH_ROWS = 2000 // QUERIES  # results.js: the running push queries share 2000 rows of tables
#: Generous: 20 queries * 30 000 rows go to the page on a machine shared with others.
DELIVERY_WAIT = 180


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_server(pki: Pki) -> Iterator[RunningServer]:
    port = free_port()
    config = server_config(**{"listeners": f"https://127.0.0.1:{port}", "ssl.keystore.location": pki.server_p12(),
                              "ssl.keystore.password": PASSWORD, "ssl.key.password": PASSWORD,
                              "ssl.keystore.type": "PKCS12"})
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    try:
        yield RunningServer(url=f"https://127.0.0.1:{port}", port=port, engine=engine)
    finally:
        thread.stop()
        engine.close()


def insert_load(server: RunningServer, verify: Any, stream: str, sent: list[int]) -> None:
    """``RATE`` records/s for ``SECONDS``, ``BATCH`` to a request; ``sent`` gets the acked count."""
    interval = BATCH / RATE
    start = time.monotonic()
    n = 0
    with httpx.Client(http1=False, http2=True, timeout=60, verify=verify) as client:
        while time.monotonic() - start < SECONDS:
            rows = b"".join(orjson.dumps({"ID": f"k{(n + i) % 97}", "N": n + i}) + b"\n" for i in range(BATCH))
            r = client.post(f"{server.url}/inserts-stream", content=orjson.dumps({"target": stream}) + b"\n" + rows)
            assert r.status_code == 200, r.text
            acks = r.content.splitlines()
            assert len(acks) == BATCH and all(b'"ok"' in a for a in acks), r.text[:300]
            n += BATCH
            sent[0] = n
            # paced: the next batch is due at its share of the second, unless the server is behind
            delay = start + n / RATE - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, interval))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def test_twenty_push_queries_under_load(browser: Any, https_server: RunningServer, pki: Pki) -> None:
    console_server = https_server
    verify = pki.client_context()
    name = fresh("LOAD")
    created = httpx.post(f"{console_server.url}/ksql", verify=verify, timeout=30, content=orjson.dumps(
        {"ksql": f"CREATE STREAM {name} (ID VARCHAR KEY, N INT) "
                 f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1);"}))
    assert created.status_code == 200, created.text
    open_console(browser, console_server)
    type_and_run(browser, "\n".join(f"SELECT ID, N, {i} AS Q FROM {name} EMIT CHANGES;" for i in range(QUERIES)))
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result.push .state.running")) == QUERIES,
             f"{QUERIES} push queries")
    browser.execute_script("window.__renderTimes.length = 0;")

    sent = [0]
    started = time.monotonic()
    inserter = threading.Thread(target=insert_load, args=(console_server, verify, name, sent), daemon=True)
    inserter.start()
    # While rows flow the page still runs scripts: each round trip is answered between frames.
    round_trips = []
    while inserter.is_alive():
        t0 = time.monotonic()
        browser.execute_script("return document.querySelectorAll('.result.push').length")
        round_trips.append((time.monotonic() - t0) * 1000)
        time.sleep(0.2)
    inserter.join()
    insert_seconds = time.monotonic() - started
    total = sent[0]
    assert total >= BATCH

    counts = "return [...document.querySelectorAll('.result.push .count')].map((e) => e.textContent)"
    expected = [f"{total} rows"] * QUERIES
    WebDriverWait(browser, DELIVERY_WAIT).until(lambda d: d.execute_script(counts) == expected,
                                                message="every push query to get every row")
    delivered_seconds = time.monotonic() - started

    # Each table keeps its newest rows only, the last one inserted at the bottom. A card out of
    # sight draws its rows when scrolled back into view.
    table = ("const b = arguments[0].querySelector('tbody'); "
             "return [b.childElementCount, b.lastElementChild && b.lastElementChild.children[1].textContent]")
    for card in browser.find_elements(By.CSS_SELECTOR, ".result.push"):
        browser.execute_script("arguments[0].scrollIntoView()", card)
        wait_for(browser, lambda d, c=card: d.execute_script(table, c) == [min(total, PUSH_ROWS), str(total - 1)],
                 "a card's newest rows")
    browser.save_screenshot(str(SCREENSHOTS / "load-20-push-queries.png"))

    times = [float(t) for t in browser.execute_script("return window.__renderTimes")]
    assert times, "no frame was drawn"
    print(f"\nconsole load: {QUERIES} push queries, {total} records inserted in {insert_seconds:.1f} s "
          f"({total / insert_seconds:.0f}/s asked {RATE}/s), {QUERIES * total} rows to the page in "
          f"{delivered_seconds:.1f} s ({QUERIES * total / delivered_seconds:.0f} rows/s)")
    print(f"console load: {len(times)} frames drawn; render time per frame median "
          f"{statistics.median(times):.1f} ms, p99 {percentile(times, 0.99):.1f} ms, max {max(times):.1f} ms")
    if round_trips:
        print(f"console load: script round trip while loaded median {statistics.median(round_trips):.1f} ms, "
              f"max {max(round_trips):.1f} ms")

    type_and_run(browser, "SHOW STREAMS;")  # a new run ends the last run's push queries on the server
    wait_for(browser, lambda d: not console_server.engine.transient, "the push queries to end")
    assert page_errors(browser) == []


def test_many_push_queries_over_http1_wait_and_say_why(browser: Any, console_server: RunningServer) -> None:
    """Over plain http a seventh push query cannot get a connection until one ends; the page says so."""
    name = fresh("HTTP1")
    created = httpx.post(f"{console_server.url}/ksql", timeout=30, content=orjson.dumps(
        {"ksql": f"CREATE STREAM {name} (ID VARCHAR KEY, N INT) "
                 f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1);"}))
    assert created.status_code == 200, created.text
    open_console(browser, console_server)
    type_and_run(browser, "\n".join(f"SELECT ID, N FROM {name} EMIT CHANGES;" for _ in range(7)))
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result.push")) == 7, "seven push queries")
    states = "return [...document.querySelectorAll('.result.push .state')].map((e) => e.textContent)"
    wait_for(browser, lambda d: d.execute_script(states)[:6] == ["running"] * 6, "six running")
    cards = browser.find_elements(By.CSS_SELECTOR, ".result.push")
    notes = [c.find_element(By.CSS_SELECTOR, ".notes").text for c in cards]
    assert notes[:6] == [""] * 6 and "at most 6 connections" in notes[6] and "https" in notes[6]
    assert browser.execute_script(states)[6] == "starting"
    browser.execute_script("arguments[0].scrollIntoView()", cards[6])
    browser.save_screenshot(str(SCREENSHOTS / "http1-push-limit.png"))
    cards[0].find_element(By.CSS_SELECTOR, "button.stop").click()  # frees a connection: the seventh starts
    wait_for(browser, lambda d: d.execute_script(states)[6] == "running", "the seventh")
    wait_for(browser, run_finished, "the run")
    type_and_run(browser, "SHOW STREAMS;")
    wait_for(browser, lambda d: not console_server.engine.transient, "the push queries to end")
    assert page_errors(browser) == []


#: The page alone: rows handed to 20 push query views in the page at this rate each, no server.
PAGE_RATE = 10_000

FEED_VIEWS = """
const [queries, rate, seconds, done] = arguments;
const { QueryView } = await import("/console/static/results.js");
const views = [];
for (let i = 0; i < queries; i++) {
  const view = new QueryView(`SELECT ID, N, ${i} AS Q FROM FEED EMIT CHANGES;`, true);
  document.getElementById("results").append(view.node);
  view.onHeader({ queryId: `feed_${i}`, columnNames: ["ID", "N", "Q"], columnTypes: ["STRING", "INTEGER", "INTEGER"] });
  views.push(view);
}
window.__renderTimes.length = 0;
const start = performance.now();
let fed = 0;
// Rows owed by the clock, not per tick: a late timer (the page busy) hands over more rows at once.
const timer = setInterval(() => {
  const elapsed = Math.min(seconds, (performance.now() - start) / 1000);
  const owed = Math.round(elapsed * rate) - fed;
  const rows = [];
  for (let j = 0; j < owed; j++) rows.push([`k${(fed + j) % 97}`, fed + j, 0]);
  fed += owed;
  for (const view of views) view.onRows(rows);
  if (elapsed >= seconds) {
    clearInterval(timer);
    requestAnimationFrame(() => setTimeout(() => {
      const seconds = (performance.now() - start) / 1000;
      const times = [...window.__renderTimes];
      for (const view of views) view.draw(true); // cards out of sight draw their waiting rows too
      const result = { fed, seconds, times, counts: views.map((v) => v.countText.textContent),
        sizes: views.map((v) => v.tbody.childElementCount),
        last: views.map((v) => v.tbody.lastElementChild.children[1].textContent),
        onScreen: views.filter((v) => v.onScreen).length };
      for (const view of views) view.onEnd();
      done(result);
    }, 50));
  }
}, 10);
"""


def test_page_alone_draws_twenty_views_at_ten_thousand_rows_per_second(
    browser: Any, console_server: RunningServer
) -> None:
    """The page's own cost, without the server's: 20 push query views each handed 10 000 rows/s."""
    open_console(browser, console_server)
    browser.set_script_timeout(120)
    got = browser.execute_async_script(FEED_VIEWS, QUERIES, PAGE_RATE, SECONDS)
    fed = got["fed"]
    assert fed == round(SECONDS * PAGE_RATE)
    assert got["counts"] == [f"{fed} rows"] * QUERIES  # every row counted
    assert got["sizes"] == [PUSH_ROWS] * QUERIES  # the newest rows kept
    assert got["last"] == [str(fed - 1)] * QUERIES
    times = [float(t) for t in got["times"]]
    assert times
    assert 0 < got["onScreen"] < QUERIES  # the page is 900 px high: only a few cards build rows
    print(f"\nconsole page alone: {QUERIES} views x {PAGE_RATE} rows/s for {SECONDS:.0f} s "
          f"({QUERIES * fed} rows in {got['seconds']:.1f} s, {got['onScreen']} views on screen); "
          f"{len(times)} frames, render time per frame "
          f"median {statistics.median(times):.1f} ms, p99 {percentile(times, 0.99):.1f} ms")
    browser.save_screenshot(str(SCREENSHOTS / "load-page-alone.png"))
    assert page_errors(browser) == []
