"""A person at the keyboard: the real shell in tmux against a real ``ksqlpy server``.

Keys go in with ``tmux send-keys``, the screen comes back with ``capture-pane``. Each step
waits for what a person would wait for on the screen (with a generous deadline, not a
timing assertion) and then checks what is there.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from shell_ports import free_port

_DEADLINE = 60.0
PROMPT = "ksql>"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Pane:
    """One tmux session running the shell."""

    def __init__(self, name: str) -> None:
        self.name = name

    def screen(self) -> str:
        """Everything the pane showed so far (scrollback included), wrapped lines joined."""
        result = subprocess.run(
            ["tmux", "capture-pane", "-p", "-J", "-S", "-", "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def mark(self) -> int:
        """Where the output of the next input will start: at the last prompt."""
        return max(self.screen().rfind(PROMPT), 0)

    def type(self, text: str) -> None:
        # tmux reads an argument ending in ';' as a command separator; '\;' is a literal ';'.
        literal = text[:-1] + "\\;" if text.endswith(";") else text
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", literal], check=True)

    def key(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def enter(self, line: str) -> int:
        """Type a line and press Enter; returns the mark of its output."""
        mark = self.mark()
        self.type(line)
        self.key("Enter")
        return mark

    def wait_for(self, needle: str | re.Pattern[str], since: int = 0, count: int = 1) -> str:
        """Wait until ``needle`` shows ``count`` times after ``since``; returns that screen part."""
        deadline = time.monotonic() + _DEADLINE
        while True:
            part = self.screen()[since:]
            found = len(needle.findall(part)) if isinstance(needle, re.Pattern) else part.count(needle)
            if found >= count:
                return part
            if time.monotonic() > deadline:
                pytest.fail(f"waited for {needle!r} (x{count}); the screen shows:\n{part}")
            time.sleep(0.1)

    def wait_for_prompt(self, since: int) -> str:
        """Wait for the statement's output to end with a fresh prompt."""
        return self.wait_for(re.compile(rf"^{PROMPT}\s*$", re.MULTILINE), since)


@pytest.fixture
def pane(server_url: str, tmp_path: Path) -> Iterator[Pane]:
    name = f"ksqlpy-shell-{uuid.uuid4().hex[:8]}"
    command = (
        f"{sys.executable} -m cli {server_url} --history-file {tmp_path / 'history'}; "
        f"echo SHELL-EXITED-$?; sleep 600"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", "200", "-y", "50", "-c", str(Path.cwd()), command],
        check=True,
    )
    try:
        yield Pane(name)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], check=False)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table_rows(screen: str) -> list[list[str]]:
    """Rows of the query tables on the screen (lines boxed in '|')."""
    return [
        _cells(line) for line in screen.splitlines() if line.startswith("|") and line.rstrip().endswith("|")
    ]


