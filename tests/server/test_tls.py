"""TLS listeners: PKCS12 and PEM key stores, HTTP/1.1 and HTTP/2 (ALPN), mutual TLS, protocol and
cipher settings, and a clear stop on unusable key material. Real servers, real handshakes."""

from __future__ import annotations

import logging
import re
import socket
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.sync.client import connect as ws_connect

from ksqlpy.server.app import create_app
from ksqlpy.server.config import ConfigError
from ksqlpy.server.tls import openssl_cipher_name, server_context
from tests.server.certs import PASSWORD, Pki, make_pki
from tests.server.conftest import ServerThread, free_port, open_engine, server_config


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextmanager
def tls_server(**props: str) -> Iterator[tuple[str, str]]:
    """A server with an https listener (first) and an http one; yields both base URLs."""
    secure, plain = free_port(), free_port()
    config = server_config(**{"listeners": f"https://127.0.0.1:{secure},http://127.0.0.1:{plain}", **props})
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    try:
        yield f"https://127.0.0.1:{secure}", f"http://127.0.0.1:{plain}"
    finally:
        thread.stop()
        engine.close()


def keystore(pki: Pki) -> dict[str, str]:
    return {
        "ssl.keystore.location": pki.server_p12(),
        "ssl.keystore.password": PASSWORD,
        "ssl.key.password": PASSWORD,
        "ssl.keystore.type": "PKCS12",
    }


def test_https_and_http_listeners_http1_and_http2(pki: Pki) -> None:
    with tls_server(**keystore(pki)) as (https, http):
        assert httpx.get(f"{http}/info", timeout=30).status_code == 200
        with httpx.Client(verify=pki.client_context(), timeout=30) as client:
            r = client.get(f"{https}/info")
            assert r.status_code == 200 and r.http_version == "HTTP/1.1"
            assert r.json()["KsqlServerInfo"]["ksqlServiceId"] == "default_"
        with httpx.Client(verify=pki.client_context(), http1=False, http2=True, timeout=30) as client:
            name = "TLS_S"
            created = client.post(
                f"{https}/ksql",
                json={
                    "ksql": f"CREATE STREAM {name} (ID VARCHAR KEY, V INT) "
                    "WITH (kafka_topic='tls_s', value_format='JSON', partitions=1);"
                },
            )
            assert created.status_code == 200 and created.http_version == "HTTP/2"
            rows = b'{"ID":"a","V":1}\n{"ID":"b","V":2}\n'
            inserted = client.post(
                f"{https}/inserts-stream", content=orjson.dumps({"target": name}) + b"\n" + rows
            )
            assert inserted.status_code == 200 and inserted.http_version == "HTTP/2"
            assert [orjson.loads(x)["status"] for x in inserted.content.splitlines()] == ["ok", "ok"]
            query = orjson.dumps(
                {
                    "sql": f"SELECT * FROM {name} EMIT CHANGES LIMIT 2;",
                    "properties": {"ksql.streams.auto.offset.reset": "earliest"},
                }
            )
            streamed = client.post(f"{https}/query-stream", content=query)
            assert streamed.status_code == 200 and streamed.http_version == "HTTP/2"
            assert [orjson.loads(x) for x in streamed.content.splitlines()[1:]] == [["a", 1], ["b", 2]]
        # The TLS listener speaks only TLS.
        with pytest.raises(httpx.HTTPError):
            httpx.get(https.replace("https", "http") + "/info", timeout=5)


def test_pem_keystore_with_encrypted_key(pki: Pki) -> None:
    props = {
        "ssl.keystore.location": pki.server_pem("keypass"),
        "ssl.key.password": "keypass",
        "ssl.keystore.type": "PEM",
    }
    with tls_server(**props) as (https, _):
        r = httpx.get(f"{https}/info", verify=pki.client_context(), timeout=30)
        assert r.status_code == 200


def test_mutual_tls_required(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    props = {
        **keystore(pki),
        "ssl.truststore.location": pki.truststore_p12(),
        "ssl.truststore.password": PASSWORD,
        "ssl.client.authentication": "REQUIRED",
    }
    with tls_server(**props) as (https, _):
        with caplog.at_level(logging.DEBUG, logger="ksqlpy.server.auth"):
            r = httpx.get(f"{https}/info", verify=pki.client_context(pki.client), timeout=30)
        assert r.status_code == 200
        # The certificate's subject is the user the request runs as.
        assert "GET /info from CN=alice,O=ksqlpy tests (127.0.0.1:" in "\n".join(caplog.messages)
        for who in (None, pki.stranger):  # no certificate, or one the truststore does not trust
            refused = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)
            with pytest.raises(refused), httpx.Client(verify=pki.client_context(who), timeout=10) as client:
                client.get(f"{https}/info")


