"""The PROTOBUF and PROTOBUF_NOSR formats: Protocol Buffers messages built from schema text.

Schemas are ``.proto`` text (what the registry stores). :func:`parse_proto` reads the proto3
subset schemas use (messages, nested messages and enums, ``repeated``, ``optional``, maps,
``oneof``, imports of the well-known wrapper/timestamp/date/decimal types; options skipped, the
``confluent.field_meta`` precision and scale kept) into a ``FileDescriptorProto``, and
:class:`MessageType` builds the message class with the ``protobuf`` package's dynamic
descriptors.

ksqlDB's mapping (``ProtobufData`` as ksqlDB configures it): every key and value is a message
(no unwrapped single values); INT is ``int32``, BIGINT ``int64``, DOUBLE ``double``, DECIMAL
``confluent.type.Decimal``, DATE ``google.type.Date``, TIME ``google.type.TimeOfDay``, TIMESTAMP
``google.protobuf.Timestamp``, ARRAY ``repeated``, MAP ``map<string, V>``, STRUCT a nested
message. Scalars have no null: a null is written as nothing and read back as the type's default
(0, "", false) unless ``*_PROTOBUF_NULLABLE_REPRESENTATION`` is ``OPTIONAL`` (proto3
``optional`` fields) or ``WRAPPER`` (``google.protobuf.*Value`` wrappers).

PROTOBUF records carry the Confluent header plus the message-index path of the message in the
schema; PROTOBUF_NOSR records are the bare message, read with the schema of the columns.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow as pa
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2, wrappers_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError, SerdeError
from ksqlpy.runtime.serde.registry import (
    HEADER_SIZE,
    RegisteredSchema,
    SchemaRegistry,
    read_header,
    subject_name,
    wire_header,
)
from ksqlpy.runtime.serde.srbase import RowDeserializer, RowSerializer
from ksqlpy.sqltypes import BaseType, Field

SCHEMA_TYPE = "PROTOBUF"
DEFAULT_NAME = "ConnectDefault1"
#: The message-index path ``[0]`` (the schema's first message), as Confluent abbreviates it.
FIRST_MESSAGE_INDEX = b"\x00"

_T = FieldDescriptor
_SCALARS: dict[str, int] = {
    "double": _T.TYPE_DOUBLE,
    "float": _T.TYPE_FLOAT,
    "int32": _T.TYPE_INT32,
    "int64": _T.TYPE_INT64,
    "uint32": _T.TYPE_UINT32,
    "uint64": _T.TYPE_UINT64,
    "sint32": _T.TYPE_SINT32,
    "sint64": _T.TYPE_SINT64,
    "fixed32": _T.TYPE_FIXED32,
    "fixed64": _T.TYPE_FIXED64,
    "sfixed32": _T.TYPE_SFIXED32,
    "sfixed64": _T.TYPE_SFIXED64,
    "bool": _T.TYPE_BOOL,
    "string": _T.TYPE_STRING,
    "bytes": _T.TYPE_BYTES,
}
_SCALAR_SQL: dict[int, sqltypes.SqlType] = {
    _T.TYPE_DOUBLE: sqltypes.DOUBLE,
    _T.TYPE_FLOAT: sqltypes.DOUBLE,
    _T.TYPE_INT32: sqltypes.INTEGER,
    _T.TYPE_SINT32: sqltypes.INTEGER,
    _T.TYPE_SFIXED32: sqltypes.INTEGER,
    _T.TYPE_INT64: sqltypes.BIGINT,
    _T.TYPE_SINT64: sqltypes.BIGINT,
    _T.TYPE_SFIXED64: sqltypes.BIGINT,
    _T.TYPE_UINT32: sqltypes.BIGINT,
    _T.TYPE_FIXED32: sqltypes.BIGINT,
    _T.TYPE_UINT64: sqltypes.BIGINT,
    _T.TYPE_FIXED64: sqltypes.BIGINT,
    _T.TYPE_BOOL: sqltypes.BOOLEAN,
    _T.TYPE_STRING: sqltypes.STRING,
    _T.TYPE_BYTES: sqltypes.BYTES,
}
_WRAPPERS: dict[str, sqltypes.SqlType] = {
    "google.protobuf.DoubleValue": sqltypes.DOUBLE,
    "google.protobuf.FloatValue": sqltypes.DOUBLE,
    "google.protobuf.Int32Value": sqltypes.INTEGER,
    "google.protobuf.UInt32Value": sqltypes.BIGINT,
    "google.protobuf.Int64Value": sqltypes.BIGINT,
    "google.protobuf.UInt64Value": sqltypes.BIGINT,
    "google.protobuf.BoolValue": sqltypes.BOOLEAN,
    "google.protobuf.StringValue": sqltypes.STRING,
    "google.protobuf.BytesValue": sqltypes.BYTES,
}
_TIMESTAMP = "google.protobuf.Timestamp"
_DATE = "google.type.Date"
_TIME = "google.type.TimeOfDay"
_DECIMAL = "confluent.type.Decimal"

#: Well-known files schemas import, by import path, with what they define.
_EXTRA_FILES: dict[str, str] = {
    "google/type/date.proto": 'syntax = "proto3"; package google.type; '
    "message Date { int32 year = 1; int32 month = 2; int32 day = 3; }",
    "google/type/timeofday.proto": 'syntax = "proto3"; package google.type; '
    "message TimeOfDay { int32 hours = 1; int32 minutes = 2; int32 seconds = 3; int32 nanos = 4; }",
    "confluent/type/decimal.proto": 'syntax = "proto3"; package confluent.type; '
    "message Decimal { bytes value = 1; uint32 precision = 2; int32 scale = 3; }",
}
_BUILT_IN = {"google/protobuf/wrappers.proto": wrappers_pb2, "google/protobuf/timestamp.proto": timestamp_pb2}


class NullableRepresentation:
    """``*_PROTOBUF_NULLABLE_REPRESENTATION`` values (None: plain proto3 scalars)."""

    OPTIONAL = "OPTIONAL"
    WRAPPER = "WRAPPER"


# -----------------------------------------------------------------------------------------
# Parsing .proto text
# -----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:(//[^\n]*)|(/\*.*?\*/)|("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|([A-Za-z_.][A-Za-z0-9_.]*)|(-?\d+(?:\.\d+)?)|(\S))""",
    re.DOTALL,
)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        if m.group(1) or m.group(2):
            continue
        token = next((g for g in m.groups()[2:] if g is not None), None)
        if token is not None:
            out.append(token)
    return out