def test_a_session_at_the_prompt(pane: Pane, server_url: str) -> None:
    banner = pane.wait_for("Server Status:")
    assert f"located at {server_url}" in banner
    assert re.search(r"Server Status: RUNNING", banner)
    pane.wait_for_prompt(0)

    # A statement over two lines: Enter before the ';' only starts a new line.
    topic = f"pv_{uuid.uuid4().hex[:6]}"
    mark = pane.enter("CREATE STREAM pv (userid VARCHAR KEY, pageid VARCHAR, duration INT)")
    pane.enter(f"WITH (kafka_topic='{topic}', value_format='JSON', partitions=1);")
    out = pane.wait_for("Stream created", mark)
    assert "Message" in out

    mark = pane.enter(
        "INSERT INTO pv (userid, pageid, duration) VALUES ('u1', 'p1', 10); "
        "INSERT INTO pv (userid, pageid, duration) VALUES ('u2', 'p1', 20); "
        "INSERT INTO pv (userid, pageid, duration) VALUES ('u3', 'p2', 30);"
    )
    out = pane.wait_for_prompt(mark + 1)
    assert "rror" not in out

    mark = pane.enter("SET 'auto.offset.reset'='earliest';")
    pane.wait_for("Successfully changed local property 'auto.offset.reset' to 'earliest'", mark)

    # A push query with LIMIT ends by itself, after a header and its rows.
    mark = pane.enter("SELECT * FROM pv EMIT CHANGES LIMIT 2;")
    out = pane.wait_for("Query terminated", mark)
    assert "Limit Reached" in out
    rows = _table_rows(out)
    assert rows[0] == ["USERID", "PAGEID", "DURATION"]
    assert rows[1:] == [["u1", "p1", "10"], ["u2", "p1", "20"]]
    pane.wait_for_prompt(mark + 1)

    # A push query without LIMIT runs until Ctrl-C, which ends the query, not the shell.
    mark = pane.enter("SELECT userid, duration FROM pv EMIT CHANGES;")
    out = pane.wait_for("|u3", mark)
    assert "Query terminated" not in out
    pane.key("C-c")
    out = pane.wait_for("Query terminated", mark)
    assert [row for row in _table_rows(out)][1:] == [["u1", "10"], ["u2", "20"], ["u3", "30"]]
    pane.wait_for_prompt(mark + 1)

    mark = pane.enter("SHOW QUERIES;")
    out = pane.wait_for_prompt(mark + 1)
    assert "transient_" not in out  # the interrupted push query is gone from the server

    mark = pane.enter("DESCRIBE pv;")
    out = pane.wait_for("DESCRIBE <Stream,Table> EXTENDED", mark)
    fields = {cells[0]: cells[1] for line in out.splitlines() if len(cells := _cells(line)) == 2}
    assert fields["USERID"].split() == ["VARCHAR(STRING)", "(key)"]
    assert fields["DURATION"] == "INTEGER"

    # A syntax error shows the server's message and a caret under the reported position.
    mark = pane.enter("CREATE STREEM oops (a INT) WITH (kafka_topic='oops');")
    out = pane.wait_for("^", mark)
    pane.wait_for_prompt(mark + 1)
    lines = out.splitlines()
    message = next(line for line in lines if re.search(r"line \d+:\d+", line))
    column = int(re.search(r"line \d+:(\d+)", message).group(1))  # type: ignore[union-attr]
    caret = next(i for i, line in enumerate(lines) if line.strip() == "^")
    assert lines[caret - 1].startswith("CREATE STREEM")
    assert lines[caret].index("^") == column - 1

    mark = pane.enter("DROP STREAM pv;")
    out = pane.wait_for_prompt(mark + 1)
    assert "dropped" in out
    mark = pane.enter("SHOW STREAMS;")
    out = pane.wait_for("Stream Name", mark)
    pane.wait_for_prompt(mark + 1)
    assert not any(_cells(line)[0] == "PV" for line in out.splitlines())

    mark = pane.enter("exit")
    pane.wait_for("SHELL-EXITED-0", mark)


def test_batch_mode_reports_errors_with_exit_status(server_url: str, tmp_path: Path) -> None:
    script = tmp_path / "setup.sql"
    script.write_text(
        "-- a script\nCREATE STREAM s1 (k VARCHAR KEY, v INT)\n  WITH (kafka_topic='s1', value_format='JSON', partitions=1);\n"
        "SHOW STREAMS;\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "cli", server_url, "-f", str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Stream created" in done.stdout and "S1" in done.stdout

    failed = subprocess.run(
        [sys.executable, "-m", "cli", server_url, "-e", "DESCRIBE no_such_source; SHOW STREAMS;"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1
    assert "NO_SUCH_SOURCE" in failed.stderr.upper()
    assert "Stream Name" not in failed.stdout  # statements after the failing one are not run

    unreachable = f"http://127.0.0.1:{free_port()}"
    gone = subprocess.run(
        [sys.executable, "-m", "cli", unreachable, "-e", "SHOW STREAMS;"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gone.returncode == 1 and "Could not connect to the server" in gone.stderr


def test_http2_queries_json_output_and_scripts(server_url: str, tmp_path: Path) -> None:
    script = tmp_path / "make.sql"
    script.write_text(
        "CREATE STREAM ${name} (k VARCHAR KEY, v INT) WITH (kafka_topic='${name}', value_format='JSON', partitions=1);\n"
        "INSERT INTO ${name} (k, v) VALUES ('a', 1);\nINSERT INTO ${name} (k, v) VALUES ('b', 2);\n"
    )
    statements = (
        f"DEFINE name = 's2'; RUN SCRIPT '{script}'; OUTPUT JSON; SELECT k, v FROM s2 EMIT CHANGES LIMIT 2;"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            server_url,
            "--http2",
            "-p",
            "auto.offset.reset=earliest",
            "-e",
            statements,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith('{"queryId"'))
    header = json.loads(lines[header_at])
    assert header["columnNames"] == ["K", "V"]
    assert [json.loads(line) for line in lines[header_at + 1 : header_at + 3]] == [["a", 1], ["b", 2]]
    assert "Limit Reached" in lines
