"""Record batches <-> row batches: the edges of every query.

:class:`SourceDecoder` turns a batch read from a topic (``RECORD_SCHEMA``) into the Arrow table a
plan's SQL runs over: the source's key, value and header columns plus ROWTIME, ROWPARTITION and
ROWOFFSET. Records that fail to deserialize go to the processing log and are left out.
:class:`SinkEncoder` turns a result table into records to produce.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.errors import ExecutionError, SerdeError
from ksqlpy.planner.catalog import Column, FormatInfo, Source
from ksqlpy.runtime import serde
from ksqlpy.runtime.processing_log import DESERIALIZATION_ERROR, SERIALIZATION_ERROR, ProcessingError
from ksqlpy.runtime.serde.registry import SchemaRegistry
from ksqlpy.runtime.serde.window import WindowKind, split_windowed_keys
from ksqlpy.runtime.store.base import HEADER_TYPE

TOMBSTONE = "__TOMBSTONE"
#: result column marking rows whose source record had no key (all key columns null)
NULL_KEY = "__NULL_KEY"
#: input and result column carrying each record's headers to the sink
HEADERS = "__HEADERS"
SYSTEM_COLUMNS = ("ROWTIME", "ROWPARTITION", "ROWOFFSET")
#: Bytes of values decoded at a time: a batch of hundreds of thousands of records is decoded in
#: pieces whose text stays in the processor's caches while it is parsed; in one piece a batch of
#: 200,000 JSON records (~20 MB) took ~20 % more CPU on a busy machine than in pieces of ~5 MB.
DECODE_BYTES = 5_000_000
#: A thread that decodes pieces of large batches beside the thread whose batch they are (see
#: :meth:`SourceDecoder.decode`): one per process, so it only ever takes a core left idle.
_HELPER = ThreadPoolExecutor(1, thread_name_prefix="decode-helper")


def serde_spec(fmt: FormatInfo) -> serde.SerdeSpec:
    schema_id = fmt.properties.get("schemaId")
    return serde.SerdeSpec(
        format=serde.Format.parse(fmt.format),
        wrap_single_value=fmt.wrap_single_value,
        delimiter=delimiter_char(fmt.properties.get("delimiter", ",")),
        schema_id=None if schema_id is None else int(schema_id),
        full_name=fmt.properties.get("fullSchemaName"),
        nullable=_upper(fmt.properties.get("nullableRepresentation")),
    )


def fields_of(columns: Sequence[Column]) -> tuple[sqltypes.Field, ...]:
    return tuple(sqltypes.Field(c.name, c.type) for c in columns)


@dataclass
class Decoded:
    table: pa.Table  # input rows; for tables, a TOMBSTONE bool column marks deletes
    errors: list[ProcessingError]


class SourceDecoder:
    """Decodes a source's records into input rows."""

    def __init__(
        self,
        source: Source,
        registry: SchemaRegistry | None = None,
        *,
        split_windows: bool = True,
        throw_on_invalid_timestamp: bool = False,
    ) -> None:
        """``split_windows``: strip a windowed source's key suffix into WINDOWSTART/WINDOWEND
        columns (off for callers that split the keys themselves). ``throw_on_invalid_timestamp``:
        a TIMESTAMP column value that cannot be read raises rather than skipping the record."""
        self.source = source
        self.registry = registry
        self.throw_on_invalid_timestamp = throw_on_invalid_timestamp
        self.split_windows = split_windows and source.window is not None
        self.keys = source.key_columns
        self.values = source.value_columns
        self.headers = source.header_columns
        self.key_de = serde.deserializer(
            serde_spec(source.key_format), fields_of(self.keys), is_key=True, registry=registry, topic=source.topic
        )
        self.value_de = serde.deserializer(
            serde_spec(source.value_format), fields_of(self.values), is_key=False, registry=registry, topic=source.topic
        )

    def _split_window(self, key_arr: pa.Array) -> tuple[pa.Array, tuple[pa.Array, pa.Array], list[int]]:
        """A windowed source's keys: the inner key bytes and the window bounds. Keys too short
        for their window suffix become null here and are reported by the caller."""
        window = self.source.window
        assert window is not None
        kind = WindowKind(window.type.value)
        lengths = pc.binary_length(key_arr)
        too_short = pc.fill_null(pc.less(lengths, kind.suffix_size), False)
        short = np.flatnonzero(np.asarray(too_short, dtype=bool)).tolist()
        if short:
            key_arr = pc.if_else(too_short, pa.scalar(None, key_arr.type), key_arr)
        split = split_windowed_keys(key_arr, kind, size_ms=window.size_ms)
        return split.inner, (split.start, split.end), short

    def decode(self, records: pa.Table) -> Decoded:
        """The batch's input rows, in record order, decoded in pieces of :data:`DECODE_BYTES`.

        The pieces are taken in turn by this thread and the decoding helper, which has a decoder
        of its own (a deserializer learns from the records it reads): where a core is idle,
        a large batch is decoded by two (Arrow's JSON reader releases the GIL). The helper
        takes a piece only if it is free before this thread has taken them all."""
        count = -(-records.column("value").nbytes // DECODE_BYTES)
        if count <= 1:
            return self._decode(records)
        size = -(-records.num_rows // count)
        pieces = [records.slice(start, size) for start in range(0, records.num_rows, size)]
        decoded: list[Decoded | None] = [None] * len(pieces)
        claims = itertools.count()  # each piece is claimed once (next() holds the GIL)

        def take(decoder: SourceDecoder) -> None:
            while (i := next(claims)) < len(pieces):
                decoded[i] = decoder._decode(pieces[i])

        helping = _HELPER.submit(take, self._helper_decoder())
        take(self)
        if not helping.cancel():
            helping.result()  # a piece the helper took, or what it raised
        done = [d for d in decoded if d is not None]
        assert len(done) == len(pieces), "a piece was not decoded"
        return Decoded(pa.concat_tables([d.table for d in done]), [e for d in done for e in d.errors])

    def _helper_decoder(self) -> SourceDecoder:
        """The decoder the decoding helper uses for this one's pieces."""
        helper = self._helper
        if helper is None:
            helper = self._helper = SourceDecoder(
                self.source,
                self.registry,
                split_windows=self.split_windows,
                throw_on_invalid_timestamp=self.throw_on_invalid_timestamp,
            )
        return helper

    _helper: SourceDecoder | None = None

    def _decode(self, records: pa.Table) -> Decoded:
        errors: list[ProcessingError] = []
        key_arr = serde.base.combine(records.column("key"))
        value_arr = serde.base.combine(records.column("value"))
        bounds: tuple[pa.Array, pa.Array] | None = None
        short: list[int] = []
        if self.split_windows:
            key_arr, bounds, short = self._split_window(key_arr)
        keys = self.key_de.decode(key_arr, topic=self.source.topic)
        values = self.value_de.decode(value_arr, topic=self.source.topic)
        # Rows whose key or value failed to deserialize (a record is reported once, key first);
        # without errors, the usual case, no per-record work at all.
        bad: set[int] = set()
        for i in short:
            bad.add(i)
            errors.append(self._error(records, i, "Windowed key is shorter than its window", "key"))
        for i, msg in keys.errors:
            bad.add(i)
            errors.append(self._error(records, i, msg, "key"))
        for i, msg in values.errors:
            if i not in bad:
                bad.add(i)
                errors.append(self._error(records, i, msg, "value"))
        cols: dict[str, pa.Array | pa.ChunkedArray] = {}
        for c in self.keys:
            cols[c.name] = keys.table.column(c.name)
        if bounds is not None:
            cols["WINDOWSTART"], cols["WINDOWEND"] = bounds
        for c in self.values:
            cols[c.name] = values.table.column(c.name)
        for c in self.headers:
            cols[c.name] = _header_column(records.column("headers"), c)
        # The record's headers travel with it to the sink, as in ksqlDB.
        cols[HEADERS] = records.column("headers")
        cols["ROWTIME"] = records.column("timestamp")
        cols["ROWPARTITION"] = records.column("partition")
        cols["ROWOFFSET"] = records.column("offset")
        # A tombstone is a record without a value: null bytes, or a value such as JSON ``null``
        # that decodes to no row. Malformed records are not tombstones; they were marked bad above.
        tombstone = pc.invert(values.present)
        table = pa.table(cols)
        good = np.ones(records.num_rows, dtype=bool)
        good[list(bad)] = False
        if self.source.is_table or self.source.null_values:
            table = table.append_column(TOMBSTONE, tombstone)
            keep = pa.array(good)
        else:
            # Streams skip records with a null value, as ksqlDB does.
            keep = pc.and_(pa.array(good), values.present)
        if not pc.all(keep).as_py():
            table = table.filter(keep)
        if self.source.timestamp_column is not None:
            table, ts_errors = self._extract_timestamp(table, records)
            errors.extend(ts_errors)
        return Decoded(table, errors)

    def _extract_timestamp(self, table: pa.Table, records: pa.Table) -> tuple[pa.Table, list[ProcessingError]]:
        col = self.source.column(self.source.timestamp_column or "")
        assert col is not None
        values = table.column(col.name)
        if col.type == sqltypes.TIMESTAMP:
            ms = pc.cast(pc.cast(values, pa.timestamp("ms")), pa.int64())
        elif col.type == sqltypes.BIGINT:
            ms = values
        else:
            from ksqlpy.runtime.timestamps import parse_timestamps

            ms = parse_timestamps(values, self.source.timestamp_format or "")
        if self.throw_on_invalid_timestamp and ms.null_count:
            i = ms.is_null().to_pylist().index(True)
            # Kafka Streams' words for an exception out of ksqlDB's timestamp extractor
            raise ExecutionError(
                "Fatal user code error in TimestampExtractor callback for record "
                f"(topic {self.source.topic}, partition {table.column('ROWPARTITION')[i].as_py()}, "
                f"offset {table.column('ROWOFFSET')[i].as_py()}): "
                f"invalid value in TIMESTAMP column {col.name}"
            )
        idx = table.schema.get_field_index("ROWTIME")
        if not self.source.is_table and TOMBSTONE in table.column_names:
            # a stream record without a value keeps its own timestamp
            ms = pc.if_else(table.column(TOMBSTONE), table.column("ROWTIME"), pc.cast(ms, pa.int64()))
        table = table.set_column(idx, "ROWTIME", pc.cast(ms, pa.int64()))
        # ksqlDB drops records whose timestamp is missing or negative.
        keep = pc.fill_null(pc.greater_equal(table.column("ROWTIME"), 0), False)
        errors: list[ProcessingError] = []
        if not pc.all(keep).as_py():
            for i, ok in enumerate(keep.to_pylist()):
                if not ok:
                    errors.append(
                        ProcessingError(
                            type=DESERIALIZATION_ERROR,
                            message=f"Invalid timestamp in column {col.name}",
                            topic=self.source.topic,
                            partition=table.column("ROWPARTITION")[i].as_py(),
                            offset=table.column("ROWOFFSET")[i].as_py(),
                            target="value",
                        )
                    )
            table = table.filter(keep)
        return table, errors

    def _error(self, records: pa.Table, i: int, message: str, target: str) -> ProcessingError:
        return ProcessingError(
            type=DESERIALIZATION_ERROR,
            message=message,
            topic=records.column("topic")[i].as_py(),
            partition=records.column("partition")[i].as_py(),
            offset=records.column("offset")[i].as_py(),
            target=target,
            record=records.column(target)[i].as_py(),
        )


def _header_column(headers: pa.ChunkedArray, col: Column) -> pa.Array:
    rows = headers.to_pylist()
    if col.header_key is None:
        return pa.array(
            [[{"KEY": h["key"], "VALUE": h["value"]} for h in (r or [])] for r in rows],
            sqltypes.to_arrow(col.type),
        )
    out = []
    for r in rows:
        found = None
        for h in r or []:
            if h["key"] == col.header_key:
                found = h["value"]  # the last header with the key wins, as in ksqlDB
        out.append(found)
    return pa.array(out, pa.binary())


class SinkEncoder:
    """Encodes result rows into records for a sink's topic."""

    def __init__(self, sink: Source, registry: SchemaRegistry | None = None) -> None:
        self.sink = sink
        self.keys = sink.key_columns
        self.values = sink.value_columns
        self.key_ser = serde.serializer(
            serde_spec(sink.key_format), fields_of(self.keys), is_key=True, registry=registry, topic=sink.topic
        )
        self.value_ser = serde.serializer(
            serde_spec(sink.value_format), fields_of(self.values), is_key=False, registry=registry, topic=sink.topic
        )

    def encode(
        self, rows: pa.Table, timestamps: pa.Array, tombstones: pa.Array | None = None
    ) -> tuple[pa.Table, list[ProcessingError]]:
        key_table = rows.select([c.name for c in self.keys])
        value_table = rows.select([c.name for c in self.values])
        keys = self.key_ser.encode(key_table)
        if NULL_KEY in rows.column_names and key_table.num_columns:
            # The record's key was null, not a key of null columns: it stays a null key.
            no_key = pc.fill_null(rows.column(NULL_KEY), False)
            if pc.any(no_key).as_py():
                keys = pc.if_else(no_key, pa.nulls(len(keys), keys.type), keys)
        try:
            values = self.value_ser.encode(value_table)
        except SerdeError as e:
            # a value the sink's schema cannot hold stops the query (Kafka Streams' words)
            raise SerdeError(
                f"Exception caught in process. topic={self.sink.topic}: Unable to serialize record: {e}"
            ) from e
        if tombstones is not None and pc.any(tombstones).as_py():
            values = pc.if_else(tombstones, pa.nulls(len(values), pa.binary()), values)
        batch = pa.table(
            {
                "timestamp": pc.cast(timestamps, pa.int64()),
                "key": keys,
                "value": values,
                "headers": _headers_of(rows),
            }
        )
        return batch, []


def _headers_of(rows: pa.Table) -> pa.Array | pa.ChunkedArray:
    if HEADERS not in rows.column_names:
        return pa.nulls(rows.num_rows, HEADER_TYPE)
    return rows.column(HEADERS).cast(HEADER_TYPE)


def serialization_error(topic: str, message: str) -> ProcessingError:
    return ProcessingError(type=SERIALIZATION_ERROR, message=message, topic=topic, target="value")


#: named delimiters, kept in the format's properties as the statement spelled them
NAMED_DELIMITERS = {"SPACE": " ", "TAB": "\t"}


def delimiter_char(text: str) -> str:
    return NAMED_DELIMITERS.get(text.upper(), text) if len(text) > 1 else text


def _upper(text: str | None) -> str | None:
    return None if text is None else text.upper()
