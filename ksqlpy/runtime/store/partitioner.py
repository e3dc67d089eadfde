"""Kafka's default partitioner: which partition a record key lands in.

Java's producer places a keyed record in ``Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions``;
ksqlDB relies on that placement (co-partitioned joins, pull queries by key), so both topic stores
use exactly this function. librdkafka's ``murmur2_random`` partitioner computes the same value for
non-null keys.

:func:`murmur2` hashes a whole Arrow array of keys at once with numpy: the keys are sorted by length so
that each 4-byte round of the hash is one vectorized step over a prefix of the keys. It runs per record
on every produce, so there is no per-key Python work. :func:`murmur2_bytes` is the scalar reference.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_SEED = 0x9747B28C
_M = np.uint32(0x5BD1E995)
_R = np.uint32(24)
_MASK32 = 0xFFFFFFFF

Int32s = npt.NDArray[np.int32]


def murmur2_bytes(data: bytes) -> int:
    """Java's ``Utils.murmur2`` of one byte string, as a signed 32-bit int (the reference)."""
    m = 0x5BD1E995
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    whole = length & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & _MASK32
        k ^= k >> 24
        k = (k * m) & _MASK32
        h = ((h * m) & _MASK32) ^ k
    tail = length - whole
    if tail:
        # Java's switch falls through: byte 2, then byte 1, then byte 0, then one multiply.
        for j in range(tail - 1, -1, -1):
            h ^= data[whole + j] << (8 * j)
        h = (h * m) & _MASK32
    h ^= h >> 13
    h = (h * m) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2(keys: pa.Array) -> Int32s:
    """Java's ``Utils.murmur2`` of every key of a binary (or string) Arrow array, as int32.

    Null keys hash like empty keys; callers that treat null keys differently mask them out.
    """
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if not pa.types.is_large_binary(keys.type):
        keys = keys.cast(pa.large_binary())
    n = len(keys)
    if n == 0:
        return np.empty(0, dtype=np.int32)
    buffers = keys.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[keys.offset : keys.offset + n + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    if keys.null_count:
        lengths = np.where(np.asarray(keys.is_null()), 0, lengths)
    h = (np.uint32(_SEED) ^ lengths.astype(np.uint32)).astype(np.uint32)

    words = lengths >> 2
    # Longest keys first: round i then touches the prefix of keys with more than i words.
    order = np.argsort(-words, kind="stable")
    sorted_words = words[order]
    sorted_starts = starts[order]
    hs = h[order]
    max_words = int(sorted_words[0])
    # active_ends[i] = how many keys have more than i words (a prefix, as they are sorted).
    active_ends = np.searchsorted(-sorted_words, -np.arange(max_words), side="left")
    for i in range(max_words):
        k_end = int(active_ends[i])
        pos = sorted_starts[:k_end] + 4 * i
        k = (
            data[pos].astype(np.uint32)
            | (data[pos + 1].astype(np.uint32) << np.uint32(8))
            | (data[pos + 2].astype(np.uint32) << np.uint32(16))
            | (data[pos + 3].astype(np.uint32) << np.uint32(24))
        )
        k *= _M
        k ^= k >> _R
        k *= _M
        head = hs[:k_end]
        head *= _M
        head ^= k
    h[order] = hs

    tail = lengths & 3
    tail_at = starts + (lengths & ~3)
    # Java's switch falls through from the highest tail byte down, then multiplies once.
    for byte, shift in ((2, 16), (1, 8), (0, 0)):
        sel = np.nonzero(tail > byte)[0]
        if len(sel):
            h[sel] ^= data[tail_at[sel] + byte].astype(np.uint32) << np.uint32(shift)
    sel = np.nonzero(tail)[0]
    h[sel] *= _M

    h ^= h >> np.uint32(13)
    h *= _M
    h ^= h >> np.uint32(15)
    return h.view(np.int32)


def partitions_for_keys(keys: pa.Array, num_partitions: int, null_start: int = 0) -> pa.Int32Array:
    """The default partition of each record: ``toPositive(murmur2(key)) % num_partitions`` for keyed
    records; records without a key are spread round-robin from ``null_start``."""
    hashed = (murmur2(keys).view(np.uint32) & np.uint32(0x7FFFFFFF)) % np.uint32(num_partitions)
    parts = hashed.astype(np.int32)
    if keys.null_count:
        nulls = np.asarray(pc.is_null(keys))
        spread = (null_start + np.arange(int(nulls.sum()), dtype=np.int64)) % num_partitions
        parts[nulls] = spread.astype(np.int32)
    return pa.array(parts, type=pa.int32())


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """The default partition of one keyed record (scalar form of :func:`partitions_for_keys`)."""
    return (murmur2_bytes(key) & 0x7FFFFFFF) % num_partitions


__all__ = ["murmur2", "murmur2_bytes", "partition_for_key", "partitions_for_keys"]
