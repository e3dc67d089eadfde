"""Keys of windowed tables, laid out as Kafka Streams' windowed serdes do.

* Time windows (TUMBLING, HOPPING): the inner key's bytes, then the window start as an 8-byte
  big-endian epoch-millisecond long (``WindowKeySchema.toBinary``). The end is not stored;
  readers add the window size.
* Session windows: the inner key's bytes, then the window end, then the window start, each an
  8-byte big-endian long (``SessionKeySchema.toBinary``).

The inner key is encoded by the key's own format; these helpers only add and strip the window
suffix, column-wise with numpy over the Arrow buffers. A null inner key stays a null record.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.errors import SerdeError
from ksqlpy.runtime.serde.base import combine

_LONG = 8


class WindowKind(enum.Enum):
    TUMBLING = "TUMBLING"
    HOPPING = "HOPPING"
    SESSION = "SESSION"

    @property
    def suffix_size(self) -> int:
        return 2 * _LONG if self is WindowKind.SESSION else _LONG


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowedKeys:
    """Windowed key records split into the inner key bytes and the window bounds (int64 epoch
    millis; null where the record was null)."""

    inner: pa.BinaryArray
    start: pa.Int64Array
    end: pa.Int64Array


def split_windowed_keys(
    data: pa.Array | pa.ChunkedArray, kind: WindowKind, *, size_ms: int | None = None
) -> WindowedKeys:
    """Strip the window suffix. Time windows need ``size_ms`` to compute the end.

    Raises :class:`SerdeError` when a record is shorter than its window suffix.
    """
    data = combine(data).cast(pa.binary())
    rows = len(data)
    valid = np.asarray(pc.is_valid(data), dtype=bool)
    offsets = np.frombuffer(data.buffers()[1], dtype=np.int32)[data.offset : data.offset + rows + 1]
    lengths = np.diff(offsets)
    if np.any(valid & (lengths < kind.suffix_size)):
        row = int(np.flatnonzero(valid & (lengths < kind.suffix_size))[0])
        raise SerdeError(f"Windowed key at row {row} is shorter than its {kind.value} window suffix")
    buffer = data.buffers()[2]
    raw = np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.zeros(0, np.uint8)
    ends_at = offsets[1:]
    inner_len = np.where(valid, lengths - kind.suffix_size, 0)

    def long_at(position: np.ndarray) -> np.ndarray:
        picked = valid.nonzero()[0]
        out = np.zeros(rows, dtype=np.int64)
        if len(picked):
            cells = raw[position[picked][:, None] + np.arange(_LONG)]
            out[picked] = cells.reshape(-1).view(">i8")
        return out

    if kind is WindowKind.SESSION:
        end = long_at(ends_at - 2 * _LONG)
        start = long_at(ends_at - _LONG)
    else:
        if size_ms is None:
            raise SerdeError(f"A {kind.value} windowed key needs the window size")
        start = long_at(ends_at - _LONG)
        end = start + size_ms
    starts = offsets[:-1]
    inner = _slices(raw, starts, inner_len, valid)
    mask = ~valid
    start_arr = pa.array(start, pa.int64(), mask=mask)
    end_arr = pa.array(end, pa.int64(), mask=mask)
    assert isinstance(start_arr, pa.Int64Array) and isinstance(end_arr, pa.Int64Array)
    return WindowedKeys(inner=inner, start=start_arr, end=end_arr)


def join_windowed_keys(
    inner: pa.Array | pa.ChunkedArray,
    start: pa.Array | pa.ChunkedArray,
    end: pa.Array | pa.ChunkedArray | None,
    kind: WindowKind,
) -> pa.BinaryArray:
    """Append the window suffix to each inner key (``end`` is needed for session windows only).
    Rows whose inner key is null stay null."""
    inner = combine(inner).cast(pa.binary())
    rows = len(inner)
    start_np = np.asarray(pc.fill_null(combine(start).cast(pa.int64()), 0), dtype=np.int64)
    if kind is WindowKind.SESSION:
        if end is None:
            raise SerdeError("A SESSION windowed key needs the window end")
        end_np = np.asarray(pc.fill_null(combine(end).cast(pa.int64()), 0), dtype=np.int64)
        suffix = np.stack([end_np, start_np], axis=1).astype(">i8")
    else:
        suffix = start_np.astype(">i8")[:, None]
    # the suffixes as one fixed-size binary column, appended by Arrow's join (a null key stays null)
    suffixes = pa.Array.from_buffers(
        pa.binary(kind.suffix_size), rows, [None, pa.py_buffer(np.ascontiguousarray(suffix).tobytes())]
    )
    array = pc.binary_join_element_wise(inner, suffixes.cast(pa.binary()), pa.scalar(b"", pa.binary()))
    assert isinstance(array, pa.BinaryArray)
    return array


def _slices(raw: np.ndarray, starts: np.ndarray, lengths: np.ndarray, valid: np.ndarray) -> pa.BinaryArray:
    rows = len(starts)
    total = int(lengths.sum())
    out_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    out = np.zeros(total, dtype=np.uint8)
    if total:
        row_of_byte = np.repeat(np.arange(rows), lengths)
        within = np.arange(total) - np.repeat(out_offsets[:-1], lengths)
        out[:] = raw[starts[row_of_byte] + within]
    validity = None if valid.all() else pa.array(valid).buffers()[1]
    array = pa.Array.from_buffers(
        pa.binary(), rows, [validity, pa.py_buffer(out_offsets.tobytes()), pa.py_buffer(out.tobytes())]
    )
    assert isinstance(array, pa.BinaryArray)
    return array
