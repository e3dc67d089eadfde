"""Windowed keys: Kafka Streams' time and session window layouts."""

from __future__ import annotations

import struct

import pyarrow as pa
import pytest

from ksqlpy.errors import SerdeError
from ksqlpy.runtime.serde import WindowKind, join_windowed_keys, split_windowed_keys


def test_time_window_layout() -> None:
    inner = pa.array([b"\x00\x00\x00\x07", b"", None], pa.binary())
    joined = join_windowed_keys(inner, pa.array([1000, 2000, 0]), None, WindowKind.TUMBLING)
    assert joined.to_pylist() == [b"\x00\x00\x00\x07" + struct.pack(">q", 1000), struct.pack(">q", 2000), None]
    keys = split_windowed_keys(joined, WindowKind.TUMBLING, size_ms=500)
    assert keys.inner.to_pylist() == [b"\x00\x00\x00\x07", b"", None]
    assert keys.start.to_pylist() == [1000, 2000, None]
    assert keys.end.to_pylist() == [1500, 2500, None]


def test_session_window_layout_is_end_then_start() -> None:
    joined = join_windowed_keys(pa.array([b'"k"'], pa.binary()), pa.array([10]), pa.array([20]), WindowKind.SESSION)
    assert joined.to_pylist() == [b'"k"' + struct.pack(">q", 20) + struct.pack(">q", 10)]
    keys = split_windowed_keys(joined, WindowKind.SESSION)
    assert (keys.inner.to_pylist(), keys.start.to_pylist(), keys.end.to_pylist()) == ([b'"k"'], [10], [20])


def test_short_key_is_rejected() -> None:
    with pytest.raises(SerdeError):
        split_windowed_keys(pa.array([b"\x01\x02"], pa.binary()), WindowKind.HOPPING, size_ms=1)
