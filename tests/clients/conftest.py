"""Existing ksqlDB client libraries, unchanged, against a real ksqlpy server.

``client_server`` is a hypercorn server over a real engine (in-memory embedded store) on a free
loopback port. Clients whose dependencies clash with ksqlpy's own (``ksql-python-ng`` needs
httpx < 0.28) run in their own virtual environment, created once and cached; the npm client is
installed once into a cached ``node_modules``. The cache lives in ``$KSQLPY_CLIENTS_CACHE``
(default ``~/.cache/ksqlpy/test-clients``). A client that cannot be installed (no network, no
node/npm) is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ksqlpy.server.app import create_app
from tests.server.conftest import RunningServer, ServerThread, open_engine, server_config

HERE = Path(__file__).parent


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "ksqlpy" / "test-clients"
    return Path(os.environ.get("KSQLPY_CLIENTS_CACHE", default))


@pytest.fixture(scope="module")
def client_server() -> Iterator[RunningServer]:
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


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, **kwargs)  # type: ignore[call-overload]


def isolated_python(name: str, *steps: list[str]) -> Path:
    """The Python of a cached virtual environment made by ``pip install`` with each of ``steps``
    (arguments: requirements and options) in turn; the test is skipped if that fails."""
    digest = hashlib.sha256(json.dumps(steps).encode()).hexdigest()[:12]
    home = cache_dir() / f"{name}-{digest}"
    python = home / "bin" / "python"
    if (home / "ready").exists():
        return python
    shutil.rmtree(home, ignore_errors=True)
    made = _run([sys.executable, "-m", "venv", str(home)])
    if made.returncode != 0:
        pytest.skip(f"cannot create a virtual environment for {name}: {made.stderr[-500:]}")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for step in steps:
        installed = _run([*pip, *step])
        if installed.returncode != 0:
            pytest.skip(f"cannot install {' '.join(step)}: {installed.stderr[-500:]}")
    (home / "ready").write_text(json.dumps(steps))
    return python


def node_modules() -> Path:
    """``node_modules`` with the npm clients of ``node/package.json`` installed (else skip)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the npm client (not on PATH)")
    manifest = (HERE / "node" / "package.json").read_bytes()
    home = cache_dir() / f"node-{hashlib.sha256(manifest).hexdigest()[:12]}"
    if (home / "ready").exists():
        return home / "node_modules"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "package.json").write_bytes(manifest)
    installed = _run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=home)
    if installed.returncode != 0:
        pytest.skip(f"cannot install the npm client: {installed.stderr[-500:]}")
    (home / "ready").write_text("ok")
    return home / "node_modules"
