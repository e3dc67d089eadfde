"""BASIC authentication on a real server: users from a JAAS-named password file in every Jetty
form, ksqlDB's 401/403 bodies on every endpoint and protocol, open paths, logs and metrics."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ksqlpy.server.app import create_app
from ksqlpy.server.auth import auth_settings, deobfuscate, jaas_config_path, obfuscate
from ksqlpy.server.config import ConfigError, ServerConfig
from tests.server.conftest import RunningServer, ServerThread, open_engine, server_config

UNAUTHORIZED = {"@type": "generic_error", "error_code": 40100, "message": "Unauthorized"}
FORBIDDEN = {"@type": "generic_error", "error_code": 40300, "message": "Forbidden"}


def unix_crypt(password: str, salt: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    return str(crypt.crypt(password, salt))


USERS = {  # name -> (password, line in the password file)
    "alice": ("alice-pw", "alice: alice-pw, admin"),
    "bob": ("bob-pw", f"bob: {obfuscate('bob-pw')},user"),
    "carol": ("carol-pw", f"carol:MD5:{hashlib.md5(b'carol-pw').hexdigest()}, admin"),
    "dave": ("dave-pw", f"dave: CRYPT:{unix_crypt('dave-pw', 'da')}, user, other"),
    "eve": ("eve-pw", "eve: eve-pw"),  # no role
    "mallory": ("mallory-pw", "mallory: mallory-pw, guest"),  # a role that is not allowed
}


def write_users(where: Path) -> tuple[Path, Path]:
    password_file = where / "password-file"
    password_file.write_text(
        "# users of the test server\n" + "\n".join(line for _, line in USERS.values()) + "\n"
    )
    jaas = where / "jaas_config.file"
    jaas.write_text(
        "/* ksqlDB's JAAS file */\n"
        'Other { org.eclipse.jetty.security.jaas.spi.PropertyFileLoginModule required file="/nowhere"; };\n'
        "KsqlServer-Props {\n"
        "  org.eclipse.jetty.security.jaas.spi.PropertyFileLoginModule required\n"
        f'  file="{password_file}"\n'
        '  debug="false";\n'
        "};\n"
    )
    return password_file, jaas


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    password_file, jaas = write_users(tmp_path_factory.mktemp("auth"))
    config = server_config(
        **{
            "authentication.method": "BASIC",
            "authentication.realm": "KsqlServer-Props",
            "authentication.roles": "admin,user",
            "authentication.skip.paths": "/is_valid_property/*",
            "java.security.auth.login.config": str(jaas),
        }
    )
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    port = config.listeners[0].port
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", port=port, engine=engine), password_file
    finally:
        thread.stop()
        engine.close()


def auth(user: str, password: str | None = None) -> httpx.BasicAuth:
    return httpx.BasicAuth(user, USERS[user][0] if password is None else password)


def test_every_password_form_authenticates(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    for user in ("alice", "bob", "carol", "dave"):
        r = httpx.get(f"{server.url}/info", auth=auth(user), timeout=30)
        assert r.status_code == 200, user
        r = httpx.post(f"{server.url}/ksql", json={"ksql": "SHOW STREAMS;"}, auth=auth(user), timeout=30)
        assert r.status_code == 200 and r.json()[0]["@type"] == "streams", user


def test_missing_or_wrong_credentials_get_401_everywhere(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    refusals = [
        {},
        {"auth": auth("alice", "wrong")},
        {"auth": httpx.BasicAuth("nobody", "x")},
        {"headers": {"Authorization": "Bearer some-token"}},
        {"headers": {"Authorization": "Basic !!!"}},
    ]
    query = orjson.dumps({"sql": "SELECT * FROM KSQL_PROCESSING_LOG EMIT CHANGES;"})
    for kwargs in refusals:
        for method, path, body in (
            ("GET", "/info", None),
            ("POST", "/ksql", b'{"ksql":"SHOW STREAMS;"}'),
            ("GET", "/metrics", None),
            ("POST", "/query", query),
            ("POST", "/query-stream", query),
            ("GET", "/status", None),
        ):
            r = httpx.request(method, f"{server.url}{path}", content=body, timeout=30, **kwargs)
            assert (r.status_code, r.json()) == (401, UNAUTHORIZED), (path, kwargs)
            assert r.headers["www-authenticate"] == 'Basic realm="KsqlServer-Props"'
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        for path, body in (("/query-stream", query), ("/inserts-stream", b'{"target":"X"}\n')):
            r = client.post(f"{server.url}{path}", content=body)
            assert r.http_version == "HTTP/2" and (r.status_code, r.json()) == (401, UNAUTHORIZED)
        # The connection outlives the refusals; with credentials the same endpoints answer.
        ok = client.post(
            f"{server.url}/query-stream",
            auth=auth("alice"),
            content=orjson.dumps({"sql": "SELECT * FROM KSQL_PROCESSING_LOG;"}),
        )
        assert ok.http_version == "HTTP/2" and ok.status_code == 200
        assert orjson.loads(ok.content.splitlines()[0])["columnNames"][0] == "LOGGER"


def test_websocket_needs_credentials(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    url = f"ws://127.0.0.1:{server.port}/ws/query?request=" + "%7B%22ksql%22%3A%22SHOW%20STREAMS%3B%22%7D"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=30)
    assert refused.value.response.status_code == 401
    assert orjson.loads(refused.value.response.body or b"") == UNAUTHORIZED
    token = base64.b64encode(b"alice:alice-pw").decode()
    with connect(url, open_timeout=30, additional_headers={"Authorization": f"Basic {token}"}) as ws:
        # accepted (the server may already have answered and closed: the state is no witness)
        assert ws.response.status_code == 101


def test_users_without_an_allowed_role_get_403(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    for user in ("eve", "mallory"):
        r = httpx.get(f"{server.url}/info", auth=auth(user), timeout=30)
        assert (r.status_code, r.json()) == (403, FORBIDDEN), user


def test_open_paths_need_no_credentials(secured: tuple[RunningServer, Path]) -> None:
    server, _ = secured
    for path in ("/healthcheck", "/v1/metadata", "/v1/metadata/id", "/chc/ready", "/chc/live"):
        assert httpx.get(f"{server.url}{path}", timeout=30).status_code == 200, path
    # authentication.skip.paths, with a wildcard
    r = httpx.get(f"{server.url}/is_valid_property/ksql.streams.auto.offset.reset", timeout=30)
    assert r.status_code == 200 and r.json() is True


def test_refusals_are_logged_without_passwords_and_counted(
    secured: tuple[RunningServer, Path], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = secured

    def failures(reason: str) -> float:
        text = httpx.get(f"{server.url}/metrics", auth=auth("alice"), timeout=30).text
        line = f'ksqlpy_authentication_failures_total{{reason="{reason}"}} '
        found = [x for x in text.splitlines() if x.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    before = {r: failures(r) for r in ("wrong_password", "unknown_user", "missing", "forbidden")}
    with caplog.at_level(logging.WARNING, logger="ksqlpy.server.auth"):
        httpx.get(f"{server.url}/info", auth=auth("alice", "s3cret-guess"), timeout=30)
        httpx.get(f"{server.url}/info", auth=httpx.BasicAuth("nobody", "another-guess"), timeout=30)
        httpx.get(f"{server.url}/info", timeout=30)
        httpx.get(f"{server.url}/info", auth=auth("mallory"), timeout=30)
    text = "\n".join(caplog.messages)
    assert "user 'alice' from 127.0.0.1:" in text and "(wrong password)" in text
    assert "user 'nobody'" in text and "(unknown user)" in text
    assert "a request without credentials" in text and "user 'mallory'" in text and "(forbidden)" in text
    assert "s3cret-guess" not in text and "another-guess" not in text and "mallory-pw" not in text
    for reason, count in before.items():
        assert failures(reason) == count + 1, reason


def test_password_file_changes_apply_without_restart(secured: tuple[RunningServer, Path]) -> None:
    server, password_file = secured
    assert (
        httpx.get(f"{server.url}/info", auth=httpx.BasicAuth("zoe", "zoe-pw"), timeout=30).status_code == 401
    )
    original = password_file.read_text()
    stat = password_file.stat()
    try:
        password_file.write_text(original + "zoe: zoe-pw, admin\n")
        os.utime(password_file, (stat.st_atime, stat.st_mtime + 5))
        assert (
            httpx.get(f"{server.url}/info", auth=httpx.BasicAuth("zoe", "zoe-pw"), timeout=30).status_code
            == 200
        )
    finally:
        password_file.write_text(original)
        os.utime(password_file, (stat.st_atime, stat.st_mtime + 10))


def test_password_file_property_without_jaas(tmp_path: Path) -> None:
    password_file, _ = write_users(tmp_path)
    config = server_config(
        **{
            "authentication.method": "BASIC",
            "authentication.roles": "**",
            "ksqlpy.authentication.password.file": str(password_file),
        }
    )
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    url = f"http://127.0.0.1:{config.listeners[0].port}"
    try:
        # ``**``: any authenticated user, with or without roles
        assert httpx.get(f"{url}/info", auth=auth("eve"), timeout=30).status_code == 200
        assert httpx.get(f"{url}/info", auth=auth("eve", "nope"), timeout=30).status_code == 401
    finally:
        thread.stop()
        engine.close()


def test_jaas_file_from_ksql_opts() -> None:
    config = ServerConfig.load(environ={})
    opts = "-Xmx1g -Djava.security.auth.login.config=/etc/ksqldb/jaas.conf -Dfoo=bar"
    assert jaas_config_path(config, {"KSQL_OPTS": opts}) == "/etc/ksqldb/jaas.conf"
    assert jaas_config_path(config, {}) is None


def test_jetty_obfuscation_vector() -> None:
    # Printed by Jetty's ``org.eclipse.jetty.util.security.Password password``.
    assert obfuscate("password") == "OBF:1v2j1uum1xtv1zej1zer1xtn1uvk1v1v"
    assert deobfuscate("OBF:1v2j1uum1xtv1zej1zer1xtn1uvk1v1v") == "password"
    assert deobfuscate(obfuscate("pässwörd €")) == "pässwörd €"


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"authentication.method": "LDAP"}, "Unsupported authentication.method 'LDAP'"),
        ({"authentication.method": "BASIC"}, "set java.security.auth.login.config"),
        (
            {"authentication.method": "BASIC", "ksqlpy.authentication.password.file": "/nonexistent"},
            "Cannot read the password file /nonexistent",
        ),
        ({"authentication.method": "BASIC", "authentication.realm": "Missing"}, "has no section Missing"),
    ],
)
def test_unusable_settings_are_named(tmp_path: Path, props: dict[str, str], message: str) -> None:
    _, jaas = write_users(tmp_path)
    config = ServerConfig.load(environ={}, overrides={"java.security.auth.login.config": str(jaas), **props})
    if "set java.security" in message:
        config = ServerConfig.load(environ={}, overrides=props)
    with pytest.raises(ConfigError, match=message):
        auth_settings(config, environ={})
