"""What the schema-registry formats (AVRO, PROTOBUF, JSON_SR) share.

Records are decoded one at a time by the format (its reader needs the writer's schema, named
by the id in each record's header) into plain Python values, which :func:`to_physical_value`
then fits to the columns' SQL types with ksqlDB's coercions; the physical columns are built
into Arrow once per batch. :class:`RowSerializer` does the reverse walk.
"""

from __future__ import annotations

import abc
import base64
import datetime
import decimal
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.serde import coerce
from ksqlpy.runtime.serde.base import (
    Decoded,
    Deserializer,
    RecordError,
    Serializer,
    build_column,
    combine,
    null_table,
    present_or_all,
    to_physical,
)
from ksqlpy.runtime.serde.registry import subject_name
from ksqlpy.sqltypes import BaseType, Field

_EPOCH_DATE = datetime.date(1970, 1, 1)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def plain(value: Any) -> Any:
    """A decoded value with temporals as ksqlDB's physical integers (days, millis)."""
    match value:
        case datetime.datetime():
            moment = value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
            return (moment - _EPOCH) // datetime.timedelta(milliseconds=1)
        case datetime.date():
            return (value - _EPOCH_DATE).days
        case datetime.time():
            return ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + value.microsecond // 1000
    return value


def to_physical_value(value: Any, t: sqltypes.SqlType, path: str = "$") -> Any:
    """A decoded value as the physical Python value of ``t`` (see :func:`base.physical_type`),
    struct fields matched by name exactly first, then case-insensitively."""
    value = plain(value)
    if value is None:
        return None
    match t:
        case sqltypes.Struct(fields=fs):
            if not isinstance(value, dict):
                raise coerce.CoercionError(f"Can't convert type. sourceType: {type(value).__name__}, requiredType: {t}", path)
            return {f.name: to_physical_value(coerce.lookup(value, f.name), f.type, f"{path}.{f.name}") for f in fs}
        case sqltypes.Array(element=e):
            if not isinstance(value, list):
                raise coerce.CoercionError(f"Can't convert type. sourceType: {type(value).__name__}, requiredType: {t}", path)
            return [to_physical_value(v, e, f"{path}[{i}]") for i, v in enumerate(value)]
        case sqltypes.Map(key=k, value=v):
            return [
                (to_physical_value(key, k, path), to_physical_value(val, v, f"{path}.{key}"))
                for key, val in map_entries(value)
            ]
    if t.base is BaseType.BYTES and isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if t.base is BaseType.STRING and isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, float) and t.base is BaseType.DECIMAL:
        value = decimal.Decimal(repr(value))
    return coerce.coerce(value, t, path)


def map_entries(value: Any) -> Iterable[tuple[Any, Any]]:
    """The (key, value) pairs of a decoded map. Connect writes a map whose keys are optional
    (as ksqlDB's are) as an array of ``{"key": .., "value": ..}`` entries, since Avro's own maps
    and Protobuf's map fields cannot hold a null key; those entries are read back as a map."""
    if isinstance(value, dict):
        return value.items()
    return [(entry["key"], entry["value"]) if isinstance(entry, dict) else entry for entry in value]


def spec_value(value: Any) -> Any:
    """A decoded value at the level QTT files write records: temporals as integers, bytes as
    base64 text, decimals kept exact."""
    value = plain(value)
    match value:
        case dict():
            return {k: spec_value(v) for k, v in value.items()}
        case list() | tuple():
            return [spec_value(v) for v in value]
        case bytes() | bytearray():
            return base64.b64encode(bytes(value)).decode("ascii")
    return value


