"""Server configuration: properties files, KSQL_* environment variables, precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksqlpy.server.config import ConfigError, ServerConfig, env_name_to_property, parse_properties


@pytest.mark.parametrize(
    ("env", "prop"),
    [
        ("KSQL_LISTENERS", "listeners"),
        ("KSQL_BOOTSTRAP_SERVERS", "bootstrap.servers"),
        ("KSQL_KSQL_SERVICE_ID", "ksql.service.id"),
        ("KSQL_KSQL_STREAMS_STATE_DIR", "ksql.streams.state.dir"),
        ("KSQL_SOME__UNDERSCORED_NAME", "some_underscored.name"),
        ("KSQL_A___B", "a-b"),
    ],
)
def test_env_names_map_like_confluent_images(env: str, prop: str) -> None:
    assert env_name_to_property(env) == prop


def test_properties_file_syntax() -> None:
    text = "# comment\n! also\nlisteners=http://0.0.0.0:9000\nksql.service.id : svc_\nkey value\nlong=a,\\\n  b\n"
    assert parse_properties(text) == {
        "listeners": "http://0.0.0.0:9000",
        "ksql.service.id": "svc_",
        "key": "value",
        "long": "a,b",
    }


def test_precedence_file_env_overrides(tmp_path: Path) -> None:
    f = tmp_path / "ksql-server.properties"
    f.write_text("listeners=http://127.0.0.1:9001\nksql.service.id=from_file\nbootstrap.servers=file:9092\n")
    config = ServerConfig.load(
        path=f,
        environ={"KSQL_KSQL_SERVICE_ID": "from_env", "KSQL_HEAP_OPTS": "-Xmx1g", "HOME": "/root"},
        overrides={"bootstrap.servers": "cli:9092", "listeners": None},
    )
    assert config.service_id == "from_env"
    assert config.bootstrap_servers == "cli:9092"
    assert [listener.url for listener in config.listeners] == ["http://127.0.0.1:9001"]
    assert "heap.opts" not in config.properties


def test_defaults_select_embedded_store() -> None:
    config = ServerConfig.load(environ={})
    assert config.listeners[0].url == "http://0.0.0.0:8088"
    assert config.bootstrap_servers is None
    assert "bootstrap.servers" not in config.engine_properties()
    assert config.state_dir == "./ksqlpy-data"


def test_http_and_https_listeners() -> None:
    config = ServerConfig.load(environ={"KSQL_LISTENERS": "http://0.0.0.0:8088,https://127.0.0.1:8443"})
    assert [(x.scheme, x.host, x.port) for x in config.listeners] == [
        ("http", "0.0.0.0", 8088), ("https", "127.0.0.1", 8443)]


def test_other_listener_schemes_are_refused() -> None:
    with pytest.raises(ConfigError, match="listeners are http:// or https:// URLs"):
        ServerConfig.load(environ={"KSQL_LISTENERS": "ftp://0.0.0.0:8443"})


def test_library_pages_release_is_on_unless_turned_off() -> None:
    assert ServerConfig.load(environ={}).release_library_pages
    off = ServerConfig.load(environ={"KSQL_KSQLPY_MEMORY_RELEASE_LIBRARY_PAGES": "false"})
    assert not off.release_library_pages
    with pytest.raises(ConfigError, match="ksqlpy.memory.release.library.pages"):
        ServerConfig.load(environ={"KSQL_KSQLPY_MEMORY_RELEASE_LIBRARY_PAGES": "maybe"}).validate()