@dataclass
class _Parser:
    tokens: list[str]
    pos: int = 0

    def peek(self) -> str:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ""

    def next(self) -> str:
        token = self.peek()
        if not token:
            raise ValueError("unexpected end of protobuf schema")
        self.pos += 1
        return token

    def expect(self, token: str) -> None:
        got = self.next()
        if got != token:
            raise ValueError(f"expected '{token}' in protobuf schema, got '{got}'")

    def skip_statement(self) -> None:
        depth = 0
        while True:
            token = self.next()
            if token in "{[(":
                depth += 1
            elif token in "}])":
                depth -= 1
            elif token == ";" and depth == 0:
                return

    def options(self) -> str:
        """The text of a ``[...]`` field option list (empty when none)."""
        if self.peek() != "[":
            return ""
        depth, parts = 0, []
        while True:
            token = self.next()
            parts.append(token)
            if token in "[{":
                depth += 1
            elif token in "]}":
                depth -= 1
                if depth == 0:
                    return " ".join(parts)


def _unquote(token: str) -> str:
    return token[1:-1]


def parse_proto(text: str, *, file_name: str) -> descriptor_pb2.FileDescriptorProto:
    """A ``FileDescriptorProto`` for ``.proto`` text (type names left for the pool to resolve)."""
    parser = _Parser(_tokens(text))
    proto = descriptor_pb2.FileDescriptorProto(name=file_name, syntax="proto3")
    while parser.peek():
        token = parser.next()
        match token:
            case "syntax":
                parser.expect("=")
                proto.syntax = _unquote(parser.next())
                parser.expect(";")
            case "package":
                proto.package = parser.next()
                parser.expect(";")
            case "import":
                name = parser.next()
                if name in ("public", "weak"):
                    name = parser.next()
                proto.dependency.append(_unquote(name))
                parser.expect(";")
            case "message":
                _message(parser, proto.message_type.add(), proto.syntax)
            case "enum":
                _enum(parser, proto.enum_type.add())
            case ";":
                continue
            case _:
                parser.skip_statement()
    return proto


