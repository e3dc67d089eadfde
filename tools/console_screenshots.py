"""The README's console screenshots (docs/console-*.png), made again from a live server.

Starts ``ksqlpy server`` on the embedded store (in memory, a free loopback port), creates a small
demo (page views, users, orders joined with users), drives the console in a headless Chromium
(Debian packages ``chromium`` and ``chromium-driver``, as the console tests use) and saves:

* ``console-editor.png``: a push query's rows arriving, with their rate, while rows are inserted;
* ``console-lineage.png``: the lineage graph, with a table described;
* ``console-trace.png``: an order traced through a stream-table join and a GROUP BY.

Each PNG is quantized to a 256-colour palette and optimized (pillow), which keeps it readable
and well under 150 KB. Run from the repository root::

    python tools/console_screenshots.py [--out docs] [--width 1280] [--height 720]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
#: Largest file the README should carry for one screenshot.
MAX_BYTES = 150_000
WAIT = 60

DEMO = [
    ("CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR, region VARCHAR) "
     "WITH (kafka_topic='users', value_format='JSON', partitions=1);"),
    ("CREATE STREAM pageviews (user_id VARCHAR KEY, page VARCHAR, duration INT) "
     "WITH (kafka_topic='pageviews', value_format='JSON', partitions=2);"),
    ("CREATE STREAM orders (id VARCHAR KEY, user_id VARCHAR, amount INT) "
     "WITH (kafka_topic='orders', value_format='JSON', partitions=2);"),
]
USERS = [("u1", "Ann", "eu"), ("u2", "Bob", "us"), ("u3", "Chen", "apac"), ("u4", "Dana", "eu")]
ORDERS = [("o1", "u1", 250), ("o2", "u2", 40), ("o3", "u4", 120), ("o4", "u1", 75), ("o5", "u3", 310),
          ("o6", "u1", 60)]
PAGES = ["home", "docs", "pricing", "blog", "about"]
QUERIES = [
    "CREATE STREAM long_views AS SELECT * FROM pageviews WHERE duration > 30;",
    ("CREATE TABLE page_counts AS SELECT page, COUNT(*) AS views, SUM(duration) AS total "
     "FROM pageviews GROUP BY page;"),
    ("CREATE STREAM orders_enriched AS SELECT o.user_id, o.id AS order_id, u.name, u.region, o.amount "
     "FROM orders o JOIN users u ON o.user_id = u.id;"),
    "CREATE TABLE region_totals AS SELECT region, SUM(amount) AS total FROM orders_enriched GROUP BY region;",
]
PUSH_QUERY = """-- pages viewed for more than 30 seconds, as they happen
SELECT user_id, page, duration, ROWTIME
  FROM pageviews
  WHERE duration > 30
  EMIT CHANGES;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/vnd.ksql.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def ksql(base: str, text: str) -> Any:
    return post(f"{base}/ksql", {"ksql": text, "streamsProperties": {"auto.offset.reset": "earliest"}})


