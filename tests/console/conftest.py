"""A real server on the embedded store and a headless Chromium driven by Selenium, for the console.

The browser is the system's ``chromium`` with its matching ``chromedriver`` (Debian packages
``chromium`` and ``chromium-driver``; ``.ci/run`` installs them). When either is missing, or the
browser does not start, the tests skip and say why. Each test saves screenshots of the views it
drives under ``tests/console/screenshots/`` (gitignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ksqlpy.server.app import create_app
from tests.server.conftest import RunningServer, ServerThread, open_engine, server_config

SCREENSHOTS = Path(__file__).parent / "screenshots"

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


def _which(names: tuple[str, ...], env: str) -> str | None:
    found = os.environ.get(env)
    if found:
        return found
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def console_server() -> Iterator[RunningServer]:
    config = server_config()
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    port = config.listeners[0].port
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", port=port, engine=engine)
    finally:
        thread.stop()
        engine.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    binary = _which(BROWSERS, "KSQLPY_CHROMIUM")
    driver_path = _which(DRIVERS, "KSQLPY_CHROMEDRIVER")
    if binary is None or driver_path is None:
        pytest.skip("no headless browser: install the Debian packages chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # for page errors, see test_console
    # --ignore-certificate-errors: the load test serves the console over https (so that the
    # browser speaks HTTP/2) with a certificate from a throwaway test CA.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1440,900", "--no-first-run", "--disable-extensions", "--ignore-certificate-errors"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as e:  # noqa: BLE001 - reported as the skip reason
        pytest.skip(f"the browser {binary} did not start: {type(e).__name__}: {str(e).splitlines()[0]}")
    SCREENSHOTS.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