def _message(parser: _Parser, message: descriptor_pb2.DescriptorProto, syntax: str) -> None:
    message.name = parser.next()
    parser.expect("{")
    oneof: int | None = None
    while True:
        token = parser.peek()
        match token:
            case "}":
                parser.next()
                if oneof is None:
                    return
                oneof = None
                continue
            case "message":
                parser.next()
                _message(parser, message.nested_type.add(), syntax)
            case "enum":
                parser.next()
                _enum(parser, message.enum_type.add())
            case "oneof":
                parser.next()
                oneof = len(message.oneof_decl)
                message.oneof_decl.add(name=parser.next())
                parser.expect("{")
            case "option" | "reserved" | "extensions" | "extend":
                parser.skip_statement()
            case ";":
                parser.next()
            case _:
                _field(parser, message, oneof, syntax)


def _field(parser: _Parser, message: descriptor_pb2.DescriptorProto, oneof: int | None, syntax: str) -> None:
    label = _T.LABEL_OPTIONAL
    optional = False
    token = parser.next()
    if token == "repeated":
        label, token = _T.LABEL_REPEATED, parser.next()
    elif token == "optional":
        optional, token = True, parser.next()
    elif token == "required":
        label, token = _T.LABEL_REQUIRED, parser.next()
    field = message.field.add(label=label)
    if token == "map":
        parser.expect("<")
        key = parser.next()
        parser.expect(",")
        value = parser.next()
        parser.expect(">")
        field.name = parser.next()
        entry = message.nested_type.add(name=_camel(field.name) + "Entry")
        entry.options.map_entry = True
        _set_type(entry.field.add(name="key", number=1, label=_T.LABEL_OPTIONAL), key)
        _set_type(entry.field.add(name="value", number=2, label=_T.LABEL_OPTIONAL), value)
        field.label = _T.LABEL_REPEATED
        field.type_name = entry.name
    else:
        _set_type(field, token)
        field.name = parser.next()
    parser.expect("=")
    field.number = int(parser.next())
    options = parser.options()
    parser.expect(";")
    if options:
        meta = dict(re.findall(r'value\s*:\s*"([^"]*)"\s*,\s*key\s*:\s*"([^"]*)"', options))
        meta = {k: v for v, k in meta.items()} | dict(
            re.findall(r'key\s*:\s*"([^"]*)"\s*,\s*value\s*:\s*"([^"]*)"', options)
        )
        if meta:
            # kept where ksqlDB keeps Connect parameters: the field's JSON name carries them
            field.json_name = "ksqlmeta:" + ",".join(f"{k}={v}" for k, v in sorted(meta.items()))
    if oneof is not None:
        field.oneof_index = oneof
    elif optional and syntax == "proto3":
        field.proto3_optional = True
        field.oneof_index = len(message.oneof_decl)
        message.oneof_decl.add(name="_" + field.name)


def _set_type(field: descriptor_pb2.FieldDescriptorProto, name: str) -> None:
    if name in _SCALARS:
        field.type = _SCALARS[name]
    else:
        field.type_name = name.lstrip(".") if name.startswith(".") and "." in name[1:] else name


def _enum(parser: _Parser, enum: descriptor_pb2.EnumDescriptorProto) -> None:
    enum.name = parser.next()
    parser.expect("{")
    while True:
        token = parser.next()
        if token == "}":
            return
        if token in ("option", "reserved"):
            parser.pos -= 1
            parser.skip_statement()
            continue
        if token == ";":
            continue
        parser.expect("=")
        number = int(parser.next())
        parser.options()
        parser.expect(";")
        enum.value.add(name=token, number=number)


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


