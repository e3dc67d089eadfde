"""The AVRO format: Avro binary in Confluent's wire format (magic byte, schema id, datum).

Schemas follow ksqlDB's ``AvroSchemas``: values (and multi-column keys) are a record named
``io.confluent.ksql.avro_schemas.KsqlDataSourceSchema`` with one optional field per column
(``["null", T]`` with default ``null``); a single key column, or a value with
``WRAP_SINGLE_VALUE=false``, is the bare optional type. Nested structs are records named after
their path (``KsqlDataSourceSchema_ADDRESS``); DECIMAL is ``bytes`` with the ``decimal`` logical
type; DATE, TIME and TIMESTAMP use ``date``, ``time-millis`` and ``timestamp-millis``.

Reading uses the writer's schema (by the id in each record) and matches record fields to
columns by name, case-insensitively; :func:`columns_from_avro` infers columns from a schema.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from typing import Any

import fastavro
import pyarrow as pa

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError, SerdeError
from ksqlpy.runtime.serde.registry import HEADER_SIZE, SchemaRegistry, read_header, subject_name, wire_header
from ksqlpy.runtime.serde.srbase import RowDeserializer, RowSerializer
from ksqlpy.sqltypes import BaseType, Field

NAMESPACE = "io.confluent.ksql.avro_schemas"
DEFAULT_NAME = "KsqlDataSourceSchema"
SCHEMA_TYPE = "AVRO"

AvroSchema = Any  # the JSON form: a name, a list (union) or a dict

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_PRIMITIVES: dict[BaseType, AvroSchema] = {
    BaseType.BOOLEAN: "boolean",
    BaseType.INTEGER: "int",
    BaseType.BIGINT: "long",
    BaseType.DOUBLE: "double",
    BaseType.STRING: "string",
    BaseType.BYTES: "bytes",
    BaseType.DATE: {"type": "int", "logicalType": "date"},
    BaseType.TIME: {"type": "int", "logicalType": "time-millis"},
    BaseType.TIMESTAMP: {"type": "long", "logicalType": "timestamp-millis"},
}


# -----------------------------------------------------------------------------------------
# SQL columns -> Avro schema
# -----------------------------------------------------------------------------------------


def check_names(columns: Sequence[Field]) -> str | None:
    """Why ``columns`` cannot be an Avro record (ksqlDB's wording), or None."""
    for name in _all_names(columns):
        if not name:
            return "Schema is not compatible with Avro: Empty name"
        if not (name[0].isalpha() or name[0] == "_"):
            return f"Schema is not compatible with Avro: Illegal initial character: {name}"
        if not _NAME.fullmatch(name):
            return f"Schema is not compatible with Avro: Illegal character in: {name}"
    return None


def _all_names(columns: Sequence[Field]) -> list[str]:
    names: list[str] = []

    def walk(t: sqltypes.SqlType) -> None:
        match t:
            case sqltypes.Struct(fields=fs):
                for f in fs:
                    names.append(f.name)
                    walk(f.type)
            case sqltypes.Array(element=e):
                walk(e)
            case sqltypes.Map(value=v):
                walk(v)

    for c in columns:
        names.append(c.name)
        walk(c.type)
    return names


def avro_schema(columns: Sequence[Field], *, wrapped: bool, full_name: str | None = None) -> AvroSchema:
    """ksqlDB's Avro schema for ``columns`` (a record when ``wrapped``, else the bare type)."""
    name = full_name or f"{NAMESPACE}.{DEFAULT_NAME}"
    if not wrapped:
        return _optional(_type(columns[0].type, name))
    return _record(columns, name)


def _record(fields: Sequence[Field], full_name: str) -> AvroSchema:
    namespace, _, name = full_name.rpartition(".")
    schema: dict[str, Any] = {"type": "record", "name": name}
    if namespace:
        schema["namespace"] = namespace
    schema["fields"] = [
        {"name": f.name, "type": _optional(_type(f.type, f"{full_name}_{f.name}")), "default": None} for f in fields
    ]
    return schema


def _optional(schema: AvroSchema) -> AvroSchema:
    return ["null", schema]


def _type(t: sqltypes.SqlType, name: str) -> AvroSchema:
    match t:
        case sqltypes.Struct(fields=fs):
            return _record(fs, name)
        case sqltypes.Array(element=e):
            return {"type": "array", "items": _optional(_type(e, name))}
        case sqltypes.Map(key=k, value=v):
            if k != sqltypes.STRING:
                raise AnalysisError("AVRO format only supports MAP types with STRING keys")
            return {"type": "map", "values": _optional(_type(v, name))}
        case sqltypes.Decimal(precision=p, scale=s):
            return {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": p,
                "scale": s,
                "connect.version": 1,
                "connect.parameters": {"scale": str(s), "connect.decimal.precision": str(p)},
                "connect.name": "org.apache.kafka.connect.data.Decimal",
            }
    return _PRIMITIVES[t.base]


# -----------------------------------------------------------------------------------------
# Avro schema -> SQL columns (inference)
# -----------------------------------------------------------------------------------------


def sql_type(schema: AvroSchema, named: dict[str, AvroSchema] | None = None) -> sqltypes.SqlType:
    """The SQL type ksqlDB reads an Avro schema as (optional unions unwrapped)."""
    named = {} if named is None else named
    match schema:
        case str() if schema in named:
            return sql_type(named[schema], named)
        case "boolean":
            return sqltypes.BOOLEAN
        case "int":
            return sqltypes.INTEGER
        case "long":
            return sqltypes.BIGINT
        case "float" | "double":
            return sqltypes.DOUBLE
        case "string":
            return sqltypes.STRING
        case "bytes":
            return sqltypes.BYTES
        case list():
            branches = [b for b in schema if b != "null"]
            if len(branches) == 1:
                return sql_type(branches[0], named)
            raise AnalysisError(f"Unsupported Avro union: {json.dumps(schema)}")
        case dict():
            return _complex_type(schema, named)
    raise AnalysisError(f"Unsupported Avro type: {json.dumps(schema)}")


def _complex_type(schema: dict[str, Any], named: dict[str, AvroSchema]) -> sqltypes.SqlType:
    logical = schema.get("logicalType")
    kind = schema.get("type")
    match logical, kind:
        case "decimal", "bytes" | "fixed":
            return sqltypes.Decimal(int(schema.get("precision", 64)), int(schema.get("scale", 0)))
        case "date", _:
            return sqltypes.DATE
        case "time-millis" | "time-micros", _:
            return sqltypes.TIME
        case "timestamp-millis" | "timestamp-micros" | "local-timestamp-millis", _:
            return sqltypes.TIMESTAMP
    match kind:
        case "record":
            _name(schema, named)
            return sqltypes.Struct(
                tuple(Field(f["name"], sql_type(f["type"], named)) for f in schema["fields"])
            )
        case "array":
            return sqltypes.Array(sql_type(schema["items"], named))
        case "map":
            return sqltypes.Map(sqltypes.STRING, sql_type(schema["values"], named))
        case "enum":
            _name(schema, named)
            return sqltypes.STRING
        case "fixed":
            _name(schema, named)
            return sqltypes.BYTES
    return sql_type(kind, named)


def _name(schema: dict[str, Any], named: dict[str, AvroSchema]) -> None:
    name = schema.get("name", "")
    namespace = schema.get("namespace")
    named[name] = schema
    if namespace:
        named[f"{namespace}.{name}"] = schema


def columns_from_avro(schema_text: str, *, is_key: bool, wrapped: bool | None = None) -> tuple[Field, ...]:
    """Columns inferred from an Avro schema: one per field of a value record (names as
    the schema spells them), or a single ``ROWKEY`` / ``ROWVAL`` column for keys (ksqlDB reads keys
    unwrapped), other types and unwrapped records."""
    schema = json.loads(schema_text)
    named: dict[str, AvroSchema] = {}
    record = schema if isinstance(schema, dict) and schema.get("type") == "record" else None
    if record is not None and wrapped is not False and not is_key:
        _name(record, named)
        return tuple(Field(f["name"], sql_type(f["type"], named)) for f in record["fields"])
    return (Field("ROWKEY" if is_key else "ROWVAL", sql_type(schema, named)),)


# -----------------------------------------------------------------------------------------
# Values -> datums that fit a writer schema
# -----------------------------------------------------------------------------------------


class _Conformer:
    """Fits plain Python values (dicts keyed by any case, Decimal/int/float numbers, base64
    text for bytes) to an Avro schema, so that a QTT value or a row can be written with a
    schema ksqlpy did not generate."""

    def __init__(self, schema: AvroSchema) -> None:
        self.named: dict[str, AvroSchema] = {}
        self._collect(schema, None)

    def _collect(self, schema: AvroSchema, namespace: str | None) -> None:
        match schema:
            case list():
                for branch in schema:
                    self._collect(branch, namespace)
            case dict():
                if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
                    ns = schema.get("namespace", namespace)
                    name = schema["name"]
                    self.named[name] = schema
                    if ns and "." not in name:
                        self.named[f"{ns}.{name}"] = schema
                    for field in schema.get("fields", ()):
                        self._collect(field["type"], ns)
                else:
                    for key in ("items", "values"):
                        if key in schema:
                            self._collect(schema[key], namespace)

    def fit(self, value: Any, schema: AvroSchema) -> Any:
        import base64
        import decimal

        match schema:
            case list():
                if value is None and "null" in schema:
                    return None
                problems = []
                for branch in schema:
                    if branch == "null":
                        continue
                    try:
                        return self.fit(value, branch)
                    except (ValueError, TypeError) as e:
                        problems.append(str(e))
                raise ValueError(f"value {value!r} fits no branch of {schema}: {problems}")
            case str() if schema in self.named:
                return self.fit(value, self.named[schema])
            case dict() if "logicalType" in schema and value is not None:
                match schema["logicalType"]:
                    case "decimal":
                        return _rescale(decimal.Decimal(str(value)), int(schema.get("scale", 0)))
                return self.fit(value, schema["type"])
            case dict():
                return self._fit_complex(value, schema)
        if value is None:
            if schema == "null":
                return None
            raise ValueError(f"null for non-null type {schema}")
        match schema:
            case "boolean":
                if not isinstance(value, bool):
                    raise TypeError(f"not a boolean: {value!r}")
                return value
            case "int" | "long":
                if isinstance(value, str):  # numeric text, as Connect's converters accept it
                    return int(value)
                if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal, float)):
                    raise TypeError(f"not an integer: {value!r}")
                return int(value)
            case "float" | "double":
                if isinstance(value, str):
                    return float(value)
                if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal, float)):
                    raise TypeError(f"not a number: {value!r}")
                return float(value)
            case "string":
                # scalars are written as their text, as Connect's converters coerce them
                match value:
                    case str():
                        return value
                    case bool():
                        return "true" if value else "false"
                    case int() | float() | decimal.Decimal():
                        return str(value)
                raise TypeError(f"not a string: {value!r}")
            case "bytes":
                return base64.b64decode(value) if isinstance(value, str) else bytes(value)
        if isinstance(schema, dict):
            return self.fit(value, schema)
        raise ValueError(f"cannot write {value!r} as {schema}")

    def _fit_complex(self, value: Any, schema: dict[str, Any]) -> Any:
        kind = schema.get("type")
        if value is None:
            raise ValueError(f"null for non-null type {kind}")
        match kind:
            case "record":
                if not isinstance(value, dict):
                    raise TypeError(f"not a record: {value!r}")
                upper = {str(k).upper(): v for k, v in value.items()}
                out: dict[str, Any] = {}
                for field in schema["fields"]:
                    name = field["name"]
                    found = value[name] if name in value else upper.get(name.upper())
                    if found is None:
                        found = field.get("default")  # Connect writes a field's default for null
                    out[name] = self.fit(found, field["type"])
                return out
            case "array":
                if isinstance(value, dict) and isinstance(schema["items"], dict):
                    # a map written as Connect's array of key/value entries
                    value = [{"key": k, "value": v} for k, v in value.items()]
                if not isinstance(value, list):
                    raise TypeError(f"not an array: {value!r}")
                return [self.fit(v, schema["items"]) for v in value]
            case "map":
                if not isinstance(value, dict):
                    raise TypeError(f"not a map: {value!r}")
                return {str(k): self.fit(v, schema["values"]) for k, v in value.items()}
            case "enum":
                return str(value)
            case "fixed":
                return self.fit(value, "bytes")
        return self.fit(value, kind)


