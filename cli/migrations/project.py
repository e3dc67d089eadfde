"""The local side of a migrations project: its properties file and its migration files.

A project is a directory holding ``ksql-migrations.properties`` and ``migrations/``, whose files
are named ``V<6-digit version>__<Description_with_underscores>.sql`` as ksql-migrations names
them. A file's checksum is the MD5 of its bytes (what ksql-migrations records), so editing an
applied file is caught by ``validate``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cli.splitter import split_statements, strip_leading_comments

CONFIG_FILE_NAME = "ksql-migrations.properties"
MIGRATIONS_DIR = "migrations"
SERVER_URL = "ksql.server.url"
STREAM_NAME = "ksql.migrations.stream.name"
TABLE_NAME = "ksql.migrations.table.name"
STREAM_TOPIC = "ksql.migrations.stream.topic.name"
TABLE_TOPIC = "ksql.migrations.table.topic.name"
REPLICAS = "ksql.migrations.topic.replicas"
DIR_OVERRIDE = "ksql.migrations.dir.override"
BASIC_USERNAME = "ksql.auth.basic.username"
BASIC_PASSWORD = "ksql.auth.basic.password"

# Written commented-out into a new project's properties file, as ksql-migrations does.
_OPTIONAL_DEFAULTS: tuple[tuple[str, str], ...] = (
    (STREAM_NAME, "MIGRATION_EVENTS"),
    (TABLE_NAME, "MIGRATION_SCHEMA_VERSIONS"),
    (STREAM_TOPIC, "default_ksql_MIGRATION_EVENTS"),
    (TABLE_TOPIC, "default_ksql_MIGRATION_SCHEMA_VERSIONS"),
    (REPLICAS, "1"),
    (DIR_OVERRIDE, ""),
)

_FILE_NAME = re.compile(r"^V(\d{6})__(.+)\.sql$")
_SERVER_POSITION = re.compile(r"^line (\d+):(\d+)")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MigrationsError(Exception):
    """A problem the tool reports and exits non-zero for."""


@dataclass(frozen=True, slots=True)
class MigrationsConfig:
    """The properties of one project and the directory its migration files live in."""

    properties: dict[str, str]
    migrations_dir: Path

    @property
    def server_url(self) -> str:
        url = self.properties.get(SERVER_URL, "").strip()
        if not url:
            raise MigrationsError(f"'{SERVER_URL}' is not set in the config file")
        return url

    @property
    def credentials(self) -> tuple[str, str] | None:
        """BASIC credentials for a server with authentication, as ksql-migrations names them."""
        user = self.properties.get(BASIC_USERNAME, "").strip()
        return (user, self.properties.get(BASIC_PASSWORD, "")) if user else None

    @property
    def stream_name(self) -> str:
        return self.properties.get(STREAM_NAME) or "MIGRATION_EVENTS"

    @property
    def table_name(self) -> str:
        return self.properties.get(TABLE_NAME) or "MIGRATION_SCHEMA_VERSIONS"

    def stream_topic(self, service_id: str) -> str:
        return self.properties.get(STREAM_TOPIC) or f"{service_id}ksql_{self.stream_name}"

    def table_topic(self, service_id: str) -> str:
        return self.properties.get(TABLE_TOPIC) or f"{service_id}ksql_{self.table_name}"

    @property
    def replicas(self) -> int:
        return int(self.properties.get(REPLICAS) or 1)


def read_properties(text: str) -> dict[str, str]:
    """Parse Java-properties text (``key=value`` or ``key: value``; ``#``/``!`` comments)."""
    properties: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"^([^=:\s]+)\s*[=:]?\s*(.*)$", line)
        if match is not None:
            properties[match.group(1)] = match.group(2).strip()
    return properties


