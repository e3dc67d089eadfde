"""QTT records <-> topic records, as ksqlDB's test serde suppliers do it.

QTT files give keys and values "at spec level": JSON values are written as the JSON the file
holds, DELIMITED values are the text the file holds (``"1,foo"``), KAFKA values are primitives
serialized by the column's type. The serde layer's test-value helpers
(:mod:`ksqlpy.runtime.serde.testvalues`) do the per-value work; reading back does the reverse,
so that expected and actual records compare at the same level. Windowed keys use Kafka Streams' layouts: the inner key then the
window start (time windows), or the inner key, the end and the start (session windows).

Schema-registry formats (AVRO, PROTOBUF, PROTOBUF_NOSR, JSON_SR) are written with the subject's
latest registered schema (the case's ``topics`` schema, or the one generated from the source's
columns, registered on first use, as ksqlDB's harness derives topic schemas from the statements)
and read back with the schema each record names; values are compared at the same JSON level.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ksqlpy.planner.catalog import Column, FormatInfo, Source
from ksqlpy.runtime.codec import fields_of, serde_spec
from ksqlpy.runtime.serde import srvalues
from ksqlpy.runtime.serde.format import Format, SerdeSpec
from ksqlpy.runtime.serde.registry import SchemaRegistry
from ksqlpy.runtime.serde.testvalues import decode_test_value, encode_test_value
from ksqlpy.runtime.store.base import HEADER_TYPE, PRODUCE_SCHEMA
from ksqlpy.testing.compare import ProducedRecord
from ksqlpy.testing.qtt import Header, QttRecord, Window


class UnsupportedFormat(Exception):
    """The harness cannot write or read records of this format."""


class RecordCodecError(Exception):
    """A QTT key or value does not fit the source's format and types."""


# ---------------------------------------------------------------------------------------------
# Spec value <-> bytes: the serde layer's test-value helpers
# ---------------------------------------------------------------------------------------------

#: Formats written and read without a schema registry.
SUPPORTED_FORMATS = frozenset({"JSON", "DELIMITED", "KAFKA", "NONE"})
#: Formats written and read with the schemas of a registry.
REGISTRY_FORMATS = frozenset({"AVRO", "PROTOBUF", "PROTOBUF_NOSR", "JSON_SR"})


def _spec(fmt: FormatInfo) -> SerdeSpec:
    name = fmt.format.upper()
    if name not in SUPPORTED_FORMATS | REGISTRY_FORMATS:
        raise UnsupportedFormat(f"the test harness does not support the {name} format")
    return serde_spec(fmt)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else dump_json(value)


def dump_json(value: Any) -> str:
    """JSON text of a spec value; decimals keep their digits (``Decimal('1.10')`` -> ``1.10``)."""
    data = encode_test_value(value, spec=SerdeSpec(format=Format.JSON), columns=(), is_key=False)
    return "null" if data is None else data.decode("utf-8")


def encode(
    fmt: FormatInfo,
    columns: Sequence[Column],
    value: Any,
    *,
    is_key: bool = False,
    registry: SchemaRegistry | None = None,
    topic: str = "",
) -> bytes | None:
    """Bytes of one spec-level key or value (``None`` stays a null). Values are written as
    given even when they do not fit the columns, so that the engine may reject them."""
    spec = _spec(fmt)
    if fmt.format.upper() in REGISTRY_FORMATS:
        if value is None:
            return None
        if registry is None:
            raise UnsupportedFormat(f"the {fmt.format} format needs a schema registry")
        try:
            return srvalues.encode_value(value, spec, fields_of(columns), is_key=is_key, registry=registry, topic=topic)
        except (ValueError, TypeError, KeyError) as e:
            raise RecordCodecError(str(e)) from e
    return encode_test_value(value, spec=spec, columns=fields_of(columns), is_key=False)


def decode(
    fmt: FormatInfo,
    columns: Sequence[Column],
    data: bytes | None,
    *,
    is_key: bool = False,
    registry: SchemaRegistry | None = None,
) -> Any:
    """Spec-level value of one key or value read from a topic."""
    spec = _spec(fmt)
    if fmt.format.upper() in REGISTRY_FORMATS:
        if data is None:
            return None
        if registry is None:
            raise UnsupportedFormat(f"the {fmt.format} format needs a schema registry")
        try:
            return srvalues.decode_value(data, spec, fields_of(columns), is_key=is_key, registry=registry)
        except (ValueError, TypeError, KeyError, EOFError) as e:
            raise RecordCodecError(f"cannot read a {fmt.format} record: {e}") from e
    return decode_test_value(data, spec=spec, columns=fields_of(columns), is_key=False)


