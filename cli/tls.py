"""The shell's ``--config-file``: TLS settings for ``https://`` servers, as ksqlDB's CLI takes them.

``ssl.truststore.location`` (PEM or PKCS12, with ``ssl.truststore.password``) names the CAs
the server's certificate is checked against; ``ssl.keystore.location`` (PKCS12 with
``ssl.keystore.password``/``ssl.key.password``, or a PEM file holding key and certificate)
is the client certificate for a server that asks for one (mutual TLS). The other properties
of the file are request properties, as ``-p NAME=VALUE`` sets them.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path

TRUSTSTORE_LOCATION = "ssl.truststore.location"
TRUSTSTORE_PASSWORD = "ssl.truststore.password"
KEYSTORE_LOCATION = "ssl.keystore.location"
KEYSTORE_PASSWORD = "ssl.keystore.password"
KEY_PASSWORD = "ssl.key.password"


class TlsConfigError(Exception):
    """The config file's TLS settings cannot be used."""


def read_properties(path: Path) -> dict[str, str]:
    """``name=value`` (or ``name: value``) lines; ``#`` and ``!`` start comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TlsConfigError(f"Cannot read the config file {path} ({error.strerror})") from None
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut <= 0:
            continue
        props[line[:cut].strip()] = line[cut + 1 :].strip()
    return props


def client_context(props: Mapping[str, str]) -> ssl.SSLContext | None:
    """A TLS context for the settings in ``props``, or None when there are none."""
    truststore = props.get(TRUSTSTORE_LOCATION)
    keystore = props.get(KEYSTORE_LOCATION)
    if not truststore and not keystore:
        return None
    context = ssl.create_default_context()
    if truststore:
        context.load_verify_locations(cadata=_trusted_pem(truststore, props.get(TRUSTSTORE_PASSWORD)))
    if keystore:
        _load_client_certificate(context, keystore, props.get(KEYSTORE_PASSWORD), props.get(KEY_PASSWORD))
    return context


def _read(location: str, prop: str) -> bytes:
    try:
        return Path(location).read_bytes()
    except OSError as error:
        raise TlsConfigError(f"Cannot read {prop} {location} ({error.strerror})") from None


def _trusted_pem(location: str, password: str | None) -> str:
    data = _read(location, TRUSTSTORE_LOCATION)
    if b"-----BEGIN" in data:
        return data.decode("ascii")
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    try:
        store = pkcs12.load_pkcs12(data, password.encode() if password else None)
    except ValueError:
        raise TlsConfigError(
            f"Cannot open {TRUSTSTORE_LOCATION} {location}: not PEM or PKCS12, "
            f"or {TRUSTSTORE_PASSWORD} is wrong"
        ) from None
    certs = [c.certificate for c in store.additional_certs]
    if store.cert is not None:
        certs.append(store.cert.certificate)
    return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)


def _load_client_certificate(
    context: ssl.SSLContext, location: str, store_password: str | None, key_password: str | None
) -> None:
    data = _read(location, KEYSTORE_LOCATION)
    if b"-----BEGIN" in data:
        try:
            context.load_cert_chain(location, password=key_password or store_password)
        except (ssl.SSLError, OSError) as error:
            raise TlsConfigError(f"Cannot use {KEYSTORE_LOCATION} {location}: {error}") from None
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    for password in (store_password, key_password):
        try:
            key, cert, chain = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
            break
        except ValueError:
            continue
    else:
        raise TlsConfigError(
            f"Cannot open {KEYSTORE_LOCATION} {location}: not PEM or PKCS12, or {KEYSTORE_PASSWORD} is wrong"
        )
    if key is None or cert is None:
        raise TlsConfigError(f"{KEYSTORE_LOCATION} {location} holds no key with its certificate")
    # ssl loads keys only from files: a private directory, the key under a one-time password.
    once = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="ksqlpy-shell-") as where:
        os.chmod(where, 0o700)
        key_file, cert_file = Path(where) / "key.pem", Path(where) / "cert.pem"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(once),
            )
        )
        cert_file.write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *(chain or [])))
        )
        context.load_cert_chain(cert_file, key_file, password=once)