# -----------------------------------------------------------------------------------------
# Message types from schema text
# -----------------------------------------------------------------------------------------


Imports = tuple[tuple[str, str], ...]
"""Schemas a schema imports (its registry references): ``(import name, schema text)`` pairs."""


def _pool_for(proto: descriptor_pb2.FileDescriptorProto, imports: Imports = ()) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    referenced = dict(imports)

    def add(name: str) -> None:
        if name in added:
            return
        added.add(name)
        if name in _BUILT_IN:
            dep = descriptor_pb2.FileDescriptorProto()
            _BUILT_IN[name].DESCRIPTOR.CopyToProto(dep)
            pool.Add(dep)
        elif name in _EXTRA_FILES:
            pool.Add(parse_proto(_EXTRA_FILES[name], file_name=name))
        elif name in referenced:
            dep = parse_proto(referenced[name], file_name=name)
            keep(dep)
            pool.Add(dep)

    def keep(file: descriptor_pb2.FileDescriptorProto) -> None:
        for dep in list(file.dependency):
            if dep in _BUILT_IN or dep in _EXTRA_FILES or dep in referenced:
                add(dep)
            else:
                file.dependency.remove(dep)  # confluent/meta.proto and the like: options only

    keep(proto)
    # types used without their import still resolve (schemas in the wild omit imports)
    for name in ("google/protobuf/wrappers.proto", "google/protobuf/timestamp.proto", *_EXTRA_FILES):
        if name not in added:
            add(name)
            proto.dependency.append(name)
    pool.Add(proto)
    return pool


class MessageType:
    """One message of a schema: its class, and conversions between messages and plain Python
    values (dicts by field name; temporals as ksqlDB's integers; decimals exact)."""

    def __init__(self, descriptor: Descriptor, index_path: tuple[int, ...]) -> None:
        self.descriptor = descriptor
        self.index_path = index_path
        self.cls = message_factory.GetMessageClass(descriptor)

    # reading -------------------------------------------------------------------------------

    def read_value(self, payload: bytes) -> dict[str, Any]:
        message = self.cls.FromString(payload)
        return _from_message(message, self.descriptor)

    # writing -------------------------------------------------------------------------------

    def write_value(self, value: Any) -> bytes:
        message = self.cls()
        _fill(message, self.descriptor, value)
        return bytes(message.SerializeToString())


def _is_repeated(field: FieldDescriptor) -> bool:
    """Whether a field is ``repeated`` (newer protobuf releases drop ``label``)."""
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return bool(field.label == _T.LABEL_REPEATED)


def _is_map_entry(descriptor: Descriptor | None) -> bool:
    """Whether a repeated field of this message type is a map. Besides Protobuf's own map
    fields, Connect (as ksqlDB 8 does for its optional-key maps) writes a map as a repeated
    ``...Entry`` message of two plain fields ``key`` and ``value``, and reads such a field
    back as a map."""
    if descriptor is None:
        return False
    if descriptor.GetOptions().map_entry:
        return True
    fields = descriptor.fields
    return (
        descriptor.name.endswith("Entry")
        and [f.name for f in fields] == ["key", "value"]
        and not any(_is_repeated(f) for f in fields)
    )


def _from_message(message: Any, descriptor: Descriptor) -> dict[str, Any]:
    return {f.name: _from_field(message, f) for f in descriptor.fields}


def _from_field(message: Any, field: FieldDescriptor) -> Any:
    value = getattr(message, field.name)
    if _is_repeated(field):
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            return {k: _from_single(v, value_field) for k, v in value.items()}
        if _is_map_entry(entry):
            key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
            return {_from_single(e.key, key_field): _from_field(e, value_field) for e in value}
        return [_from_single(v, field) for v in value]
    if field.message_type is not None or field.has_presence:
        if not message.HasField(field.name):
            return None
    elif field.type == _T.TYPE_BYTES and not value:
        return None  # Connect's converter reads unset bytes as null (strings stay "")
    return _from_single(value, field)