def load_config(path: Path) -> MigrationsConfig:
    """The project configured by the properties file at ``path``."""
    try:
        properties = read_properties(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise MigrationsError(f"Cannot read config file {path}: {error.strerror}") from error
    override = properties.get(DIR_OVERRIDE, "").strip()
    directory = Path(override) if override else path.parent / MIGRATIONS_DIR
    return MigrationsConfig(properties=properties, migrations_dir=directory)


def new_project(path: Path, server_url: str) -> Path:
    """Create ``path/migrations`` and ``path/ksql-migrations.properties``; returns the latter."""
    config_file = path / CONFIG_FILE_NAME
    if config_file.exists():
        raise MigrationsError(f"Project already exists: {config_file}")
    (path / MIGRATIONS_DIR).mkdir(parents=True, exist_ok=True)
    lines = [f"{SERVER_URL}={server_url}", ""]
    lines += [f"# {key}={value}" for key, value in _OPTIONAL_DEFAULTS]
    config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config_file


@dataclass(frozen=True, slots=True)
class MigrationFile:
    """One ``V…__….sql`` file."""

    version: int
    description: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.md5(self.path.read_bytes()).hexdigest()  # ksql-migrations records MD5


def migration_files(directory: Path) -> list[MigrationFile]:
    """The project's migration files in version order; two files with one version is an error."""
    if not directory.is_dir():
        raise MigrationsError(f"Migrations directory not found: {directory}")
    found: dict[int, MigrationFile] = {}
    for path in sorted(directory.iterdir()):
        match = _FILE_NAME.match(path.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationsError(f"Found multiple migration files with version {version}")
        found[version] = MigrationFile(version, match.group(2).replace("_", " "), path)
    return [found[v] for v in sorted(found)]


def create_file(directory: Path, description: str, version: int | None) -> Path:
    """Write an empty migration file, numbered one after the highest unless ``version`` is given."""
    existing = migration_files(directory)
    if version is None:
        version = existing[-1].version + 1 if existing else 1
    if not 0 < version <= 999_999:
        raise MigrationsError(f"Invalid version {version}: versions are between 1 and 999999")
    if any(file.version == version for file in existing):
        raise MigrationsError(f"Found existing migration file with version {version}")
    name = re.sub(r"\s+", "_", description.strip())
    if not name:
        raise MigrationsError("The migration description must not be empty")
    path = directory / f"V{version:06d}__{name}.sql"
    path.write_text("", encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a migration file and where it starts (1-based line and column)."""

    text: str
    line: int
    column: int

    def file_position(self, message: str) -> tuple[int, int]:
        """Where in the file an error happened: the server's ``line L:C`` (1-based, within
        the statement, as ksqlDB prints it) moved by the statement's start; else the start."""
        match = _SERVER_POSITION.match(message)
        if match is None:
            return self.line, self.column
        line, column = int(match.group(1)), int(match.group(2))
        return self.line + line - 1, (self.column + column - 1 if line == 1 else column)


def file_statements(text: str) -> list[Statement]:
    """Split a migration file into statements, respecting quotes and comments.

    Text after the last ``;`` that is not blank is an unterminated statement, an error.
    """
    split = split_statements(text)
    statements: list[Statement] = []
    cursor = 0
    for statement in split.statements:
        at = text.find(statement, cursor)
        if at < 0:  # cannot happen for text cut from ``text``; keep the last known position
            at = cursor
        else:
            cursor = at + len(statement)
        line = text.count("\n", 0, at) + 1
        column = at - (text.rfind("\n", 0, at) + 1) + 1
        statements.append(Statement(statement, line, column))
    if split.open_mode is not None or not split.rest_is_blank:
        rest = strip_leading_comments(split.rest).strip()
        raise MigrationsError(f"Unmatched quote or missing ';' after: {rest[:80]}")
    return statements


def substitute(text: str, variables: dict[str, str]) -> str:
    """Replace ``${name}`` by defined variables (names compare case-insensitively, as in ksqlDB)."""
    lowered = {key.lower(): value for key, value in variables.items()}

    def replace(match: re.Match[str]) -> str:
        return lowered.get(match.group(1).lower(), match.group(0))

    return _VARIABLE.sub(replace, text)
