"""HTTP BASIC authentication, configured as ksqlDB configures it.

===========================================  ======================================================
``authentication.method``                    ``NONE`` (default) or ``BASIC``
``authentication.realm``                     the section of the JAAS file naming the password file
                                             (default ``KsqlServer-Props``); also the realm of the
                                             ``WWW-Authenticate`` challenge
``authentication.roles``                     roles that may use the server, comma-separated; a user
                                             needs one of them. ``**``: any authenticated user;
                                             ``*`` (the default): any user with at least one role
``authentication.skip.paths``                more paths served without credentials (``*`` wildcards)
``java.security.auth.login.config``          the JAAS file; also read from ``KSQL_OPTS``
                                             (``-Djava.security.auth.login.config=/path``), as
                                             the Confluent images pass it
``ksqlpy.authentication.password.file``      the password file itself, without a JAAS file
===========================================  ======================================================

The JAAS file holds Jetty's ``PropertyFileLoginModule`` under the realm's name::

    KsqlServer-Props {
      org.eclipse.jetty.security.jaas.spi.PropertyFileLoginModule required
      file="/etc/ksqlpy/password-file" debug="false";
    };

The password file has one ``user: password[,role...]`` line per user; the password is plain or
in one of Jetty's forms: ``OBF:`` (obfuscated), ``MD5:`` (hex digest), ``CRYPT:`` (Unix
crypt, salted with its first two characters). It is read again when it changes.

Without valid credentials a request gets ksqlDB's 401 body on every endpoint, HTTP/2 streams
and WebSocket upgrades included; an authenticated user without an allowed role gets 403.
``/healthcheck``, ``/v1/metadata``, ``/v1/metadata/id``, ``/chc/ready`` and ``/chc/live``
stay open. Each refusal is logged with the user name and client address (never the
password) and counted in ``/metrics`` by reason.

With ``authentication.method=NONE`` on a TLS listener that verified a client certificate,
the certificate's subject is the user. The user of each request is logged at DEBUG level.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import logging
import os
import re
import shlex
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ksqlpy.server import tls
from ksqlpy.server.config import ConfigError, ServerConfig
from ksqlpy.server.wire import dumps

log = logging.getLogger("ksqlpy.server.auth")

METHOD = "authentication.method"
REALM = "authentication.realm"
ROLES = "authentication.roles"
SKIP_PATHS = "authentication.skip.paths"
JAAS_CONFIG = "java.security.auth.login.config"
PASSWORD_FILE = "ksqlpy.authentication.password.file"

DEFAULT_REALM = "KsqlServer-Props"
PROPERTY_FILE_MODULE = "PropertyFileLoginModule"

#: Served without credentials whatever the settings (ksqlDB's ``AuthHandlers``), plus the probes.
OPEN_PATHS = ("/healthcheck", "/v1/metadata", "/v1/metadata/id", "/chc/ready", "/chc/live")

UNAUTHORIZED = {"@type": "generic_error", "error_code": 40100, "message": "Unauthorized"}
FORBIDDEN = {"@type": "generic_error", "error_code": 40300, "message": "Forbidden"}


# --- credentials ------------------------------------------------------------------------------


def deobfuscate(text: str) -> str:
    """Jetty's ``OBF:`` form back to the password (``Password.deobfuscate``)."""
    s = text.removeprefix("OBF:")
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "U":  # a byte that was negative in Java, kept whole in the high byte
            out.append((int(s[i + 1 : i + 5], 36) >> 8) & 0xFF)
            i += 5
            continue
        value = int(s[i : i + 4], 36)
        high, low = divmod(value, 256)
        out.append(((high + low - 254) // 2) & 0xFF)
        i += 4
    return out.decode("utf-8")


def obfuscate(password: str) -> str:
    """The ``OBF:`` form Jetty's ``Password`` tool prints."""
    b = password.encode("utf-8")
    parts = ["OBF:"]
    for i, b1 in enumerate(b):
        b2 = b[len(b) - (i + 1)]
        if b1 > 127 or b2 > 127:
            x = _base36(b1 * 256 + b2)
            parts.append("U0000"[: 5 - len(x)] + x)
        else:
            s1, s2 = _signed(b1), _signed(b2)
            x = _base36((127 + s1 + s2) * 256 + (127 + s1 - s2))
            parts.append("000"[: 4 - len(x)] + x)
    return "".join(parts)


def _signed(b: int) -> int:
    return b - 256 if b > 127 else b


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _unix_crypt(password: str, salted: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:  # removed from Python 3.13
            raise ConfigError("CRYPT: passwords need Python's crypt module (Python 3.12 or older)") from None
    result: str | None = crypt.crypt(password, salted)
    return result or ""


@dataclass(frozen=True, slots=True)
class Credential:
    """A stored password in one of Jetty's forms."""

    stored: str

    def check(self, password: str) -> bool:
        stored = self.stored
        if stored.startswith("OBF:"):
            expected = deobfuscate(stored)
        elif stored.startswith("MD5:"):
            expected, password = stored[4:].lower(), hashlib.md5(password.encode()).hexdigest()
        elif stored.startswith("CRYPT:"):
            expected, password = stored[6:], _unix_crypt(password, stored[6:])
        else:
            expected = stored
        return hmac.compare_digest(expected.encode(), password.encode())


@dataclass(frozen=True, slots=True)
class User:
    name: str
    credential: Credential
    roles: frozenset[str]


def parse_password_file(text: str) -> dict[str, User]:
    """Jetty's ``PropertyUserStore`` format: ``user: password[,role...]`` per line."""
    users: dict[str, User] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        name, sep, rest = line.partition(":")
        if not sep:
            sep_at = re.search(r"[=\s]", line)
            if sep_at is None:
                continue
            name, rest = line[: sep_at.start()], line[sep_at.end() :]
        name = name.strip()
        parts = [p.strip() for p in rest.split(",")]
        if not name or not parts or not parts[0]:
            continue
        users[name] = User(name, Credential(parts[0]), frozenset(p for p in parts[1:] if p))
    return users


def password_file_of_jaas(jaas_path: str, realm: str) -> str:
    """The ``file=`` of the ``PropertyFileLoginModule`` in the JAAS section named ``realm``."""
    try:
        text = Path(jaas_path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"Cannot read the JAAS config {jaas_path} ({JAAS_CONFIG}): {e.strerror}") from None
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    text = re.sub(r"(^|\s)//[^\n]*", r"\1", text)
    for match in re.finditer(r"([\w.\-]+)\s*\{(.*?)\}\s*;", text, flags=re.DOTALL):
        if match.group(1) != realm:
            continue
        body = match.group(2)
        if PROPERTY_FILE_MODULE not in body:
            raise ConfigError(
                f"The JAAS section {realm} in {jaas_path} does not use Jetty's {PROPERTY_FILE_MODULE}, "
                "the only login module ksqlpy supports"
            )
        found = re.search(r"\bfile\s*=\s*\"([^\"]*)\"", body)
        if found is None:
            raise ConfigError(f'The JAAS section {realm} in {jaas_path} names no file="..."')
        return found.group(1)
    raise ConfigError(f"The JAAS config {jaas_path} has no section {realm} ({REALM})")


def jaas_config_path(config: ServerConfig, environ: Mapping[str, str]) -> str | None:
    """The JAAS file: the property, else ``-Djava.security.auth.login.config=`` in ``KSQL_OPTS``."""
    direct = config.get(JAAS_CONFIG)
    if direct:
        return direct
    try:
        words = shlex.split(environ.get("KSQL_OPTS", ""))
    except ValueError:
        words = environ.get("KSQL_OPTS", "").split()
    for word in words:
        if word.startswith(f"-D{JAAS_CONFIG}="):
            return word.split("=", 1)[1]
    return None


class PasswordFile:
    """The users of a password file, read again when the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._users: dict[str, User] = {}
        self.users()  # an unreadable file is a start-up error

    def users(self) -> dict[str, User]:
        with self._lock:
            try:
                mtime = os.stat(self.path).st_mtime
            except OSError as e:
                if self._mtime is None:
                    raise ConfigError(f"Cannot read the password file {self.path}: {e.strerror}") from None
                return self._users  # keep serving the users last read
            if mtime != self._mtime:
                try:
                    text = Path(self.path).read_text(encoding="utf-8")
                except OSError as e:
                    if self._mtime is None:
                        raise ConfigError(
                            f"Cannot read the password file {self.path}: {e.strerror}"
                        ) from None
                    return self._users
                self._users, self._mtime = parse_password_file(text), mtime
            return self._users


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSettings:
    realm: str
    roles: frozenset[str]
    any_user: bool  # ``**``
    skip_paths: tuple[str, ...]
    users: PasswordFile

    def allowed(self, user: User) -> bool:
        if self.any_user:
            return True
        if not self.roles:  # ``*``: any role will do
            return bool(user.roles)
        return bool(self.roles & user.roles)

    def is_open(self, path: str) -> bool:
        return path in OPEN_PATHS or any(fnmatch.fnmatchcase(path, p) for p in self.skip_paths)


def auth_settings(config: ServerConfig, environ: Mapping[str, str] | None = None) -> AuthSettings | None:
    """BASIC authentication's settings, or None when ``authentication.method`` is NONE."""
    method = (config.get(METHOD) or "NONE").strip().upper()
    if method == "NONE":
        return None
    if method != "BASIC":
        raise ConfigError(f"Unsupported {METHOD} {method!r}: expected NONE or BASIC")
    realm = (config.get(REALM) or DEFAULT_REALM).strip()
    path = config.get(PASSWORD_FILE)
    if not path:
        jaas = jaas_config_path(config, os.environ if environ is None else environ)
        if jaas is None:
            raise ConfigError(
                f"{METHOD}=BASIC needs the users: set {JAAS_CONFIG} (a JAAS file) or {PASSWORD_FILE}"
            )
        path = password_file_of_jaas(jaas, realm)
    roles = {r.strip() for r in (config.get(ROLES) or "*").split(",") if r.strip()}
    skip = tuple(p.strip() for p in (config.get(SKIP_PATHS) or "").split(",") if p.strip())
    return AuthSettings(
        realm=realm,
        roles=frozenset(roles - {"*", "**"}),
        any_user="**" in roles,
        skip_paths=skip,
        users=PasswordFile(path),
    )


# --- the middleware ---------------------------------------------------------------------------


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``Basic base64(user:password)`` -> (user, password); None for anything else."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown"


#: Dummy stored password: unknown users take as long to refuse as wrong passwords.
_NOBODY = Credential("MD5:" + "0" * 32)


class AuthMiddleware:
    """Checks credentials before any endpoint runs and names the user of each request."""

    def __init__(self, app: Any, settings: AuthSettings | None, failures: Any = None) -> None:
        self.app = app
        self.settings = settings
        self.failures = failures  # a prometheus Counter labelled by reason, or None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        settings = self.settings
        path = scope.get("path", "")
        if settings is None:
            user = tls.peer_subject(scope)
            if user is not None:
                scope["ksqlpy.user"] = user
                log.debug(
                    "%s %s from %s (%s, client certificate)",
                    _method(scope),
                    _path(scope),
                    user,
                    _address(scope),
                )
            await self.app(scope, receive, send)
            return
        if settings.is_open(path):
            await self.app(scope, receive, send)
            return
        credentials = basic_credentials(_header(scope, b"authorization"))
        if credentials is None:
            reason = "missing" if _header(scope, b"authorization") is None else "malformed"
            await self._refuse(scope, receive, send, 401, reason, None)
            return
        name, password = credentials
        found = settings.users.users().get(name)
        # An unknown user's password is checked too, so both refusals take as long.
        matches = (found.credential if found is not None else _NOBODY).check(password)
        if found is None or not matches:
            await self._refuse(
                scope, receive, send, 401, "unknown_user" if found is None else "wrong_password", name
            )
            return
        if not settings.allowed(found):
            await self._refuse(scope, receive, send, 403, "forbidden", name)
            return
        scope["ksqlpy.user"] = name
        log.debug("%s %s from %s (%s)", _method(scope), _path(scope), name, _address(scope))
        await self.app(scope, receive, send)

    async def _refuse(
        self, scope: dict[str, Any], receive: Any, send: Any, status: int, reason: str, user: str | None
    ) -> None:
        assert self.settings is not None
        who = f"user {user!r}" if user is not None else "a request without credentials"
        log.warning(
            "Refused %s %s: %s from %s (%s)",
            _method(scope),
            _path(scope),
            who,
            _address(scope),
            reason.replace("_", " "),
        )
        if self.failures is not None:
            self.failures.labels(reason).inc()
        if scope["type"] == "http":
            await _drain(receive)
        body = dumps(UNAUTHORIZED if status == 401 else FORBIDDEN)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            realm = self.settings.realm.replace('"', "")
            headers.append((b"www-authenticate", f'Basic realm="{realm}"'.encode()))
        websocket = scope["type"] == "websocket"
        await send(
            {
                "type": "websocket.http.response.start" if websocket else "http.response.start",
                "status": status,
                "headers": headers,
            }
        )
        await send(
            {
                "type": "websocket.http.response.body" if websocket else "http.response.body",
                "body": body,
                "more_body": False,
            }
        )


#: What a refused request may still send before the answer: its body is read and dropped,
#: since hypercorn's HTTP/2 connection fails on data for a stream that has already ended.
DRAIN_BYTES = 1 << 20
DRAIN_SECONDS = 2.0


async def _drain(receive: Any) -> None:
    read = 0
    with anyio.move_on_after(DRAIN_SECONDS):
        while read <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


def _path(scope: dict[str, Any]) -> str:
    """The request path for a log line, control characters escaped (no forged log lines)."""
    path = str(scope.get("path", ""))
    return path if path.isprintable() else path.encode("unicode_escape").decode("ascii")


def _method(scope: dict[str, Any]) -> str:
    return str(scope.get("method", "GET")) if scope["type"] == "http" else "WEBSOCKET"
