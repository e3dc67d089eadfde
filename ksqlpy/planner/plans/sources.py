"""Source and sink steps: where a query's records come from and go to."""

from __future__ import annotations

from typing import TypedDict

from ksqlpy.planner.catalog import Source
from ksqlpy.planner.steps import steps as s
from ksqlpy.planner.steps.catalog import formats_of, timestamp_of, window_info_of
from ksqlpy.planner.steps.formats import Formats, TimestampColumn
from ksqlpy.planner.steps.schema import LogicalSchema

#: ksqlDB's current pseudo-column version: ROWTIME, ROWPARTITION and ROWOFFSET
PSEUDO_COLUMN_VERSION = 1


class _SourceFields(TypedDict):
    """The fields every source step shares (typed, so that ``**common`` is checked)."""

    context: str
    topic_name: str
    formats: Formats
    timestamp_column: TimestampColumn | None
    source_schema: str
    pseudo_column_version: int | None


def source_step(source: Source, context: str = "KsqlTopic/Source") -> s.SourceStep:
    formats = formats_of(source)
    schema = LogicalSchema(source.columns).text()
    common = _SourceFields(
        context=context,
        topic_name=source.topic,
        formats=formats,
        timestamp_column=timestamp_of(source),
        source_schema=schema,
        pseudo_column_version=PSEUDO_COLUMN_VERSION,
    )
    window = window_info_of(source.window)
    if source.is_table:
        if window is not None:
            return s.WindowedTableSource(window_info=window, **common)
        return s.TableSource(state_store_formats=internal_formats(source), **common)
    if window is not None:
        return s.WindowedStreamSource(window_info=window, **common)
    return s.StreamSource(**common)


def internal_formats(source: Source) -> Formats:
    """The formats of a query's internal topics and stores: the source's, without features
    that only concern how the source's own topic is laid out."""
    f = formats_of(source)
    return Formats(key_format=f.key_format, value_format=f.value_format, key_features=f.key_features)


def sink_step(sink: Source, step: s.ExecutionStep) -> s.SinkStep:
    cls = s.TableSink if sink.is_table else s.StreamSink
    return cls(
        context=sink.name,
        source=step,
        formats=formats_of(sink),
        topic_name=sink.topic,
        timestamp_column=timestamp_of(sink),
    )
