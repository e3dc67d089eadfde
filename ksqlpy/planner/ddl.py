"""CREATE STREAM / CREATE TABLE (over an existing or new topic) to a :class:`Source`.

Applies ksqlDB's rules: KEY columns for streams, PRIMARY KEY for tables, formats and their
defaults, reserved names, timestamp columns; and words its errors as ksqlDB does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError
from ksqlpy.parser import ast
from ksqlpy.planner.catalog import (
    RESERVED_COLUMN_NAMES,
    Catalog,
    Column,
    ColumnNamespace,
    FormatInfo,
    Source,
    WindowInfo,
    WindowType,
)
from ksqlpy.planner.properties import WithClause
from ksqlpy.planner.types import resolve_type

KNOWN_FORMATS = ("JSON", "DELIMITED", "KAFKA", "NONE", "AVRO", "PROTOBUF", "PROTOBUF_NOSR", "JSON_SR")
#: Formats whose schemas live in a schema registry (and can be inferred from it).
INFERRING_FORMATS = ("AVRO", "PROTOBUF", "JSON_SR")
#: Formats a full schema name can be given for.
NAMED_SCHEMA_FORMATS = ("AVRO", "PROTOBUF", "PROTOBUF_NOSR", "JSON_SR")
#: ``infer(topic, format, is_key)``: the columns of a topic's registered key or value schema.
SchemaInference = Callable[[str, FormatInfo, bool], tuple[sqltypes.Field, ...]]
HEADERS_TYPE = sqltypes.Array(
    sqltypes.Struct((sqltypes.Field("KEY", sqltypes.STRING), sqltypes.Field("VALUE", sqltypes.BYTES)))
)


def parse_format(name: str) -> str:
    upper = name.strip().upper()
    if upper not in KNOWN_FORMATS:
        raise AnalysisError(f"Unknown format: {upper}")
    return upper


def formats_from(
    props: WithClause, config: Mapping[str, Any], *, inherit: tuple[FormatInfo, FormatInfo] | None = None
) -> tuple[FormatInfo, FormatInfo]:
    """Key and value formats from FORMAT / KEY_FORMAT / VALUE_FORMAT, delimiters and
    WRAP_SINGLE_VALUE, falling back to ``inherit`` (for C*AS) or the configured defaults."""
    fmt = props.string("FORMAT")
    key_fmt = props.string("KEY_FORMAT")
    value_fmt = props.string("VALUE_FORMAT")
    if fmt is not None and (key_fmt is not None or value_fmt is not None):
        which = "KEY_FORMAT" if key_fmt is not None else "VALUE_FORMAT"
        raise AnalysisError(
            f"Cannot supply both '{which}' and 'FORMAT' properties, as 'FORMAT' sets both key and value formats. "
            "Either use just 'FORMAT', or use 'KEY_FORMAT' and 'VALUE_FORMAT'."
        )
    if fmt is not None:
        key_fmt = value_fmt = fmt
    if key_fmt is None:
        key_fmt = inherit[0].format if inherit else str(config.get("ksql.persistence.default.format.key", "KAFKA"))
    if value_fmt is None:
        if inherit:
            value_fmt = inherit[1].format
        else:
            default = config.get("ksql.persistence.default.format.value")
            if default is None:
                raise AnalysisError(
                    "Statement is missing the 'VALUE_FORMAT' property from the WITH clause. Either provide "
                    "one or set a default via the 'ksql.persistence.default.format.value' config."
                )
            value_fmt = str(default)
    key_fmt, value_fmt = parse_format(key_fmt), parse_format(value_fmt)
    value_props: dict[str, str] = {}
    key_props: dict[str, str] = {}
    if inherit and value_fmt == inherit[1].format:
        value_props.update(inherit[1].properties)
    if inherit and key_fmt == inherit[0].format:
        key_props.update(inherit[0].properties)
    for prop, target, fmt_name in (("VALUE_DELIMITER", value_props, value_fmt), ("KEY_DELIMITER", key_props, key_fmt)):
        delim = props.string(prop)
        if delim is None:
            continue
        if fmt_name != "DELIMITED":
            raise AnalysisError(f"{prop} can only be used with {prop.split('_')[0]}_FORMAT='DELIMITED'")
        target["delimiter"] = _delimiter(prop, delim)
    # a sink writes with its own schema: only the source's delimiter carries over
    for target in (key_props, value_props):
        for name in ("schemaId", "fullSchemaName", "nullableRepresentation"):
            target.pop(name, None)
    _schema_props(props, key_fmt, key_props, "KEY")
    _schema_props(props, value_fmt, value_props, "VALUE")
    for target, fmt_name in ((key_props, key_fmt), (value_props, value_fmt)):
        if fmt_name == "PROTOBUF":  # ksqlDB reads and writes primitive wrappers as plain values
            target.setdefault("unwrapPrimitives", "true")
    # not inherited: a sink wraps single values unless its own WITH clause says otherwise
    wrap = props.boolean("WRAP_SINGLE_VALUE")
    return (
        FormatInfo(format=key_fmt, properties=key_props),
        FormatInfo(format=value_fmt, properties=value_props, wrap_single_value=wrap),
    )


def _schema_props(props: WithClause, fmt: str, target: dict[str, str], side: str) -> None:
    """``<side>_SCHEMA_ID`` and ``<side>_SCHEMA_FULL_NAME`` into the format's properties."""
    schema_id = props.integer(f"{side}_SCHEMA_ID")
    if schema_id is not None:
        if fmt not in INFERRING_FORMATS:
            raise AnalysisError(
                f"{side}_FORMAT should support schema inference when {side}_SCHEMA_ID is provided. "
                f"Current format is {fmt}."
            )
        target["schemaId"] = str(schema_id)
    nullable = props.string(f"{side}_PROTOBUF_NULLABLE_REPRESENTATION")
    if nullable is not None:
        target["nullableRepresentation"] = nullable.lower()
    full_name = props.string(f"{side}_SCHEMA_FULL_NAME")
    if full_name is None and side == "VALUE":
        full_name = props.string("VALUE_AVRO_SCHEMA_FULL_NAME")
    if full_name is not None:
        if fmt not in NAMED_SCHEMA_FORMATS:
            raise AnalysisError(f"{fmt} does not support the following configs: [fullSchemaName]")
        target["fullSchemaName"] = full_name


