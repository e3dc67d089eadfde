"""Secrets stay secret: SHOW PROPERTIES prints them as ``[hidden]``, as ksqlDB does for Kafka's
PASSWORD-typed settings, whether they come from the server's configuration or a request."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from ksqlpy.runtime.config import HIDDEN, is_secret
from ksqlpy.server.config import ServerConfig
from tests.server.conftest import RunningServer, ServerThread, open_engine, server_config

JAAS = (
    'org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" '
    'password="jaas-pw-3141";'
)
SECRETS = {
    "ssl.keystore.password": "keystore-pw-2718",
    "ssl.key.password": "key-pw-1618",
    "ssl.truststore.password": "truststore-pw-1414",
    "sasl.jaas.config": JAAS,
    "kafka.sasl.password": "librdkafka-pw-1732",
    "ksql.schema.registry.basic.auth.user.info": "bob:sr-pw-2236",
}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    config = server_config(**SECRETS)
    engine = open_engine(config)
    from ksqlpy.server.app import create_app

    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    port = config.listeners[0].port
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", port=port, engine=engine)
    finally:
        thread.stop()
        engine.close()


def show_properties(server: RunningServer, overrides: dict[str, str] | None = None) -> httpx.Response:
    body = {"ksql": "SHOW PROPERTIES;", "streamsProperties": overrides or {}}
    r = httpx.post(f"{server.url}/ksql", content=orjson.dumps(body), timeout=30)
    assert r.status_code == 200, r.text
    return r


def test_show_properties_hides_configured_secrets(server: RunningServer) -> None:
    r = show_properties(server)
    shown = {p["name"]: p["value"] for p in r.json()[0]["properties"]}
    for name in SECRETS:
        assert shown[name] == HIDDEN, name
    for value in SECRETS.values():
        assert value not in r.text
    assert "jaas-pw-3141" not in r.text
    # Everything else is still shown as it is.
    assert shown["ksql.service.id"] == "default_"


def test_show_properties_hides_secrets_set_by_the_request(server: RunningServer) -> None:
    r = show_properties(server, {"sasl.jaas.config": JAAS.replace("3141", "9999")})
    shown = {p["name"]: p["value"] for p in r.json()[0]["properties"]}
    assert shown["sasl.jaas.config"] == HIDDEN
    assert "jaas-pw-9999" not in r.text


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("ssl.keystore.password", True),
        ("ksql.streams.ssl.truststore.password", True),
        ("ksql.streams.producer.sasl.jaas.config", True),
        ("kafka.sasl.oauthbearer.client.secret", True),
        ("ksql.functions.my_udf.api.key", True),
        ("ssl.keystore.location", False),
        ("ksql.service.id", False),
        ("bootstrap.servers", False),
    ],
)
def test_which_settings_are_secrets(name: str, secret: bool) -> None:
    assert is_secret(name) is secret


def test_unsupported_settings_get_one_warning_line_each() -> None:
    config = ServerConfig.load(
        environ={"KSQL_KSQL_STREAMS_TOPOLOGY_OPTIMIZATION": "all"},
        overrides={
            "listeners": "http://127.0.0.1:8088",
            "ksql.streams.state.dir": ":memory:",
            "sasl.mechanism": "PLAIN",
            "no.such.setting": "1",
            "ssl.keystore.location": "/etc/ksql/keystore.jks",
            "kafka.sasl.mechanism": "PLAIN",
            "ksql.streams.auto.offset.reset": "earliest",
        },
    )
    assert config.unsupported() == [
        "Ignoring unsupported setting ksql.streams.topology.optimization",
        "Ignoring unsupported setting no.such.setting",
        (
            "Ignoring unsupported setting sasl.mechanism: Kafka client settings take the kafka. prefix "
            "(kafka.sasl.mechanism, librdkafka's names)"
        ),
    ]
