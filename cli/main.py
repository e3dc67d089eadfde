"""``ksqlpy shell``: command-line arguments and entry point of the shell.

``add_arguments`` fills an argparse parser (the ``ksqlpy`` command's ``shell`` subcommand, or
``python -m cli``); ``run`` starts the prompt, or runs ``-e`` statements / a ``-f`` file /
piped input and returns a non-zero exit status when a statement fails.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from cli.client import RestClient
from cli.completion import SchemaCache
from cli.console import Terminal
from cli.render import OutputFormat
from cli.shell import Shell, ShellExit, ShellState
from cli.tls import TlsConfigError, client_context, read_properties

DEFAULT_SERVER = "http://localhost:8088"
DEFAULT_HISTORY = "~/.ksqlpy_history"

EXIT_OK = 0
EXIT_FAILED = 1  # a statement failed or the server could not be reached


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the shell's options to ``parser``."""
    parser.add_argument(
        "server",
        nargs="?",
        default=os.environ.get("KSQLPY_SERVER", DEFAULT_SERVER),
        help=f"address of the server (default: {DEFAULT_SERVER})",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-e", "--execute", metavar="STATEMENTS", help="run these statements and exit")
    source.add_argument("-f", "--file", metavar="FILE", type=Path, help="run the statements of FILE and exit")
    parser.add_argument(
        "--output",
        type=str.upper,
        choices=[f.value for f in OutputFormat],
        default=OutputFormat.TABULAR.value,
        help="how results are printed (default: TABULAR)",
    )
    parser.add_argument(
        "-d",
        "--define",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="define a session variable (repeatable), used as ${NAME}",
    )
    parser.add_argument(
        "-p",
        "--property",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="set a request property (repeatable), as SET would",
    )
    parser.add_argument("--http2", action="store_true", help="talk HTTP/2 (cleartext) instead of HTTP/1.1")
    parser.add_argument(
        "--config-file", metavar="FILE", type=Path,
        help="properties file: ssl.truststore.*/ssl.keystore.* for https servers, others as -p sets them",
    )
    parser.add_argument(
        "-u", "--user", default=os.environ.get("KSQLPY_USER"),
        help="user name for a server with BASIC authentication (prompts for the password if not given)",
    )
    parser.add_argument(
        "--password", default=os.environ.get("KSQLPY_PASSWORD"),
        help="password for --user (-p sets a property, so the password has no short option)",
    )
    parser.add_argument(
        "--history-file",
        default=os.environ.get("KSQLPY_HISTORY", DEFAULT_HISTORY),
        help=f"where the prompt's history is kept (default: {DEFAULT_HISTORY})",
    )


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise SystemExit(f"ksqlpy shell: {option} expects NAME=VALUE, got {value!r}")
        pairs[name.strip()] = text
    return pairs


def credentials(args: argparse.Namespace) -> tuple[str, str] | None:
    """``--user`` and ``--password``; asks for the password (not echoed) when only the user is given,
    as ksqlDB's shell does."""
    user: str | None = getattr(args, "user", None)
    password: str | None = getattr(args, "password", None)
    if not user:
        if password:
            raise SystemExit("ksqlpy shell: --password needs --user")
        return None
    if password is None:
        password = getpass.getpass("Enter password: ")
    return user, password


def run(args: argparse.Namespace) -> int:
    """Run the shell as ``args`` say; returns the process exit status."""
    file_properties: dict[str, str] = {}
    tls_context = None
    if getattr(args, "config_file", None) is not None:
        try:
            file_properties = read_properties(args.config_file)
            tls_context = client_context(file_properties)
        except TlsConfigError as error:
            raise SystemExit(f"ksqlpy shell: {error}") from None
    request_properties = {k: v for k, v in file_properties.items() if not k.startswith("ssl.")}
    state = ShellState(
        properties={**request_properties, **_pairs(args.property, "--property")},
        variables=_pairs(args.define, "--define"),
        output=OutputFormat(args.output),
    )
    terminal = Terminal()
    with RestClient(args.server, http2=args.http2, credentials=credentials(args), tls=tls_context) as client:
        if args.execute is not None or args.file is not None or not sys.stdin.isatty():
            shell = Shell(client, terminal, state=state)
            return _run_batch(shell, args)
        shell = Shell(client, terminal, state=state, schema=SchemaCache())
        from cli.repl import run_repl  # prompt_toolkit is only needed at the prompt

        shell.banner()
        history = Path(args.history_file).expanduser() if args.history_file else None
        return run_repl(shell, history)


def _run_batch(shell: Shell, args: argparse.Namespace) -> int:
    """``-e``, ``-f`` or piped input: no banner, no prompt, exit status tells the outcome."""
    if args.execute is not None:
        text = args.execute
    elif args.file is not None:
        try:
            text = args.file.read_text(encoding="utf-8")
        except OSError as error:
            shell.terminal.error(f"Failed to read file: {args.file} ({error.strerror})")
            return EXIT_FAILED
    else:
        text = sys.stdin.read()
    try:
        ok = shell.run_text(text)
    except ShellExit:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    return EXIT_OK if ok else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ksqlpy shell", description="Interactive ksqlpy shell.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
