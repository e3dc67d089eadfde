"""The JSON format: one JSON document per record.

Several key columns, several value columns, or a single value column with
``WRAP_SINGLE_VALUE=true`` (the default for values) are an object with one entry per column;
a single key column (or a value with ``WRAP_SINGLE_VALUE=false``) is the bare value.

Decoding has two paths that give the same answer:

* a fast, columnar one: the batch is joined into newline-delimited JSON and parsed by Arrow's
  JSON reader against an explicit schema, one field per spelling of a column name that the
  batch uses (:mod:`ksqlpy.runtime.serde.jsonkeys` matches names case-insensitively as ksqlDB
  does). Arrow is stricter than ksqlDB (it refuses to truncate ``1.5`` to an INT or to read
  ``"12"`` as a number), so whenever a chunk of records holds anything it rejects, the chunk
  falls back to
* the exact one: each record parsed with decimals kept exact and coerced value by value with
  ksqlDB's rules (:mod:`ksqlpy.runtime.serde.coerce`), reporting malformed records per row. It
  also takes the few records whose field names the fast path cannot match (one name spelled
  two ways in one record, names written with escapes).
"""

from __future__ import annotations

import base64
import binascii
import decimal
import json as stdjson
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ksqlpy import sqltypes
from ksqlpy.errors import SerdeError
from ksqlpy.runtime.serde import coerce, javatext, jsonkeys
from ksqlpy.runtime.serde.base import (
    Decoded,
    Deserializer,
    RecordError,
    Serializer,
    build_column,
    combine,
    null_table,
    present_or_all,
    to_logical,
    to_physical,
)
from ksqlpy.sqltypes import BaseType, Field

#: Chunks of records the fast path rejected are halved and retried down to this size.
_RETRY_CHUNK = 16
#: Read schemas (one per plan of spellings) a deserializer keeps.
_SCHEMAS_KEPT = 32
#: Times a deserializer learns the other keys of its records (see ``KeyNames.others``).
_OTHERS_LEARNT = 4
#: Name of the single field unwrapped records are wrapped in for Arrow's reader.
_WRAP_FIELD = "v"

_FAST_SCALARS = frozenset(
    {
        BaseType.BOOLEAN,
        BaseType.INTEGER,
        BaseType.BIGINT,
        BaseType.DOUBLE,
        BaseType.STRING,
        BaseType.DECIMAL,
        BaseType.DATE,
        BaseType.TIMESTAMP,
    }
)


def _fast_type(t: sqltypes.SqlType, *, top: bool) -> bool:
    """Whether Arrow's reader decodes ``t`` exactly as ksqlDB does when it accepts it."""
    match t:
        case sqltypes.Array(element=e):
            return _fast_type(e, top=False)
        case sqltypes.Struct(fields=fs):
            return all(_fast_type(f.type, top=False) for f in fs)
        case sqltypes.Map():
            return False
    # TIME needs a range check and BYTES a base64 decode: done for top-level columns only
    return t.base in _FAST_SCALARS or (top and t.base in (BaseType.TIME, BaseType.BYTES))


