"""``ksqlpy server`` that cannot start: one clear line on stderr, a non-zero exit status and
nothing left on disk. Each test runs the real command as a subprocess in an empty directory
(the default data directory, ``./ksqlpy-data``, would appear there)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import free_port


def server(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ksqlpy", "server", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard: a failing start returns long before
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("KSQL_")},
    )


def only_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_port_in_use(tmp_path: Path, busy_port: int) -> None:
    result = server(tmp_path, "--listeners", f"http://127.0.0.1:{busy_port}")
    assert result.returncode != 0
    assert only_line(result.stderr) == (
        f"ksqlpy server: Cannot listen on http://127.0.0.1:{busy_port}: Address already in use"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "ksql.streams.auto.offset.reset=sideways",
            (
                "Invalid value sideways for configuration ksql.streams.auto.offset.reset: "
                "String must be one of: latest, earliest"
            ),
        ),
        (
            "ksqlpy.request.max.bytes=lots",
            "Invalid value lots for configuration ksqlpy.request.max.bytes: must be a positive integer",
        ),
        ("listeners=ftp://0.0.0.0:21", "Unsupported listener 'ftp://0.0.0.0:21': listeners are http:// or https:// URLs"),
    ],
)
def test_bad_config_value(tmp_path: Path, setting: str, message: str) -> None:
    config = tmp_path / "server.properties"
    config.write_text(f"{setting}\n")
    result = server(tmp_path, "--config", str(config))
    assert result.returncode != 0
    assert only_line(result.stderr).startswith(f"ksqlpy server: {message}")
    assert list(tmp_path.iterdir()) == [config]


def test_unreadable_config_file(tmp_path: Path) -> None:
    result = server(tmp_path, "--config", str(tmp_path))  # a directory: cannot be read as a file
    assert result.returncode != 0
    assert only_line(result.stderr).startswith(
        f"ksqlpy server: Cannot read server configuration {tmp_path}: "
    )
    assert list(tmp_path.iterdir()) == []


def test_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    listeners = f"http://127.0.0.1:{free_port()}"
    result = server(tmp_path, "--listeners", listeners, "--data-dir", str(blocker / "data"))
    assert result.returncode != 0
    assert only_line(result.stderr).startswith("ksqlpy server: Cannot start: ")
    assert list(tmp_path.iterdir()) == [blocker]


def test_unreachable_kafka_names_the_bootstrap_servers(tmp_path: Path) -> None:
    closed = [free_port(), free_port()]
    bootstrap = ",".join(f"127.0.0.1:{p}" for p in closed)
    result = server(
        tmp_path, "--listeners", f"http://127.0.0.1:{free_port()}", "--bootstrap-servers", bootstrap
    )
    assert result.returncode != 0
    line = only_line(result.stderr)
    assert line.startswith(
        f"ksqlpy server: Cannot reach the Kafka cluster at bootstrap.servers={bootstrap} ("
    )
    assert all(f"127.0.0.1:{p}: Connection refused" in line for p in closed)
    assert list(tmp_path.iterdir()) == []


def test_unsupported_settings_are_named_at_start(tmp_path: Path, busy_port: int) -> None:
    config = tmp_path / "server.properties"
    config.write_text("no.such.setting=1\nsasl.mechanism=PLAIN\nksql.service.id=svc_\n")
    result = server(tmp_path, "--config", str(config), "--listeners", f"http://127.0.0.1:{busy_port}")
    lines = result.stderr.strip().splitlines()
    warnings = [line for line in lines if " WARNING " in line]
    assert len(warnings) == 2, result.stderr
    assert warnings[0].endswith("Ignoring unsupported setting no.such.setting")
    assert (
        "Ignoring unsupported setting sasl.mechanism: Kafka client settings take the kafka. prefix"
        in warnings[1]
    )
    assert lines[-1].startswith("ksqlpy server: Cannot listen on")
