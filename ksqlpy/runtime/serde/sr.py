"""Serdes, schema generation and column inference of the schema-registry formats, by format.

Public API::

    sr.deserializer(spec, columns, is_key=False, registry=r)
    sr.serializer(spec, columns, is_key=False, registry=r, topic="t")
    sr.generated_schema(spec, columns, is_key=False)   # (schema text, registry schema type)
    sr.infer_columns(spec, registry, topic, is_key=False)  # columns of the registered schema

The Avro and Protobuf serdes are imported on first use: fastavro and protobuf cost a server that
uses neither several MiB of resident memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.serde import json_sr
from ksqlpy.runtime.serde.base import Deserializer, Serializer
from ksqlpy.runtime.serde.format import Format, SerdeSpec
from ksqlpy.runtime.serde.registry import RegisteredSchema, SchemaRegistry, SchemaRegistryError, subject_name
from ksqlpy.runtime.serde.srbase import missing_schema_error
from ksqlpy.sqltypes import Field

#: The registry's name for each format's schema language.
SCHEMA_TYPES: dict[Format, str] = {
    Format.AVRO: "AVRO",
    Format.JSON_SR: json_sr.SCHEMA_TYPE,
    Format.PROTOBUF: "PROTOBUF",
    Format.PROTOBUF_NOSR: "PROTOBUF",
}


def deserializer(spec: SerdeSpec, columns: Sequence[Field], *, is_key: bool, registry: SchemaRegistry) -> Deserializer:
    wrapped = spec.wraps(columns, is_key=is_key)
    match spec.format:
        case Format.AVRO:
            from ksqlpy.runtime.serde import avro

            return avro.AvroDeserializer(columns, is_key=is_key, wrapped=wrapped, registry=registry)
        case Format.JSON_SR:
            return json_sr.JsonSrDeserializer(columns, is_key=is_key, wrapped=wrapped)
        case Format.PROTOBUF | Format.PROTOBUF_NOSR:
            from ksqlpy.runtime.serde import protobuf

            return protobuf.ProtobufDeserializer(
                columns,
                is_key=is_key,
                wrapped=wrapped,
                registry=registry,
                with_registry=spec.format is Format.PROTOBUF,
                nullable=spec.nullable,
            )
    raise ValueError(f"not a schema-registry format: {spec.format.value}")


def serializer(
    spec: SerdeSpec, columns: Sequence[Field], *, is_key: bool, registry: SchemaRegistry, topic: str
) -> Serializer:
    wrapped = spec.wraps(columns, is_key=is_key)
    match spec.format:
        case Format.AVRO:
            from ksqlpy.runtime.serde import avro

            return avro.AvroSerializer(
                columns,
                is_key=is_key,
                wrapped=wrapped,
                registry=registry,
                topic=topic,
                schema_id=spec.schema_id,
                full_name=spec.full_name,
            )
        case Format.JSON_SR:
            return json_sr.JsonSrSerializer(
                columns, is_key=is_key, wrapped=wrapped, registry=registry, topic=topic, schema_id=spec.schema_id
            )
        case Format.PROTOBUF | Format.PROTOBUF_NOSR:
            from ksqlpy.runtime.serde import protobuf

            return protobuf.ProtobufSerializer(
                columns,
                is_key=is_key,
                wrapped=wrapped,
                registry=registry,
                topic=topic,
                with_registry=spec.format is Format.PROTOBUF,
                schema_id=spec.schema_id,
                full_name=spec.full_name,
                nullable=spec.nullable,
            )
    raise ValueError(f"not a schema-registry format: {spec.format.value}")


def generated_schema(spec: SerdeSpec, columns: Sequence[Field], *, is_key: bool) -> tuple[str, str]:
    """The schema ksqlpy writes ``columns`` with, as registry text, and its schema type."""
    wrapped = spec.wraps(columns, is_key=is_key)
    match spec.format:
        case Format.AVRO:
            from ksqlpy.runtime.serde import avro

            return json.dumps(avro.avro_schema(columns, wrapped=wrapped, full_name=spec.full_name)), avro.SCHEMA_TYPE
        case Format.JSON_SR:
            return json.dumps(json_sr.json_schema(columns, wrapped=wrapped)), json_sr.SCHEMA_TYPE
        case Format.PROTOBUF | Format.PROTOBUF_NOSR:
            from ksqlpy.runtime.serde import protobuf

            text = protobuf.proto_schema_text(columns, full_name=spec.full_name, nullable=spec.nullable)
            return text, protobuf.SCHEMA_TYPE
    raise ValueError(f"not a schema-registry format: {spec.format.value}")


def columns_of(
    schema: RegisteredSchema, spec: SerdeSpec, *, is_key: bool, registry: SchemaRegistry | None = None
) -> tuple[Field, ...]:
    """The columns a registered schema holds, read as ``spec``'s format does (``registry``
    supplies the schemas it references)."""
    wrapped = spec.wrap_single_value
    match spec.format:
        case Format.AVRO:
            from ksqlpy.runtime.serde import avro

            return avro.columns_from_avro(schema.schema, is_key=is_key, wrapped=wrapped)
        case Format.JSON_SR:
            return json_sr.columns_from_json_schema(schema.schema, is_key=is_key, wrapped=wrapped)
        case Format.PROTOBUF | Format.PROTOBUF_NOSR:
            from ksqlpy.runtime.serde import protobuf

            imports = protobuf.imports_of(registry, schema) if registry is not None else ()
            return protobuf.columns_from_proto(schema.schema, is_key=is_key, full_name=spec.full_name, imports=imports)
    raise AnalysisError(f"The '{spec.format.value}' format does not support schema inference")


def infer_columns(spec: SerdeSpec, registry: SchemaRegistry, topic: str, *, is_key: bool) -> tuple[Field, ...]:
    """Columns from the topic's registered schema (the latest, or ``spec.schema_id``), or
    ksqlDB's error when the registry has none."""
    if spec.schema_id is not None:
        try:
            found: RegisteredSchema | None = registry.by_id(spec.schema_id)
        except SchemaRegistryError:
            found = None
    else:
        found = registry.latest(subject_name(topic, is_key=is_key))
    if found is None:
        raise missing_schema_error(topic, is_key=is_key, schema_id=spec.schema_id)
    fields = columns_of(found, spec, is_key=is_key, registry=registry)
    # ksqlDB keeps the schema's spelling when a schema id is given, else upper-cases names
    return fields if spec.schema_id is not None else tuple(_upper(f) for f in fields)


