"""The schemas a QTT case registers before its statements run (its ``topics`` entries).

A topic entry may give ``keySchema`` / ``valueSchema`` (Avro and JSON schemas as JSON values,
Protobuf schemas as text) and ``keySchemaId`` / ``valueSchemaId``. The schema language comes
from the entry's ``keyFormat`` / ``valueFormat``, else from the statements creating a source
over the topic, else from the schema's own shape.

Like ksqlDB's harness (``TestCaseBuilderUtil.getAllTopics``), topics that only CREATE
statements name get the schema generated from the statement's columns, and all schemas are
registered in the iteration order of the Java ``HashMap`` holding the topics, key before value:
cases that name schemas by id (``VALUE_SCHEMA_ID=2``) depend on the ids that order gives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ksqlpy.runtime.serde.registry import SchemaReference, SchemaRegistry, subject_name
from ksqlpy.testing.qtt import QttCase, TopicNode

_SCHEMA_TYPES = {"AVRO": "AVRO", "JSON_SR": "JSON", "JSON": "JSON", "PROTOBUF": "PROTOBUF", "PROTOBUF_NOSR": "PROTOBUF"}
_AVRO_KINDS = frozenset(
    {"record", "enum", "fixed", "map", "int", "long", "float", "double", "boolean", "string", "bytes", "null"}
)
_JSON_KINDS = frozenset({"object", "integer", "number"})
#: Formats whose schemas the harness registers (PROTOBUF_NOSR records name no schema).
_SR_FORMATS = frozenset({"AVRO", "JSON_SR", "PROTOBUF"})


@dataclass(frozen=True, slots=True)
class _Schema:
    is_key: bool
    text: str
    schema_type: str
    schema_id: int | None = None
    #: imported schemas, registered first under their import name: (name, schema type, text)
    references: tuple[tuple[str, str, str], ...] = ()


def register_topic_schemas(registry: SchemaRegistry, case: QttCase, config: Mapping[str, Any]) -> None:
    topics: dict[str, list[_Schema]] = {}
    for node in case.topics:
        schemas = topics.setdefault(node.name, [])
        for is_key, schema, schema_id, references in (
            (True, node.key_schema, node.key_schema_id, node.key_references),
            (False, node.value_schema, node.value_schema_id, node.value_references),
        ):
            if schema is None:
                continue
            schema_type = _schema_type(node, case, schema, is_key=is_key)
            text = schema if isinstance(schema, str) and schema_type == "PROTOBUF" else json.dumps(schema)
            refs = tuple((name, _SCHEMA_TYPES.get(fmt, schema_type), ref) for name, fmt, ref in references)
            schemas.append(_Schema(is_key, text, schema_type, schema_id, refs))
    for topic, schemas in _statement_schemas(case, config):
        topics.setdefault(topic, schemas)
    for topic in java_hash_map_order(list(topics)):
        for schema in topics[topic]:
            imported: list[SchemaReference] = []
            for name, schema_type, text in schema.references:
                registry.register(name, text, schema_type)
                registered = registry.latest(name)
                assert registered is not None
                imported.append(SchemaReference(name, name, registered.version))
            registry.register(
                subject_name(topic, is_key=schema.is_key),
                schema.text,
                schema.schema_type,
                schema_id=schema.schema_id,
                references=tuple(imported),
            )


def _statement_schemas(case: QttCase, config: Mapping[str, Any]) -> list[tuple[str, list[_Schema]]]:
    """Schemas generated from the columns of CREATE STREAM/TABLE statements in SR formats."""
    from ksqlpy.errors import KsqlpyError
    from ksqlpy.parser import ast, parse_statement
    from ksqlpy.planner import ddl
    from ksqlpy.planner.catalog import Catalog
    from ksqlpy.runtime.codec import fields_of, serde_spec
    from ksqlpy.runtime.serde import sr

    found: list[tuple[str, list[_Schema]]] = []
    for text in case.statements:
        try:
            statement = parse_statement(text)
            if not isinstance(statement, ast.CreateSource) or not statement.elements:
                continue
            source = ddl.source_from_create(statement, Catalog(), config)
        except (KsqlpyError, ValueError):
            continue
        schemas = []
        for is_key, fmt, columns in (
            (True, source.key_format, source.key_columns),
            (False, source.value_format, source.value_columns),
        ):
            if fmt.format not in _SR_FORMATS or not columns or "schemaId" in fmt.properties:
                continue
            try:
                schema, schema_type = sr.generated_schema(serde_spec(fmt), fields_of(columns), is_key=is_key)
            except (KsqlpyError, ValueError, KeyError):
                continue
            schemas.append(_Schema(is_key, schema, schema_type))
        found.append((source.topic, schemas))
    return found


def java_hash_map_order(names: list[str]) -> list[str]:
    """``names`` in the order a Java ``HashMap<String, ?>`` filled in this order iterates them."""
    capacity = 16
    while len(names) > capacity * 3 // 4:
        capacity *= 2

    def bucket(name: str) -> int:
        h = 0
        data = name.encode("utf-16-be")  # Java hashes UTF-16 code units
        for i in range(0, len(data), 2):
            h = (31 * h + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
        return (h ^ (h >> 16)) & (capacity - 1)

    return sorted(names, key=lambda n: (bucket(n), names.index(n)))


def _schema_type(node: TopicNode, case: QttCase, schema: Any, *, is_key: bool) -> str:
    given = node.key_format if is_key else node.value_format
    if given is None:
        given = _statement_format(node.name, case, is_key=is_key)
    if given is not None and given in _SCHEMA_TYPES:
        return _SCHEMA_TYPES[given]
    return _shape_type(schema)


def _statement_format(topic: str, case: QttCase, *, is_key: bool) -> str | None:
    quoted = re.escape(topic.replace("'", "''"))
    for statement in case.statements:
        if not re.search(rf"kafka_topic\s*=\s*'{quoted}'", statement, re.IGNORECASE):
            continue
        which = "KEY_FORMAT" if is_key else "VALUE_FORMAT"
        for prop in (which, "FORMAT"):
            found = re.search(rf"(?<![A-Z_]){prop}\s*=\s*'([A-Za-z_]+)'", statement, re.IGNORECASE)
            if found:
                return found.group(1).upper()
    if case.format is not None and case.format.upper() in _SCHEMA_TYPES:
        return case.format.upper()
    return None


def _shape_type(schema: Any) -> str:
    match schema:
        case str() if "message " in schema or "syntax" in schema:
            return "PROTOBUF"
        case str() | list():
            return "AVRO"
        case dict():
            kind = schema.get("type")
            if "$schema" in schema or "properties" in schema or kind in _JSON_KINDS or "oneOf" in schema:
                return "JSON"
            if kind in _AVRO_KINDS or "logicalType" in schema:
                return "AVRO"
            if kind == "array":
                return _shape_type(schema.get("items"))
    return "AVRO"