def _rescale(value: Any, scale: int) -> Any:
    """``value`` with exactly ``scale`` fraction digits, however many digits it has."""
    import decimal

    context = decimal.Context(prec=max(decimal.getcontext().prec, len(value.as_tuple().digits) + scale + 2))
    return value.quantize(decimal.Decimal(1).scaleb(-scale), context=context)


# -----------------------------------------------------------------------------------------
# Serde
# -----------------------------------------------------------------------------------------


class AvroSchemaCache:
    """Parsed writer schemas by id (parsing is costly; ids never change meaning)."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self._parsed: dict[int, Any] = {}

    def get(self, schema_id: int) -> Any:
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            registered = self.registry.by_id(schema_id)
            parsed = fastavro.parse_schema(_days_as_ints(json.loads(registered.schema)))
            self._parsed[schema_id] = parsed
        return parsed


def _days_as_ints(schema: AvroSchema) -> AvroSchema:
    """``schema`` reading ``date`` values as their day counts: a DATE holds any int (Connect's
    ``Date`` is days since the epoch), far more than Python's ``datetime.date`` spans."""
    match schema:
        case dict() if schema.get("logicalType") == "date":
            return {k: v for k, v in schema.items() if k != "logicalType"}
        case dict():
            return {k: _days_as_ints(v) if k in ("type", "items", "values", "fields") else v
                    for k, v in schema.items()}
        case list():
            return [_days_as_ints(s) for s in schema]
    return schema