def test_mutual_tls_requested_lets_anonymous_clients_in(pki: Pki) -> None:
    props = {
        **keystore(pki),
        "ssl.truststore.location": pki.write("ca.pem", pki.pem(pki.ca.cert)),
        "ssl.client.authentication": "REQUESTED",
    }
    with tls_server(**props) as (https, _):
        assert httpx.get(f"{https}/info", verify=pki.client_context(), timeout=30).status_code == 200
        assert (
            httpx.get(f"{https}/info", verify=pki.client_context(pki.client), timeout=30).status_code == 200
        )


def handshake(port: int, context: ssl.SSLContext) -> tuple[str, str]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cipher, version, _ = tls.cipher()  # type: ignore[misc]
        return cipher, version


def test_enabled_protocols_and_cipher_suites(pki: Pki) -> None:
    props = {
        **keystore(pki),
        "ssl.enabled.protocols": "TLSv1.2",
        "ssl.cipher.suites": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    }
    with tls_server(**props) as (https, _):
        port = int(https.rsplit(":", 1)[1])
        assert handshake(port, pki.client_context()) == ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLSv1.2")
        only13 = pki.client_context()
        only13.minimum_version = ssl.TLSVersion.TLSv1_3
        with pytest.raises(ssl.SSLError):
            handshake(port, only13)


def test_cipher_names_translate_to_openssl() -> None:
    assert openssl_cipher_name("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") == "ECDHE-RSA-AES128-GCM-SHA256"
    assert openssl_cipher_name("TLS_RSA_WITH_AES_256_CBC_SHA") == "AES256-SHA"
    assert (
        openssl_cipher_name("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")
        == "ECDHE-ECDSA-CHACHA20-POLY1305"
    )
    assert openssl_cipher_name("ECDHE-RSA-AES128-SHA") == "ECDHE-RSA-AES128-SHA"


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({}, "An https:// listener needs ssl.keystore.location"),
        (
            {"ssl.keystore.location": "/nonexistent/ks.p12"},
            "Cannot read ssl.keystore.location /nonexistent/ks.p12",
        ),
        (
            {"ssl.keystore.password": "wrong", "ssl.key.password": "wrong"},
            "or ssl.keystore.password is wrong",
        ),
        ({"ssl.client.authentication": "REQUIRED"}, "needs ssl.truststore.location"),
        (
            {"ssl.client.authentication": "SOMETIMES"},
            "Invalid value 'SOMETIMES' for ssl.client.authentication",
        ),
        ({"ssl.enabled.protocols": "SSLv3"}, "Invalid ssl.enabled.protocols 'SSLv3'"),
        ({"ssl.cipher.suites": "TLS_NOPE_WITH_NOTHING"}, "Unknown or disabled cipher suites"),
    ],
)
def test_unusable_settings_are_named(pki: Pki, props: dict[str, str], message: str) -> None:
    base = keystore(pki) if props and "ssl.keystore.location" not in props else {}
    config = server_config(**{"listeners": "https://127.0.0.1:1", **base, **props})
    with pytest.raises(ConfigError, match=re.escape(message)):
        server_context(config)


def test_unreadable_keystore_stops_the_server_with_one_line(pki: Pki, tmp_path: Path) -> None:
    bad = tmp_path / "server.p12"
    bad.write_bytes(b"this is no keystore")
    props = tmp_path / "server.properties"
    props.write_text(f"ssl.keystore.location={bad}\nssl.keystore.password={PASSWORD}\n")
    data = tmp_path / "data"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ksqlpy.main",
            "server",
            "--config",
            str(props),
            "--listeners",
            f"https://127.0.0.1:{free_port()}",
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    expected = (
        f"ksqlpy server: Cannot open the keystore {bad} (ssl.keystore.location): not a PKCS12 "
        "or PEM file, or ssl.keystore.password is wrong"
    )
    assert lines == [expected]
    assert not data.exists()


def test_websocket_query_over_tls(pki: Pki) -> None:
    with tls_server(**keystore(pki)) as (https, _):
        port = https.rsplit(":", 1)[1]
        request = urllib.parse.quote(orjson.dumps({"ksql": "SELECT * FROM KSQL_PROCESSING_LOG EMIT CHANGES;"}))
        url = f"wss://localhost:{port}/ws/query?request={request}"
        with ws_connect(url, ssl=pki.client_context(), open_timeout=30) as ws:
            schema = orjson.loads(ws.recv(timeout=30))
        assert schema[0]["name"] == "LOGGER"
