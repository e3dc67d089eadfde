"""The server side of migrations: the metadata stream and table, and the version records.

Every state change of a migration is one event in the metadata stream, written twice: under
its version's key and under ``CURRENT``. The table keeps the latest event per key
(``LATEST_BY_OFFSET`` … ``GROUP BY VERSION_KEY``), so a pull query on ``CURRENT`` gives the
newest migration and each record's ``PREVIOUS`` leads back through the history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from enum import StrEnum

from cli.client import RestClient, ServerError
from cli.migrations.project import MigrationsConfig, MigrationsError

CURRENT = "CURRENT"
NONE = "<none>"
# How long to wait for the table to show an event just written (it is updated by a query).
_SETTLE_SECONDS = 15.0


class State(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    MIGRATED = "MIGRATED"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One row of the metadata table (all values as the strings ksql-migrations stores)."""

    version_key: str
    version: str
    name: str
    state: str
    checksum: str
    started_on: str
    completed_on: str
    previous: str
    error_reason: str


_COLUMNS = tuple(f.name for f in fields(VersionRecord))


def create_stream_sql(config: MigrationsConfig, service_id: str) -> str:
    return (
        f"CREATE STREAM {config.stream_name} (\n"
        "  version_key  STRING KEY,\n  version      STRING,\n  name         STRING,\n"
        "  state        STRING,\n  checksum     STRING,\n  started_on   STRING,\n"
        "  completed_on STRING,\n  previous     STRING,\n  error_reason STRING\n"
        f") WITH (\n  KAFKA_TOPIC='{config.stream_topic(service_id)}',\n  VALUE_FORMAT='JSON',\n"
        f"  PARTITIONS=1,\n  REPLICAS={config.replicas}\n);"
    )


def create_table_sql(config: MigrationsConfig, service_id: str) -> str:
    latest = ",\n".join(f"    latest_by_offset({c}) AS {c}" for c in _COLUMNS[1:])
    return (
        f"CREATE TABLE {config.table_name}\n  WITH (\n    KAFKA_TOPIC='{config.table_topic(service_id)}'\n  )\n"
        f"  AS SELECT\n    version_key,\n{latest}\n  FROM {config.stream_name}\n  GROUP BY version_key;"
    )


def service_id(client: RestClient) -> str:
    return str(client.info().get("ksqlServiceId") or "default_")


class Metadata:
    """Reads and writes the version records of one project on one server."""

    def __init__(self, client: RestClient, config: MigrationsConfig) -> None:
        self.client = client
        self.config = config

    def record(self, key: str) -> VersionRecord | None:
        """The table's row for ``key`` (a version number or ``CURRENT``), or None."""
        sql = f"SELECT * FROM {self.config.table_name} WHERE VERSION_KEY = '{key}';"
        try:
            stream = self.client.query(sql)
            rows = list(stream)
        except ServerError as error:
            raise MigrationsError(
                f"Failed to read the migrations metadata table {self.config.table_name}: {error}. "
                "Has 'initialize-metadata' been run?"
            ) from error
        if not rows:
            return None
        names = [n.lower() for n in stream.header.column_names]
        values = dict(zip(names, rows[0], strict=False))
        return VersionRecord(*("" if values.get(c) is None else str(values.get(c)) for c in _COLUMNS))

    def current(self) -> VersionRecord | None:
        return self.record(CURRENT)

    def history(self) -> list[VersionRecord]:
        """Applied (or attempted) versions, newest first, following ``PREVIOUS`` from CURRENT."""
        current = self.current()
        if current is None:
            return []
        records = [current]
        previous = current.previous
        while previous and previous != NONE:
            record = self.record(previous)
            if record is None:
                raise MigrationsError(f"Metadata has no record for version {previous}")
            records.append(record)
            previous = record.previous
        return records

    def latest_migrated(self) -> VersionRecord | None:
        """The newest version whose state is MIGRATED (an ERROR on top of it is retried)."""
        return next((r for r in self.history() if r.state == State.MIGRATED), None)

    def write(self, record: VersionRecord) -> None:
        """Write ``record`` under its version and as CURRENT, then wait until the table shows it."""
        for key in (record.version, CURRENT):
            values = [key, *(getattr(record, c) for c in _COLUMNS[1:])]
            literals = ", ".join("NULL" if v == "" else "'" + v.replace("'", "''") + "'" for v in values)
            self.client.ksql(
                f"INSERT INTO {self.config.stream_name} ({', '.join(_COLUMNS)}) VALUES ({literals});"
            )
        deadline = time.monotonic() + _SETTLE_SECONDS
        while True:
            seen = self.current()
            if seen is not None and (seen.version, seen.state) == (record.version, record.state):
                return
            if time.monotonic() > deadline:
                raise MigrationsError(
                    f"The metadata table did not show version {record.version} as {record.state}"
                )
            time.sleep(0.05)
