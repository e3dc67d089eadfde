"""Key and value serdes: record bytes to Arrow columns of ksqlDB's SQL types, and back.

Public API::

    spec = SerdeSpec(format=Format.parse("json"), wrap_single_value=None)
    validate_format(spec, columns, is_key=False)        # AnalysisError with ksqlDB's wording
    decoded = deserializer(spec, columns, is_key=False).decode(batch["value"], topic="t")
    decoded.table        # pa.Table, one column per SQL column (null where absent or bad)
    decoded.present      # rows that decoded to a row (false for tombstones and bad records)
    decoded.errors       # RecordError(row, message) per malformed record; the batch goes on
    serializer(spec, columns, is_key=False).encode(table, present=decoded.present)

Formats (ksqlDB's rules, see each module): ``json`` (objects matched to columns
case-insensitively; single key columns and ``WRAP_SINGLE_VALUE=false`` values unwrapped),
``delimited`` (Commons CSV with a one-character delimiter), ``kafka`` (Kafka's primitive
layouts, one column), ``none`` (no columns). The schema-registry formats ``avro``, ``json_sr``,
``protobuf`` and ``protobuf_nosr`` (:mod:`.sr`) need a :class:`~.registry.SchemaRegistry` and the
topic, to look up and register schemas under the topic's subjects (``registry=``, ``topic=``).

Windowed keys: :func:`split_windowed_keys` / :func:`join_windowed_keys` strip and add the window
suffix around the inner key's bytes. QTT conformance cases: :mod:`.testvalues`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ksqlpy.runtime.serde.base import Decoded, Deserializer, RecordError, Serializer
from ksqlpy.runtime.serde.delimited import DelimitedDeserializer, DelimitedSerializer
from ksqlpy.runtime.serde.format import Format, SerdeSpec, parse_delimiter, validate_format
from ksqlpy.runtime.serde.json import JsonDeserializer, JsonSerializer
from ksqlpy.runtime.serde.kafka import KafkaDeserializer, KafkaSerializer
from ksqlpy.runtime.serde.none import VoidDeserializer, VoidSerializer
from ksqlpy.runtime.serde.registry import SchemaRegistry
from ksqlpy.runtime.serde.window import WindowedKeys, WindowKind, join_windowed_keys, split_windowed_keys
from ksqlpy.sqltypes import Field

__all__ = [
    "Decoded",
    "Deserializer",
    "Format",
    "RecordError",
    "SerdeSpec",
    "Serializer",
    "WindowKind",
    "WindowedKeys",
    "deserializer",
    "join_windowed_keys",
    "parse_delimiter",
    "serializer",
    "split_windowed_keys",
    "validate_format",
]


def deserializer(
    spec: SerdeSpec,
    columns: Sequence[Field],
    *,
    is_key: bool,
    registry: SchemaRegistry | None = None,
    topic: str = "",
) -> Deserializer:
    """A deserializer for ``columns`` in ``spec``'s format (validated first)."""
    validate_format(spec, columns, is_key=is_key)
    if not columns:
        return VoidDeserializer(is_key=is_key)
    if spec.format in _SR_FORMATS:
        from ksqlpy.runtime.serde import sr

        return sr.deserializer(spec, columns, is_key=is_key, registry=_need(registry, spec))
    match spec.format:
        case Format.JSON:
            return JsonDeserializer(columns, is_key=is_key, wrapped=spec.wraps(columns, is_key=is_key))
        case Format.DELIMITED:
            return DelimitedDeserializer(columns, is_key=is_key, delimiter=spec.delimiter)
        case Format.KAFKA:
            return KafkaDeserializer(columns, is_key=is_key)
    return VoidDeserializer(is_key=is_key)


def serializer(
    spec: SerdeSpec,
    columns: Sequence[Field],
    *,
    is_key: bool,
    registry: SchemaRegistry | None = None,
    topic: str = "",
) -> Serializer:
    """A serializer for ``columns`` in ``spec``'s format (validated first)."""
    validate_format(spec, columns, is_key=is_key)
    if not columns:
        return VoidSerializer(is_key=is_key)
    if spec.format in _SR_FORMATS:
        from ksqlpy.runtime.serde import sr

        return sr.serializer(spec, columns, is_key=is_key, registry=_need(registry, spec), topic=topic)
    match spec.format:
        case Format.JSON:
            return JsonSerializer(columns, is_key=is_key, wrapped=spec.wraps(columns, is_key=is_key))
        case Format.DELIMITED:
            return DelimitedSerializer(columns, is_key=is_key, delimiter=spec.delimiter)
        case Format.KAFKA:
            return KafkaSerializer(columns, is_key=is_key)
    return VoidSerializer(is_key=is_key)


_SR_FORMATS = frozenset({Format.AVRO, Format.JSON_SR, Format.PROTOBUF, Format.PROTOBUF_NOSR})


def _need(registry: SchemaRegistry | None, spec: SerdeSpec) -> SchemaRegistry:
    if registry is None:
        raise ValueError(f"the {spec.format.value} format needs a schema registry")
    return registry
