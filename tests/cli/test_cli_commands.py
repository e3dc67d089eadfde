"""Shell commands recognised on the client, and the shell's argument handling."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli import commands as cmd
from cli.console import caret_lines
from cli.highlight import tokens
from cli.main import add_arguments
from cli.render import OutputFormat


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("SET 'auto.offset.reset'='earliest';", cmd.SetProperty("auto.offset.reset", "earliest")),
        ("set  'a' = 'it''s' ;", cmd.SetProperty("a", "it's")),
        ("UNSET 'auto.offset.reset';", cmd.UnsetProperty("auto.offset.reset")),
        ("DEFINE topic = 'pv';", cmd.DefineVariable("topic", "pv")),
        ("undefine topic;", cmd.UndefineVariable("topic")),
        ("RUN SCRIPT '/tmp/a b.sql';", cmd.RunScript("/tmp/a b.sql")),
        ("run script x.sql", cmd.RunScript("x.sql")),
        ("SPOOL /tmp/out.txt", cmd.Spool("/tmp/out.txt")),
        ("spool off;", cmd.Spool(None)),
        ("OUTPUT json", cmd.Output(OutputFormat.JSON)),
        ("output", cmd.Output(None)),
        ("server http://h:1", cmd.Server("http://h:1")),
        ("exit", cmd.Simple("exit")),
        ("QUIT;", cmd.Simple("quit")),
        ("help", cmd.Simple("help")),
    ],
)
def test_shell_commands_are_recognised(text: str, command: cmd.Command) -> None:
    assert cmd.parse_command(text) == command


@pytest.mark.parametrize(
    "text",
    [
        "SHOW STREAMS;",
        "SELECT * FROM s EMIT CHANGES;",
        "CREATE STREAM s (a INT) WITH (kafka_topic='s');",
        "INSERT INTO s (a) VALUES (1);",
        "DESCRIBE set_values;",
    ],
)
def test_server_statements_are_left_alone(text: str) -> None:
    assert cmd.parse_command(text) is None


@pytest.mark.parametrize(
    "text", ["SET auto.offset.reset=earliest;", "DEFINE 1x = 'a';", "OUTPUT XML", "RUN SCRIPT"]
)
def test_malformed_shell_commands_explain_themselves(text: str) -> None:
    command = cmd.parse_command(text)
    assert isinstance(command, cmd.Invalid) and command.message


@pytest.mark.parametrize(
    ("text", "shell_line"),
    [
        ("help", True),
        ("exit", True),
        ("run script 'a.sql'", True),
        ("spool f", True),
        ("SHOW STREAMS", False),
        ("", False),
        ("runner", False),
    ],
)
def test_shell_lines_run_without_semicolon(text: str, shell_line: bool) -> None:
    assert cmd.is_shell_line(text) is shell_line


def test_statement_kind() -> None:
    assert cmd.statement_kind("  select * from s;") == "SELECT"
    assert cmd.statement_kind("PRINT 'pv';") == "PRINT"
    assert cmd.statement_kind("") == ""


def test_caret_points_at_the_reported_column() -> None:
    statement = "CREATE STREAM s (a INT)\n  WITH (kafka_topicc='s');"
    line, caret = caret_lines("line 2:9: Unknown property 'KAFKA_TOPICC'", statement)
    assert line == "  WITH (kafka_topicc='s');"
    assert line[caret.index("^") :].startswith("kafka_topicc")
    assert caret_lines("Source NOPE does not exist.", statement) == []
    assert caret_lines("line 9:1: beyond the text", statement) == []


def test_highlighting_classifies_tokens() -> None:
    styles = {
        text: style for style, text in tokens("SELECT name, 'a;b' FROM pv -- note\nWHERE n > 1.5 AND ${v}")
    }
    assert styles["SELECT"] == styles["FROM"] == styles["WHERE"] == "class:keyword"
    assert styles["'a;b'"] == "class:string"
    assert styles["-- note"] == "class:comment"
    assert styles["1.5"] == "class:number"
    assert styles["${v}"] == "class:variable"
    assert styles["name"] == ""
    text = "SELECT 'unterminated ; string"
    assert "".join(t for _, t in tokens(text)) == text


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_arguments_defaults() -> None:
    args = _parse()
    assert args.server.startswith("http://")
    assert args.execute is None and args.file is None
    assert args.output == "TABULAR" and args.http2 is False


def test_arguments_for_batch_use() -> None:
    args = _parse(
        "http://127.0.0.1:9999", "-f", "x.sql", "--output", "json", "-d", "t=pv", "-p", "a=b", "--http2"
    )
    assert args.server == "http://127.0.0.1:9999"
    assert args.file == Path("x.sql")
    assert args.output == "JSON"
    assert args.define == ["t=pv"] and args.property == ["a=b"] and args.http2


def test_execute_and_file_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse("-e", "SHOW STREAMS;", "-f", "x.sql")
    assert "not allowed" in capsys.readouterr().err