def _upper(field: Field) -> Field:
    return Field(field.name.upper(), _upper_type(field.type))


def _upper_type(t: sqltypes.SqlType) -> sqltypes.SqlType:
    match t:
        case sqltypes.Struct(fields=fs):
            return sqltypes.Struct(tuple(_upper(f) for f in fs))
        case sqltypes.Array(element=e):
            return sqltypes.Array(_upper_type(e))
        case sqltypes.Map(key=k, value=v):
            return sqltypes.Map(k, _upper_type(v))
    return t


class FormatLike(Protocol):
    """What inference needs of a planner ``FormatInfo``."""

    # Read-only members, so that the planner's frozen dataclass satisfies the protocol.
    @property
    def format(self) -> str: ...
    @property
    def properties(self) -> Mapping[str, str]: ...
    @property
    def wrap_single_value(self) -> bool | None: ...


def schema_inference(registry: SchemaRegistry) -> Callable[[str, FormatLike, bool], tuple[Field, ...]]:
    """The planner's hook for CREATE statements without columns: ``infer(topic, format,
    is_key)`` gives the columns of the registered schema (ksqlDB's ``DefaultSchemaInjector``)."""

    def infer(topic: str, fmt: FormatLike, is_key: bool) -> tuple[Field, ...]:
        schema_id = fmt.properties.get("schemaId")
        spec = SerdeSpec(
            format=Format.parse(fmt.format),
            wrap_single_value=fmt.wrap_single_value,
            schema_id=None if schema_id is None else int(schema_id),
            full_name=fmt.properties.get("fullSchemaName"),
            nullable=(fmt.properties.get("nullableRepresentation") or "").upper() or None,
        )
        return infer_columns(spec, registry, topic, is_key=is_key)

    return infer