class JsonDeserializer(Deserializer):
    def __init__(self, columns: Sequence[Field], *, is_key: bool, wrapped: bool) -> None:
        super().__init__(columns, is_key=is_key)
        self.wrapped = wrapped
        self._names = tuple(c.name for c in self.columns)
        self._keys = jsonkeys.KeyNames(self.columns, wrapped=wrapped)
        self._fast = (
            bool(self.columns) and all(_fast_type(c.type, top=True) for c in self.columns) and self._keys.usable
        )
        #: the spellings the last batch used: the next one most likely uses them too
        self._plan: dict[str, tuple[str, ...]] = {}
        self._schemas: dict[tuple[object, ...], pa.Schema] = {}
        #: keys of the records that are no column's, read only to account for their quotes
        #: (see ``KeyNames.others``); learnt a few times at most, dropped when Arrow rejects them
        self._others: dict[str, pa.DataType] = {}
        self._others_learnt = 0

    def decode(self, data: pa.Array | pa.ChunkedArray, *, topic: str = "?") -> Decoded:
        data = combine(data)
        rows = len(data)
        if not self.columns:
            return Decoded(table=null_table(self.schema, rows), present=pc.is_valid(data))
        null_text = pc.fill_null(pc.equal(data, pa.scalar(b"null", data.type)), True)
        candidates = np.flatnonzero(np.asarray(pc.invert(null_text)))
        fast_rows: list[np.ndarray] = []
        fast_parts: list[list[pa.Array]] = []
        slow_rows: list[int] = []

        def attempt(chunk: np.ndarray, records: pa.Array) -> bool:
            result = self._fast_decode(records)
            if result is None:
                return False
            columns, decoded = result
            fast_rows.append(chunk[decoded])
            fast_parts.append(columns)
            if len(decoded) < len(chunk):
                left = np.ones(len(chunk), dtype=bool)
                left[decoded] = False
                slow_rows.extend(chunk[left].tolist())
            return True

        if self._fast and len(candidates):
            # the whole batch first; when Arrow rejects it, each half, and so on down to a few
            # records, so that an odd record sends little more than itself down the exact path.
            # When every chunk of a round is rejected the odd records are everywhere: they all
            # go down the exact path without more reads.
            level = [candidates]
            while level:
                rejected = [
                    chunk
                    for chunk in level
                    if not attempt(chunk, data if len(chunk) == rows else data.take(pa.array(chunk)))
                ]
                if len(level) > 1 and len(rejected) == len(level):
                    slow_rows.extend(np.concatenate(rejected).tolist())
                    break
                level = []
                for chunk in rejected:
                    if len(chunk) <= _RETRY_CHUNK:
                        slow_rows.extend(chunk.tolist())
                    else:
                        half = len(chunk) // 2
                        level += [chunk[:half], chunk[half:]]
        else:
            slow_rows = candidates.tolist()
        slow_columns, slow_present, errors = self._slow_decode(data, slow_rows, topic)
        return self._assemble(rows, fast_rows, fast_parts, slow_rows, slow_columns, slow_present, errors)

    # -- fast path -------------------------------------------------------------------------

    def _fast_decode(self, records: pa.Array) -> tuple[list[pa.Array], np.ndarray] | None:
        """Physical columns (plus the present mask last) for the records Arrow's reader decodes
        exactly as ksqlDB would, and their positions in ``records``; None when it cannot
        decode them. Records whose field names the reader cannot be told how to match (see
        :mod:`ksqlpy.runtime.serde.jsonkeys`) are left out, for the exact path."""
        if self.wrapped and not _braced(records):
            return None
        decoded = np.arange(len(records))
        text = jsonkeys.BatchText(_values_buffer(records).to_pybytes())
        hazards = self._keys.hazards(records, text)
        if hazards is not None:
            decoded, records = decoded[~hazards], records.filter(pa.array(~hazards))
            text = jsonkeys.BatchText(_values_buffer(records).to_pybytes())
        plan = self._plan
        table = self._read(records, plan)
        if table is None and self._others:
            self._others = {}  # another key's value of another type: read without them
            table = self._read(records, plan)
        if table is None:
            return None
        doubt = self._keys.doubtful(table, plan, text, self._read_others(table))
        if doubt:
            # the spellings of the first records, usually those of the whole batch
            guess = jsonkeys.canonical({**plan, **self._keys.sample(records, doubt, plan)})
            if guess != plan:
                table = self._read(records, guess)
                if table is None:
                    return None
                plan = self._plan = guess
                doubt = self._keys.doubtful(table, plan, text, self._read_others(table))
        if doubt:
            found, mixed = self._keys.analyze(records, text, doubt)
            new_plan = jsonkeys.canonical({**plan, **found})
            self._plan = new_plan
            if mixed is not None:
                decoded, records = decoded[~mixed], records.filter(pa.array(~mixed))
            if new_plan != plan or mixed is not None:
                table = self._read(records, new_plan)
                if table is None:
                    return None
            plan = new_plan
        if not text.explained and self.wrapped and self._keys.variable and self._others_learnt < _OTHERS_LEARNT:
            # Names were counted: the records hold other keys. The next batches read them too.
            self._others_learnt += 1
            others = self._keys.others(records, plan)
            if others and others != self._others:
                self._others = others
        out: list[pa.Array] = []
        for i, field in enumerate(self.columns):
            if self.wrapped:
                parts = [combine(table.column(s)) for s in jsonkeys.spelled(field.name, plan)]
            else:
                parts = [combine(table.column(i))]
            column = jsonkeys.fold(jsonkeys.first_present(parts), field.type, plan)
            converted = _finish_fast(column, field.type)
            if converted is None:
                return None
            out.append(converted)
        if self.wrapped:
            out.append(pa.array(np.ones(len(records), dtype=bool)))
        else:
            out.append(pc.is_valid(out[0]))
        return out, decoded

    def _read(self, records: pa.Array, plan: jsonkeys.Plan) -> pa.Table | None:
        """Arrow's reader over ``records`` with the fields of ``plan``; None when it rejects them."""
        n = len(records)
        if not self.wrapped:
            records = pc.binary_join_element_wise(_bytes('{"' + _WRAP_FIELD + '":'), records, _bytes("}"), _bytes(""))
        # One record per line. JSON strings cannot hold a raw newline, so no string (and, the
        # records being braced, no document) spans two records: see _braced.
        ndjson = pc.binary_join_element_wise(records, _bytes("\n"), _bytes(""))
        buffer = _values_buffer(ndjson)
        try:
            table = pajson.read_json(
                pa.BufferReader(buffer),
                # one block on the calling thread: Arrow's threaded reader is slower on batches
                # of a few MB (its per-block setup outweighs the parallel parse) and competes
                # with the query threads for the cores
                read_options=pajson.ReadOptions(block_size=buffer.size + 1, use_threads=False),
                parse_options=pajson.ParseOptions(
                    explicit_schema=self._read_schema(plan), unexpected_field_behavior="ignore"
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return table if table.num_rows == n else None

    def _read_others(self, table: pa.Table) -> list[str]:
        """The fields of ``table`` read for other keys (see ``_others``)."""
        return [name for name in self._others if name in table.column_names]

    def _read_schema(self, plan: jsonkeys.Plan) -> pa.Schema:
        others = self._others if self.wrapped else {}
        key = (*sorted(plan.items()), *others.items())
        schema = self._schemas.get(key)
        if schema is None:
            if self.wrapped:
                fields = [
                    pa.field(s, jsonkeys.read_type(c.type, plan, top=True))
                    for c in self.columns
                    for s in jsonkeys.spelled(c.name, plan)
                ]
                taken = {f.name for f in fields}
                fields += [pa.field(name, t) for name, t in others.items() if name not in taken]
            else:
                fields = [pa.field(_WRAP_FIELD, jsonkeys.read_type(self.columns[0].type, plan, top=True))]
            if len(self._schemas) >= _SCHEMAS_KEPT:
                self._schemas.clear()  # spellings that keep changing: keep the cache small
            schema = self._schemas[key] = pa.schema(fields)
        return schema

    # -- exact path ------------------------------------------------------------------------

    def _slow_decode(
        self, data: pa.Array, rows: list[int], topic: str
    ) -> tuple[list[list[object]], list[bool], list[RecordError]]:
        columns: list[list[object]] = [[] for _ in self.columns]
        present: list[bool] = []
        errors: list[RecordError] = []
        for row in rows:
            raw = data[row].as_py()
            try:
                values = self._decode_one(raw)
            except (coerce.CoercionError, ValueError, RecursionError) as e:
                errors.append(RecordError(row, self.error_prefix(topic) + str(e)))
                values = None
            present.append(values is not None)
            for i, column in enumerate(columns):
                column.append(None if values is None else values[i])
        return columns, present, errors

    def _decode_one(self, raw: bytes) -> list[object] | None:
        try:
            document = stdjson.loads(raw, parse_float=decimal.Decimal, parse_constant=_reject_constant)
        except (stdjson.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"Invalid JSON: {e}") from None
        if document is None:
            return None
        if not self.wrapped:
            value = coerce.coerce(document, self.columns[0].type, "$")
            return None if value is None else [value]
        if not isinstance(document, dict):
            struct = sqltypes.Struct(tuple(self.columns))
            raise coerce.CoercionError(
                f"Can't convert type. sourceType: {coerce.node_type(document)}, requiredType: {struct}",
                "$",
            )
        found = coerce.lookup_all(document, self._names)
        return [coerce.coerce(v, c.type, f"$.{c.name}") for c, v in zip(self.columns, found)]

    def _assemble(
        self,
        rows: int,
        fast_rows: list[np.ndarray],
        fast_parts: list[list[pa.Array]],
        slow_rows: list[int],
        slow_columns: list[list[object]],
        slow_present: list[bool],
        errors: list[RecordError],
    ) -> Decoded:
        if not slow_rows and len(fast_rows) == 1 and len(fast_rows[0]) == rows:
            # The usual batch: every record decoded by one read, in order; nothing to reorder.
            columns = [to_logical(fast_parts[0][i], f.type) for i, f in enumerate(self.columns)]
            present = fast_parts[0][-1]
            assert isinstance(present, pa.BooleanArray)
            return Decoded(table=pa.table(columns, schema=self.schema), present=present, errors=())
        order = np.full(rows, -1, dtype=np.int64)
        position = 0
        for chunk in fast_rows:
            order[chunk] = np.arange(position, position + len(chunk))
            position += len(chunk)
        order[np.asarray(slow_rows, dtype=np.int64)] = np.arange(position, position + len(slow_rows))
        position += len(slow_rows)
        missing = order < 0
        order[missing] = np.arange(position, position + int(missing.sum()))
        absent = int(missing.sum())
        take = pa.array(order)
        arrays: list[pa.Array] = []
        for i, field in enumerate(self.columns):
            pieces = [to_logical(part[i], field.type) for part in fast_parts]
            pieces.append(build_column(slow_columns[i], field.type))
            pieces.append(pa.nulls(absent, sqltypes.to_arrow(field.type)))
            arrays.append(pa.concat_arrays(pieces).take(take))
        present_pieces = [part[-1] for part in fast_parts]
        present_pieces.append(pa.array(slow_present, pa.bool_()))
        present_pieces.append(pa.array(np.zeros(absent, dtype=bool)))
        present = pa.concat_arrays(present_pieces).take(take)
        assert isinstance(present, pa.BooleanArray)
        return Decoded(
            table=pa.table(arrays, schema=self.schema),
            present=present,
            errors=tuple(sorted(errors, key=lambda e: e.row)),
        )


def _bytes(text: str) -> pa.Scalar:
    return pa.scalar(text.encode(), pa.binary())


def _reject_constant(name: str) -> float:
    raise ValueError(f"Invalid JSON: non-standard token '{name}'")


def _values_buffer(array: pa.Array) -> pa.Buffer:
    """The concatenated value bytes of a non-null string/binary array (a zero-copy slice)."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    if data is None:
        return pa.py_buffer(b"")
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def _braced(records: pa.Array) -> bool:
    """Whether every record starts with ``{`` and ends with ``}``.

    Arrow's reader parses the newline-joined records as one stream of documents, so a batch
    that yields one row per record could still hide a record that is not one document on its
    own (``{"A":1}{"B":2`` then ``}``). When every record is braced that cannot happen: no
    string spans the newline between two records (JSON strings hold no raw newline), and the
    token after a record's closing brace is the next record's ``{``, which JSON allows only
    after a document has ended; so every record is one or more whole documents, exactly one
    each when the row count matches. Records with surrounding whitespace take the exact path."""
    offsets = np.frombuffer(records.buffers()[1], dtype=np.int32)[records.offset : records.offset + len(records) + 1]
    data = records.buffers()[2]
    if data is None or len(offsets) < 2:
        return len(records) == 0
    raw = np.frombuffer(data, dtype=np.uint8)
    starts, ends = offsets[:-1], offsets[1:]
    if (ends <= starts).any():
        return False  # an empty record
    return bool((raw[starts] == ord("{")).all() and (raw[ends - 1] == ord("}")).all())


def _finish_fast(column: pa.Array, t: sqltypes.SqlType) -> pa.Array | None:
    """Post-checks Arrow's reader does not make: TIME range, BYTES as base64."""
    match t.base:
        case BaseType.TIME:
            out_of_range = pc.or_(pc.less(column, 0), pc.greater(column, javatext.MILLIS_PER_DAY))
            if pc.any(out_of_range).as_py():
                return None
            return column
        case BaseType.BYTES:
            try:
                decoded = [
                    None if v is None else base64.b64decode(v, validate=True) for v in column.to_pylist()
                ]
            except (binascii.Error, ValueError):
                return None
            return pa.array(decoded, pa.binary())
    return column


# -- serialization -------------------------------------------------------------------------


class JsonSerializer(Serializer):
    def __init__(self, columns: Sequence[Field], *, is_key: bool, wrapped: bool) -> None:
        super().__init__(columns, is_key=is_key)
        self.wrapped = wrapped

    def encode(self, table: pa.Table, *, present: pa.Array | None = None) -> pa.BinaryArray:
        rows = table.num_rows
        keep = np.asarray(present_or_all(present, rows))
        if not self.columns:
            return pa.nulls(rows, pa.binary())
        fast = self._encode_columnar(table, keep)
        if fast is not None:
            return fast
        prepared = [_json_ready(combine(table.column(i)), f.type) for i, f in enumerate(self.columns)]
        out: list[bytes | None]
        if self.wrapped:
            names = [f.name for f in self.columns]
            columns = [p.to_pylist(maps_as_pydicts="strict") if isinstance(p, pa.Array) else p for p in prepared]
            out = [
                orjson.dumps(dict(zip(names, values)), default=_json_default) if k else None
                for k, *values in zip(keep, *columns)
            ]
        else:
            single = prepared[0]
            values = single.to_pylist(maps_as_pydicts="strict") if isinstance(single, pa.Array) else single
            out = [
                orjson.dumps(v, default=_json_default) if k and v is not None else None
                for k, v in zip(keep, values)
            ]
        return pa.array(out, pa.binary())


    def _encode_columnar(self, table: pa.Table, keep: np.ndarray) -> pa.BinaryArray | None:
        """Records assembled from per-column JSON text with Arrow kernels, for schemas of
        scalars; None when a column needs the row-by-row writer."""
        fragments = []
        for i, f in enumerate(self.columns):
            fragment = _fragment(combine(table.column(i)), f.type)
            if fragment is None:
                return None
            fragments.append(fragment)
        rows = table.num_rows
        if self.wrapped:
            parts: list[pa.Array | pa.Scalar] = []
            for i, (f, fragment) in enumerate(zip(self.columns, fragments)):
                parts.append(_text(("{" if i == 0 else ",") + stdjson.dumps(f.name, ensure_ascii=False) + ":"))
                parts.append(pc.fill_null(fragment, "null"))
            parts.append(_text("}"))
            record = pc.binary_join_element_wise(*parts, _text(""))
        else:
            record = fragments[0]
        if not keep.all():
            record = pc.if_else(pa.array(keep), record, pa.nulls(rows, pa.string()))
        result = record.cast(pa.binary())
        assert isinstance(result, pa.BinaryArray)
        return result


_NEEDS_ESCAPE = r'["\\\x00-\x1f]'


def _fragment(column: pa.Array, t: sqltypes.SqlType) -> pa.Array | None:
    """Each value of a column as JSON text (null stays null), or None when the column has
    values Arrow cannot print as ksqlDB's JSON writer does (or is a MAP)."""
    physical = to_physical(column, t)
    match t:
        case sqltypes.Struct(fields=fs):
            return _struct_fragment(physical, fs)
        case sqltypes.Array(element=e):
            return _array_fragment(physical, e)
        case sqltypes.Map(key=k, value=v):
            return _map_fragment(physical, k, v)
    match t.base:
        case BaseType.BOOLEAN:
            return pc.if_else(physical, "true", "false")
        case BaseType.INTEGER | BaseType.BIGINT | BaseType.DATE | BaseType.TIME | BaseType.TIMESTAMP:
            return physical.cast(pa.string())
        case BaseType.DECIMAL:
            return physical.cast(pa.string())
        case BaseType.DOUBLE:
            if not pc.all(pc.fill_null(pc.is_finite(physical), True)).as_py():
                return None
            text = physical.cast(pa.string())
            # Java prints integral doubles with a fraction ("1.0"); keep the value a double
            integral = pc.invert(pc.match_substring_regex(text, "[.eE]"))
            return pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
        case BaseType.STRING:
            if pc.any(pc.match_substring_regex(physical, _NEEDS_ESCAPE)).as_py():
                return pa.array(
                    [None if v is None else orjson.dumps(v).decode() for v in physical.to_pylist()],
                    pa.string(),
                )
            return pc.binary_join_element_wise('"', physical, '"', "")
        case BaseType.BYTES:
            return pa.array(
                [None if v is None else '"' + base64.b64encode(v).decode("ascii") + '"' for v in physical.to_pylist()],
                pa.string(),
            )
    return None


def _struct_fragment(physical: pa.Array, fields: tuple[Field, ...]) -> pa.Array | None:
    """STRUCT values as JSON objects, every field written (null ones as ``null``)."""
    assert isinstance(physical, pa.StructArray)
    if not fields:
        return _keep_valid(physical, pa.array(["{}"] * len(physical), pa.string()))
    parts: list[pa.Array | pa.Scalar] = []
    # flatten() applies the struct's own nulls to its fields: no text for hidden values
    for i, (f, child) in enumerate(zip(fields, physical.flatten())):
        fragment = _fragment(child, f.type)
        if fragment is None:
            return None
        parts.append(_text(("{" if i == 0 else ",") + stdjson.dumps(f.name, ensure_ascii=False) + ":"))
        parts.append(pc.fill_null(fragment, "null"))
    parts.append(_text("}"))
    return _keep_valid(physical, pc.binary_join_element_wise(*parts, _text("")))


def _array_fragment(physical: pa.Array, element: sqltypes.SqlType) -> pa.Array | None:
    """ARRAY values as JSON arrays (null elements as ``null``)."""
    assert isinstance(physical, pa.ListArray)
    values = _fragment(physical.flatten(), element)
    if values is None:
        return None
    # flatten() drops the values of null lists: offsets counted from the lengths kept
    lengths = np.asarray(pc.fill_null(pc.list_value_length(physical), 0), dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)]), pa.int32())
    lists = pa.ListArray.from_arrays(offsets, pc.fill_null(values, "null"))
    joined = pc.binary_join_element_wise(_text("["), pc.binary_join(lists, ","), _text("]"), _text(""))
    return _keep_valid(physical, joined)