# ---------------------------------------------------------------------------------------------
# Windowed keys
# ---------------------------------------------------------------------------------------------


def encode_window(inner: bytes | None, window: Window) -> bytes:
    base = inner or b""
    if window.type == "SESSION":
        return base + struct.pack(">qq", window.end, window.start)
    return base + struct.pack(">q", window.start)


def decode_window(data: bytes, source: Source) -> tuple[bytes, Window]:
    """Split a windowed key into the inner key and its window (sizes from the source)."""
    info = source.window
    assert info is not None
    if info.type.value == "SESSION":
        if len(data) < 16:
            raise RecordCodecError("session-windowed key shorter than 16 bytes")
        end, start = struct.unpack(">qq", data[-16:])
        return data[:-16], Window(start, end, "SESSION")
    if len(data) < 8:
        raise RecordCodecError("time-windowed key shorter than 8 bytes")
    (start,) = struct.unpack(">q", data[-8:])
    size = info.size_ms or 0
    return data[:-8], Window(start, start + size, "TIME")


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


def _header_rows(headers: tuple[Header, ...] | None) -> list[dict[str, Any]] | None:
    if headers is None:
        return None
    return [{"key": h.key, "value": h.value} for h in headers]


def produce_batch(
    source: Source, records: Sequence[QttRecord], registry: SchemaRegistry | None = None
) -> pa.Table:
    """A :data:`PRODUCE_SCHEMA` batch of QTT input records for ``source``'s topic."""
    keys: list[bytes | None] = []
    for rec in records:
        key = encode(source.key_format, source.key_columns, rec.key, is_key=True, registry=registry, topic=source.topic)
        if rec.window is not None:
            key = encode_window(key, rec.window)
        keys.append(key)
    return pa.table(
        {
            "partition": pa.array([r.partition for r in records], pa.int32()),
            "timestamp": pa.array([r.timestamp or 0 for r in records], pa.int64()),
            "key": pa.array(keys, pa.binary()),
            "value": pa.array(
                [
                    encode(source.value_format, source.value_columns, r.value, registry=registry, topic=source.topic)
                    for r in records
                ],
                pa.binary(),
            ),
            "headers": pa.array([_header_rows(r.headers) for r in records], HEADER_TYPE),
        },
        schema=PRODUCE_SCHEMA,
    )


def raw_batch(records: Sequence[QttRecord]) -> pa.Table:
    """Records of a topic no source describes: keys and values written as text/JSON."""
    def raw(value: Any) -> bytes | None:
        return None if value is None else _text(value).encode("utf-8")

    return pa.table(
        {
            "partition": pa.array([r.partition for r in records], pa.int32()),
            "timestamp": pa.array([r.timestamp or 0 for r in records], pa.int64()),
            "key": pa.array([raw(r.key) for r in records], pa.binary()),
            "value": pa.array([raw(r.value) for r in records], pa.binary()),
            "headers": pa.array([_header_rows(r.headers) for r in records], HEADER_TYPE),
        },
        schema=PRODUCE_SCHEMA,
    )


def read_records(
    batch: pa.Table, source: Source | None, registry: SchemaRegistry | None = None
) -> list[ProducedRecord]:
    """Decode records read from a topic (``RECORD_SCHEMA``) for comparison and reports.

    Without a source, keys and values are shown as UTF-8 text (or base64 when not text)."""
    out: list[ProducedRecord] = []
    for row in batch.to_pylist():
        key_bytes: bytes | None = row["key"]
        window: Window | None = None
        if source is None:
            key, value = _raw_text(key_bytes), _raw_text(row["value"])
        else:
            if source.window is not None and key_bytes is not None:
                key_bytes, window = decode_window(key_bytes, source)
            key = decode(source.key_format, source.key_columns, key_bytes, is_key=True, registry=registry)
            value = decode(source.value_format, source.value_columns, row["value"], registry=registry)
        out.append(
            ProducedRecord(
                topic=row["topic"],
                key=key,
                value=value,
                timestamp=row["timestamp"],
                partition=row["partition"],
                window=window,
                headers=tuple(Header(h["key"], h["value"]) for h in row["headers"] or ()),
            )
        )
    return out


def _raw_text(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii")


__all__ = [
    "RecordCodecError",
    "UnsupportedFormat",
    "decode",
    "dump_json",
    "encode",
    "produce_batch",
    "raw_batch",
    "read_records",
]
