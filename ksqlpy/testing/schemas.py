"""The schemas a QTT case registers before its statements run (its ``topics`` entries).

A topic entry may give ``keySchema`` / ``valueSchema`` (Avro and JSON schemas as JSON values,
Protobuf schemas as text) and ``keySchemaId`` / ``valueSchemaId``. The schema language comes
from the entry's ``keyFormat`` / ``valueFormat``, else from the statements creating a source
over the topic, else from the schema's own shape.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ksqlpy.runtime.serde.registry import SchemaRegistry, subject_name
from ksqlpy.testing.qtt import QttCase, TopicNode

_SCHEMA_TYPES = {"AVRO": "AVRO", "JSON_SR": "JSON", "JSON": "JSON", "PROTOBUF": "PROTOBUF", "PROTOBUF_NOSR": "PROTOBUF"}
_AVRO_KINDS = frozenset(
    {"record", "enum", "fixed", "map", "int", "long", "float", "double", "boolean", "string", "bytes", "null"}
)
_JSON_KINDS = frozenset({"object", "integer", "number"})


def register_topic_schemas(registry: SchemaRegistry, case: QttCase) -> None:
    for node in case.topics:
        for is_key, schema, schema_id in (
            (True, node.key_schema, node.key_schema_id),
            (False, node.value_schema, node.value_schema_id),
        ):
            if schema is None:
                continue
            schema_type = _schema_type(node, case, schema, is_key=is_key)
            text = schema if isinstance(schema, str) and schema_type == "PROTOBUF" else json.dumps(schema)
            registry.register(subject_name(node.name, is_key=is_key), text, schema_type, schema_id=schema_id)


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
