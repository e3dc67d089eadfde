"""The interactive ksqlpy shell: read statements, send them to the server, print the answers.

Statements are cut client-side (:mod:`cli.splitter`) and sent one by one: SELECT and PRINT to
``/query-stream`` (rows are printed as they arrive, until LIMIT, the end of a pull query or
Ctrl-C, which closes the query and keeps the shell), everything else to ``/ksql``. Shell
commands (:mod:`cli.commands`) never leave the client; properties and variables they set
travel with every request. The same :meth:`Shell.run_text` serves the prompt, ``RUN
SCRIPT``, ``-f`` and ``-e``; it stops at the first failing statement and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from cli import commands as cmd
from cli.client import QueryStream, RestClient, ServerError, ServerUnreachable
from cli.completion import SchemaCache
from cli.console import Terminal
from cli.render import OutputFormat, entities_lines
from cli.rows import RowPrinter
from cli.splitter import split_statements

# Statements after which the stream/table names known to completion may have changed.
_CATALOG_CHANGES = frozenset({"CREATE", "DROP", "ALTER"})
_QUERY_STATEMENTS = frozenset({"SELECT", "PRINT"})
_LIMIT = re.compile(r"\bLIMIT\s+(\d+)\s*;?\s*$", re.IGNORECASE)
# RUN SCRIPT may nest, but a script that runs itself must not recurse forever.
_MAX_SCRIPT_DEPTH = 16

BANNER = r"""
                  ===========================================
                  =    _                 _                  =
                  =   | | __ ___   __ _ | | _ __   _   _    =
                  =   | |/ // __| / _` || || '_ \ | | | |   =
                  =   |   < \__ \| (_| || || |_) || |_| |   =
                  =   |_|\_\|___/ \__, ||_|| .__/  \__, |   =
                  =                  |_|   |_|     |___/    =
                  =    Streaming SQL in ksqlDB's dialect    =
                  ===========================================
"""

HELP = """
Description:
  The ksqlpy shell speaks ksqlDB's dialect to a ksqlpy (or ksqlDB) server over its REST API.
  Statements end with ';' and may span lines; shell commands run on Enter.

Shell commands:
  help                      Show this help.
  exit | quit | Ctrl-D      Leave the shell.
  clear                     Clear the screen.
  history                   Show the statements entered before.
  version                   Show the shell version.
  server [<url>]            Show the server address, or switch to another server.
  output [JSON|TABULAR]     Show or change how results are printed.
  spool <file> | spool off  Copy the session to a file, or stop.
  run script '<file>'       Run the statements of a file.

Statements kept by the shell (sent with every request):
  SET '<property>'='<value>';      e.g. SET 'auto.offset.reset'='earliest';
  UNSET '<property>';
  DEFINE <name> = '<value>';       used as ${name} in statements
  UNDEFINE <name>;

Queries:
  SELECT ... EMIT CHANGES;  push query: rows print as they arrive; Ctrl-C stops the query.
  SELECT ...;               pull query: prints the current result.
  PRINT '<topic>' [FROM BEGINNING] [LIMIT n];

