"""The shell run non-interactively (``-e``/``-f``) as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shell_ports import free_port


def _shell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_unreachable_server_is_reported_with_a_failing_status() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = _shell(url, "-e", "SHOW STREAMS;")
    assert result.returncode != 0
    assert f"Could not connect to the server at {url}" in result.stderr


def test_missing_script_file_fails(tmp_path: Path) -> None:
    result = _shell(f"http://127.0.0.1:{free_port()}", "-f", str(tmp_path / "absent.sql"))
    assert result.returncode != 0
    assert "absent.sql" in result.stderr


def test_shell_commands_need_no_server(tmp_path: Path) -> None:
    spool = tmp_path / "session.txt"
    script = f"SET 'auto.offset.reset'='earliest'; SPOOL {spool}; OUTPUT JSON; UNSET 'auto.offset.reset'; SPOOL OFF;"
    result = _shell(f"http://127.0.0.1:{free_port()}", "-e", script)
    assert result.returncode == 0, result.stderr
    assert "'auto.offset.reset' to 'earliest'" in result.stdout
    assert f"Spool written to {spool}" in result.stdout
    spooled = spool.read_text()
    assert "Output format set to JSON" in spooled and "value was 'earliest'" in spooled


def test_server_address_without_a_scheme(server_url: str) -> None:
    address = server_url.removeprefix("http://")  # "127.0.0.1:PORT", as ksqlDB users write it
    result = subprocess.run(
        [sys.executable, "-m", "ksqlpy", "shell", address, "-e", "SHOW STREAMS;"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "Stream Name" in result.stdout
