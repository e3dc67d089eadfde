"""Serialization formats, their options, and which column sets each one can carry.

A :class:`SerdeSpec` names a format plus its options (wrapping, delimiter). It is what the
planner stores in a plan for each key and value of a topic. :func:`validate_format` rejects the
combinations ksqlDB rejects, with ksqlDB's messages, before any record is read.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError
from ksqlpy.sqltypes import BaseType, Field


class Format(enum.Enum):
    """ksqlDB's serialization formats (``KEY_FORMAT`` / ``VALUE_FORMAT`` / ``FORMAT``)."""

    JSON = "JSON"
    DELIMITED = "DELIMITED"
    KAFKA = "KAFKA"
    NONE = "NONE"
    AVRO = "AVRO"
    PROTOBUF = "PROTOBUF"
    PROTOBUF_NOSR = "PROTOBUF_NOSR"
    JSON_SR = "JSON_SR"

    @classmethod
    def parse(cls, name: str) -> Format:
        """The format called ``name`` (any case); ``AnalysisError('Unknown format: X')`` otherwise."""
        try:
            return cls(name.upper())
        except ValueError:
            raise AnalysisError(f"Unknown format: {name.upper()}") from None

    @property
    def implemented(self) -> bool:
        return self in _IMPLEMENTED

    @property
    def supports_wrap(self) -> bool:
        """Whether ``WRAP_SINGLE_VALUE=true`` is allowed (ksqlDB's ``WRAP_SINGLES`` feature)."""
        return self in _WRAP_SINGLES

    @property
    def supports_unwrap(self) -> bool:
        """Whether ``WRAP_SINGLE_VALUE=false`` is allowed (ksqlDB's ``UNWRAP_SINGLES`` feature)."""
        return self in _UNWRAP_SINGLES

    @property
    def supports_multiple_key_columns(self) -> bool:
        return self not in (Format.KAFKA, Format.NONE)


_IMPLEMENTED = frozenset(
    {
        Format.JSON,
        Format.DELIMITED,
        Format.KAFKA,
        Format.NONE,
        Format.AVRO,
        Format.JSON_SR,
        Format.PROTOBUF,
        Format.PROTOBUF_NOSR,
    }
)
_WRAP_SINGLES = frozenset({Format.JSON, Format.JSON_SR, Format.AVRO, Format.PROTOBUF, Format.PROTOBUF_NOSR})
_UNWRAP_SINGLES = frozenset({Format.JSON, Format.JSON_SR, Format.AVRO, Format.KAFKA, Format.DELIMITED})

#: Names ``VALUE_DELIMITER`` accepts besides a single character.
NAMED_DELIMITERS: dict[str, str] = {"TAB": "\t", "SPACE": " "}

#: Column types the KAFKA format has a primitive serde for.
KAFKA_TYPES = frozenset({BaseType.INTEGER, BaseType.BIGINT, BaseType.DOUBLE, BaseType.STRING, BaseType.BYTES})

_NESTED = frozenset({BaseType.ARRAY, BaseType.MAP, BaseType.STRUCT})


@dataclass(frozen=True, slots=True, kw_only=True)
class SerdeSpec:
    """How the key or the value of a topic is serialized.

    ``wrap_single_value`` is ``WRAP_SINGLE_VALUE`` as resolved by the planner: ``None`` means
    "not given", and then the format's default applies (values of a single column are wrapped
    in an object by JSON; keys are never wrapped unless asked). ``delimiter`` is the single
    character DELIMITED separates fields with (see :func:`parse_delimiter`). The schema-registry
    formats may name a registered schema to write with (``KEY_SCHEMA_ID`` / ``VALUE_SCHEMA_ID``)
    and the full name of the schema they generate (``*_SCHEMA_FULL_NAME``).
    """

    format: Format
    wrap_single_value: bool | None = None
    delimiter: str = ","
    schema_id: int | None = None
    full_name: str | None = None
    #: PROTOBUF's ``*_PROTOBUF_NULLABLE_REPRESENTATION``: None, ``OPTIONAL`` or ``WRAPPER``
    nullable: str | None = None

    def wraps(self, columns: Sequence[Field], *, is_key: bool) -> bool:
        """Whether records are objects with one entry per column (as opposed to a single
        anonymous value). Only meaningful for JSON; DELIMITED and KAFKA have one layout."""
        if len(columns) != 1:
            return True
        if self.wrap_single_value is not None:
            return self.wrap_single_value
        return not is_key


def parse_delimiter(text: str, *, property_name: str = "VALUE_DELIMITER") -> str:
    """The delimiter character for a ``VALUE_DELIMITER`` setting, worded as ksqlDB rejects it."""
    reason: str | None = None
    if not text.strip():
        reason = (
            "Delimiter cannot be empty, if you meant to have a tab or space for delimiter, please "
            "use the special values 'TAB' or 'SPACE'"
        )
    elif len(text) == 1:
        return text
    elif text in NAMED_DELIMITERS:
        return NAMED_DELIMITERS[text]
    else:
        reason = (
            f"Invalid delimiter value: '{text}'. Delimiter must be a single character or "
            + ",".join(NAMED_DELIMITERS)
        )
    raise AnalysisError(
        f"Configuration {property_name} is invalid: {reason}\nExample valid value: ';'"
    )


