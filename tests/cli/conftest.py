"""A real ``ksqlpy server`` on a free port with a temporary data directory, for shell tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from shell_ports import free_port

import ksqlpy.server.cli  # noqa: F401 - the command the server runs: missing, the tests fail

# How long a fresh server may take to answer /info (it opens its store and replays its log).
_STARTUP_SECONDS = 90.0


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a running ``ksqlpy server``."""
    data_dir = tmp_path_factory.mktemp("ksqlpy-data")
    url = f"http://127.0.0.1:{free_port()}"
    log = (data_dir / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ksqlpy.main", "server", "--listeners", url, "--data-dir", str(data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        _wait_until_ready(url, process, data_dir / "server.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ksqlpy server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/info", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"ksqlpy server did not answer /info within {_STARTUP_SECONDS}s:\n{log.read_text()}")
