"""The commands of ``ksqlpy migrations``, named and behaving as ksql-migrations' commands."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from cli.client import RestClient, ServerError, ServerUnreachable
from cli.migrations.metadata import (
    NONE,
    Metadata,
    State,
    VersionRecord,
    create_stream_sql,
    create_table_sql,
    service_id,
)
from cli.migrations.project import (
    MigrationFile,
    MigrationsConfig,
    MigrationsError,
    create_file,
    file_statements,
    load_config,
    migration_files,
    new_project,
    substitute,
)
from cli.tls import TlsConfigError, client_context

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)

# Statements ksql-migrations handles on the client side: (pattern, handler name).
_DEFINE = re.compile(r"^DEFINE\s+(\w+)\s*=\s*'((?:[^']|'')*)'\s*;$", re.IGNORECASE | re.DOTALL)
_UNDEFINE = re.compile(r"^UNDEFINE\s+(\w+)\s*;$", re.IGNORECASE)
_SET = re.compile(r"^SET\s+'([^']+)'\s*=\s*'((?:[^']|'')*)'\s*;$", re.IGNORECASE | re.DOTALL)
_UNSET = re.compile(r"^UNSET\s+'([^']+)'\s*;$", re.IGNORECASE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ksql-migrations' options and commands to ``parser``."""
    parser.add_argument("-c", "--config-file", type=Path, help="the project's ksql-migrations.properties")
    commands = parser.add_subparsers(dest="migrations_command", metavar="COMMAND", required=True)
    project = commands.add_parser("new-project", help="create a project directory and config file")
    project.add_argument("project_path", type=Path)
    project.add_argument("server_url")
    commands.add_parser("initialize-metadata", help="create the migrations metadata stream and table")
    commands.add_parser("destroy-metadata", help="drop the metadata stream and table and their topics")
    create = commands.add_parser("create", help="create a blank migration file")
    create.add_argument("description")
    create.add_argument("-v", "--version", type=int)
    apply = commands.add_parser("apply", help="apply migration files to the server")
    which = apply.add_mutually_exclusive_group(required=True)
    which.add_argument("-n", "--next", action="store_true", help="apply the next migration")
    which.add_argument("-a", "--all", action="store_true", help="apply all pending migrations")
    which.add_argument("-u", "--until", type=int, metavar="V", help="apply migrations up to version V")
    which.add_argument("-v", "--version", type=int, metavar="V", help="apply migration version V")
    apply.add_argument("--dry-run", action="store_true", help="print the statements, run nothing")
    apply.add_argument("-d", "--define", action="append", default=[], metavar="K=V")
    commands.add_parser("info", help="show the current and available migrations")
    commands.add_parser("validate", help="check applied migrations against the local files")


def run(args: argparse.Namespace) -> int:
    """Run the chosen command; returns the exit status (non-zero on any error)."""
    try:
        if args.migrations_command == "new-project":
            path = new_project(args.project_path, args.server_url)
            _out.print(f"Created project config file {path}")
            return 0
        if args.config_file is None:
            raise MigrationsError("The --config-file option is required for this command")
        config = load_config(args.config_file)
        if args.migrations_command == "create":
            path = create_file(config.migrations_dir, args.description, args.version)
            _out.print(f"Created migration file {path}")
            return 0
        command = _SERVER_COMMANDS[args.migrations_command]
        # ssl.truststore.* / ssl.keystore.* in the project's file reach https servers.
        tls = client_context(config.properties)
        with RestClient(config.server_url, credentials=config.credentials, tls=tls) as client:
            return command(args, config, client)
    except (MigrationsError, ServerError, ServerUnreachable, TlsConfigError) as error:
        _err.print(f"[bold red]Error:[/] {escape(str(error))}")
        return 1


