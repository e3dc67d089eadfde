"""Server configuration, named the way ksqlDB names it.

Sources, later ones winning:

1. built-in defaults (:data:`DEFAULTS`),
2. a Java-style properties file (``ksqlpy server --config ksql-server.properties``),
3. ``KSQL_*`` environment variables, mapped as the Confluent images map them:
   strip ``KSQL_``, lower-case, ``_`` -> ``.``, ``__`` -> ``_``, ``___`` -> ``-``
   (``KSQL_LISTENERS`` -> ``listeners``, ``KSQL_BOOTSTRAP_SERVERS`` -> ``bootstrap.servers``,
   ``KSQL_KSQL_SERVICE_ID`` -> ``ksql.service.id``),
4. command-line options (``--listeners``, ``--data-dir``, ``--bootstrap-servers``).

Keys the server reads itself:

=============================  ===============================================================
``listeners``                  comma-separated ``http://host:port`` and ``https://host:port``
                               URLs (default ``http://0.0.0.0:8088``); TLS settings are the
                               ``ssl.*`` properties of ``server/tls.py``
``bootstrap.servers``          Kafka brokers; absent means the embedded store
``ksql.streams.state.dir``     data directory of the embedded store and local state
                               (default ``./ksqlpy-data``; ``:memory:`` keeps everything in RAM)
``ksql.service.id``            service id (default ``default_``)
``ksql.heartbeat.enable``      ``true`` enables heartbeats between the servers of a cluster and
                               ``/clusterStatus`` (default off: 404); ``ksql.heartbeat.*``,
                               ``ksql.lag.reporting.*``, ``ksql.advertised.listener`` and
                               ``ksql.internal.listener`` are read by ``server/cluster.py``
``ksql.max.push.queries``      concurrent push queries before 429/42900 (default 256)
``ksql.query.pull.max.qps``    pull queries a second before 429/42900 (default: no limit);
                               ``ksql.query.pull.max.concurrent.requests`` likewise, at once
``ksqlpy.access.control.file`` rules in the shape of Kafka ACLs (``server/acl.py``)
``ksqlpy.quota.file``          per-user quotas (``server/quotas.py``; default: the
                               access-control file)
``ksqlpy.request.max.bytes``   largest request body of ``/ksql``, ``/query``, ``/query-stream``
                               and ``/close-query`` (default 16 MiB; larger: 413)
``ksqlpy.statement.max.chars`` longest statement text in one request (default 256 Ki characters;
                               longer: 400)
``ksqlpy.inserts.max.record.bytes``  longest ``/inserts-stream`` line (default 1 MiB, Kafka's
                               default record limit; longer: an error ack, the stream ends)
``ksqlpy.memory.trim.interval.ms``  how often the server gives the C library's free heap pages
                               back to the system once its memory grew (default 500; 0: never;
                               ``runtime/memory.py``)
``ksqlpy.memory.release.library.pages``  once started, have the kernel reclaim the library code
                               pages start-up touched (default true; ``runtime/memory.py``)
=============================  ===============================================================

Every property (these and any other ``ksql.*`` / ``ksql.streams.*`` one) is passed on to the
engine unchanged. A property that neither the server nor the engine reads is named in one
warning line at start (:meth:`ServerConfig.unsupported`), rather than ignored silently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

LISTENERS = "listeners"
BOOTSTRAP_SERVERS = "bootstrap.servers"
STATE_DIR = "ksql.streams.state.dir"
SERVICE_ID = "ksql.service.id"
HEARTBEAT_ENABLE = "ksql.heartbeat.enable"
MAX_PUSH_QUERIES = "ksql.max.push.queries"
MAX_REQUEST_BYTES = "ksqlpy.request.max.bytes"
MAX_STATEMENT_CHARS = "ksqlpy.statement.max.chars"
MAX_RECORD_BYTES = "ksqlpy.inserts.max.record.bytes"
MALLOC_TRIM_INTERVAL_MS = "ksqlpy.memory.trim.interval.ms"
#: Not in :data:`DEFAULTS` (which every server passes on as properties): a C-library detail.
DEFAULT_MALLOC_TRIM_INTERVAL_MS = 500
RELEASE_LIBRARY_PAGES = "ksqlpy.memory.release.library.pages"

DEFAULTS: Mapping[str, str] = {
    LISTENERS: "http://0.0.0.0:8088",
    STATE_DIR: "./ksqlpy-data",
    SERVICE_ID: "default_",
    MAX_PUSH_QUERIES: "256",
    MAX_REQUEST_BYTES: str(16 * 1024 * 1024),
    MAX_STATEMENT_CHARS: str(256 * 1024),
    MAX_RECORD_BYTES: str(1024 * 1024),
}

#: Settings with a closed set of values (Kafka's wording when one is wrong).
_OFFSET_RESETS = ("latest", "earliest")
_GUARANTEES = ("at_least_once", "exactly_once", "exactly_once_beta", "exactly_once_v2")
CHOICES: Mapping[str, tuple[str, ...]] = {
    "ksql.streams.auto.offset.reset": _OFFSET_RESETS,
    "auto.offset.reset": _OFFSET_RESETS,
    "processing.guarantee": _GUARANTEES,
    "ksql.streams.processing.guarantee": _GUARANTEES,
    HEARTBEAT_ENABLE: ("true", "false"),
    RELEASE_LIBRARY_PAGES: ("true", "false"),
}

#: ``KSQL_*`` variables of the Confluent images that are JVM / launcher settings, not properties.
NON_PROPERTY_ENV = frozenset(
    {
        "KSQL_OPTS",
        "KSQL_HEAP_OPTS",
        "KSQL_JVM_PERFORMANCE_OPTS",
        "KSQL_JMX_OPTS",
        "KSQL_JMX_PORT",
        "KSQL_LOG4J_OPTS",
        "KSQL_LOG4J_ROOT_LOGLEVEL",
        "KSQL_LOG4J_LOGGERS",
        "KSQL_CLASSPATH",
        "KSQL_CONFIG_DIR",
    }
)


#: Properties read by the engine besides its defaults (``runtime/config.py``).
ENGINE_SETTINGS = frozenset(
    {
        "auto.offset.reset",
        "cache.max.bytes.buffering",
        "commit.interval.ms",
        "num.stream.threads",
        "num.standby.replicas",
        "ksql.streams.num.standby.replicas",
        "processing.guarantee",
        "ksql.streams.processing.guarantee",
        "ksql.streams.bootstrap.servers",
        "ksql.schema.registry.url",
        "ksql.schema.registry.basic.auth.user.info",
        "ksql.variable.substitution.enable",
        "ksql.query.pull.range.scan.enabled",
        "ksql.persistence.default.format.value",
        "ksql.query.pull.max.qps",
        "ksql.query.pull.max.concurrent.requests",
        "ksql.query.pull.enable.standby.reads",
        "ksql.query.pull.max.allowed.offset.lag",
    }
)
#: HTTPS and authentication settings (SECURITY-OPS.md section 2), read by the TLS and auth modules.
SECURITY_SETTINGS = frozenset(
    {
        "ssl.keystore.location",
        "ssl.keystore.password",
        "ssl.keystore.type",
        "ssl.key.password",
        "ssl.truststore.location",
        "ssl.truststore.password",
        "ssl.truststore.type",
        "ssl.client.authentication",
        "ssl.client.auth",
        "ssl.enabled.protocols",
        "ssl.cipher.suites",
        "authentication.method",
        "authentication.realm",
        "authentication.roles",
        "authentication.skip.paths",
    }
)
#: Whole families passed on as they are: Kafka client settings, ksqlpy's own, function settings.
SUPPORTED_PREFIXES = ("kafka.", "ksqlpy.", "ksql.functions.")
#: Kafka client settings given without the ``kafka.`` prefix the store needs.
_CLIENT_SETTING_PREFIXES = ("security.", "sasl.", "ssl.", "client.", "request.", "socket.")


class ConfigError(ValueError):
    """The server configuration cannot be used (unreadable file, bad listener URL)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """One address to serve on."""

    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def bind(self) -> str:
        """The address in hypercorn's ``bind`` syntax (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """All properties, resolved; accessors for the ones the server itself uses."""

    properties: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULTS))

    @classmethod
    def load(
        cls,
        *,
        path: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, str | None] | None = None,
    ) -> ServerConfig:
        """Defaults, then the file at ``path``, then ``KSQL_*`` variables, then ``overrides``
        (``None`` values in ``overrides`` are ignored, so unset CLI options change nothing)."""
        props = dict(DEFAULTS)
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"Cannot read server configuration {path}: {e.strerror}") from e
            props.update(parse_properties(text))
        props.update(env_properties(os.environ if environ is None else environ))
        props.update({k: v for k, v in (overrides or {}).items() if v is not None})
        config = cls(properties=props)
        config.validate()
        return config

    def validate(self) -> None:
        """Read every setting the server uses, so a bad value is a startup error, not a late
        surprise (raises :class:`ConfigError`)."""
        self.listeners  # noqa: B018 - parsed for its errors
        self.internal_listener  # noqa: B018
        self.max_push_queries  # noqa: B018
        self.max_request_bytes  # noqa: B018
        self.max_statement_chars  # noqa: B018
        self.max_record_bytes  # noqa: B018
        self.malloc_trim_interval  # noqa: B018
        from ksqlpy.server.cluster import ClusterSettings, inter_node_listener

        ClusterSettings.of(self)
        inter_node_listener(self)
        for name, allowed in CHOICES.items():
            value = self.properties.get(name)
            if value is not None and value.strip().lower() not in allowed:
                choices = ", ".join(allowed)
                raise ConfigError(
                    f"Invalid value {value} for configuration {name}: String must be one of: {choices}"
                )

    def unsupported(self) -> list[str]:
        """One warning line for each property that nothing reads, in name order."""
        from ksqlpy.runtime.config import DEFAULTS as ENGINE_DEFAULTS

        known = DEFAULTS.keys() | ENGINE_DEFAULTS.keys() | ENGINE_SETTINGS | SECURITY_SETTINGS
        known |= {LISTENERS, BOOTSTRAP_SERVERS, STATE_DIR, SERVICE_ID, HEARTBEAT_ENABLE}
        from ksqlpy.server.cluster import SETTINGS as CLUSTER_SETTINGS

        known |= CLUSTER_SETTINGS
        lines = []
        for name in sorted(self.properties):
            if name in known or name.startswith(SUPPORTED_PREFIXES):
                continue
            line = f"Ignoring unsupported setting {name}"
            if name.startswith(_CLIENT_SETTING_PREFIXES):
                line += f": Kafka client settings take the kafka. prefix (kafka.{name}, librdkafka's names)"
            lines.append(line)
        return lines

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.properties.get(name, default)

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return tuple(parse_listener(u) for u in self.properties[LISTENERS].split(",") if u.strip())

    @property
    def internal_listener(self) -> Listener | None:
        """``ksql.internal.listener``: where the cluster's servers call each other, served besides
        ``listeners``; with it, ``/heartbeat`` and ``/lag`` are refused on the others."""
        value = self.properties.get("ksql.internal.listener")
        return parse_listener(value) if value and value.strip() else None

    @property
    def bound_listeners(self) -> tuple[Listener, ...]:
        """Every address the server listens on: ``listeners`` and the internal listener."""
        internal = self.internal_listener
        if internal is None or any(listener.port == internal.port for listener in self.listeners):
            return self.listeners
        return (*self.listeners, internal)

    @property
    def bootstrap_servers(self) -> str | None:
        return self.properties.get(BOOTSTRAP_SERVERS) or None

    @property
    def state_dir(self) -> str:
        return self.properties[STATE_DIR]

    @property
    def service_id(self) -> str:
        return self.properties[SERVICE_ID]

    @property
    def heartbeat_enabled(self) -> bool:
        return self.properties.get(HEARTBEAT_ENABLE, "false").strip().lower() == "true"

    @property
    def max_push_queries(self) -> int:
        return self._positive_int(MAX_PUSH_QUERIES)

    @property
    def max_request_bytes(self) -> int:
        return self._positive_int(MAX_REQUEST_BYTES)

    @property
    def max_statement_chars(self) -> int:
        return self._positive_int(MAX_STATEMENT_CHARS)

    @property
    def max_record_bytes(self) -> int:
        return self._positive_int(MAX_RECORD_BYTES)

    @property
    def malloc_trim_interval(self) -> float:
        """Seconds between the checks of :class:`ksqlpy.runtime.memory.MallocTrimmer` (0: off)."""
        value = self.properties.get(MALLOC_TRIM_INTERVAL_MS)
        if value is None:
            return DEFAULT_MALLOC_TRIM_INTERVAL_MS / 1000
        try:
            number = int(value.strip())
        except ValueError:
            number = -1
        if number < 0:
            raise ConfigError(
                f"Invalid value {value} for configuration {MALLOC_TRIM_INTERVAL_MS}: "
                "must be a non-negative integer"
            )
        return number / 1000

    @property
    def release_library_pages(self) -> bool:
        """Whether the server gives back the library pages start-up touched, once started."""
        return self.properties.get(RELEASE_LIBRARY_PAGES, "true").strip().lower() == "true"

    def _positive_int(self, name: str) -> int:
        value = self.properties.get(name, DEFAULTS[name])
        try:
            number = int(value.strip())
        except ValueError:
            number = 0
        if number <= 0:
            raise ConfigError(f"Invalid value {value} for configuration {name}: must be a positive integer")
        return number

    def engine_properties(self) -> dict[str, str]:
        """What ``Engine.open`` receives: every property (the engine ignores what it doesn't use)."""
        props = dict(self.properties)
        # a server numbers queries from the command log, as ksqlDB's servers do, so that every
        # server of a cluster gives a query the same id
        props.setdefault("ksqlpy.query.ids", "command-offset")
        if not props.get(BOOTSTRAP_SERVERS):
            props.pop(BOOTSTRAP_SERVERS, None)  # absent, not empty, selects the embedded store
        return props


def parse_listener(url: str) -> Listener:
    """``http://0.0.0.0:8088`` or ``https://...`` (TLS, see ``server/tls.py``) -> Listener."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"Unsupported listener {url.strip()!r}: listeners are http:// or https:// URLs")
    try:
        port = parts.port if parts.port is not None else 8088
    except ValueError as e:
        raise ConfigError(f"Invalid listener {url.strip()!r}: {e}") from e
    return Listener(scheme=parts.scheme, host=parts.hostname or "0.0.0.0", port=port)


def env_name_to_property(name: str) -> str:
    """``KSQL_KSQL_SERVICE_ID`` -> ``ksql.service.id`` (Confluent images' convention)."""
    rest = name.removeprefix("KSQL_").lower()
    # Placeholders keep the longer underscore runs from being split by the shorter rules.
    return rest.replace("___", "\0").replace("__", "\1").replace("_", ".").replace("\0", "-").replace(
        "\1", "_"
    )


def env_properties(environ: Mapping[str, str]) -> dict[str, str]:
    """The properties given as ``KSQL_*`` environment variables."""
    return {
        env_name_to_property(k): v
        for k, v in environ.items()
        if k.startswith("KSQL_") and k not in NON_PROPERTY_ENV and len(k) > len("KSQL_")
    }


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java ``.properties`` text: ``k=v``, ``k: v`` or ``k v``; ``#``/``!`` comments;
    a trailing backslash continues the line."""
    props: dict[str, str] = {}
    logical = ""
    for raw in text.splitlines():
        line = raw.lstrip() if not logical else raw.strip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if _continues(line):
            logical += line[:-1]
            continue
        logical += line
        key, value = _split_property(logical)
        props[key] = value
        logical = ""
    if logical:
        key, value = _split_property(logical)
        props[key] = value
    return props


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _split_property(line: str) -> tuple[str, str]:
    for i, ch in enumerate(line):
        if ch in "=:" or ch.isspace():
            rest = line[i:].lstrip()
            if rest[:1] in ("=", ":"):
                rest = rest[1:]
            return line[:i], rest.strip()
    return line.strip(), ""
