"""Between the catalog and plans: a stream or table as a DDL command, and back.

Applying a stored plan rebuilds a catalog :class:`~ksqlpy.planner.catalog.Source` from its
``createStreamV1``/``createTableV1`` command alone, so a restart needs nothing but the command
log; planning a statement writes the command from the Source the analyzer built.
"""

from __future__ import annotations

from collections.abc import Mapping

from ksqlpy import sqltypes
from ksqlpy.parser.ast import SourceKind
from ksqlpy.planner import catalog as cat
from ksqlpy.planner.steps.commands import CreateSourceCommand, CreateStreamCommand, CreateTableCommand
from ksqlpy.planner.steps.formats import FormatInfo, Formats, TimestampColumn, WindowInfo
from ksqlpy.planner.steps.schema import LogicalSchema

#: formats whose single key column ksqlDB unwraps (PROTOBUF keys use `unwrapPrimitives` instead)
_UNWRAPPABLE = frozenset({"JSON", "JSON_SR", "AVRO"})


def formats_of(source: cat.Source) -> Formats:
    """A source's formats with ksqlDB's serde features: a single key column in a structured
    format is unwrapped; WRAP_SINGLE_VALUE, when set, becomes a value feature."""
    keys = source.key_columns
    key_features: tuple[str, ...] = ()
    if source.key_format.wrap_single_value is True:
        key_features = ("WRAP_SINGLES",)
    elif len(keys) == 1 and source.key_format.format in _UNWRAPPABLE:
        key_features = ("UNWRAP_SINGLES",)
    wrap = source.value_format.wrap_single_value
    value_features = () if wrap is None else ("WRAP_SINGLES",) if wrap else ("UNWRAP_SINGLES",)
    return Formats(
        key_format=format_info(source.key_format),
        value_format=format_info(source.value_format),
        key_features=key_features,
        value_features=value_features,
    )


def format_info(fmt: cat.FormatInfo) -> FormatInfo:
    return FormatInfo(format=fmt.format, properties=tuple(fmt.properties.items()))


def catalog_format(info: FormatInfo, features: tuple[str, ...], *, key: bool) -> cat.FormatInfo:
    """A plan's format and serde features as the catalog keeps them."""
    wrap = True if "WRAP_SINGLES" in features else False if "UNWRAP_SINGLES" in features else None
    if key and wrap is False:
        wrap = None  # an unwrapped single key is the default layout, not a user's choice
    return cat.FormatInfo(format=info.format, properties=dict(info.properties), wrap_single_value=wrap)


def window_info_of(window: cat.WindowInfo | None) -> WindowInfo | None:
    if window is None:
        return None
    size = None if window.size_ms is None else window.size_ms / 1000
    return WindowInfo(type=window.type.value, size=size, emit_strategy=window.emit_strategy)


def timestamp_of(source: cat.Source) -> TimestampColumn | None:
    if source.timestamp_column is None:
        return None
    return TimestampColumn(column=source.timestamp_column, format=source.timestamp_format)


def command_of(source: cat.Source, *, or_replace: bool = False) -> CreateSourceCommand:
    """The ``createStreamV1``/``createTableV1`` command that declares ``source``."""
    cls = CreateTableCommand if source.is_table else CreateStreamCommand
    return cls(
        source_name=source.name,
        schema=LogicalSchema(source.columns).text(),
        timestamp_column=timestamp_of(source),
        topic_name=source.topic,
        formats=formats_of(source),
        window_info=window_info_of(source.window),
        or_replace=or_replace,
        is_source=source.is_source,
    )


def source_of(
    command: CreateSourceCommand,
    types: Mapping[str, sqltypes.SqlType] | None = None,
    *,
    statement: str = "",
    partitions: int = 1,
    replicas: int = 1,
) -> cat.Source:
    """The catalog's view of a DDL command (partitions come from the topic, not the plan)."""
    window = None
    if command.window_info is not None:
        w = command.window_info
        window = cat.WindowInfo(type=cat.WindowType[w.type.upper()], size_ms=w.size_ms, emit_strategy=w.emit_strategy)
    ts = command.timestamp_column
    return cat.Source(
        name=command.source_name,
        kind=SourceKind.TABLE if isinstance(command, CreateTableCommand) else SourceKind.STREAM,
        topic=command.topic_name,
        columns=LogicalSchema.parse(command.schema, types).columns,
        key_format=catalog_format(command.formats.key_format, command.formats.key_features, key=True),
        value_format=catalog_format(command.formats.value_format, command.formats.value_features, key=False),
        timestamp_column=ts.column if ts is not None else None,
        timestamp_format=ts.format if ts is not None else None,
        window=window,
        is_source=command.is_source,
        statement=statement,
        partitions=partitions,
        replicas=replicas,
    )
