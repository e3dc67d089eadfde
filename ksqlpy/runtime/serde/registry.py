"""Schema registries: where AVRO, PROTOBUF and JSON_SR schemas live, by subject and by id.

ksqlDB keeps the schema of a topic's keys under the subject ``<topic>-key`` and of its values
under ``<topic>-value`` (Confluent's ``TopicNameStrategy``); every record names the schema it
was written with by a global id in a five-byte header (:func:`wire_header`).

Two implementations of :class:`SchemaRegistry`:

* :class:`InProcessRegistry` (the default, when ``ksql.schema.registry.url`` is unset) keeps
  schemas in a topic of the engine's topic store (:data:`SCHEMAS_TOPIC`), as Confluent's
  registry keeps them in Kafka, so that they survive restarts and every engine over the store
  sees them;
* :class:`HttpRegistry` talks to a Confluent Schema Registry over its REST API.

:func:`registry_for` gives the registry of a topic store (one per store, shared by queries).
"""

from __future__ import annotations

import abc
import struct
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from ksqlpy.errors import KsqlpyError
from ksqlpy.runtime.store.base import TopicSpec, TopicStore

#: The topic the in-process registry keeps its schemas in. Not Confluent's ``_schemas``: its
#: records have another layout, and a Kafka cluster may also serve a real registry.
SCHEMAS_TOPIC = "_ksqlpy_schemas"
#: First byte of every record written by a schema-registry aware serializer.
MAGIC_BYTE = 0
#: Length of the magic byte plus the schema id.
HEADER_SIZE = 5

_HEADER = struct.Struct(">bI")


class SchemaRegistryError(KsqlpyError):
    """The registry is unreachable, or has no such subject, version or id."""


@dataclass(frozen=True, slots=True)
class SchemaReference:
    """A schema another one imports (``import "event.proto";``): the name it is imported by,
    and the subject version holding it."""

    name: str
    subject: str
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredSchema:
    """One version of a subject's schema. ``schema_type`` is the registry's name for the
    schema language: ``AVRO``, ``PROTOBUF`` or ``JSON``; ``schema`` is the schema's text."""

    id: int
    schema_type: str
    schema: str
    subject: str = ""
    version: int = 0
    references: tuple[SchemaReference, ...] = ()


def _references(raw: Any) -> tuple[SchemaReference, ...]:
    return tuple(SchemaReference(r["name"], r["subject"], int(r["version"])) for r in raw or ())


def _references_json(references: tuple[SchemaReference, ...]) -> list[dict[str, Any]]:
    return [{"name": r.name, "subject": r.subject, "version": r.version} for r in references]


def subject_name(topic: str, *, is_key: bool) -> str:
    """``<topic>-key`` or ``<topic>-value``."""
    return f"{topic}-{'key' if is_key else 'value'}"


def wire_header(schema_id: int) -> bytes:
    """The Confluent wire format's header: magic byte 0 then the schema id (big-endian)."""
    return _HEADER.pack(MAGIC_BYTE, schema_id)


def read_header(data: bytes) -> int:
    """The schema id of a record in the wire format; ValueError when the header is missing."""
    if len(data) < HEADER_SIZE or data[0] != MAGIC_BYTE:
        raise ValueError("Unknown magic byte!")
    return int(_HEADER.unpack_from(data)[1])


class SchemaRegistry(abc.ABC):
    """Schemas by subject (versions, latest) and by global id."""

    @abc.abstractmethod
    def register(
        self,
        subject: str,
        schema: str,
        schema_type: str,
        *,
        schema_id: int | None = None,
        references: tuple[SchemaReference, ...] = (),
    ) -> int:
        """The id of ``schema`` under ``subject``, registering it as a new version unless the
        subject already has the very same schema. ``schema_id`` asks for a given id (as
        Confluent's registry allows in import mode); ``references`` are the schemas it imports."""

    @abc.abstractmethod
    def version(self, subject: str, version: int) -> RegisteredSchema | None:
        """One version of a subject (1 is the first); None when there is no such version."""

    def imports(self, schema: RegisteredSchema) -> dict[str, str]:
        """The text of every schema ``schema`` imports, directly or not, by import name."""
        found: dict[str, str] = {}
        pending = list(schema.references)
        while pending:
            reference = pending.pop()
            if reference.name in found:
                continue
            target = self.version(reference.subject, reference.version)
            if target is None:
                raise SchemaRegistryError(
                    f"Schema reference {reference.name} ({reference.subject} version {reference.version}) not found"
                )
            found[reference.name] = target.schema
            pending.extend(target.references)
        return found

    @abc.abstractmethod
    def latest(self, subject: str) -> RegisteredSchema | None:
        """The subject's latest version; None when the subject has none."""

    @abc.abstractmethod
    def by_id(self, schema_id: int) -> RegisteredSchema:
        """The schema with this id; :class:`SchemaRegistryError` when there is none."""

    @abc.abstractmethod
    def subjects(self) -> list[str]: ...

    @abc.abstractmethod
    def delete_subject(self, subject: str) -> None: ...

    def close(self) -> None:
        """Release connections."""