def _map_fragment(physical: pa.Array, key: sqltypes.SqlType, value: sqltypes.SqlType) -> pa.Array | None:
    """MAP values as JSON objects, entries in their order (null values as ``null``). Only
    STRING keys: JSON names are strings (the row-by-row writer refuses other keys too)."""
    assert isinstance(physical, pa.MapArray)
    if key.base is not BaseType.STRING:
        return None
    # as a list of entries, whose flatten() leaves out the entries of null maps: offsets are
    # counted from the lengths kept
    if physical.offset:  # (a slice: from_arrays takes a null mask only with offsets from 0)
        physical = pa.concat_arrays([physical])
    as_list = pa.ListArray.from_arrays(physical.offsets, physical.values, mask=physical.is_null())
    entries = as_list.flatten()
    names = _fragment(entries.field("key"), key)
    values = _fragment(entries.field("value"), value)
    if names is None or values is None:
        return None
    pairs = pc.binary_join_element_wise(names, pc.fill_null(values, "null"), _text(":"))
    lengths = np.asarray(pc.fill_null(pc.list_value_length(as_list), 0), dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)]), pa.int32())
    lists = pa.ListArray.from_arrays(offsets, pairs)
    joined = pc.binary_join_element_wise(_text("{"), pc.binary_join(lists, ","), _text("}"), _text(""))
    return _keep_valid(physical, joined)


