"""The DELIMITED format: one line of delimiter-separated fields per record.

ksqlDB reads and writes it with Apache Commons CSV 1.4's default format and a configurable
delimiter: fields may be quoted with ``"`` (a doubled ``""`` inside stands for a quote), an empty
field is null, only the first line of a record counts, and the number of fields must equal the
number of columns. Values print as Java prints them (``1.0E10``, ``true``); DECIMAL in plain
notation, BYTES as base64, DATE as days, TIME and TIMESTAMP as milliseconds.

Records without quotes or line breaks (nearly all of them) are split and converted column by
column with Arrow kernels; the rest go through :func:`first_record`, a port of the Commons CSV
lexer, and every value Arrow cannot convert exactly is converted with Java's rules one by one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.runtime.serde import javatext
from ksqlpy.runtime.serde.base import (
    Decoded,
    Deserializer,
    RecordError,
    Serializer,
    build_column,
    combine,
    null_table,
    physical_type,
    present_or_all,
    to_logical,
    to_physical,
)
from ksqlpy.runtime.serde.coerce import check_time
from ksqlpy.sqltypes import BaseType, Field

_LINE_BREAKS = "\r\n"


class CsvError(ValueError):
    """The record is not valid CSV (as Commons CSV's parser would reject it)."""


def first_record(text: str, delimiter: str) -> list[str] | None:
    """The fields of the first CSV record of ``text``, or None when it has none.

    Follows Commons CSV 1.4 with ``CSVFormat.DEFAULT``: leading empty lines are skipped, quoted
    fields may hold delimiters and line breaks, whitespace may follow a closing quote, and a
    trailing delimiter ends in an empty field.
    """
    n, i = len(text), 0
    while i < n and text[i] in _LINE_BREAKS:
        i += 1
    if i >= n:
        return None
    fields: list[str] = []
    while True:
        if i >= n:
            fields.append("")
            return fields
        c = text[i]
        if c == delimiter:
            fields.append("")
            i += 1
        elif c in _LINE_BREAKS:
            fields.append("")
            return fields
        elif c == '"':
            value, i, ended = _quoted(text, i + 1, delimiter)
            fields.append(value)
            if ended:
                return fields
        else:
            j = i
            while j < n and text[j] != delimiter and text[j] not in _LINE_BREAKS:
                j += 1
            fields.append(text[i:j])
            if j >= n or text[j] != delimiter:
                return fields
            i = j + 1


def _quoted(text: str, i: int, delimiter: str) -> tuple[str, int, bool]:
    """An encapsulated token starting after its quote: (value, next index, record ended)."""
    n = len(text)
    parts: list[str] = []
    while True:
        end = text.find('"', i)
        if end < 0:
            raise CsvError("EOF reached before encapsulated token finished")
        parts.append(text[i:end])
        if end + 1 < n and text[end + 1] == '"':
            parts.append('"')
            i = end + 2
            continue
        i = end + 1
        break
    value = "".join(parts)
    while i < n:
        c = text[i]
        if c == delimiter:
            return value, i + 1, False
        if c in _LINE_BREAKS:
            return value, i, True
        if not c.isspace():
            raise CsvError("invalid char between encapsulated token and delimiter")
        i += 1
    return value, i, True


# -- decoding ------------------------------------------------------------------------------

_INTEGRAL = r"^[+-]?[0-9]+$"
_PLAIN_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def _parse_bytes(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"Value is not a valid Base64 encoded string: {text}") from None


def _parse_decimal(t: sqltypes.SqlType) -> Callable[[str], object]:
    assert isinstance(t, sqltypes.Decimal)
    return lambda text: javatext.ensure_fit(javatext.parse_big_decimal(text), t.precision, t.scale)


#: Java's parser for each type, turning field text into the physical value.
_PARSERS: dict[BaseType, Callable[[sqltypes.SqlType], Callable[[str], object]]] = {
    BaseType.BOOLEAN: lambda t: lambda text: text.lower() == "true",
    BaseType.INTEGER: lambda t: javatext.parse_int,
    BaseType.BIGINT: lambda t: javatext.parse_long,
    BaseType.DOUBLE: lambda t: javatext.parse_double,
    BaseType.STRING: lambda t: lambda text: text,
    BaseType.BYTES: lambda t: _parse_bytes,
    BaseType.DECIMAL: _parse_decimal,
    BaseType.DATE: lambda t: javatext.parse_int,
    BaseType.TIME: lambda t: lambda text: check_time(javatext.parse_long(text)),
    BaseType.TIMESTAMP: lambda t: javatext.parse_long,
}

#: Types Arrow's cast converts exactly as Java would, for text matching the pattern.
_VECTOR_PATTERNS: dict[BaseType, str] = {
    BaseType.INTEGER: _INTEGRAL,
    BaseType.BIGINT: _INTEGRAL,
    BaseType.DATE: _INTEGRAL,
    BaseType.TIMESTAMP: _INTEGRAL,
    BaseType.DOUBLE: _PLAIN_NUMBER,
}


class DelimitedDeserializer(Deserializer):
    def __init__(self, columns: Sequence[Field], *, is_key: bool, delimiter: str) -> None:
        super().__init__(columns, is_key=is_key)
        self.delimiter = delimiter
        self._parsers = [_PARSERS[c.type.base](c.type) for c in self.columns]

    def decode(self, data: pa.Array | pa.ChunkedArray, *, topic: str = "?") -> Decoded:
        data = combine(data)
        rows = len(data)
        width = len(self.columns)
        if width == 0:
            return Decoded(table=null_table(self.schema, rows), present=pc.is_valid(data))
        errors: dict[int, str] = {}
        fields = self._split(data, errors, topic)
        arrays: list[pa.Array] = []
        for column, texts, parse in zip(self.columns, fields, self._parsers):
            arrays.append(self._convert(texts, column.type, parse, errors, topic))
        bad = np.zeros(rows, dtype=bool)
        bad[list(errors)] = True
        present = pc.and_(pc.is_valid(data), pa.array(~bad))
        if errors:
            mask = pa.array(bad)
            arrays = [pc.if_else(mask, pa.nulls(rows, a.type), a) for a in arrays]
        return Decoded(
            table=pa.table(arrays, schema=self.schema),
            present=present,
            errors=tuple(RecordError(r, errors[r]) for r in sorted(errors)),
        )

    def _split(self, data: pa.Array, errors: dict[int, str], topic: str) -> list[pa.Array]:
        """Field texts per column (null where the record is null, bad, or the field empty)."""
        rows, width = len(data), len(self.columns)
        try:
            text = data.cast(pa.string())
        except pa.ArrowInvalid:
            text = pa.array(
                [None if v is None else v.decode("utf-8", "replace") for v in data.to_pylist()], pa.string()
            )
        simple = pc.invert(pc.match_substring_regex(text, '["\r\n]'))
        parts = pc.split_pattern(text, self.delimiter)
        simple = pc.and_(simple, pc.equal(pc.list_value_length(parts), width))
        simple = pc.and_(simple, pc.greater(pc.binary_length(text), 0))  # "" has no record
        simple_rows = np.flatnonzero(np.asarray(pc.fill_null(simple, False)))
        other_rows = np.flatnonzero(np.asarray(pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(simple, True)))))
        flat = pc.list_flatten(parts.take(pa.array(simple_rows)))
        slow: list[list[str | None]] = [[] for _ in range(width)]
        for row in other_rows.tolist():
            record: list[str | None] | None
            try:
                record = list(first_record(text[row].as_py(), self.delimiter) or ())
                if not record:
                    raise ValueError("No fields in record")
                if len(record) != width:
                    raise ValueError(
                        f"Column count mismatch on deserialization. topic: {topic}, "
                        f"expected: {width}, got: {len(record)}"
                    )
            except ValueError as e:
                errors[row] = f"{self.error_prefix(topic)}{e}"
                record = [None] * width
            for i, value in enumerate(record):
                slow[i].append(value)
        order = np.full(rows, -1, dtype=np.int64)
        order[simple_rows] = np.arange(len(simple_rows))
        order[other_rows] = np.arange(len(simple_rows), len(simple_rows) + len(other_rows))
        missing = order < 0
        order[missing] = np.arange(len(simple_rows) + len(other_rows), rows)
        take = pa.array(order)
        columns: list[pa.Array] = []
        for i in range(width):
            piece = flat.take(pa.array(np.arange(i, len(flat), width))) if width > 1 else flat
            joined = pa.concat_arrays(
                [piece.cast(pa.string()), pa.array(slow[i], pa.string()), pa.nulls(int(missing.sum()), pa.string())]
            ).take(take)
            # an empty field is null
            columns.append(pc.if_else(pc.equal(joined, ""), pa.nulls(rows, pa.string()), joined))
        return columns

    def _convert(
        self,
        texts: pa.Array,
        t: sqltypes.SqlType,
        parse: Callable[[str], object],
        errors: dict[int, str],
        topic: str,
    ) -> pa.Array:
        base = t.base
        if base is BaseType.STRING:
            return texts
        if base is BaseType.BOOLEAN:
            return pc.equal(pc.utf8_lower(texts), "true")
        pattern = _VECTOR_PATTERNS.get(base)
        if pattern is not None and pc.all(pc.fill_null(pc.match_substring_regex(texts, pattern), True)).as_py():
            try:
                return to_logical(texts.cast(physical_type(t)), t)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # out of range somewhere: the exact path reports the rows
        values: list[object] = []
        for row, text in enumerate(texts.to_pylist()):
            if text is None:
                values.append(None)
                continue
            try:
                values.append(parse(text))
            except (ValueError, ArithmeticError) as e:
                errors.setdefault(row, f"{self.error_prefix(topic)}Error deserializing delimited: {e}")
                values.append(None)
        return build_column(values, t)