def read_datum(data: bytes, cache: AvroSchemaCache) -> Any:
    """The datum of one record in the wire format."""
    schema_id = read_header(data)
    try:
        writer = cache.get(schema_id)
    except Exception as e:
        raise ValueError(f"Error retrieving Avro schema for id {schema_id}: {e}") from e
    return fastavro.schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), writer, None)


class AvroDeserializer(RowDeserializer):
    """Reads each record with its writer's schema. Batches written only with the schema
    ksqlpy generates for these columns (its own sinks) skip per-value coercion: their datums
    already have the columns' names and types, and Arrow converts them in one call."""

    def __init__(self, columns: Sequence[Field], *, is_key: bool, wrapped: bool, registry: SchemaRegistry) -> None:
        super().__init__(columns, is_key=is_key, wrapped=wrapped)
        self._cache = AvroSchemaCache(registry)
        self._registry = registry
        self._own = avro_schema(columns, wrapped=wrapped) if columns and check_names(columns) is None else None
        self._native: dict[int, bool] = {}
        self._ids: set[int] = set()

    def read(self, data: bytes) -> Any:
        schema_id = read_header(data)
        self._ids.add(schema_id)
        return read_datum(data, self._cache)

    def native_table(self, values: list[Any]) -> pa.Table | None:
        ids, self._ids = self._ids, set()
        if self._own is None or not ids or not all(self._is_native(i) for i in ids):
            return None
        if self.wrapped:
            return pa.Table.from_pylist([v if v is not None else {} for v in values], schema=self.schema)
        field = self.schema.field(0)
        return pa.table([pa.array(values, field.type)], schema=self.schema)

    def _is_native(self, schema_id: int) -> bool:
        native = self._native.get(schema_id)
        if native is None:
            try:
                writer = json.loads(self._registry.by_id(schema_id).schema)
            except Exception:  # noqa: BLE001 - unknown ids take the checked path (and fail there)
                writer = None
            native = self._native[schema_id] = _same_layout(writer, self._own)
        return native