# -----------------------------------------------------------------------------------------
# In-process registry over the topic store
# -----------------------------------------------------------------------------------------


class InProcessRegistry(SchemaRegistry):
    """A registry kept in a topic of the store: one record per registration (key: subject,
    value: the schema version as JSON) or subject deletion (a tombstone). Ids are global and
    increase from 1, as Confluent's registry numbers them."""

    def __init__(self, store: TopicStore) -> None:
        self._store = store
        self._lock = threading.RLock()
        self._versions: dict[str, list[RegisteredSchema]] = {}
        self._ids: dict[int, RegisteredSchema] = {}
        self._read = 0
        self._catch_up()

    def register(
        self,
        subject: str,
        schema: str,
        schema_type: str,
        *,
        schema_id: int | None = None,
        references: tuple[SchemaReference, ...] = (),
    ) -> int:
        with self._lock:
            self._catch_up()
            for existing in self._versions.get(subject, ()):
                identical = existing.schema == schema and existing.schema_type == schema_type
                if identical and schema_id in (None, existing.id):
                    return existing.id
            if schema_id is None:
                same = next(
                    (s for s in self._ids.values() if s.schema == schema and s.schema_type == schema_type), None
                )
                schema_id = same.id if same is not None else max(self._ids, default=0) + 1
            elif schema_id in self._ids and self._ids[schema_id].schema != schema:
                raise SchemaRegistryError(f"Schema id {schema_id} is already used by another schema")
            version = len(self._versions.get(subject, ())) + 1
            value = orjson.dumps(
                {
                    "subject": subject,
                    "version": version,
                    "id": schema_id,
                    "schemaType": schema_type,
                    "schema": schema,
                    "references": _references_json(references),
                }
            )
            self._append(subject, value)
            self._catch_up()
            return schema_id

    def latest(self, subject: str) -> RegisteredSchema | None:
        with self._lock:
            self._catch_up()
            versions = self._versions.get(subject)
            return versions[-1] if versions else None

    def version(self, subject: str, version: int) -> RegisteredSchema | None:
        with self._lock:
            self._catch_up()
            versions = self._versions.get(subject, [])
            return versions[version - 1] if 0 < version <= len(versions) else None

    def by_id(self, schema_id: int) -> RegisteredSchema:
        with self._lock:
            found = self._ids.get(schema_id)
            if found is None:
                self._catch_up()
                found = self._ids.get(schema_id)
            if found is None:
                raise SchemaRegistryError(f"Schema {schema_id} not found")
            return found

    def subjects(self) -> list[str]:
        with self._lock:
            self._catch_up()
            return sorted(s for s, v in self._versions.items() if v)

    def delete_subject(self, subject: str) -> None:
        with self._lock:
            self._append(subject, None)
            self._catch_up()

    def _append(self, subject: str, value: bytes | None) -> None:
        # created on first use, so that stores without schema-registry formats stay as they were
        self._store.create_topic(
            TopicSpec(name=SCHEMAS_TOPIC, partitions=1, config={"cleanup.policy": "delete", "retention.ms": "-1"}),
            exist_ok=True,
        )
        self._store.produce(
            SCHEMAS_TOPIC,
            pa.table(
                {
                    "timestamp": pa.array([0], pa.int64()),
                    "key": pa.array([subject.encode()], pa.binary()),
                    "value": pa.array([value], pa.binary()),
                }
            ),
        )

    def _catch_up(self) -> None:
        """Apply the records written since the last read (by this or another engine)."""
        if self._store.describe_topic(SCHEMAS_TOPIC) is None:
            return
        end = self._store.end_offsets(SCHEMAS_TOPIC).get(0, 0)
        if end <= self._read:
            return
        with self._store.open_reader([SCHEMAS_TOPIC], group=None, start="earliest") as reader:
            seen = 0
            idle = 0
            while seen < end and idle < 50:
                batch = reader.poll(10_000, timeout=0.05)
                if batch.num_rows == 0:
                    idle += 1
                    continue
                offsets = batch.column("offset").to_pylist()
                for offset, key, value in zip(
                    offsets, batch.column("key").to_pylist(), batch.column("value").to_pylist()
                ):
                    if offset >= self._read:
                        self._apply(key.decode(), value)
                seen = offsets[-1] + 1
        self._read = max(self._read, seen)

    def _apply(self, subject: str, value: bytes | None) -> None:
        if value is None:
            self._versions.pop(subject, None)
            return
        obj = orjson.loads(value)
        entry = RegisteredSchema(
            id=obj["id"],
            schema_type=obj["schemaType"],
            schema=obj["schema"],
            subject=subject,
            version=obj["version"],
            references=_references(obj.get("references")),
        )
        self._versions.setdefault(subject, []).append(entry)
        self._ids.setdefault(entry.id, entry)