# -- encoding ------------------------------------------------------------------------------


def needs_quotes(value: str, *, first: bool, delimiter: str) -> bool:
    """Commons CSV 1.4's ``QuoteMode.MINIMAL`` decision for a non-null value."""
    if not value:
        return first
    c = value[0]
    if first and not ("0" <= c <= "9" or "A" <= c <= "Z" or "a" <= c <= "z"):
        return True  # 1.4 quotes a record starting with anything but an ASCII letter or digit ("-1")
    if ord(c) <= 0x23:  # '#': the default comment marker and everything below it
        return True
    if "\n" in value or "\r" in value or '"' in value or delimiter in value:
        return True
    return ord(value[-1]) <= 0x20


def quote(value: str, *, first: bool, delimiter: str) -> str:
    if needs_quotes(value, first=first, delimiter=delimiter):
        return '"' + value.replace('"', '""') + '"'
    return value


class DelimitedSerializer(Serializer):
    def __init__(self, columns: Sequence[Field], *, is_key: bool, delimiter: str) -> None:
        super().__init__(columns, is_key=is_key)
        self.delimiter = delimiter

    def encode(self, table: pa.Table, *, present: pa.Array | None = None) -> pa.BinaryArray:
        rows = table.num_rows
        keep = present_or_all(present, rows)
        if not self.columns:
            return pa.nulls(rows, pa.binary())
        texts = [
            self._text(combine(table.column(i)), f.type, first=i == 0) for i, f in enumerate(self.columns)
        ]
        line = pc.binary_join_element_wise(*texts, self.delimiter)
        line = pc.if_else(keep, line, pa.nulls(rows, pa.string()))
        return line.cast(pa.binary())

    def _text(self, column: pa.Array, t: sqltypes.SqlType, *, first: bool) -> pa.Array:
        """Each value as ksqlDB prints it, quoted where needed; null as the empty string."""
        physical = to_physical(column, t)
        match t.base:
            case BaseType.STRING:
                values = physical.to_pylist()
                out = [
                    None if v is None else quote(v, first=first, delimiter=self.delimiter) for v in values
                ]
                text = pa.array(out, pa.string())
            case BaseType.DOUBLE | BaseType.DECIMAL | BaseType.BYTES:
                show = _SHOW[t.base]
                text = pa.array(
                    [
                        None if v is None else quote(show(v), first=first, delimiter=self.delimiter)
                        for v in physical.to_pylist()
                    ],
                    pa.string(),
                )
            case BaseType.BOOLEAN:
                text = pc.if_else(physical, "true", "false")
            case _:
                # numbers, and DATE/TIME/TIMESTAMP as their days or millis: a record starting
                # with a negative one comes out quoted ("-10")
                text = physical.cast(pa.string())
                if first or self.delimiter in "0123456789-":
                    text = pa.array(
                        [None if v is None else quote(v, first=first, delimiter=self.delimiter) for v in text.to_pylist()],
                        pa.string(),
                    )
        return pc.fill_null(text, "")


_SHOW: dict[BaseType, Callable[[object], str]] = {
    BaseType.DOUBLE: lambda v: javatext.double_str(v),  # type: ignore[arg-type]
    BaseType.DECIMAL: lambda v: javatext.plain(v),  # type: ignore[arg-type]
    BaseType.BYTES: lambda v: base64.b64encode(v).decode("ascii"),  # type: ignore[arg-type]
}