def _same_layout(writer: AvroSchema, own: AvroSchema) -> bool:
    """Whether ``writer`` is ``own`` up to record names (which do not change datums)."""
    match writer, own:
        case dict(), dict():
            keys = set(writer) | set(own)
            for key in keys - {"name", "namespace", "connect.name", "doc"}:
                if key == "fields":
                    w, o = writer.get("fields", []), own.get("fields", [])
                    if len(w) != len(o) or any(
                        a.get("name") != b.get("name") or not _same_layout(a.get("type"), b.get("type"))
                        for a, b in zip(w, o)
                    ):
                        return False
                elif key in ("items", "values"):
                    if not _same_layout(writer.get(key), own.get(key)):
                        return False
                elif writer.get(key) != own.get(key) and key != "default":
                    return False
            return True
        case list(), list():
            return len(writer) == len(own) and all(_same_layout(a, b) for a, b in zip(writer, own))
    return bool(writer == own)


class AvroWriter:
    """Writes values with one registered schema: header plus Avro binary. ``conform`` fits
    values to the schema first (for schemas ksqlpy did not generate, and for QTT values)."""

    def __init__(self, schema: AvroSchema, schema_id: int, *, conform: bool) -> None:
        self.schema = schema
        self._parsed = fastavro.parse_schema(schema)
        self._header = wire_header(schema_id)
        self._conformer = _Conformer(schema) if conform else None

    def write(self, value: Any) -> bytes:
        datum = self._conformer.fit(value, self.schema) if self._conformer is not None else value
        out = io.BytesIO()
        out.write(self._header)
        fastavro.schemaless_writer(out, self._parsed, datum)
        return out.getvalue()

    def write_many(self, values: list[Any]) -> list[bytes | None]:
        """One record per value (None stays None), written into one buffer."""
        out = io.BytesIO()
        bounds: list[tuple[int, int] | None] = []
        for value in values:
            if value is None:
                bounds.append(None)
                continue
            start = out.tell()
            out.write(self._header)
            datum = self._conformer.fit(value, self.schema) if self._conformer is not None else value
            fastavro.schemaless_writer(out, self._parsed, datum)
            bounds.append((start, out.tell()))
        buffer = out.getbuffer()
        return [None if b is None else bytes(buffer[b[0] : b[1]]) for b in bounds]