def _from_single(value: Any, field: FieldDescriptor) -> Any:
    if field.type == _T.TYPE_ENUM:
        found = field.enum_type.values_by_number.get(value)
        return found.name if found is not None else str(value)
    message_type = field.message_type
    if message_type is None:
        return value
    name = message_type.full_name
    if name in _WRAPPERS:
        return value.value
    match name:
        case "google.protobuf.Timestamp":
            return value.seconds * 1000 + value.nanos // 1_000_000
        case "google.type.Date":
            return (datetime.date(value.year, value.month, value.day) - datetime.date(1970, 1, 1)).days
        case "google.type.TimeOfDay":
            return ((value.hours * 60 + value.minutes) * 60 + value.seconds) * 1000 + value.nanos // 1_000_000
        case "confluent.type.Decimal":
            unscaled = int.from_bytes(value.value, "big", signed=True) if value.value else 0
            return decimal.Decimal(unscaled).scaleb(-value.scale)
    return _from_message(value, message_type)


def _lookup(value: dict[str, Any], name: str) -> tuple[bool, Any]:
    if name in value:
        return True, value[name]
    upper = name.upper()
    for k, v in value.items():
        if str(k).upper() == upper:
            return True, v
    return False, None


def _fill(message: Any, descriptor: Descriptor, value: Any) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"a {descriptor.name} message needs an object, got {value!r}")
    for field in descriptor.fields:
        found, item = _lookup(value, field.name)
        if not found or item is None:
            continue
        if _is_repeated(field):
            target = getattr(message, field.name)
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                for k, v in dict(item).items():
                    if v is None:
                        if value_field.message_type is None:
                            target[str(k)]
                        else:
                            target[str(k)].SetInParent()
                    elif value_field.message_type is None:
                        target[str(k)] = _scalar(v, value_field)
                    else:
                        _set_message(target[str(k)], value_field.message_type, v)
            elif field.message_type is None:
                target.extend(_scalar(v, field) for v in item if v is not None)
            else:
                if isinstance(item, dict) and _is_map_entry(field.message_type):
                    item = [{"key": k, "value": v} for k, v in item.items()]
                for v in item:
                    element = target.add()
                    if v is not None:
                        _set_message(element, field.message_type, v)
        elif field.message_type is None:
            setattr(message, field.name, _scalar(item, field))
        else:
            _set_message(getattr(message, field.name), field.message_type, item)