def _initialize(args: argparse.Namespace, config: MigrationsConfig, client: RestClient) -> int:
    sid = service_id(client)
    existing = _source_names(client)
    for name, sql in (
        (config.stream_name, create_stream_sql(config, sid)),
        (config.table_name, create_table_sql(config, sid)),
    ):
        if name.upper() in existing:
            # Running it again is harmless: what exists is kept, what is missing is made.
            _out.print(f"{name} already exists; skipping it.")
            continue
        try:
            client.ksql(sql)
        except ServerError as error:
            raise MigrationsError(f"Failed to initialize migrations metadata: {error}\n{sql}") from error
    _out.print(f"Migrations metadata ready: stream {config.stream_name}, table {config.table_name}.")
    return 0


def _source_names(client: RestClient) -> set[str]:
    names = set()
    for statement in ("SHOW STREAMS;", "SHOW TABLES;"):
        for entity in client.ksql(statement):
            for source in entity.get("streams") or entity.get("tables") or ():
                names.add(str(source.get("name", "")).upper())
    return names


def _destroy(args: argparse.Namespace, config: MigrationsConfig, client: RestClient) -> int:
    # The table is a query's sink: that query must end before the table can be dropped.
    for entity in client.ksql("SHOW QUERIES;"):
        for query in entity.get("queries") or ():
            if config.table_name in (query.get("sinks") or ()):
                client.ksql(f"TERMINATE {query['id']};")
    for kind, name in (("TABLE", config.table_name), ("STREAM", config.stream_name)):
        try:
            client.ksql(f"DROP {kind} {name} DELETE TOPIC;")
        except ServerError as error:
            _err.print(f"[yellow]Skipping {kind.lower()} {name}:[/] {escape(str(error))}")
    _out.print("Migrations metadata destroyed.")
    return 0


def _validate(args: argparse.Namespace, config: MigrationsConfig, client: RestClient) -> int:
    problems = _checksum_problems(Metadata(client, config), migration_files(config.migrations_dir))
    for problem in problems:
        _err.print(f"[bold red]Validation failed:[/] {escape(problem)}")
    if problems:
        return 1
    _out.print("Successfully validated migrations.")
    return 0


def _checksum_problems(metadata: Metadata, files: Sequence[MigrationFile]) -> list[str]:
    by_version = {str(f.version): f for f in files}
    problems = []
    for record in metadata.history():
        if record.state != State.MIGRATED:
            continue
        file = by_version.get(record.version)
        if file is None:
            problems.append(f"No migration file found for applied version {record.version}")
        elif file.checksum != record.checksum:
            problems.append(
                f"Version {record.version} ({file.path.name}) has checksum {file.checksum}, "
                f"but {record.checksum} was applied"
            )
    return problems