class AvroSerializer(RowSerializer):
    """Writes with ksqlDB's generated schema (registered under the topic's subject), or with a
    given registered schema (``VALUE_SCHEMA_ID``), fitting rows to it by field name."""

    def __init__(
        self,
        columns: Sequence[Field],
        *,
        is_key: bool,
        wrapped: bool,
        registry: SchemaRegistry,
        topic: str,
        schema_id: int | None = None,
        full_name: str | None = None,
    ) -> None:
        super().__init__(columns, is_key=is_key, wrapped=wrapped)
        if schema_id is not None:
            schema = json.loads(registry.by_id(schema_id).schema)
            self._writer = AvroWriter(schema, schema_id, conform=True)
        else:
            schema = avro_schema(columns, wrapped=wrapped, full_name=full_name)
            schema_id = registry.register(subject_name(topic, is_key=is_key), json.dumps(schema), SCHEMA_TYPE)
            # rows are Arrow values of exactly the generated types: nothing to fit
            self._writer = AvroWriter(schema, schema_id, conform=False)

    def write(self, value: Any) -> bytes:
        try:
            return self._writer.write(value)
        except (ValueError, TypeError) as e:
            raise SerdeError(f"Failed to serialize Avro record: {e}") from e

    def write_many(self, values: list[Any]) -> list[bytes | None]:
        try:
            return self._writer.write_many(values)
        except (ValueError, TypeError) as e:
            raise SerdeError(f"Failed to serialize Avro record: {e}") from e
