"""Test certificates made with ``cryptography``: a CA, a server certificate for 127.0.0.1 and
localhost, client certificates, written as PKCS12 and PEM key stores."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PASSWORD = "changeit"


@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(cn: str, org: str = "ksqlpy tests") -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def issue(cn: str, issuer: Issued | None = None, *, ca: bool = False, server: bool = False) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    signer = issuer.key if issuer else key
    return Issued(key=key, cert=builder.sign(signer, hashes.SHA256()))


@dataclass
class Pki:
    """A CA, the server's and a client's certificates, and files holding them."""

    dir: Path
    ca: Issued
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate no truststore trusts

    def pem(self, c: x509.Certificate) -> bytes:
        return c.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, issued: Issued, password: str | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode())
            if password
            else serialization.NoEncryption()
        )
        return issued.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        return str(path)

    def server_p12(self) -> str:
        data = pkcs12.serialize_key_and_certificates(
            b"server",
            self.server.key,
            self.server.cert,
            [self.ca.cert],
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
        return self.write("server.p12", data)

    def server_pem(self, key_password: str | None = None) -> str:
        return self.write("server.pem", self.key_pem(self.server, key_password) + self.pem(self.server.cert))

    def truststore_p12(self) -> str:
        data = pkcs12.serialize_key_and_certificates(
            None, None, None, [self.ca.cert], serialization.BestAvailableEncryption(PASSWORD.encode())
        )
        return self.write("truststore.p12", data)

    def client_files(self, who: Issued) -> tuple[str, str]:
        cn = who.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return self.write(f"{cn}.crt", self.pem(who.cert)), self.write(f"{cn}.key", self.key_pem(who))

    def client_context(self, who: Issued | None = None) -> ssl.SSLContext:
        """What an httpx client verifies the server with (and, given ``who``, presents)."""
        context = ssl.create_default_context(cadata=self.pem(self.ca.cert).decode())
        if who is not None:
            context.load_cert_chain(*self.client_files(who))
        return context


def make_pki(where: Path) -> Pki:
    ca = issue("ksqlpy test CA", ca=True)
    return Pki(
        dir=where,
        ca=ca,
        server=issue("localhost", ca, server=True),
        client=issue("alice", ca),
        stranger=issue("mallory"),
    )