def _keep_valid(physical: pa.Array, text: pa.Array) -> pa.Array:
    """``text`` where ``physical`` is not null, null elsewhere."""
    if physical.null_count == 0:
        return text
    return pc.if_else(physical.is_valid(), text, pa.nulls(len(physical), pa.string()))


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.string())


def _json_ready(column: pa.Array, t: sqltypes.SqlType) -> pa.Array | list[Any]:
    """A column as values orjson writes the way ksqlDB's JSON converter does: temporals as
    integers, BYTES as base64, non-finite doubles as the strings Jackson quotes them as."""
    physical = to_physical(column, t)
    match t.base:
        case BaseType.BYTES:
            return [None if v is None else base64.b64encode(v).decode("ascii") for v in physical.to_pylist()]
        case BaseType.DOUBLE if not pc.all(pc.fill_null(pc.is_finite(physical), True)).as_py():
            return [_double_json(v) for v in physical.to_pylist()]
    return physical


def _double_json(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return javatext.double_str(value)


def _json_default(value: object) -> object:
    match value:
        case decimal.Decimal():
            return orjson.Fragment(javatext.plain(value))
        case bytes():
            return base64.b64encode(value).decode("ascii")
    raise SerdeError(f"Cannot serialize value of type {type(value).__name__} as JSON")
