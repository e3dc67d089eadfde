"""TLS for ``https://`` listeners, configured with ksqlDB's ``ssl.*`` properties.

=====================================  ===========================================================
``ssl.keystore.location``              the server's key and certificate chain: a PKCS12 file
                                       (``keytool -deststoretype PKCS12``) or a PEM file holding
                                       the private key and the certificates
``ssl.keystore.password``              the PKCS12 file's password
``ssl.key.password``                   the private key's password (an encrypted PEM key; for
                                       PKCS12, tried when the keystore password does not open it)
``ssl.keystore.type``                  ``PKCS12``, ``PEM`` or ``JKS`` (the file's content decides
                                       between PKCS12 and PEM; JKS files are refused with the
                                       ``keytool`` command that converts them)
``ssl.truststore.location/password``   certificate authorities that sign client certificates
                                       (PKCS12 or PEM), for mutual TLS
``ssl.client.authentication``          ``NONE`` (default), ``REQUESTED`` or ``REQUIRED``; the
                                       deprecated ``ssl.client.auth=true`` means ``REQUIRED``
``ssl.enabled.protocols``              e.g. ``TLSv1.2,TLSv1.3`` (default: both)
``ssl.cipher.suites``                  Java/IANA names (``TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384``)
                                       or OpenSSL names, for TLS 1.2; TLS 1.3 suites are OpenSSL's
=====================================  ===========================================================

:func:`server_context` builds the :class:`ssl.SSLContext` (ALPN offers ``h2`` then
``http/1.1``, so HTTP/2 clients get HTTP/2 over TLS); every problem is a
:class:`~ksqlpy.server.config.ConfigError` naming the property, raised before the server
opens its engine. :func:`install` makes hypercorn remember each TLS connection's verified
client certificate, which :func:`peer_subject` reads for a request: the certificate's subject
(``CN=alice,O=acme``, RFC 4514) is the user.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography import x509

from ksqlpy.server.config import ConfigError, ServerConfig

KEYSTORE_LOCATION = "ssl.keystore.location"
KEYSTORE_PASSWORD = "ssl.keystore.password"
KEYSTORE_TYPE = "ssl.keystore.type"
KEY_PASSWORD = "ssl.key.password"
TRUSTSTORE_LOCATION = "ssl.truststore.location"
TRUSTSTORE_PASSWORD = "ssl.truststore.password"
CLIENT_AUTHENTICATION = "ssl.client.authentication"
CLIENT_AUTH_DEPRECATED = "ssl.client.auth"
ENABLED_PROTOCOLS = "ssl.enabled.protocols"
CIPHER_SUITES = "ssl.cipher.suites"

CLIENT_AUTH_MODES = {"NONE": ssl.CERT_NONE, "REQUESTED": ssl.CERT_OPTIONAL, "REQUIRED": ssl.CERT_REQUIRED}

PROTOCOLS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}

JKS_MAGIC = b"\xfe\xed\xfe\xed"


def client_authentication(config: ServerConfig) -> str:
    mode = (config.get(CLIENT_AUTHENTICATION) or "").strip().upper()
    if not mode:
        legacy = (config.get(CLIENT_AUTH_DEPRECATED) or "false").strip().lower()
        mode = "REQUIRED" if legacy == "true" else "NONE"
    if mode not in CLIENT_AUTH_MODES:
        raise ConfigError(
            f"Invalid value {mode!r} for {CLIENT_AUTHENTICATION}: expected NONE, REQUESTED or REQUIRED"
        )
    return mode


def server_context(config: ServerConfig) -> ssl.SSLContext:
    """The TLS context of the ``https://`` listeners."""
    location = config.get(KEYSTORE_LOCATION)
    if not location:
        raise ConfigError(
            f"An https:// listener needs {KEYSTORE_LOCATION} (the server's key and certificate)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= ssl.OP_NO_COMPRESSION  # RFC 7540 9.2.1
    _set_protocols(context, config.get(ENABLED_PROTOCOLS))
    _set_ciphers(context, config.get(CIPHER_SUITES))
    context.set_alpn_protocols(["h2", "http/1.1"])
    _load_keystore(context, config, location)
    mode = client_authentication(config)
    truststore = config.get(TRUSTSTORE_LOCATION)
    if truststore:
        _load_truststore(context, truststore, config.get(TRUSTSTORE_PASSWORD))
    elif mode != "NONE":
        raise ConfigError(
            f"{CLIENT_AUTHENTICATION}={mode} needs {TRUSTSTORE_LOCATION} to verify client certificates"
        )
    context.verify_mode = CLIENT_AUTH_MODES[mode]
    return context


def _read(location: str, prop: str) -> bytes:
    try:
        return Path(location).read_bytes()
    except OSError as e:
        raise ConfigError(f"Cannot read {prop} {location}: {e.strerror}") from None


def _password(value: str | None) -> bytes | None:
    return value.encode() if value else None


def _load_keystore(context: ssl.SSLContext, config: ServerConfig, location: str) -> None:
    data = _read(location, KEYSTORE_LOCATION)
    key_password = config.get(KEY_PASSWORD)
    store_password = config.get(KEYSTORE_PASSWORD)
    if data.startswith(JKS_MAGIC):
        raise ConfigError(
            f"{KEYSTORE_LOCATION} {location} is a JKS keystore, which ksqlpy cannot read: convert it with "
            f"keytool -importkeystore -srckeystore {location} -destkeystore server.p12 -deststoretype PKCS12"
        )
    if b"-----BEGIN" in data:
        try:
            context.load_cert_chain(location, password=key_password or store_password)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(
                f"Cannot use the PEM keystore {location} ({KEYSTORE_LOCATION}): it needs a private key "
                f"and its certificate, and {KEY_PASSWORD} when the key is encrypted ({_reason(e)})"
            ) from None
        return
    # cryptography (~8 MiB resident) is imported only for PKCS12 stores and client certificates.
    from cryptography.hazmat.primitives import serialization

    key, cert, chain = _open_pkcs12(data, location, store_password, key_password)
    # ssl loads keys only from files: write them to a private temporary directory, the key
    # encrypted with a one-time password, and remove them at once.
    once = secrets.token_bytes(32)
    with _private_dir() as where:
        key_file, cert_file = where / "key.pem", where / "chain.pem"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(once),
            )
        )
        cert_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *chain)))
        try:
            context.load_cert_chain(cert_file, key_file, password=once)
        except ssl.SSLError as e:
            raise ConfigError(
                f"Cannot use the keystore {location} ({KEYSTORE_LOCATION}): {_reason(e)}"
            ) from None