@contextmanager
def server() -> Iterator[str]:
    """A ``ksqlpy server`` of this checkout, in memory, until the block ends."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "ksqlpy", "server", "--listeners", f"http://127.0.0.1:{port}",
         "--data-dir", ":memory:", "--log-level", "WARNING"], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                urllib.request.urlopen(f"{base}/info", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ksqlpy server did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def browser(width: int, height: int) -> Any:
    binary = os.environ.get("KSQLPY_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("KSQLPY_CHROMEDRIVER") or shutil.which("chromedriver")
    if not binary or not driver:
        sys.exit("no headless browser: install the Debian packages chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    # --window-size is the window's: grow it by what the browser's frame takes of the page
    inner = chrome.execute_script("return [window.innerWidth, window.innerHeight];")
    chrome.set_window_size(2 * width - inner[0], 2 * height - inner[1])
    return chrome


def wait(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT).until(condition, message=f"waiting for {what}")


def save(driver: Any, path: Path) -> int:
    """The page as a palette PNG at ``path``; its size in bytes."""
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, format="PNG", optimize=True)
    size = path.stat().st_size
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {shot.width}x{shot.height}, {size} bytes")
    if size > MAX_BYTES:
        raise SystemExit(f"{path} is {size} bytes, more than {MAX_BYTES}")
    return size


def set_up(base: str) -> None:
    for text in DEMO:
        ksql(base, text)
    for uid, name, region in USERS:
        ksql(base, f"INSERT INTO users (id, name, region) VALUES ('{uid}', '{name}', '{region}');")
    for i in range(40):
        ksql(base, f"INSERT INTO pageviews (user_id, page, duration) VALUES ('u{i % 7}', '{PAGES[i % 5]}', "
                   f"{(i * 37) % 90});")
    for text in QUERIES:
        ksql(base, text)
    for oid, uid, amount in ORDERS:
        ksql(base, f"INSERT INTO orders (id, user_id, amount) VALUES ('{oid}', '{uid}', {amount});")


def editor_shot(driver: Any, base: str, out: Path) -> None:
    """A push query with rows arriving: pageviews inserted, four a second, while it runs."""
    driver.execute_script("document.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0]);", PUSH_QUERY)
    driver.find_element(By.ID, "run").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".result.push .state.running"), "the push query")
    stop = threading.Event()

    def insert() -> None:
        i = 0
        while not stop.is_set():
            ksql(base, f"INSERT INTO pageviews (user_id, page, duration) VALUES ('u{(i * 13) % 40}', "
                       f"'{PAGES[(i * 7) % 5]}', {31 + (i * 29) % 60});")
            i += 1
            stop.wait(0.25)

    feeder = threading.Thread(target=insert, daemon=True)
    feeder.start()
    try:
        wait(driver, lambda d: int(d.find_element(By.CSS_SELECTOR, ".result.push .count").text.split()[0]) >= 40,
             "40 rows")
    finally:
        stop.set()
        feeder.join(5)
    time.sleep(0.5)  # the last frame's rows drawn
    # the newest rows, with the top one whole under the sticky header (not half hidden by it)
    driver.execute_script("""
        const box = document.querySelector('.result.push .push-rows');
        const row = box.querySelector('tbody tr');
        if (row) box.scrollTop = Math.floor(box.scrollTop / row.offsetHeight) * row.offsetHeight;""")
    save(driver, out / "console-editor.png")
    driver.find_element(By.CSS_SELECTOR, ".result.push button.stop").click()
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, ".result.push .state").text == "ended", "the end")


def lineage_shot(driver: Any, out: Path) -> None:
    driver.find_element(By.ID, "tab-lineage").click()
    node = "#lineage-graph g.node[data-id='source:ORDERS_ENRICHED']"
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, node), "the lineage graph")
    driver.find_element(By.CSS_SELECTOR, node).click()
    wait(driver, lambda d: "Kafka topic" in d.find_element(By.ID, "lineage-detail").text, "DESCRIBE")
    save(driver, out / "console-lineage.png")


def trace_shot(driver: Any, out: Path) -> None:
    driver.find_element(By.ID, "tab-trace").click()
    for field, value in (("trace-source", "ORDERS"), ("trace-key", "o4")):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    driver.find_element(By.ID, "trace-run").click()
    wait(driver, lambda d: d.execute_script("return document.getElementById('trace-output').dataset.state")
         == "done", "the trace")
    save(driver, out / "console-trace.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with server() as base:
        set_up(base)
        driver = browser(args.width, args.height)
        try:
            driver.get(f"{base}/console/")
            wait(driver, lambda d: d.execute_script("return document.body.dataset.ready") == "true", "the console")
            # the queries above have read what was inserted before them
            wait(driver, lambda d: "REGION_TOTALS" in d.find_element(By.ID, "catalog-tables").text, "the catalog")
            editor_shot(driver, base, args.out)
            lineage_shot(driver, args.out)
            trace_shot(driver, args.out)
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