def _delimiter(prop: str, text: str) -> str:
    if text.upper() in ("TAB", "SPACE"):
        return text.upper()  # kept by name, as ksqlDB keeps it; the serde reads the character
    if text.strip() == "":  # ksqlDB trims the value: a bare space or tab reads as empty
        raise AnalysisError(
            f"Failed to prepare statement: Configuration {prop} is invalid: Delimiter cannot be empty, if you "
            "meant to have a tab or space for delimiter, please use the special values 'TAB' or 'SPACE'\n"
            "Example valid value: ';'"
        )
    if len(text) != 1:
        raise AnalysisError(
            f"Failed to prepare statement: Configuration {prop} is invalid: Invalid delimiter value: '{text}'. "
            "Delimiter must be a single character or TAB,SPACE\nExample valid value: ';'"
        )
    return text


def check_column_name(name: str, pos: Any = None) -> None:
    if name in RESERVED_COLUMN_NAMES:
        raise AnalysisError(f"'{name}' is a reserved column name. You cannot use it as a name for a column.", pos=pos)


def columns_from(stmt: ast.CreateSource, catalog: Catalog, *, require_key: bool = True) -> tuple[Column, ...]:
    """The columns a CREATE statement declares, in declaration order (keys first, as ksqlDB shows).
    ``require_key=False`` leaves a table's missing PRIMARY KEY to schema inference."""
    is_table = stmt.kind is ast.SourceKind.TABLE
    keys: list[Column] = []
    others: list[Column] = []
    seen: set[str] = set()
    for el in stmt.elements:
        check_column_name(el.name, el.pos)
        if el.name in seen:
            raise AnalysisError(f"Duplicate column names: {el.name}", pos=el.pos)
        seen.add(el.name)
        t = resolve_type(el.type, catalog.types)
        match el.constraint:
            case ast.ColumnConstraint.KEY:
                if is_table:
                    raise AnalysisError(
                        f"Column `{el.name}` is a 'KEY' column: please use 'PRIMARY KEY' for tables.\n"
                        "Tables have PRIMARY KEYs, which are unique and NON NULL.\n"
                        "Streams have KEYs, which have no uniqueness or NON NULL constraints.",
                        pos=el.pos,
                    )
                keys.append(Column(name=el.name, type=t, namespace=ColumnNamespace.KEY))
            case ast.ColumnConstraint.PRIMARY_KEY:
                if not is_table:
                    raise AnalysisError(
                        f"Column `{el.name}` is a 'PRIMARY KEY' column: please use 'KEY' for streams.\n"
                        "Tables have PRIMARY KEYs, which are unique and NON NULL.\n"
                        "Streams have KEYs, which have no uniqueness or NON NULL constraints.",
                        pos=el.pos,
                    )
                keys.append(Column(name=el.name, type=t, namespace=ColumnNamespace.KEY))
            case ast.ColumnConstraint.HEADERS:
                if t != HEADERS_TYPE:
                    raise AnalysisError(
                        f"Invalid type for HEADERS column: expected {HEADERS_TYPE}, got {t}", pos=el.pos
                    )
                others.append(Column(name=el.name, type=t, namespace=ColumnNamespace.HEADERS))
            case ast.ColumnConstraint.HEADER:
                if t != sqltypes.BYTES:
                    raise AnalysisError(
                        f"Invalid type for HEADER('{el.header_key}') column: expected BYTES, got {t}", pos=el.pos
                    )
                others.append(
                    Column(name=el.name, type=t, namespace=ColumnNamespace.HEADERS, header_key=el.header_key)
                )
            case None:
                others.append(Column(name=el.name, type=t))
    if is_table and not keys and stmt.elements and require_key:
        raise AnalysisError("Tables require a PRIMARY KEY. Please define the PRIMARY KEY.", pos=stmt.pos)
    for k in keys:
        check_key_type(k)
    return tuple(keys + others)