def _open_pkcs12(
    data: bytes, location: str, store_password: str | None, key_password: str | None
) -> tuple[Any, x509.Certificate, list[x509.Certificate]]:
    from cryptography.hazmat.primitives.serialization import pkcs12

    tried: list[bytes | None] = []
    for candidate in (_password(store_password), _password(key_password)):
        if candidate in tried:
            continue
        tried.append(candidate)
        try:
            key, cert, chain = pkcs12.load_key_and_certificates(data, candidate)
        except ValueError:
            continue
        if key is None or cert is None:
            raise ConfigError(
                f"The keystore {location} ({KEYSTORE_LOCATION}) holds no private key with its certificate"
            )
        return key, cert, list(chain)
    raise ConfigError(
        f"Cannot open the keystore {location} ({KEYSTORE_LOCATION}): not a PKCS12 or PEM file, "
        f"or {KEYSTORE_PASSWORD} is wrong"
    )


def _load_truststore(context: ssl.SSLContext, location: str, password: str | None) -> None:
    data = _read(location, TRUSTSTORE_LOCATION)
    if data.startswith(JKS_MAGIC):
        raise ConfigError(
            f"{TRUSTSTORE_LOCATION} {location} is a JKS keystore, which ksqlpy cannot read: convert it with "
            f"keytool -importkeystore -srckeystore {location} -destkeystore trust.p12 -deststoretype PKCS12"
        )
    if b"-----BEGIN" in data:
        try:
            context.load_verify_locations(cadata=data.decode("ascii"))
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(
                f"Cannot use the truststore {location} ({TRUSTSTORE_LOCATION}): {_reason(e)}"
            ) from None
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        store = pkcs12.load_pkcs12(data, _password(password))
    except ValueError:
        raise ConfigError(
            f"Cannot open the truststore {location} ({TRUSTSTORE_LOCATION}): not a PKCS12 or PEM file, "
            f"or {TRUSTSTORE_PASSWORD} is wrong"
        ) from None
    certs = [c.certificate for c in store.additional_certs]
    if store.cert is not None:
        certs.append(store.cert.certificate)
    if not certs:
        raise ConfigError(f"The truststore {location} ({TRUSTSTORE_LOCATION}) holds no certificates")
    context.load_verify_locations(
        cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
    )


