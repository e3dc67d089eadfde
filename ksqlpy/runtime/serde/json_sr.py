"""The JSON_SR format: JSON documents behind Confluent's five-byte wire header.

The payload is read and written exactly as the JSON format does (the header is cut off or put
in front with Arrow kernels, so JSON's columnar paths apply). Sink schemas are JSON Schemas as
Confluent's ``JsonSchemaData`` writes them from ksqlDB's Connect schemas: objects with
``connect.index``-ordered properties, each optional (``oneOf`` null or the type), integers
marked with their ``connect.type``; :func:`columns_from_json_schema` infers columns back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.serde.base import Decoded, Deserializer, RecordError, Serializer, combine
from ksqlpy.runtime.serde.json import JsonDeserializer, JsonSerializer
from ksqlpy.runtime.serde.registry import HEADER_SIZE, MAGIC_BYTE, SchemaRegistry, subject_name, wire_header
from ksqlpy.sqltypes import BaseType, Field

SCHEMA_TYPE = "JSON"
#: A stop position past any record (binary_slice without a stop fails on some Arrow versions).
_TO_END = 2**31 - 1

_SCALARS: dict[BaseType, dict[str, Any]] = {
    BaseType.BOOLEAN: {"type": "boolean"},
    BaseType.INTEGER: {"type": "integer", "connect.type": "int32"},
    BaseType.BIGINT: {"type": "integer", "connect.type": "int64"},
    BaseType.DOUBLE: {"type": "number", "connect.type": "float64"},
    BaseType.STRING: {"type": "string"},
    BaseType.BYTES: {"type": "string", "connect.type": "bytes"},
    BaseType.DATE: {"type": "integer", "title": "org.apache.kafka.connect.data.Date", "connect.type": "int32"},
    BaseType.TIME: {"type": "integer", "title": "org.apache.kafka.connect.data.Time", "connect.type": "int32"},
    BaseType.TIMESTAMP: {"type": "integer", "title": "org.apache.kafka.connect.data.Timestamp", "connect.type": "int64"},
}


def json_schema(columns: Sequence[Field], *, wrapped: bool) -> dict[str, Any]:
    """The JSON Schema of records holding ``columns``."""
    if not wrapped:
        return _optional(_type(columns[0].type))
    return _object(columns)


def _object(fields: Sequence[Field]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            f.name: {**_optional(_type(f.type)), "connect.index": i} for i, f in enumerate(fields)
        },
    }


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [{"type": "null"}, schema]}


def _type(t: sqltypes.SqlType) -> dict[str, Any]:
    match t:
        case sqltypes.Struct(fields=fs):
            return _object(fs)
        case sqltypes.Array(element=e):
            return {"type": "array", "items": _optional(_type(e))}
        case sqltypes.Map(key=k, value=v):
            if k != sqltypes.STRING:
                raise AnalysisError("JSON_SR format only supports MAP types with STRING keys")
            return {"type": "object", "additionalProperties": _optional(_type(v)), "connect.type": "map"}
        case sqltypes.Decimal(precision=p, scale=s):
            return {
                "type": "number",
                "title": "org.apache.kafka.connect.data.Decimal",
                "connect.type": "bytes",
                "connect.parameters": {"scale": str(s), "connect.decimal.precision": str(p)},
            }
    return dict(_SCALARS[t.base])


def sql_type(schema: dict[str, Any] | bool) -> sqltypes.SqlType:
    """The SQL type ksqlDB reads a JSON Schema as."""
    if not isinstance(schema, dict):
        return sqltypes.STRING
    for key in ("oneOf", "anyOf"):
        if key in schema:
            branches = [b for b in schema[key] if not (isinstance(b, dict) and b.get("type") == "null")]
            if len(branches) == 1:
                return sql_type(branches[0])
            raise AnalysisError(f"Unsupported JSON schema union: {json.dumps(schema)}")
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        kind = non_null[0] if len(non_null) == 1 else kind
    title = schema.get("title", "")
    connect = schema.get("connect.type")
    match kind:
        case "boolean":
            return sqltypes.BOOLEAN
        case "integer":
            match title:
                case "org.apache.kafka.connect.data.Date":
                    return sqltypes.DATE
                case "org.apache.kafka.connect.data.Time":
                    return sqltypes.TIME
                case "org.apache.kafka.connect.data.Timestamp":
                    return sqltypes.TIMESTAMP
            return sqltypes.INTEGER if connect in ("int8", "int16", "int32") else sqltypes.BIGINT
        case "number":
            if title == "org.apache.kafka.connect.data.Decimal":
                params = schema.get("connect.parameters", {})
                return sqltypes.Decimal(
                    int(params.get("connect.decimal.precision", 64)), int(params.get("scale", 0))
                )
            return sqltypes.DOUBLE
        case "string":
            return sqltypes.BYTES if connect == "bytes" else sqltypes.STRING
        case "array":
            return sqltypes.Array(sql_type(schema.get("items", {})))
        case "object":
            if "properties" in schema and connect != "map":
                return sqltypes.Struct(tuple(Field(n, sql_type(s)) for n, s in _ordered(schema)))
            return sqltypes.Map(sqltypes.STRING, sql_type(schema.get("additionalProperties", {})))
    raise AnalysisError(f"Unsupported JSON schema type: {json.dumps(schema)}")


def _ordered(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    props = list(schema.get("properties", {}).items())
    return sorted(props, key=lambda p: p[1].get("connect.index", 0) if isinstance(p[1], dict) else 0)


def columns_from_json_schema(schema_text: str, *, is_key: bool, wrapped: bool | None = None) -> tuple[Field, ...]:
    schema = json.loads(schema_text)
    # keys are read unwrapped: an object key schema is one STRUCT column
    is_object = isinstance(schema, dict) and schema.get("type") == "object" and "properties" in schema
    if is_object and wrapped is not False and not is_key:
        return tuple(Field(n, sql_type(s)) for n, s in _ordered(schema))
    return (Field("ROWKEY" if is_key else "ROWVAL", sql_type(schema)),)


class JsonSrDeserializer(Deserializer):
    """Checks and cuts the header, then decodes the JSON payload as the JSON format does."""

    def __init__(self, columns: Sequence[Field], *, is_key: bool, wrapped: bool) -> None:
        super().__init__(columns, is_key=is_key)
        self._json = JsonDeserializer(columns, is_key=is_key, wrapped=wrapped)

    def decode(self, data: pa.Array | pa.ChunkedArray, *, topic: str = "?") -> Decoded:
        data = combine(data)
        long_enough = pc.fill_null(pc.greater_equal(pc.binary_length(data), HEADER_SIZE), True)
        magic = pc.binary_slice(data, 0, 1)
        framed = pc.and_(long_enough, pc.fill_null(pc.equal(magic, pa.scalar(bytes([MAGIC_BYTE]), pa.binary())), True))
        bad_rows = np.flatnonzero(~np.asarray(framed))
        payload = pc.binary_slice(data, HEADER_SIZE, _TO_END)
        payload = pc.if_else(framed, payload, pa.nulls(len(data), payload.type))
        decoded = self._json.decode(payload, topic=topic)
        if not len(bad_rows):
            return decoded
        prefix = self.error_prefix(topic)
        errors = sorted(
            (*decoded.errors, *(RecordError(int(r), prefix + "Unknown magic byte!") for r in bad_rows)),
            key=lambda e: e.row,
        )
        return Decoded(table=decoded.table, present=decoded.present, errors=tuple(errors))


class JsonSrSerializer(Serializer):
    """Writes the JSON format's payload behind the header of the registered schema."""

    def __init__(
        self,
        columns: Sequence[Field],
        *,
        is_key: bool,
        wrapped: bool,
        registry: SchemaRegistry,
        topic: str,
        schema_id: int | None = None,
    ) -> None:
        super().__init__(columns, is_key=is_key)
        self._json = JsonSerializer(columns, is_key=is_key, wrapped=wrapped)
        # properties of a given schema that no column fills are written as nulls, as the
        # Connect converter writes every field of the schema's struct
        self._extra: pa.Scalar | None = None
        if schema_id is None:
            schema = json.dumps(json_schema(columns, wrapped=wrapped))
            schema_id = registry.register(subject_name(topic, is_key=is_key), schema, SCHEMA_TYPE)
        elif wrapped and columns:
            given = json.loads(registry.by_id(schema_id).schema)
            names = {c.name.upper() for c in columns}
            missing = [n for n in given.get("properties", {}) if n.upper() not in names]
            if missing:
                text = "".join("," + json.dumps(n) + ":null" for n in missing) + "}"
                self._extra = pa.scalar(text.encode(), pa.binary())
        self._header = pa.scalar(wire_header(schema_id), pa.binary())

    def encode(self, table: pa.Table, *, present: pa.Array | None = None) -> pa.BinaryArray:
        payload = self._json.encode(table, present=present)
        if self._extra is not None:
            # '{...}' -> '{...,"MISSING":null}' (wrapped records are never empty objects)
            head = pc.binary_slice(payload, 0, -1)
            payload = pc.binary_join_element_wise(head, self._extra, pa.scalar(b"", pa.binary()))
        # binary_join_element_wise keeps nulls null: tombstones stay tombstones
        out = pc.binary_join_element_wise(self._header, payload, pa.scalar(b"", pa.binary()))
        assert isinstance(out, pa.BinaryArray)
        return out
