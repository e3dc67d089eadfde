"""The shell against a server with BASIC authentication: ``--user``/``--password``, the password
prompt, and ksqlDB's wording of a refusal."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from cli.main import add_arguments, credentials
from ksqlpy.server.app import create_app
from tests.server.certs import PASSWORD, make_pki
from tests.server.conftest import ServerThread, free_port, open_engine, server_config


@pytest.fixture(scope="module")
def secured_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    users = tmp_path_factory.mktemp("users") / "password-file"
    users.write_text("alice: alice-pw, admin\nguest: guest-pw, visitor\n")
    config = server_config(
        **{
            "authentication.method": "BASIC",
            "authentication.roles": "admin",
            "ksqlpy.authentication.password.file": str(users),
        }
    )
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    try:
        yield f"http://127.0.0.1:{config.listeners[0].port}"
    finally:
        thread.stop()
        engine.close()


def shell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_user_and_password_reach_a_secured_server(secured_url: str) -> None:
    done = shell(secured_url, "--user", "alice", "--password", "alice-pw", "-e", "SHOW STREAMS;")
    assert done.returncode == 0, done.stderr
    assert "KSQL_PROCESSING_LOG" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--user", "alice", "--password", "wrong"),
            "Could not authenticate successfully with the supplied credentials.",
        ),
        ((), "Could not authenticate successfully with the supplied credentials."),
        (("-u", "guest", "--password", "guest-pw"), "You are forbidden from using this cluster."),
    ],
)
def test_refusals_are_worded_as_ksqldb_words_them(
    secured_url: str, args: tuple[str, ...], message: str
) -> None:
    done = shell(secured_url, *args, "-e", "SHOW STREAMS;")
    assert done.returncode != 0
    assert message in done.stderr


def test_only_a_user_prompts_for_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []

    def answer(prompt: str = "") -> str:
        prompts.append(prompt)
        return "typed-pw"

    monkeypatch.setattr("getpass.getpass", answer)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert credentials(parser.parse_args(["-u", "alice"])) == ("alice", "typed-pw")
    assert prompts == ["Enter password: "]
    assert credentials(parser.parse_args(["-u", "alice", "--password", "given"])) == ("alice", "given")
    assert credentials(parser.parse_args([])) is None
    assert prompts == ["Enter password: "]


def test_config_file_trusts_the_server_and_presents_a_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    users = tmp_path / "password-file"
    users.write_text("alice: alice-pw, admin\n")
    port = free_port()
    config = server_config(
        **{
            "listeners": f"https://127.0.0.1:{port}",
            "ssl.keystore.location": pki.server_p12(),
            "ssl.keystore.password": PASSWORD,
            "ssl.truststore.location": pki.truststore_p12(),
            "ssl.truststore.password": PASSWORD,
            "ssl.client.authentication": "REQUIRED",
            "authentication.method": "BASIC",
            "authentication.roles": "admin",
            "ksqlpy.authentication.password.file": str(users),
        }
    )
    engine = open_engine(config)
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    try:
        url = f"https://localhost:{port}"
        client_p12 = pki.write(
            "alice.p12",
            pkcs12.serialize_key_and_certificates(
                b"alice", pki.client.key, pki.client.cert, None, BestAvailableEncryption(PASSWORD.encode())
            ),
        )
        props = tmp_path / "cli.properties"
        props.write_text(
            f"ssl.truststore.location={pki.truststore_p12()}\nssl.truststore.password={PASSWORD}\n"
            f"ssl.keystore.location={client_p12}\nssl.keystore.password={PASSWORD}\n"
        )
        args = (
            "--config-file",
            str(props),
            "--user",
            "alice",
            "--password",
            "alice-pw",
            "-e",
            "SHOW STREAMS;",
        )
        done = shell(url, *args)
        assert done.returncode == 0, done.stderr
        assert "KSQL_PROCESSING_LOG" in done.stdout
        # Without the file, the server's certificate is not trusted.
        refused = shell(url, *args[2:])
        assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
        # Without a client certificate the server does not finish the handshake.
        props.write_text(f"ssl.truststore.location={pki.write('ca.pem', pki.pem(pki.ca.cert))}\n")
        anonymous = shell(url, *args)
        assert anonymous.returncode != 0 and "Could not connect to the server" in anonymous.stderr
    finally:
        thread.stop()
        engine.close()


def test_migrations_take_ksql_auth_basic_credentials(
    secured_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ksqlpy.main import main

    assert main(["migrations", "new-project", str(tmp_path / "proj"), secured_url]) == 0
    config = tmp_path / "proj" / "ksql-migrations.properties"
    assert main(["migrations", "--config-file", str(config), "info"]) == 1
    assert "Could not authenticate successfully with the supplied credentials." in capsys.readouterr().err
    with config.open("a") as f:
        f.write("ksql.auth.basic.username=alice\nksql.auth.basic.password=alice-pw\n")
    assert main(["migrations", "--config-file", str(config), "initialize-metadata"]) == 0
    assert main(["migrations", "--config-file", str(config), "info"]) == 0