class RowDeserializer(Deserializer):
    """Decodes records one by one with :meth:`read` into Python values, then to columns."""

    def __init__(self, columns: Sequence[Field], *, is_key: bool, wrapped: bool) -> None:
        super().__init__(columns, is_key=is_key)
        self.wrapped = wrapped

    @abc.abstractmethod
    def read(self, data: bytes) -> Any:
        """The Python value of one record (a dict for wrapped records). Raises ValueError."""

    def native_table(self, values: list[Any]) -> pa.Table | None:
        """The decoded values as columns in one Arrow conversion, when they are known to be in
        the columns' own layout (records written with the schema generated for them); None
        sends the batch down the value-by-value path."""
        return None

    def decode(self, data: pa.Array | pa.ChunkedArray, *, topic: str = "?") -> Decoded:
        data = combine(data)
        rows = len(data)
        raws = data.to_pylist()
        if not self.columns:
            return Decoded(table=null_table(self.schema, rows), present=pa.array([v is not None for v in raws]))
        values: list[Any] = [None] * rows
        errors: list[RecordError] = []
        for row, raw in enumerate(raws):
            if raw is None:
                continue
            try:
                values[row] = self.read(raw)
            except (ValueError, TypeError, KeyError, IndexError, EOFError, RecursionError) as e:
                errors.append(RecordError(row, self.error_prefix(topic) + str(e)))
        present = pa.array([v is not None for v in values], pa.bool_())
        try:
            native = self.native_table(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            native = None
        if native is not None:
            return Decoded(table=native, present=present, errors=tuple(errors))
        columns: list[list[Any]] = [[] for _ in self.columns]
        flags: list[bool] = []
        failed = {e.row for e in errors}
        for row, value in enumerate(values):
            converted = None
            if value is not None and row not in failed:
                try:
                    converted = self._row(value)
                except (ValueError, TypeError, KeyError, IndexError, RecursionError) as e:
                    errors.append(RecordError(row, self.error_prefix(topic) + str(e)))
            flags.append(converted is not None)
            for column, item in zip(columns, converted or [None] * len(columns)):
                column.append(item)
        arrays = [build_column(items, f.type) for items, f in zip(columns, self.columns)]
        return Decoded(
            table=pa.table(arrays, schema=self.schema),
            present=pa.array(flags, pa.bool_()),
            errors=tuple(sorted(errors, key=lambda e: e.row)),
        )

    def _row(self, value: Any) -> list[Any] | None:
        if value is None:
            return None
        if not self.wrapped:
            return [to_physical_value(value, self.columns[0].type)]
        if not isinstance(value, dict):
            struct = sqltypes.Struct(tuple(self.columns))
            raise TypeError(f"Can't convert type. sourceType: {type(value).__name__}, requiredType: {struct}")
        return [to_physical_value(coerce.lookup(value, c.name), c.type, f"$.{c.name}") for c in self.columns]


class RowSerializer(Serializer):
    """Encodes rows one by one with :meth:`write` (a dict per row, or the single value)."""

    def __init__(self, columns: Sequence[Field], *, is_key: bool, wrapped: bool) -> None:
        super().__init__(columns, is_key=is_key)
        self.wrapped = wrapped

    @abc.abstractmethod
    def write(self, value: Any) -> bytes:
        """One record's bytes; raises :class:`ksqlpy.errors.SerdeError` when it cannot."""

    def encode(self, table: pa.Table, *, present: pa.Array | None = None) -> pa.BinaryArray:
        rows = table.num_rows
        keep = present_or_all(present, rows).to_pylist()
        if not self.columns:
            return pa.nulls(rows, pa.binary())
        values = [
            to_physical(combine(table.column(i)), f.type).to_pylist(maps_as_pydicts="lossy")
            for i, f in enumerate(self.columns)
        ]
        names = [f.name for f in self.columns]
        if self.wrapped:
            rows_out = [dict(zip(names, row)) if k else None for k, *row in zip(keep, *values)]
        else:
            rows_out = [v if k else None for k, v in zip(keep, values[0])]
        return pa.array(self.write_many(rows_out), pa.binary())

    def write_many(self, values: list[Any]) -> list[bytes | None]:
        """One record per value; None (a tombstone or a null single value) stays None."""
        return [None if v is None else self.write(v) for v in values]


def missing_schema_error(topic: str, *, is_key: bool, schema_id: int | None = None) -> AnalysisError:
    """ksqlDB's error when inference finds no schema for a topic."""
    target = "keys" if is_key else "values"
    subject = subject_name(topic, is_key=is_key)
    text = (
        f"Schema for message {target} on topic '{topic}' does not exist in the Schema Registry."
        f"\nSubject: {subject}"
    )
    if schema_id is not None:
        text += f"\nSchema Id: {schema_id}"
    text += (
        "\n\nPossible causes include:\n- The topic itself does not exist\t-> Use SHOW TOPICS; to check\n"
        "- Messages on the topic are not serialized using a format Schema Registry supports\t"
        "-> Use PRINT '" + topic + "' FROM BEGINNING; to verify\n"
        "- Messages on the topic have not been serialized using a Confluent Schema Registry supported "
        "serializer\t-> See https://docs.confluent.io/current/schema-registry/docs/serializer-formatter.html\n"
        "- The schema is registered on a different instance of the Schema Registry\t-> Use the REST API "
        "to list available subjects\thttps://docs.confluent.io/current/schema-registry/docs/api.html#get--subjects\n"
        "- You do not have permissions to access the Schema Registry.\t-> See "
        "https://docs.confluent.io/current/schema-registry/docs/security.html"
    )
    return AnalysisError(text)
