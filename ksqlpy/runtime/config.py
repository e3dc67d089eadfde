"""Engine configuration: ksqlDB's property names, their defaults, and per-query overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ksqlpy.errors import AnalysisError

if TYPE_CHECKING:  # the server reads DEFAULTS before it opens a store (DuckDB, Arrow)
    from ksqlpy.runtime.store.base import StartPosition

#: Server-level defaults that SHOW PROPERTIES lists.
DEFAULTS: dict[str, str] = {
    "ksql.service.id": "default_",
    "ksql.streams.state.dir": "./data",
    "ksql.streams.auto.offset.reset": "latest",
    "ksql.streams.cache.max.bytes.buffering": "10000000",
    "ksql.streams.commit.interval.ms": "2000",
    "ksql.streams.num.stream.threads": "1",
    "ksql.persistence.default.format.key": "KAFKA",
    "ksql.persistence.wrap.single.values": "true",
    "ksql.logging.processing.topic.auto.create": "true",
    "ksql.logging.processing.stream.auto.create": "true",
    "ksql.logging.processing.rows.include": "false",
    "ksql.query.pull.table.scan.enabled": "true",
    "ksql.query.push.v2.enabled": "false",
    "ksql.insert.into.values.enabled": "true",
    "ksql.sink.partitions": "",
    "ksql.output.topic.name.prefix": "",
    "processing.guarantee": "exactly_once_v2",
}

#: Properties a client may not override per request (ksqlDB's deny list, in part).
NOT_OVERRIDABLE = frozenset(
    {"ksql.service.id", "ksql.streams.state.dir", "bootstrap.servers", "ksql.streams.bootstrap.servers", "listeners"}
)

STREAMS_PREFIX = "ksql.streams."

#: What SHOW PROPERTIES prints for a secret, as ksqlDB prints Kafka's PASSWORD-typed settings.
HIDDEN = "[hidden]"
#: Parts of setting names that mark secrets, with or without a prefix (``ksql.streams.``,
#: ``kafka.``, ``ksql.schema.registry.``): Kafka's and Schema Registry's PASSWORD-typed settings
#: (``ssl.key.password``, ``sasl.jaas.config``, ``basic.auth.user.info`` ...) and librdkafka's
#: (``sasl.password``, ``ssl.key.pem``, ``sasl.oauthbearer.client.secret``).
_SECRET_MARKERS = (
    "password",
    "secret",
    "jaas.config",
    "basic.auth.user.info",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.truststore.certificates",
    "ssl.key.pem",
    "credentials",
)
#: ksqlDB hides every ``ksql.functions.*`` setting: user functions' settings may hold credentials.
_SECRET_PREFIXES = ("ksql.functions.",)


def is_secret(name: str) -> bool:
    """Whether ``name`` is a setting whose value must not be shown (SHOW PROPERTIES, logs)."""
    lowered = name.lower()
    return lowered.startswith(_SECRET_PREFIXES) or any(marker in lowered for marker in _SECRET_MARKERS)


def shown_value(name: str, value: str) -> str:
    """``value`` as SHOW PROPERTIES prints it: ``[hidden]`` for secrets."""
    return HIDDEN if is_secret(name) else value


def normalise(name: str) -> str:
    """Streams/consumer property names may be given with or without the ``ksql.streams.`` prefix."""
    if name in (
        "auto.offset.reset",
        "cache.max.bytes.buffering",
        "commit.interval.ms",
        "num.stream.threads",
        "max.task.idle.ms",
        "max.poll.records",
    ):
        return STREAMS_PREFIX + name
    return name


@dataclass(frozen=True, slots=True)
class EngineConfig:
    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> EngineConfig:
        values = dict(DEFAULTS)
        for k, v in config.items():
            values[normalise(k)] = "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        return cls(values)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(normalise(name), default)

    def get_bool(self, name: str, default: bool) -> bool:
        v = self.get(name)
        return default if v in (None, "") else str(v).lower() == "true"

    @property
    def service_id(self) -> str:
        return self.values["ksql.service.id"]

    @property
    def state_dir(self) -> str:
        return self.values["ksql.streams.state.dir"]

    def as_store_config(self) -> dict[str, str]:
        """The topic store's settings: the embedded store lives in the state directory."""
        out = dict(self.values)
        if self.state_dir == ":memory:":
            out.setdefault("ksqlpy.store.path", ":memory:")
        else:
            out.setdefault("ksqlpy.data.dir", self.state_dir)
        return out

    def offset_reset(self, overrides: Mapping[str, Any] | None) -> StartPosition:
        value = None
        if overrides:
            value = overrides.get("ksql.streams.auto.offset.reset", overrides.get("auto.offset.reset"))
        if value is None:
            value = self.values.get("ksql.streams.auto.offset.reset", "latest")
        return "earliest" if str(value).lower() == "earliest" else "latest"

    def check_overridable(self, name: str) -> None:
        if normalise(name) in NOT_OVERRIDABLE:
            raise AnalysisError(
                "One or more properties overrides set locally are prohibited by the KSQL server "
                f"(use UNSET to reset their default value): [{name}]"
            )

    def merged(self, overrides: Mapping[str, Any]) -> dict[str, str]:
        out = dict(self.values)
        for k, v in overrides.items():
            out[normalise(k)] = str(v)
        return out
