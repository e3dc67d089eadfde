"""``ksqlpy migrations`` end to end against a real server: project, metadata, apply, info, validate."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from ksqlpy.main import main


def migrations(config: Path, *args: str) -> int:
    return main(["migrations", "--config-file", str(config), *args])


def pull(url: str, sql: str) -> list[list[object]]:
    response = httpx.post(f"{url}/query", json={"ksql": sql, "streamsProperties": {}}, timeout=30)
    assert response.status_code == 200, response.text
    return [item["row"]["columns"] for item in response.json() if "row" in item]


@pytest.fixture
def project(tmp_path: Path, memory_server_url: str) -> Path:
    assert main(["migrations", "new-project", str(tmp_path / "proj"), memory_server_url]) == 0
    config = tmp_path / "proj" / "ksql-migrations.properties"
    assert f"ksql.server.url={memory_server_url}" in config.read_text()
    assert (tmp_path / "proj" / "migrations").is_dir()
    assert migrations(config, "initialize-metadata") == 0
    # a second run keeps the metadata that exists
    assert migrations(config, "initialize-metadata") == 0
    return config


def write_migration(config: Path, description: str, sql: str) -> Path:
    assert migrations(config, "create", description) == 0
    created = max((config.parent / "migrations").glob("V*.sql"))
    created.write_text(sql)
    return created


def test_apply_info_validate(
    project: Path, memory_server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_migration(
        project,
        "Create orders",
        "-- the source; a ';' in a comment\n"
        "DEFINE topic = 'orders_topic';\n"
        "CREATE STREAM ORDERS (ID INT KEY, ITEM STRING) WITH (KAFKA_TOPIC='${topic}', "
        "VALUE_FORMAT='JSON', PARTITIONS=1);\n",
    )
    second = write_migration(project, "Add item", "INSERT INTO ORDERS (ID, ITEM) VALUES (1, 'a;b');\n")
    assert [first.name, second.name] == ["V000001__Create_orders.sql", "V000002__Add_item.sql"]
    capsys.readouterr()

    assert migrations(project, "apply", "--all") == 0
    assert migrations(project, "info") == 0
    out = capsys.readouterr().out
    assert "Current migration version: 2" in out.splitlines()
    rows = {
        line.split("|")[0].strip(): [c.strip() for c in line.split("|")]
        for line in out.splitlines()
        if "|" in line
    }
    assert rows["1"][1:4] == ["Create orders", "MIGRATED", "<none>"]
    assert rows["2"][1:4] == ["Add item", "MIGRATED", "1"]
    # aligned: every table line puts its separators in the same columns
    bars = {tuple(m.start() for m in re.finditer(r"\|", line)) for line in out.splitlines() if "|" in line}
    assert len(bars) == 1

    described = httpx.post(f"{memory_server_url}/ksql", json={"ksql": "DESCRIBE ORDERS;"}, timeout=30).json()
    assert described[0]["sourceDescription"]["topic"] == "orders_topic"
    versions = pull(
        memory_server_url, "SELECT VERSION, STATE FROM MIGRATION_SCHEMA_VERSIONS WHERE VERSION_KEY='CURRENT';"
    )
    assert versions == [["2", "MIGRATED"]]

    assert migrations(project, "validate") == 0
    first.write_text(first.read_text() + "-- edited\n")
    assert migrations(project, "validate") != 0
    assert "checksum" in capsys.readouterr().err


def test_failing_migration_is_error(
    project: Path, memory_server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_migration(
        project,
        "Good",
        "CREATE STREAM S1 (A INT) WITH (KAFKA_TOPIC='s1', VALUE_FORMAT='JSON', PARTITIONS=1);",
    )
    bad = "CREATE STREAM S2 AS SELECT * FROM NO_SUCH_SOURCE;"
    write_migration(project, "Bad", bad)
    capsys.readouterr()
    assert migrations(project, "apply", "--all") == 1
    err = capsys.readouterr().err
    # the server names the unknown source's position; the error points there in the file
    assert f"V000002__Bad.sql at line 1, column {bad.index('NO_SUCH_SOURCE') + 1}:" in err
    assert "NO_SUCH_SOURCE" in err
    current = pull(
        memory_server_url,
        "SELECT VERSION, STATE, ERROR_REASON FROM MIGRATION_SCHEMA_VERSIONS WHERE VERSION_KEY='CURRENT';",
    )
    assert current[0][:2] == ["2", "ERROR"]
    assert "NO_SUCH_SOURCE" in str(current[0][2])
    migrated = pull(memory_server_url, "SELECT STATE FROM MIGRATION_SCHEMA_VERSIONS WHERE VERSION_KEY='1';")
    assert migrated == [["MIGRATED"]]


def test_dry_run_and_destroy(
    project: Path, memory_server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_migration(
        project,
        "Only",
        "CREATE STREAM S3 (A INT) WITH (KAFKA_TOPIC='s3', VALUE_FORMAT='JSON', PARTITIONS=1);",
    )
    capsys.readouterr()
    assert migrations(project, "apply", "--next", "--dry-run") == 0
    assert "CREATE STREAM S3" in capsys.readouterr().out
    listed = httpx.post(f"{memory_server_url}/ksql", json={"ksql": "SHOW STREAMS;"}, timeout=30).json()
    names = {s["name"] for s in listed[0]["streams"]}
    assert "S3" not in names and "MIGRATION_EVENTS" in names
    assert migrations(project, "destroy-metadata") == 0
    listed = httpx.post(f"{memory_server_url}/ksql", json={"ksql": "SHOW STREAMS;"}, timeout=30).json()
    assert "MIGRATION_EVENTS" not in {s["name"] for s in listed[0]["streams"]}


def test_error_is_retried_and_defines_apply(
    project: Path, memory_server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_migration(project, "Needs topic", "CREATE STREAM S4 AS SELECT * FROM ${source};")
    assert migrations(project, "apply", "--next") == 1
    # the retry runs the edited file: its SET is kept client-side, --define fills ${source}
    bad.write_text(
        "SET 'auto.offset.reset' = 'earliest';\n"
        "CREATE STREAM SRC (A INT) WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON', PARTITIONS=1);\n"
        "CREATE STREAM S4 AS SELECT * FROM ${source};\n"
    )
    assert migrations(project, "apply", "--all", "--define", "source=SRC") == 0
    state = pull(
        memory_server_url,
        "SELECT VERSION, STATE, PREVIOUS FROM MIGRATION_SCHEMA_VERSIONS WHERE VERSION_KEY='CURRENT';",
    )
    assert state == [["1", "MIGRATED", "<none>"]]
    assert migrations(project, "validate") == 0
    assert migrations(project, "apply", "--all") == 0
    assert "No migrations to apply" in capsys.readouterr().out


def test_unterminated_statement_is_reported(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_migration(project, "Open quote", "CREATE STREAM S5 (A INT) WITH (KAFKA_TOPIC='s5);")
    capsys.readouterr()
    assert migrations(project, "apply", "--all") == 1
    assert "Unmatched quote" in capsys.readouterr().err


def test_syntax_error_position_is_in_the_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_migration(
        project,
        "Typo",
        "CREATE STREAM S6 (A INT) WITH (KAFKA_TOPIC='s6', VALUE_FORMAT='JSON', PARTITIONS=1);\n"
        "  CREATE STREAM S7 (A INT) WITH (KAFKA_TOPIC='s7', VALUE_FORMAT='JSON', PARTITIONS=1);\n"
        "CREATE STREAM S8 (A INT)\nWITH (KAFKA_TOPIC='s8' VALUE_FORMAT='JSON');\n",
    )
    capsys.readouterr()
    assert migrations(project, "apply", "--all") == 1
    err = capsys.readouterr().err
    found = re.search(r"V000001__Typo\.sql at line (\d+), column (\d+):.*line (\d+):(\d+)", err)
    assert found is not None, err
    file_line, file_column, stmt_line, stmt_column = map(int, found.groups())
    # the statement starts on the file's line 3, so its line L is the file's line L + 2
    # (it starts at column 1, so columns agree on every line)
    assert (file_line, file_column) == (stmt_line + 2, stmt_column)
    assert "S8" in err


def test_until_and_version_pick_migrations(
    project: Path, memory_server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in (1, 2, 3):
        write_migration(
            project,
            f"Stream {n}",
            f"CREATE STREAM U{n} (A INT) WITH (KAFKA_TOPIC='u{n}', VALUE_FORMAT='JSON', PARTITIONS=1);",
        )
    current = "SELECT VERSION FROM MIGRATION_SCHEMA_VERSIONS WHERE VERSION_KEY='CURRENT';"
    assert migrations(project, "apply", "--until", "2") == 0
    assert pull(memory_server_url, current) == [["2"]]
    assert migrations(project, "apply", "--version", "2") == 1  # already applied
    assert migrations(project, "apply", "--version", "3") == 0
    assert pull(memory_server_url, current) == [["3"]]
    capsys.readouterr()
    assert migrations(project, "info") == 0
    assert capsys.readouterr().out.count("MIGRATED") == 3
