"""The console's statement splitter and error-position mapping (``static/statements.js``), run
in Node when it is installed: the same cuts as the shell's splitter, and a server's ``line L:C``
placed back at the right character of the editor text."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cli.splitter import split_statements

STATEMENTS_JS = Path(__file__).parents[2] / "ksqlpy" / "server" / "console" / "static" / "statements.js"

TEXTS = [
    "SHOW STREAMS;",
    "-- a comment; with a semicolon\nSELECT 1 FROM t;\n  SHOW TABLES ;",
    "CREATE STREAM \"a;b\" (x VARCHAR) WITH (kafka_topic='it''s;here', value_format='JSON');",
    "SELECT `we;ird` /* ; */ FROM s EMIT CHANGES;\nDESCRIBE s;",
    ";;SHOW TOPICS;",
]


def run_node(script: str) -> Any:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    code = f"import * as m from {json.dumps(STATEMENTS_JS.as_uri())};\n{script}"
    done = subprocess.run([node, "--input-type=module", "-e", code],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("text", TEXTS)
def test_statements_are_cut_as_the_shell_cuts_them(text: str) -> None:
    cut = run_node(f"console.log(JSON.stringify(m.splitStatements({json.dumps(text)})));")
    assert [s["text"] for s in cut] == list(split_statements(text).statements)
    for s in cut:  # offsets point at the statement in the editor text
        assert text[s["start"]: s["end"]] == s["text"]


def test_a_last_statement_without_semicolon_runs_too() -> None:
    cut = run_node("console.log(JSON.stringify(m.splitStatements('SHOW STREAMS;\\nSHOW TABLES  \\n')));")
    assert [s["text"] for s in cut] == ["SHOW STREAMS;", "SHOW TABLES;"]


def test_error_positions_map_back_to_the_editor() -> None:
    text = "SHOW STREAMS;\n\nSELECT a,\n  nope FROM s EMIT CHANGES;"
    found = run_node(
        f"const text = {json.dumps(text)}; const s = m.splitStatements(text)[1];"
        "console.log(JSON.stringify(["
        "  m.errorOffset('line 1:8: a', text, s.start), m.errorOffset('line 2:3: b', text, s.start),"
        "  m.errorOffset('no position', text, s.start)]));"
    )
    assert text[found[0]:].startswith("a,")
    assert text[found[1]:].startswith("nope")
    assert found[2] is None


def test_session_commands() -> None:
    found = run_node(
        "console.log(JSON.stringify(["
        "  m.sessionCommand(\"SET 'auto.offset.reset' = 'earliest';\"), m.sessionCommand(\"unset 'a.b';\"),"
        "  m.sessionCommand(\"DEFINE who = 'it''s me';\"), m.sessionCommand('SHOW STREAMS;')]));"
    )
    assert found == [
        {"action": "set", "name": "auto.offset.reset", "value": "earliest"},
        {"action": "unset", "name": "a.b"},
        {"action": "define", "name": "who", "value": "it's me"},
        None,
    ]