Everything else (CREATE, DROP, INSERT, SHOW, LIST, DESCRIBE, EXPLAIN, TERMINATE, ...)
is sent to the server as typed. Tab completes keywords and stream, table and column names.
"""


class ShellExit(Exception):
    """Raised by ``exit``/``quit`` to leave the shell from any depth."""


def client_version() -> str:
    try:
        return metadata.version("ksqlpy")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(slots=True)
class ShellState:
    """What the shell remembers between statements."""

    properties: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    output: OutputFormat = OutputFormat.TABULAR


class Shell:
    """Runs statements against one server and prints results to one terminal."""

    def __init__(
        self,
        client: RestClient,
        terminal: Terminal,
        *,
        state: ShellState | None = None,
        schema: SchemaCache | None = None,
    ) -> None:
        self.client = client
        self.terminal = terminal
        self.state = state or ShellState()
        self.schema = schema
        self.history: list[str] = []

    # ----------------------------------------------------------------------------- banner

    def banner(self) -> bool:
        """Print the banner with the server's version and status; False if it is unreachable."""
        self.terminal.lines(BANNER.split("\n"))
        try:
            info = self.client.info()
        except (ServerUnreachable, ServerError) as error:
            self.terminal.lines([f"CLI v{client_version()}, Server at {self.client.url}", ""])
            self.terminal.error(str(error))
            return False
        self.terminal.lines(
            [
                f"CLI v{client_version()}, Server v{info.get('version', '?')} located at {self.client.url}",
                f"Server Status: {info.get('serverStatus', 'UNKNOWN')}",
                "",
                "Having trouble? Type 'help' (case-insensitive) for a rundown of how things work!",
                "",
            ]
        )
        return True

    # ------------------------------------------------------------------------- statements

    def run_text(self, text: str, *, depth: int = 0) -> bool:
        """Run every statement of ``text`` in order; stop at the first that fails.

        An unterminated last statement is run as if it ended with ';' (handy with ``-e``).
        """
        split = split_statements(text)
        statements = list(split.statements)
        if not split.rest_is_blank:
            if split.open_mode is not None:
                self.terminal.error(
                    f"Unterminated {split.open_mode.replace('_', ' ')} in: {split.rest.strip()}"
                )
                return False
            statements.append(split.rest.strip() + ";")
        for statement in statements:
            if not self.run_statement(statement, depth=depth):
                return False
        return True

    def run_statement(self, statement: str, *, depth: int = 0) -> bool:
        """Run one statement (or shell command); True when it succeeded."""
        self.terminal.echo(f"ksql> {statement}")
        command = cmd.parse_command(statement)
        if command is not None:
            return self._run_command(command, depth)
        kind = cmd.statement_kind(statement)
        try:
            if kind in _QUERY_STATEMENTS:
                return self._run_query(statement)
            return self._run_ksql(statement, kind)
        except ServerUnreachable as error:
            self.terminal.error(str(error))
            return False
        except ServerError as error:
            if error.entities:
                self.terminal.lines(entities_lines(error.entities, self.state.output))
            self.terminal.error(error.message, error.statement_text or statement)
            return False

    def _run_ksql(self, statement: str, kind: str) -> bool:
        with self.terminal.status("Executing statement..."):
            entities = self.client.ksql(
                statement, properties=self.state.properties, variables=self.state.variables
            )
        self.terminal.lines(entities_lines(entities, self.state.output))
        failed = [e for e in entities if (e.get("commandStatus") or {}).get("status") == "ERROR"]
        for entity in failed:
            self.terminal.error(str(entity["commandStatus"].get("message", "Command failed")))
        if kind in _CATALOG_CHANGES and self.schema is not None:
            self.schema.stale = True
        return not failed

    def refresh_schema(self) -> None:
        """Re-read stream, table and column names for completion."""
        if self.schema is not None:
            self.schema.refresh(self.client, self.state.properties)

    def _run_query(self, statement: str) -> bool:
        """Stream a query's rows until it ends or the user presses Ctrl-C."""
        with self.terminal.status("Waiting for the query to start..."):
            stream = self.client.query(
                statement, properties=self.state.properties, variables=self.state.variables
            )
        header = stream.header
        printer = RowPrinter(
            column_names=header.column_names,
            column_types=header.column_types,
            query_id=header.query_id,
            width=self.terminal.width,
            output=self.state.output,
        )
        self.terminal.lines(printer.header_lines())
        count = 0
        try:
            for row in stream:
                self.terminal.lines(printer.row_lines(row))
                count += 1
        except KeyboardInterrupt:
            self._stop_query(stream)
            self.terminal.after_interrupt()
            self.terminal.lines([*printer.footer_lines(), "Query terminated"])
            return True
        finally:
            stream.close()
        self.terminal.lines(printer.footer_lines())
        limit = _LIMIT.search(statement)
        final = stream.final_message or ("Limit Reached" if limit and count >= int(limit.group(1)) else None)
        self.terminal.lines([*([final] if final else []), "Query terminated"])
        return True

    def _stop_query(self, stream: QueryStream) -> None:
        """Ctrl-C: drop the stream and tell the server, on fresh connections (the old one
        may have been cut mid-frame)."""
        stream.close()
        self.client.reset()
        if stream.header.query_id is None:
            return
        try:
            self.client.close_query(stream.header.query_id)
        except (ServerError, ServerUnreachable):
            pass  # dropping the connection already stopped it

    # --------------------------------------------------------------------- shell commands

    def _run_command(self, command: cmd.Command, depth: int) -> bool:
        state, out = self.state, self.terminal
        match command:
            case cmd.SetProperty(name, value):
                state.properties[name] = value
                out.notice(
                    f"Successfully changed local property '{name}' to '{value}'. "
                    "Use the UNSET command to revert your change."
                )
            case cmd.UnsetProperty(name):
                if name not in state.properties:
                    out.notice(f"Property '{name}' was not set locally.")
                else:
                    old = state.properties.pop(name)
                    out.notice(f"Successfully unset local property '{name}' (value was '{old}').")
            case cmd.DefineVariable(name, value):
                state.variables[name] = value
            case cmd.UndefineVariable(name):
                if state.variables.pop(name, None) is None:
                    out.notice(f"Variable '{name}' is undefined")
            case cmd.RunScript(path):
                return self._run_script(Path(path).expanduser(), depth)
            case cmd.Spool(None):
                written = out.stop_spool()
                out.notice(f"Spool written to {written}" if written else "Not spooling.")
            case cmd.Spool(str() as path):
                target = Path(path).expanduser().absolute()
                try:
                    out.start_spool(target)
                except OSError as error:
                    out.error(f"Cannot SPOOL to file: {target} ({error.strerror})")
                    return False
                out.notice(f"Session will be spooled to {target}\nEnter SPOOL OFF to disable")
            case cmd.Output(None):
                out.notice(f"Output format is {state.output.value}")
            case cmd.Output(OutputFormat() as fmt):
                state.output = fmt
                out.notice(f"Output format set to {fmt.value}")
            case cmd.Server(None):
                out.notice(self.client.url)
            case cmd.Server(str() as url):
                self.client.close()
                self.client = RestClient(
                    url, http2=self.client.http2, credentials=self.client.credentials, tls=self.client.tls
                )
                if self.schema is not None:
                    self.schema.stale = True
                return self.banner()
            case cmd.Simple("help"):
                out.lines(HELP.split("\n"))
            case cmd.Simple("exit" | "quit"):
                raise ShellExit
            case cmd.Simple("clear"):
                out.console.clear()
            case cmd.Simple("history"):
                out.lines(f"{n:>4}  {entry}" for n, entry in enumerate(self.history, 1))
            case cmd.Simple("version"):
                out.lines([f"Version: {client_version()}"])
            case cmd.Invalid(message):
                out.error(message)
                return False
        return True

    def _run_script(self, path: Path, depth: int) -> bool:
        if depth >= _MAX_SCRIPT_DEPTH:
            self.terminal.error(f"RUN SCRIPT nested more than {_MAX_SCRIPT_DEPTH} deep: {path}")
            return False
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            self.terminal.error(f"Failed to read file: {path} ({error.strerror})")
            return False
        return self.run_text(text, depth=depth + 1)