def _info(args: argparse.Namespace, config: MigrationsConfig, client: RestClient) -> int:
    metadata = Metadata(client, config)
    records = {r.version: r for r in metadata.history()}
    current = metadata.current()
    _out.print(f"Current migration version: {current.version if current else NONE}")
    header = ("Version", "Name", "State", "Previous Version", "Started On", "Completed On", "Error Reason")
    rows = []
    for file in migration_files(config.migrations_dir):
        record = records.get(str(file.version))
        if record is None:
            rows.append(
                (str(file.version), file.description, State.PENDING.value, "N/A", "N/A", "N/A", "N/A")
            )
        else:
            rows.append(
                (
                    record.version,
                    record.name,
                    record.state,
                    record.previous or NONE,
                    _time(record.started_on),
                    _time(record.completed_on),
                    record.error_reason or "N/A",
                )
            )
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    line = "-" * (sum(widths) + 3 * len(widths))
    _out.print(line)
    for row in (header, *rows):
        _out.print(" " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if row is header:
            _out.print(line)
    _out.print(line)
    return 0


def _time(millis: str) -> str:
    if not millis.isdigit():
        return millis or "N/A"
    return datetime.fromtimestamp(int(millis) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _apply(args: argparse.Namespace, config: MigrationsConfig, client: RestClient) -> int:
    metadata = Metadata(client, config)
    files = migration_files(config.migrations_dir)
    problems = _checksum_problems(metadata, files)
    if problems:
        raise MigrationsError("Failed to validate applied migrations: " + "; ".join(problems))
    latest = metadata.latest_migrated()
    done = int(latest.version) if latest else 0
    pending = [f for f in files if f.version > done]
    match args:
        case argparse.Namespace(next=True):
            chosen = pending[:1]
        case argparse.Namespace(until=int() as until):
            chosen = [f for f in pending if f.version <= until]
        case argparse.Namespace(version=int() as version):
            chosen = [f for f in pending if f.version == version]
            if not chosen:
                raise MigrationsError(f"No pending migration file with version {version}")
        case _:
            chosen = pending
    if not chosen:
        _out.print("No migrations to apply.")
        return 0
    variables = dict(_pair(text) for text in args.define)
    previous = latest.version if latest else NONE
    for file in chosen:
        if not _apply_file(metadata, file, previous, variables, dry_run=args.dry_run):
            return 1
        previous = str(file.version)
    _out.print("Migrations applied successfully." if not args.dry_run else "Dry run complete.")
    return 0


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise MigrationsError(f"Invalid --define '{text}': expected NAME=VALUE")
    return key, value


def _apply_file(
    metadata: Metadata, file: MigrationFile, previous: str, defines: dict[str, str], *, dry_run: bool
) -> bool:
    """Run one file's statements, recording RUNNING then MIGRATED or ERROR; False on error."""
    checksum = file.checksum
    started = str(int(time.time() * 1000))

    def record(state: State, completed: str = "", reason: str = "") -> VersionRecord:
        return VersionRecord(
            str(file.version),
            str(file.version),
            file.description,
            state.value,
            checksum,
            started,
            completed,
            previous,
            reason,
        )

    _out.print(f"Loading migration file {file.path.name}")
    statements = file_statements(file.path.read_text(encoding="utf-8"))
    if not dry_run:
        metadata.write(record(State.RUNNING))
    variables = dict(defines)
    properties: dict[str, str] = {}
    for statement in statements:
        text = substitute(statement.text, variables)
        if dry_run:
            _out.print(escape(text))
        try:
            _run_statement(metadata.client, text, variables, properties, dry_run=dry_run)
        except ServerError as error:
            reason = f"Failed to execute sql: {text}. Error: {error}"
            line, column = statement.file_position(str(error))
            _err.print(
                f"[bold red]Error in {escape(file.path.name)} at line {line}, column {column}:[/] "
                f"{escape(str(error))}\n[red]{escape(text)}[/]"
            )
            metadata.write(record(State.ERROR, str(int(time.time() * 1000)), reason))
            return False
    if not dry_run:
        metadata.write(record(State.MIGRATED, str(int(time.time() * 1000))))
        _out.print(f"Successfully migrated to version {file.version}")
    return True


def _run_statement(
    client: RestClient, text: str, variables: dict[str, str], properties: dict[str, str], *, dry_run: bool
) -> None:
    """DEFINE/UNDEFINE/SET/UNSET change this file's variables and properties; the rest go to /ksql."""
    handlers: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], object]], ...] = (
        (_DEFINE, lambda m: variables.__setitem__(m.group(1), m.group(2).replace("''", "'"))),
        (_UNDEFINE, lambda m: variables.pop(m.group(1), None)),
        (_SET, lambda m: properties.__setitem__(m.group(1), m.group(2).replace("''", "'"))),
        (_UNSET, lambda m: properties.pop(m.group(1), None)),
    )
    for pattern, handle in handlers:
        match = pattern.match(text)
        if match is not None:
            handle(match)
            return
    if not dry_run:
        client.ksql(text, properties=properties, variables=variables)


_SERVER_COMMANDS: dict[str, Callable[[argparse.Namespace, MigrationsConfig, RestClient], int]] = {
    "initialize-metadata": _initialize,
    "destroy-metadata": _destroy,
    "validate": _validate,
    "info": _info,
    "apply": _apply,
}