# -----------------------------------------------------------------------------------------
# Confluent Schema Registry over HTTP
# -----------------------------------------------------------------------------------------

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class HttpRegistry(SchemaRegistry):
    """A client of Confluent Schema Registry's REST API (``ksql.schema.registry.url``).
    Schemas by id never change, so they are cached; subjects are always asked for."""

    def __init__(self, url: str, *, timeout: float = 10.0, user_info: str | None = None) -> None:
        import httpx

        auth = None
        if user_info:  # ``user:password``, as ``basic.auth.user.info`` gives it
            user, _, password = user_info.partition(":")
            auth = httpx.BasicAuth(user, password)
        self._client = httpx.Client(
            base_url=url.rstrip("/"), timeout=timeout, headers={"Content-Type": _CONTENT_TYPE}, auth=auth
        )
        self._cache: dict[int, RegisteredSchema] = {}
        self._lock = threading.Lock()

    def register(
        self,
        subject: str,
        schema: str,
        schema_type: str,
        *,
        schema_id: int | None = None,
        references: tuple[SchemaReference, ...] = (),
    ) -> int:
        body: dict[str, Any] = {"schema": schema}
        if schema_type != "AVRO":
            body["schemaType"] = schema_type
        if schema_id is not None:
            body["id"] = schema_id
        if references:
            body["references"] = _references_json(references)
        answer = self._call("POST", f"/subjects/{_quote(subject)}/versions", body)
        schema_id = int(answer["id"])
        with self._lock:
            self._cache.setdefault(
                schema_id,
                RegisteredSchema(id=schema_id, schema_type=schema_type, schema=schema, references=references),
            )
        return schema_id

    def latest(self, subject: str) -> RegisteredSchema | None:
        return self._subject_version(subject, "latest")

    def version(self, subject: str, version: int) -> RegisteredSchema | None:
        return self._subject_version(subject, str(version))

    def _subject_version(self, subject: str, version: str) -> RegisteredSchema | None:
        answer = self._call("GET", f"/subjects/{_quote(subject)}/versions/{version}", missing_ok=True)
        if answer is None:
            return None
        return RegisteredSchema(
            id=int(answer["id"]),
            schema_type=answer.get("schemaType", "AVRO"),
            schema=answer["schema"],
            subject=answer.get("subject", subject),
            version=int(answer.get("version", 0)),
            references=_references(answer.get("references")),
        )

    def by_id(self, schema_id: int) -> RegisteredSchema:
        with self._lock:
            cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        answer = self._call("GET", f"/schemas/ids/{schema_id}", missing_ok=True)
        if answer is None:
            raise SchemaRegistryError(f"Schema {schema_id} not found")
        found = RegisteredSchema(
            id=schema_id,
            schema_type=answer.get("schemaType", "AVRO"),
            schema=answer["schema"],
            references=_references(answer.get("references")),
        )
        with self._lock:
            self._cache[schema_id] = found
        return found

    def subjects(self) -> list[str]:
        answer = self._call("GET", "/subjects")
        return sorted(answer or [])

    def delete_subject(self, subject: str) -> None:
        self._call("DELETE", f"/subjects/{_quote(subject)}", missing_ok=True)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None, *, missing_ok: bool = False) -> Any:
        import httpx

        try:
            response = self._client.request(method, path, content=None if body is None else orjson.dumps(body))
        except httpx.HTTPError as e:
            raise SchemaRegistryError(f"Schema Registry request failed: {method} {path}: {e}") from e
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise SchemaRegistryError(f"Schema Registry error {response.status_code}: {message}")
        return response.json() if response.content else None


def _quote(subject: str) -> str:
    from urllib.parse import quote

    return quote(subject, safe="")


# -----------------------------------------------------------------------------------------
# One registry per store
# -----------------------------------------------------------------------------------------

_REGISTRIES: weakref.WeakKeyDictionary[TopicStore, SchemaRegistry] = weakref.WeakKeyDictionary()
_REGISTRIES_LOCK = threading.Lock()


def configure_registry(store: TopicStore, url: str | None, *, user_info: str | None = None) -> SchemaRegistry:
    """Set up the registry of ``store``: the HTTP client when ``url`` is given (the value of
    ``ksql.schema.registry.url``, with ``ksql.schema.registry.basic.auth.user.info``), the
    in-process one otherwise."""
    registry: SchemaRegistry = HttpRegistry(url, user_info=user_info) if url else InProcessRegistry(store)
    with _REGISTRIES_LOCK:
        _REGISTRIES[store] = registry
    return registry


def registry_for(store: TopicStore) -> SchemaRegistry:
    """The registry of ``store`` (the in-process one unless configured otherwise)."""
    with _REGISTRIES_LOCK:
        found = _REGISTRIES.get(store)
    return found if found is not None else configure_registry(store, None)