def validate_format(spec: SerdeSpec, columns: Sequence[Field], *, is_key: bool) -> None:
    """Raise :class:`AnalysisError` when ``spec`` cannot carry ``columns``.

    Checks run in ksqlDB's order: map keys, unimplemented formats, NONE with columns, explicit
    wrapping, then the format's own type rules. Key-side format errors are wrapped in ksqlDB's
    ``Key format does not support schema`` message.
    """
    if is_key:
        for column in columns:
            if _contains_map(column.type):
                raise AnalysisError(
                    "Map keys, including types that contain maps, are not supported as they may "
                    "lead to unexpected behavior due to inconsistent serialization. "
                    f"Key column name: `{column.name}`. Column type: {column.type}. "
                    "See https://github.com/confluentinc/ksql/issues/6621 for more."
                )
    fmt = spec.format
    if not fmt.implemented:
        raise AnalysisError(
            f"The '{fmt.value}' format is not supported yet.",
            hint="Use one of the formats JSON, DELIMITED, KAFKA, NONE, AVRO, JSON_SR or PROTOBUF.",
        )
    if fmt is Format.NONE:
        if columns:
            raise AnalysisError(
                f"The 'NONE' format can only be used when no columns are defined. "
                f"Got: {column_list(columns, is_key=is_key)}"
            )
        return
    if not is_key and spec.wrap_single_value is not None:
        supported = fmt.supports_wrap if spec.wrap_single_value else fmt.supports_unwrap
        if not supported:
            raise AnalysisError(
                f"Format '{fmt.value}' does not support 'WRAP_SINGLE_VALUE' set to "
                f"'{str(spec.wrap_single_value).lower()}'."
            )
        if len(columns) != 1:
            raise AnalysisError("'WRAP_SINGLE_VALUE' is only valid for single-field value schemas")
    reason = _type_problem(fmt, columns, is_key=is_key)
    if reason is None:
        return
    if is_key:
        features = "UNWRAP_SINGLES" if fmt is Format.JSON and len(columns) == 1 else ""
        raise AnalysisError(
            f"Key format does not support schema.\nformat: {fmt.value}\n"
            f"schema: Persistence{{columns={column_list(columns, is_key=True)}, features=[{features}]}}\n"
            f"reason: {reason}"
        )
    raise AnalysisError(reason)


def column_list(columns: Sequence[Field], *, is_key: bool) -> str:
    """Columns as ksqlDB lists them in messages: ``[`K` STRING KEY]``."""
    suffix = " KEY" if is_key else ""
    return "[" + ", ".join(f"{c}{suffix}" for c in columns) + "]"


def _type_problem(fmt: Format, columns: Sequence[Field], *, is_key: bool) -> str | None:
    match fmt:
        case Format.KAFKA:
            if len(columns) > 1:
                return (
                    "The 'KAFKA' format only supports a single field. "
                    f"Got: {column_list(columns, is_key=is_key)}"
                )
            for c in columns:
                if c.type.base not in KAFKA_TYPES:
                    return f"The 'KAFKA' format does not support type '{c.type.base.value}'"
        case Format.DELIMITED:
            for c in columns:
                if c.type.base in _NESTED:
                    return (
                        f"The 'DELIMITED' format does not support type '{c.type.base.value}', "
                        f"column: `{c.name}`"
                    )
        case Format.JSON | Format.JSON_SR:
            if any(_has_non_string_map_key(c.type) for c in columns):
                return "JSON only supports MAP types with STRING keys"
        case Format.AVRO | Format.PROTOBUF | Format.PROTOBUF_NOSR:
            if any(_has_non_string_map_key(c.type) for c in columns):
                return f"{fmt.value} format only supports MAP types with STRING keys"
            if fmt is Format.AVRO:
                from ksqlpy.runtime.serde.avro import check_names

                return check_names(columns)
    return None


def _contains_map(t: sqltypes.SqlType) -> bool:
    match t:
        case sqltypes.Map():
            return True
        case sqltypes.Array(element=e):
            return _contains_map(e)
        case sqltypes.Struct(fields=fs):
            return any(_contains_map(f.type) for f in fs)
    return False


def _has_non_string_map_key(t: sqltypes.SqlType) -> bool:
    match t:
        case sqltypes.Map(key=k, value=v):
            return k != sqltypes.STRING or _has_non_string_map_key(v)
        case sqltypes.Array(element=e):
            return _has_non_string_map_key(e)
        case sqltypes.Struct(fields=fs):
            return any(_has_non_string_map_key(f.type) for f in fs)
    return False
