"""Kafka's default partitioner: the vectorized murmur2 agrees with Java's ``Utils.murmur2``."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from ksqlpy.runtime.store.partitioner import (
    murmur2,
    murmur2_bytes,
    partition_for_key,
    partitions_for_keys,
)

#: From Kafka's ``UtilsTest.testMurmur2`` and other Java-compatible clients' suites.
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"": 275646681,
    b"1": -1993445489,
    b"12": 126087238,
    b"123": -267702483,
    b"1234": -1614185708,
    b"12345": -1188365604,
}


def test_scalar_reference_matches_java() -> None:
    assert {k: murmur2_bytes(k) for k in JAVA_VECTORS} == JAVA_VECTORS


def test_vectorized_matches_java() -> None:
    keys = pa.array(list(JAVA_VECTORS), pa.binary())
    assert murmur2(keys).tolist() == list(JAVA_VECTORS.values())


def test_partition_is_to_positive_mod() -> None:
    # toPositive(-790332482) = 1357151166; 1357151166 % 50 = 16 (as Java computes it).
    assert partition_for_key(b"foobar", 50) == (-790332482 & 0x7FFFFFFF) % 50 == 16


@given(st.lists(st.one_of(st.none(), st.binary(max_size=40)), max_size=60), st.integers(0, 5))
def test_vectorized_matches_scalar_on_sliced_arrays(keys: list[bytes | None], cut: int) -> None:
    array = pa.array(keys, pa.binary()).slice(min(cut, len(keys)))
    expected = [murmur2_bytes(k or b"") for k in keys[min(cut, len(keys)) :]]
    assert murmur2(array).tolist() == expected


def test_keyed_records_use_murmur2_and_null_keys_spread() -> None:
    keys = pa.array([b"alice", None, b"bob", None, None, b"alice"], pa.binary())
    parts = partitions_for_keys(keys, 4, null_start=1).to_pylist()
    assert parts[0] == parts[5] == partition_for_key(b"alice", 4)
    assert parts[2] == partition_for_key(b"bob", 4)
    assert [parts[1], parts[3], parts[4]] == [1, 2, 3]