def check_key_type(col: Column) -> None:
    if _contains_map(col.type):
        raise AnalysisError(
            "Map keys, including types that contain maps, are not supported as they may lead to unexpected "
            f"behavior due to inconsistent serialization. Key column name: `{col.name}`. Column type: {col.type}. "
            "See https://github.com/confluentinc/ksql/issues/6621 for more."
        )


def _contains_map(t: sqltypes.SqlType) -> bool:
    match t:
        case sqltypes.Map():
            return True
        case sqltypes.Array(element=e):
            return _contains_map(e)
        case sqltypes.Struct(fields=fs):
            return any(_contains_map(f.type) for f in fs)
    return False


def window_from(props: WithClause) -> WindowInfo | None:
    wtype = props.string("WINDOW_TYPE")
    if wtype is None:
        if "WINDOW_SIZE" in props:
            raise AnalysisError("'WINDOW_SIZE' should not be set for non-windowed sources.")
        return None
    try:
        kind = WindowType[wtype.upper()]
    except KeyError:
        raise AnalysisError(f"Invalid value {wtype} for property WINDOW_TYPE: String must be one of: SESSION, HOPPING, TUMBLING") from None
    size_text = props.string("WINDOW_SIZE")
    if kind is WindowType.SESSION:
        if size_text is not None:
            raise AnalysisError("'WINDOW_SIZE' should not be set for SESSION windows.")
        return WindowInfo(type=kind, emit_strategy="CHANGES")
    if size_text is None:
        raise AnalysisError(f"{kind.value} windows require 'WINDOW_SIZE' to be provided in the WITH clause. For example: 'WINDOW_SIZE'='10 SECONDS'")
    return WindowInfo(type=kind, size_ms=parse_duration(size_text), emit_strategy="CHANGES")


# java.util.concurrent.TimeUnit, which ksqlDB's DurationParser reads WINDOW_SIZE with
_TIME_UNIT_NANOS: dict[str, int] = {
    "NANOSECONDS": 1,
    "MICROSECONDS": 1_000,
    "MILLISECONDS": 1_000_000,
    "SECONDS": 1_000_000_000,
    "MINUTES": 60_000_000_000,
    "HOURS": 3_600_000_000_000,
    "DAYS": 86_400_000_000_000,
}


def parse_duration(text: str, prop: str = "WINDOW_SIZE") -> int:
    """Milliseconds of ``'<number> <unit>'``, as ksqlDB's DurationParser reads it."""
    parts = re.split(r"\s", text)
    if len(parts) != 2:
        reason = f"Expected 2 tokens, got: {len(parts)}"
    elif not re.fullmatch(r"[+-]?\d+", parts[0]):
        reason = f"Not numeric: '{parts[0]}'"
    else:
        unit = parts[1].upper()
        unit = unit if unit.endswith("S") else unit + "S"
        nanos = _TIME_UNIT_NANOS.get(unit)
        if nanos is not None:
            return int(parts[0]) * nanos // 1_000_000
        reason = (
            f"Unknown time unit: '{parts[1].upper()}'\n"
            f"Supported time units are: {', '.join(_TIME_UNIT_NANOS)}"
        )
    raise AnalysisError(f"Configuration {prop} is invalid: Invalid duration: '{text}'. {reason}")


