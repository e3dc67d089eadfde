"""QTT-level keys and values of the schema-registry formats, to bytes and back.

Conformance cases give records as JSON values. They are written with the latest schema of the
topic's subject: the one the case registered, or else the schema ksqlpy generates for the
source's columns (registered then), just as ksqlDB's harness derives a topic's schema from the
statements. Records are read back with the schema their header names and turned into JSON
values (temporals as integers, bytes as base64), to compare with the case's expectations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import orjson

from ksqlpy.runtime.serde import sr
from ksqlpy.runtime.serde.format import Format, SerdeSpec
from ksqlpy.runtime.serde.registry import (
    HEADER_SIZE,
    RegisteredSchema,
    SchemaRegistry,
    read_header,
    subject_name,
    wire_header,
)
from ksqlpy.runtime.serde.srbase import spec_value
from ksqlpy.sqltypes import Field


def writer_schema(
    spec: SerdeSpec, columns: Sequence[Field], *, is_key: bool, registry: SchemaRegistry, topic: str
) -> RegisteredSchema:
    """The schema records of ``topic`` are written with (registered when missing)."""
    subject = subject_name(topic, is_key=is_key)
    found = registry.latest(subject)
    if found is not None:
        return found
    text, schema_type = sr.generated_schema(spec, columns, is_key=is_key)
    schema_id = registry.register(subject, text, schema_type)
    return registry.by_id(schema_id)


def encode_value(
    value: Any, spec: SerdeSpec, columns: Sequence[Field], *, is_key: bool, registry: SchemaRegistry, topic: str
) -> bytes:
    schema = writer_schema(spec, columns, is_key=is_key, registry=registry, topic=topic)
    match spec.format:
        case Format.AVRO:
            data: bytes = _avro_writer(schema.id, schema.schema).write(value)
            return data
        case Format.JSON_SR:
            return wire_header(schema.id) + orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
        case Format.PROTOBUF | Format.PROTOBUF_NOSR:
            from ksqlpy.runtime.serde import protobuf

            message = protobuf.message_type(schema.schema, spec.full_name, protobuf.imports_of(registry, schema))
            payload = message.write_value(value)
            if spec.format is Format.PROTOBUF_NOSR:
                return payload
            return wire_header(schema.id) + protobuf.encode_indexes(message.index_path) + payload
    raise ValueError(f"not a schema-registry format: {spec.format.value}")


def decode_value(
    data: bytes, spec: SerdeSpec, columns: Sequence[Field], *, is_key: bool, registry: SchemaRegistry
) -> Any:
    match spec.format:
        case Format.AVRO:
            from ksqlpy.runtime.serde.avro import AvroSchemaCache, read_datum

            return spec_value(read_datum(data, AvroSchemaCache(registry)))
        case Format.JSON_SR:
            read_header(data)
            return json.loads(data[HEADER_SIZE:], parse_float=_decimal)
        case Format.PROTOBUF:
            from ksqlpy.runtime.serde import protobuf

            schema = registry.by_id(read_header(data))
            return spec_value(protobuf.read_registered(data, schema.schema, protobuf.imports_of(registry, schema)))
        case Format.PROTOBUF_NOSR:
            from ksqlpy.runtime.serde import protobuf

            text, _ = sr.generated_schema(spec, columns, is_key=is_key)
            return spec_value(protobuf.message_type(text, spec.full_name).read_value(data))
    raise ValueError(f"not a schema-registry format: {spec.format.value}")


@lru_cache(maxsize=256)
def _avro_writer(schema_id: int, text: str) -> Any:
    from ksqlpy.runtime.serde.avro import AvroWriter

    return AvroWriter(json.loads(text), schema_id, conform=True)


def _decimal(text: str) -> Any:
    import decimal

    return decimal.Decimal(text)


def _json_default(value: object) -> object:
    import decimal

    if isinstance(value, decimal.Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"not JSON: {type(value).__name__}")