def _set_protocols(context: ssl.SSLContext, value: str | None) -> None:
    names = [p.strip() for p in (value or "TLSv1.2,TLSv1.3").split(",") if p.strip()]
    unknown = [n for n in names if n not in PROTOCOLS]
    if unknown or not names:
        raise ConfigError(f"Invalid {ENABLED_PROTOCOLS} {value!r}: expected a list of {', '.join(PROTOCOLS)}")
    versions = sorted(PROTOCOLS[n] for n in names)
    context.minimum_version = versions[0]
    context.maximum_version = versions[-1]


#: Parts of IANA cipher suite names and their OpenSSL spelling (``AES_128_GCM`` -> ``AES128-GCM``).
_IANA_PARTS = (
    ("AES_128_GCM", "AES128-GCM"),
    ("AES_256_GCM", "AES256-GCM"),
    ("AES_128_CBC", "AES128"),
    ("AES_256_CBC", "AES256"),
    ("AES_128_CCM", "AES128-CCM"),
    ("AES_256_CCM", "AES256-CCM"),
    ("CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305"),
)


def openssl_cipher_name(name: str) -> str:
    """``TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`` -> ``ECDHE-RSA-AES256-GCM-SHA384``; names
    already in OpenSSL's spelling come back unchanged."""
    if not name.startswith("TLS_") or "_WITH_" not in name:
        return name
    exchange, cipher = name.removeprefix("TLS_").split("_WITH_", 1)
    for iana, openssl in _IANA_PARTS:
        cipher = cipher.replace(iana, openssl)
    cipher = cipher.replace("_", "-")
    exchange = "" if exchange == "RSA" else exchange.replace("_", "-") + "-"
    return exchange + cipher


def _set_ciphers(context: ssl.SSLContext, value: str | None) -> None:
    names = [c.strip() for c in (value or "").split(",") if c.strip()]
    if not names:
        return
    # TLS 1.3 suites (TLS_AES_128_GCM_SHA256 ...) are not configurable through Python's ssl;
    # a list of only those means TLS 1.3 only.
    tls13 = [n for n in names if n.startswith(("TLS_AES_", "TLS_CHACHA20_"))]
    tls12 = [openssl_cipher_name(n) for n in names if n not in tls13]
    if not tls12:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return
    available = {c["name"] for c in ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).get_ciphers()}
    unknown = [
        n for n, o in zip([n for n in names if n not in tls13], tls12, strict=True) if o not in available
    ]
    if unknown:
        raise ConfigError(f"Unknown or disabled cipher suites in {CIPHER_SUITES}: {', '.join(unknown)}")
    context.set_ciphers(":".join(tls12))


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError) and e.reason:
        return str(e.reason).replace("_", " ").lower()
    return str(e)


@contextlib.contextmanager
def _private_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ksqlpy-tls-") as where:
        os.chmod(where, 0o700)
        yield Path(where)


# --- client certificates of connections ------------------------------------------------------

#: (client address, server address) of an open TLS connection -> its client certificate's subject.
_PEERS: dict[tuple[Any, Any], str] = {}


def peer_subject(scope: dict[str, Any]) -> str | None:
    """The verified client certificate's subject for the connection of an ASGI request."""
    client, server = scope.get("client"), scope.get("server")
    if client is None or server is None:
        return None
    return _PEERS.get((tuple(client), tuple(server)))


def subject_of(der: bytes) -> str:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def install() -> None:
    """Make hypercorn's TCP connections record their client certificates (idempotent)."""
    import hypercorn.asyncio.run as hypercorn_run
    from hypercorn.asyncio.tcp_server import TCPServer
    from hypercorn.utils import parse_socket_addr

    if getattr(getattr(hypercorn_run, "TCPServer", None), "_ksqlpy_peers", False):
        return

    class PeerRecordingTCPServer(TCPServer):
        _ksqlpy_peers = True

        async def run(self) -> None:
            key = None
            ssl_object = self.writer.get_extra_info("ssl_object")
            sock = self.writer.get_extra_info("socket")
            if ssl_object is not None and sock is not None:
                der = ssl_object.getpeercert(binary_form=True)
                if der:
                    try:
                        key = (
                            parse_socket_addr(sock.family, sock.getpeername()),
                            parse_socket_addr(sock.family, sock.getsockname()),
                        )
                        _PEERS[key] = subject_of(der)
                    except (OSError, ValueError):
                        key = None
            try:
                await super().run()
            finally:
                if key is not None:
                    _PEERS.pop(key, None)

    # hypercorn's serving loop builds connections through this module-level name.
    setattr(hypercorn_run, "TCPServer", PeerRecordingTCPServer)  # noqa: B010