def source_from_create(
    stmt: ast.CreateSource,
    catalog: Catalog,
    config: Mapping[str, Any],
    infer: SchemaInference | None = None,
) -> Source:
    """The Source a CREATE STREAM/TABLE statement defines (topic existence is checked by the
    engine). Key and value columns the statement leaves out are inferred with ``infer`` from
    the topic's registered schemas when the format supports it."""
    props = WithClause.of(stmt.properties)
    topic = props.string("KAFKA_TOPIC")
    if topic is None:
        raise AnalysisError('Missing required property "KAFKA_TOPIC" which has no default value.', pos=stmt.pos)
    key_format, value_format = formats_from(props, config)
    key_inferred = infer is not None and key_format.format in INFERRING_FORMATS
    columns = columns_from(stmt, catalog, require_key=not key_inferred)
    if not stmt.elements and value_format.format not in INFERRING_FORMATS:
        raise AnalysisError(
            "The statement does not define any columns.", pos=stmt.pos
        )
    columns = _inferred(stmt, columns, topic, key_format, value_format, infer)
    value_format = _default_wrapping(value_format, columns, config)
    window = window_from(props)
    if window is not None and not any(c.is_key for c in columns):
        raise AnalysisError("Windowed sources require a key column.", pos=stmt.pos)
    ts_col = props.string("TIMESTAMP")
    ts_format = props.string("TIMESTAMP_FORMAT")
    if ts_col is not None:
        ts_col = ts_col.upper() if not ts_col.startswith("`") else ts_col.strip("`")
        col = next((c for c in columns if c.name == ts_col), None)
        if col is None:
            raise AnalysisError(
                f"The TIMESTAMP column set in the WITH clause does not exist in the schema: '{ts_col}'"
            )
        check_timestamp_column(col, ts_format)
    return Source(
        name=stmt.name,
        kind=stmt.kind,
        topic=topic,
        columns=columns,
        key_format=key_format,
        value_format=value_format,
        timestamp_column=ts_col,
        timestamp_format=ts_format,
        window=window,
        is_source=stmt.is_source,
        statement=stmt.text,
        partitions=props.integer("PARTITIONS") or 1,
        replicas=props.integer("REPLICAS") or 1,
    )


def _inferred(
    stmt: ast.CreateSource,
    columns: tuple[Column, ...],
    topic: str,
    key_format: FormatInfo,
    value_format: FormatInfo,
    infer: SchemaInference | None,
) -> tuple[Column, ...]:
    """``columns`` completed from the registry: value columns when the statement declares
    none, key columns when it declares no key and the key subject has a schema (or
    ``KEY_SCHEMA_ID`` names one)."""
    keys = [c for c in columns if c.namespace is ColumnNamespace.KEY]
    values = [c for c in columns if c.namespace is ColumnNamespace.VALUE]
    others = [c for c in columns if c.namespace not in (ColumnNamespace.KEY, ColumnNamespace.VALUE)]
    for side, fmt, declared in (("KEY", key_format, keys), ("VALUE", value_format, values)):
        if "schemaId" in fmt.properties and declared:
            raise AnalysisError(f"Table elements and {side}_SCHEMA_ID cannot both exist for create statement.")
    if infer is None:
        return columns
    if not keys and key_format.format in INFERRING_FORMATS:
        try:
            fields = infer(topic, key_format, True)
        except AnalysisError:
            if "schemaId" in key_format.properties:
                raise
            fields = ()
        keys = [Column(name=f.name, type=f.type, namespace=ColumnNamespace.KEY) for f in fields]
    if not values and value_format.format in INFERRING_FORMATS:
        fields = infer(topic, value_format, False)
        values = [Column(name=f.name, type=f.type) for f in fields]
    if stmt.kind is ast.SourceKind.TABLE and not keys:
        raise AnalysisError("Tables require a PRIMARY KEY. Please define the PRIMARY KEY.", pos=stmt.pos)
    return tuple(keys + values + others)


def _default_wrapping(fmt: FormatInfo, columns: tuple[Column, ...], config: Mapping[str, Any]) -> FormatInfo:
    """``ksql.persistence.wrap.single.values`` for a single value column the statement does
    not set ``WRAP_SINGLE_VALUE`` for (the setting only concerns single-column values)."""
    default = config.get("ksql.persistence.wrap.single.values")
    values = [c for c in columns if c.namespace is ColumnNamespace.VALUE]
    if fmt.wrap_single_value is not None or default is None or len(values) != 1:
        return fmt
    wrap = str(default).strip().lower() == "true"
    if fmt.format in ("KAFKA", "DELIMITED") and wrap or fmt.format in ("PROTOBUF", "PROTOBUF_NOSR") and not wrap:
        return fmt  # formats with one layout ignore the default
    return FormatInfo(format=fmt.format, properties=fmt.properties, wrap_single_value=wrap)


def check_timestamp_column(col: Column, ts_format: str | None) -> None:
    ok = col.type in (sqltypes.BIGINT, sqltypes.TIMESTAMP) or (
        col.type == sqltypes.STRING and ts_format is not None
    )
    if not ok:
        raise AnalysisError(
            f"Timestamp column, `{col.name}`, should be LONG(INT64), TIMESTAMP, or a String with a "
            "timestamp_format specified."
        )