def _set_message(target: Any, descriptor: Descriptor, value: Any) -> None:
    name = descriptor.full_name
    target.SetInParent()
    if name in _WRAPPERS:
        target.value = _scalar(value, descriptor.fields_by_name["value"])
        return
    match name:
        case "google.protobuf.Timestamp":
            millis = int(value)
            target.seconds, rest = divmod(millis, 1000)
            target.nanos = rest * 1_000_000
        case "google.type.Date":
            day = datetime.date(1970, 1, 1) + datetime.timedelta(days=int(value))
            target.year, target.month, target.day = day.year, day.month, day.day
        case "google.type.TimeOfDay":
            millis = int(value)
            target.hours, rest = divmod(millis, 3_600_000)
            target.minutes, rest = divmod(rest, 60_000)
            target.seconds, ms = divmod(rest, 1000)
            target.nanos = ms * 1_000_000
        case "confluent.type.Decimal":
            number = decimal.Decimal(str(value))
            _, digits, exponent = number.as_tuple()
            scale = max(0, -int(exponent))
            unscaled = int(number.scaleb(scale))
            length = max(1, (unscaled.bit_length() + 8) // 8)
            target.value = unscaled.to_bytes(length, "big", signed=True)
            target.precision = max(len(digits), scale)
            target.scale = scale
        case _:
            _fill(target, descriptor, value)


def _scalar(value: Any, field: FieldDescriptor) -> Any:
    match field.type:
        case _T.TYPE_BOOL:
            if not isinstance(value, bool):
                raise TypeError(f"not a boolean: {value!r}")
            return value
        case _T.TYPE_STRING:
            return value if isinstance(value, str) else str(value)
        case _T.TYPE_BYTES:
            if isinstance(value, str):
                import base64

                return base64.b64decode(value)
            return bytes(value)
        case _T.TYPE_DOUBLE | _T.TYPE_FLOAT:
            return float(value)  # numbers or numeric text
        case _T.TYPE_ENUM:
            if isinstance(value, str):
                return field.enum_type.values_by_name[value].number
            return int(value)
    if isinstance(value, str):
        return int(value)  # numeric text, as Connect's converters accept it
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        raise TypeError(f"not an integer: {value!r}")
    return int(value)


@lru_cache(maxsize=512)
def _schema(text: str, imports: Imports = ()) -> tuple[descriptor_pb2.FileDescriptorProto, descriptor_pool.DescriptorPool]:
    name = "ksqlpy_" + hashlib.sha1(text.encode()).hexdigest()[:16] + ".proto"
    proto = parse_proto(text, file_name=name)
    return proto, _pool_for(proto, imports)


@lru_cache(maxsize=512)
def message_type(text: str, full_name: str | None = None, imports: Imports = ()) -> MessageType:
    """The message ``full_name`` of a schema (by default its first message)."""
    proto, pool = _schema(text, imports)
    if not proto.message_type:
        raise ValueError("protobuf schema defines no message")
    paths = dict(_message_paths(proto))
    path: tuple[int, ...]
    if full_name is None:
        name, path = proto.message_type[0].name, (0,)
    else:
        wanted = full_name.removeprefix(proto.package + ".") if proto.package else full_name
        if wanted not in paths:
            raise AnalysisError(f"Schema does not contain a message named: {full_name}")
        name, path = wanted, paths[wanted]
    qualified = f"{proto.package}.{name}" if proto.package else name
    return MessageType(pool.FindMessageTypeByName(qualified), path)


def _message_paths(proto: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[str, tuple[int, ...]]]:
    def walk(messages: Any, prefix: str, path: tuple[int, ...]) -> Iterator[tuple[str, tuple[int, ...]]]:
        for i, message in enumerate(messages):
            name = prefix + message.name
            yield name, (*path, i)
            yield from walk(message.nested_type, name + ".", (*path, i))

    yield from walk(proto.message_type, "", ())


def message_by_path(text: str, path: Sequence[int], imports: Imports = ()) -> MessageType:
    proto, _ = _schema(text, imports)
    for name, found in _message_paths(proto):
        if found == tuple(path):
            return message_type(text, f"{proto.package}.{name}" if proto.package else name, imports)
    raise ValueError(f"no message at index {list(path)} in the schema")


# -----------------------------------------------------------------------------------------
# Message indexes (Confluent wire format)
# -----------------------------------------------------------------------------------------


def _zigzag(n: int) -> bytes:
    value = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_zigzag(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated message indexes")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos


def encode_indexes(path: Sequence[int]) -> bytes:
    if tuple(path) == (0,):
        return FIRST_MESSAGE_INDEX
    return _zigzag(len(path)) + b"".join(_zigzag(i) for i in path)


def decode_indexes(data: bytes, pos: int) -> tuple[tuple[int, ...], int]:
    count, pos = _read_zigzag(data, pos)
    if count == 0:
        return (0,), pos
    path = []
    for _ in range(count):
        index, pos = _read_zigzag(data, pos)
        path.append(index)
    return tuple(path), pos


def read_registered(data: bytes, text: str, imports: Imports = ()) -> dict[str, Any]:
    """The value of a PROTOBUF record (header and message indexes included)."""
    path, pos = decode_indexes(data, HEADER_SIZE)
    return message_by_path(text, path, imports).read_value(data[pos:])


def imports_of(registry: SchemaRegistry, schema: RegisteredSchema) -> Imports:
    """The schemas ``schema`` imports, from the registry, in a cacheable form."""
    return tuple(sorted(registry.imports(schema).items()))


# -----------------------------------------------------------------------------------------
# SQL columns <-> schema text
# -----------------------------------------------------------------------------------------


@dataclass
class _Writer:
    nullable: str | None
    imports: set[str]
    counter: int = 1

    def message(self, fields: Sequence[Field], name: str, indent: str) -> list[str]:
        nested: list[str] = []
        lines = [f"{indent}message {name} {{"]
        for number, f in enumerate(fields, start=1):
            type_text, prefix = self.field_type(f.type, nested, indent + "  ")
            lines.append(f"{indent}  {prefix}{type_text} {f.name} = {number};")
        return lines[:1] + nested + lines[1:] + [f"{indent}}}"]

    def field_type(self, t: sqltypes.SqlType, nested: list[str], indent: str, *, top: bool = True) -> tuple[str, str]:
        match t:
            case sqltypes.Struct(fields=fs):
                self.counter += 1
                name = f"ConnectDefault{self.counter}"
                nested.extend(self.message(fs, name, indent))
                return name, ""
            case sqltypes.Array(element=e):
                inner, _ = self.field_type(e, nested, indent, top=False)
                return inner, "repeated "
            case sqltypes.Map(value=v):
                inner, _ = self.field_type(v, nested, indent, top=False)
                return f"map<string, {inner}>", ""
            case sqltypes.Decimal():
                self.imports.add("confluent/type/decimal.proto")
                return _DECIMAL, ""
        match t.base:
            case BaseType.DATE:
                self.imports.add("google/type/date.proto")
                return _DATE, ""
            case BaseType.TIME:
                self.imports.add("google/type/timeofday.proto")
                return _TIME, ""
            case BaseType.TIMESTAMP:
                self.imports.add("google/protobuf/timestamp.proto")
                return _TIMESTAMP, ""
        scalar = _SQL_SCALARS[t.base]
        if top and self.nullable == NullableRepresentation.WRAPPER:
            self.imports.add("google/protobuf/wrappers.proto")
            return _WRAPPER_OF[t.base], ""
        if top and self.nullable == NullableRepresentation.OPTIONAL:
            return scalar, "optional "
        return scalar, ""


_SQL_SCALARS = {
    BaseType.BOOLEAN: "bool",
    BaseType.INTEGER: "int32",
    BaseType.BIGINT: "int64",
    BaseType.DOUBLE: "double",
    BaseType.STRING: "string",
    BaseType.BYTES: "bytes",
}
_WRAPPER_OF = {
    BaseType.BOOLEAN: "google.protobuf.BoolValue",
    BaseType.INTEGER: "google.protobuf.Int32Value",
    BaseType.BIGINT: "google.protobuf.Int64Value",
    BaseType.DOUBLE: "google.protobuf.DoubleValue",
    BaseType.STRING: "google.protobuf.StringValue",
    BaseType.BYTES: "google.protobuf.BytesValue",
}


def proto_schema_text(
    columns: Sequence[Field], *, wrapped: bool = True, full_name: str | None = None, nullable: str | None = None
) -> str:
    """ksqlDB's Protobuf schema for ``columns``: one message (keys and values alike)."""
    writer = _Writer(nullable=nullable, imports=set())
    package, _, name = (full_name or DEFAULT_NAME).rpartition(".")
    body = writer.message(columns, name, "")
    head = ['syntax = "proto3";', ""]
    if package:
        head += [f"package {package};", ""]
    if writer.imports:
        head += [f'import "{i}";' for i in sorted(writer.imports)] + [""]
    return "\n".join(head + body) + "\n"


def _sql_type(field: FieldDescriptor) -> sqltypes.SqlType:
    if _is_repeated(field):
        entry = field.message_type
        if entry is not None and _is_map_entry(entry):
            return sqltypes.Map(sqltypes.STRING, _single_type(entry.fields_by_name["value"]))
        return sqltypes.Array(_single_type(field))
    return _single_type(field)


def _single_type(field: FieldDescriptor) -> sqltypes.SqlType:
    if field.type == _T.TYPE_ENUM:
        return sqltypes.STRING
    message = field.message_type
    if message is None:
        return _SCALAR_SQL[field.type]
    name = message.full_name
    if name in _WRAPPERS:
        return _WRAPPERS[name]
    match name:
        case "google.protobuf.Timestamp":
            return sqltypes.TIMESTAMP
        case "google.type.Date":
            return sqltypes.DATE
        case "google.type.TimeOfDay":
            return sqltypes.TIME
        case "confluent.type.Decimal":
            meta = dict(
                part.split("=", 1) for part in field.json_name.removeprefix("ksqlmeta:").split(",") if "=" in part
            ) if field.json_name.startswith("ksqlmeta:") else {}
            return sqltypes.Decimal(int(meta.get("precision", 64)), int(meta.get("scale", 0)))
    return sqltypes.Struct(tuple(Field(f.name, _sql_type(f)) for f in message.fields))


def columns_from_proto(
    text: str, *, is_key: bool, full_name: str | None = None, imports: Imports = ()
) -> tuple[Field, ...]:
    """Columns inferred from a Protobuf schema: one per field of the message."""
    message = message_type(text, full_name, imports).descriptor
    return tuple(Field(f.name, _sql_type(f)) for f in message.fields)


# -----------------------------------------------------------------------------------------
# Serde
# -----------------------------------------------------------------------------------------


class ProtobufDeserializer(RowDeserializer):
    """Reads each record with the schema its header names (PROTOBUF) or with the schema of
    the columns (PROTOBUF_NOSR)."""

    def __init__(
        self,
        columns: Sequence[Field],
        *,
        is_key: bool,
        wrapped: bool,
        registry: SchemaRegistry,
        with_registry: bool,
        nullable: str | None = None,
    ) -> None:
        super().__init__(columns, is_key=is_key, wrapped=True)
        self._registry = registry
        self._own_text = proto_schema_text(columns, nullable=nullable)
        self._own = None if with_registry else message_type(self._own_text)
        self._texts: dict[int, tuple[str, Imports]] = {}
        self._foreign = False  # whether the batch read so far holds records of other schemas

    def read(self, data: bytes) -> Any:
        if self._own is not None:
            return self._own.read_value(data)
        schema_id = read_header(data)
        found = self._texts.get(schema_id)
        if found is None:
            registered = self._registry.by_id(schema_id)
            found = self._texts[schema_id] = (registered.schema, imports_of(self._registry, registered))
        self._foreign = self._foreign or found != (self._own_text, ())
        try:
            return read_registered(data, *found)
        except Exception as e:
            raise ValueError(f"Failed to deserialize Protobuf record: {e}") from e

    def native_table(self, values: list[Any]) -> pa.Table | None:
        """Messages of the schema generated for the columns have their names and types:
        Arrow converts the batch in one call."""
        foreign, self._foreign = self._foreign, False
        if foreign:
            return None
        return pa.Table.from_pylist([v if v is not None else {} for v in values], schema=self.schema)


class ProtobufSerializer(RowSerializer):
    def __init__(
        self,
        columns: Sequence[Field],
        *,
        is_key: bool,
        wrapped: bool,
        registry: SchemaRegistry,
        topic: str,
        with_registry: bool,
        schema_id: int | None = None,
        full_name: str | None = None,
        nullable: str | None = None,
    ) -> None:
        super().__init__(columns, is_key=is_key, wrapped=True)
        imports: Imports = ()
        given = schema_id is not None
        if schema_id is not None:
            registered = registry.by_id(schema_id)
            text, imports = registered.schema, imports_of(registry, registered)
        else:
            text = proto_schema_text(columns, full_name=full_name, nullable=nullable)
            if with_registry:
                schema_id = registry.register(subject_name(topic, is_key=is_key), text, SCHEMA_TYPE)
        self._type = message_type(text, full_name if given else None, imports)
        self._prefix = b"" if not with_registry else wire_header(schema_id or 0) + encode_indexes(self._type.index_path)

    def write(self, value: Any) -> bytes:
        try:
            return self._prefix + self._type.write_value(value)
        except (ValueError, TypeError, KeyError) as e:
            raise SerdeError(f"Failed to serialize Protobuf record: {e}") from e

    def write_many(self, values: list[Any]) -> list[bytes | None]:
        if self.is_key:
            # a key read from a null key has every column null (a key message read back always
            # has its scalars' defaults): it is written as a null key again
            values = [None if v is not None and all(x is None for x in v.values()) else v for v in values]
        return super().write_many(values)
