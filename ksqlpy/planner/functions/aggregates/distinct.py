"""COUNT_DISTINCT: ksqlDB's HyperLogLog estimate, register for register.

ksqlDB counts distinct values with stream-lib's ``HyperLogLog(log2m=14)``: 16384 registers of
5 bits packed six to a Java ``int`` (a state of 2731 INTs), each value hashed with 32-bit
MurmurHash 2 (``MurmurHash.hash(Object)``): INT and BIGINT through ``hashLong``, DOUBLE through its
raw bits, everything else through the UTF-8 bytes of its Java ``toString``. The estimate uses
linear counting for small cardinalities, so small counts are exact. Reproducing the hash and
the register layout keeps states interchangeable with the estimates ksqlDB would give.

Deviations: BYTES hash their contents (ksqlDB hashes ``ByteBuffer.toString()``, which only
depends on the length); ARRAY/MAP/STRUCT hash a JSON-like text rather than Java's ``toString``.
Not undoable; no vector form (the hash has no DuckDB equivalent).
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import struct
from typing import Any

import numpy as np

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.aggregates.accumulator import BaseAccumulator
from ksqlpy.planner.functions.aggregates.base import Resolved, Signature, Udaf, register

LOG2M = 14
M = 1 << LOG2M
REGISTERS_PER_WORD = 6
REGISTER_BITS = 5
WORDS = M // REGISTERS_PER_WORD + 1  # RegisterSet.getSizeForCount(16384) = 2731
_ALPHA_MM = (0.7213 / (1 + 1.079 / M)) * M * M
_MASK32 = 0xFFFFFFFF
_MURMUR_M = 0x5BD1E995


def _i32(x: int) -> int:
    x &= _MASK32
    return x - (1 << 32) if x & 0x80000000 else x


def _mul(a: int, b: int) -> int:
    return (a * b) & _MASK32


def murmur_bytes(data: bytes, seed: int = -1) -> int:
    """stream-lib's ``MurmurHash.hash(byte[], length, seed)`` (signed Java bytes), as unsigned 32 bits."""
    length = len(data)
    h = (seed ^ length) & _MASK32
    signed = [b - 256 if b > 127 else b for b in data]
    for i in range(length >> 2):
        k = signed[4 * i + 3]
        k = (k << 8) | (signed[4 * i + 2] & 0xFF)
        k = (k << 8) | (signed[4 * i + 1] & 0xFF)
        k = (k << 8) | (signed[4 * i] & 0xFF)
        k = _mul(k, _MURMUR_M)
        k ^= k >> 24
        k = _mul(k, _MURMUR_M)
        h = _mul(h, _MURMUR_M)
        h ^= k
    left = length & 3
    if left:
        if left >= 3:
            h ^= (signed[length - 3] << 16) & _MASK32
        if left >= 2:
            h ^= (signed[length - 2] << 8) & _MASK32
        h ^= signed[length - 1] & _MASK32
        h = _mul(h, _MURMUR_M)
    h ^= h >> 13
    h = _mul(h, _MURMUR_M)
    h ^= h >> 15
    return h & _MASK32


def murmur_long(data: int) -> int:
    """stream-lib's ``MurmurHash.hashLong``, as unsigned 32 bits."""
    k = _mul(data & _MASK32, _MURMUR_M)
    k ^= k >> 24
    h = _mul(k, _MURMUR_M)
    k = _mul((data >> 32) & _MASK32, _MURMUR_M)
    k ^= k >> 24
    h = _mul(h, _MURMUR_M)
    h ^= _mul(k, _MURMUR_M)
    h ^= h >> 13
    h = _mul(h, _MURMUR_M)
    h ^= h >> 15
    return h & _MASK32


def _java_text(value: Any) -> str:
    match value:
        case bool():
            return "true" if value else "false"
        case decimal.Decimal():
            return str(value)
        case datetime.datetime():
            # java.sql.Timestamp: fractional seconds without trailing zeros, at least one digit
            frac = f"{value.microsecond:06d}".rstrip("0") or "0"
            return value.strftime("%Y-%m-%d %H:%M:%S") + "." + frac
        case datetime.date():
            return value.isoformat()
        case datetime.time():
            return value.strftime("%H:%M:%S")
        case str():
            return value
    return json.dumps(value, default=str, separators=(", ", "="))


def hash_value(value: Any, t: st.SqlType) -> int:
    """``MurmurHash.hash(Object)`` for a value of SQL type ``t``."""
    match t.base:
        case st.BaseType.INTEGER | st.BaseType.BIGINT:
            return murmur_long(value)
        case st.BaseType.DOUBLE:
            return murmur_long(struct.unpack("<q", struct.pack("<d", value))[0])
        case st.BaseType.BYTES:
            return murmur_bytes(value)
    return murmur_bytes(_java_text(value).encode())


class CountDistinct(BaseAccumulator):
    def __init__(self, resolved: Resolved) -> None:
        self.t = resolved.column_type(0)
        super().__init__(name="COUNT_DISTINCT", return_type=st.BIGINT, state_type=st.Array(st.INTEGER))

    def initial(self) -> list[int]:
        return [0] * WORDS

    def add(self, state: list[int], args: tuple[Any, ...]) -> list[int]:
        return self._add(state, args, owned=False)

    def add_owned(self, state: list[int], args: tuple[Any, ...]) -> list[int]:
        return self._add(state, args, owned=True)

    def _add(self, state: list[int], args: tuple[Any, ...], *, owned: bool) -> list[int]:
        value = args[0]
        if value is None:
            return state
        h = hash_value(value, self.t)
        j = h >> (32 - LOG2M)
        w = ((h << LOG2M) | ((1 << (LOG2M - 1)) + 1)) & _MASK32
        r = (32 - w.bit_length()) + 1  # Integer.numberOfLeadingZeros(w) + 1
        bucket, slot = divmod(j, REGISTERS_PER_WORD)
        shift = REGISTER_BITS * slot
        current = (state[bucket] >> shift) & 0x1F
        if current >= r:
            return state
        out = state if owned else list(state)
        out[bucket] = _i32((state[bucket] & ~(0x1F << shift)) | (r << shift))
        return out

    def merge(self, a: list[int], b: list[int]) -> list[int]:
        regs = np.maximum(_registers(a), _registers(b))
        shifts = REGISTER_BITS * np.arange(REGISTERS_PER_WORD, dtype=np.int64)
        words = np.zeros(WORDS * REGISTERS_PER_WORD, dtype=np.int64)
        words[: len(regs)] = regs
        packed = (words.reshape(WORDS, REGISTERS_PER_WORD) << shifts).sum(axis=1)
        return [int(x) for x in packed]

    def result(self, state: list[int]) -> int:
        # Each word's six registers are two halves of three: their sums of 2^-register and their
        # empty registers are looked up per half (the last word's two registers past M are
        # always empty: 2^-0 each). Exact in any order: every partial sum fits a double.
        words = np.asarray(state, dtype=np.int64)
        low, high = words & _HALF_MASK, (words >> _HALF_BITS) & _HALF_MASK
        register_sum = float(_HALF_SUM[low].sum() + _HALF_SUM[high].sum()) - _PAST_M
        zeros = int(_HALF_ZEROS[low].sum() + _HALF_ZEROS[high].sum()) - _PAST_M
        estimate = _ALPHA_MM * (1 / register_sum)
        if estimate <= 2.5 * M:
            # linear counting: m * log(m / zeros), Infinity (Long.MAX_VALUE) with no empty register
            return _java_round(M * math.log(M / zeros) if zeros else math.inf)
        return _java_round(estimate)


#: three registers (15 bits) of a word: their sum of 2^-register and how many are empty
_HALF_BITS = 3 * REGISTER_BITS
_HALF_MASK = (1 << _HALF_BITS) - 1
_HALF_REGS = (np.arange(1 << _HALF_BITS)[:, None] >> (REGISTER_BITS * np.arange(3))) & 0x1F
_HALF_SUM = np.ldexp(1.0, -_HALF_REGS).sum(axis=1)
_HALF_ZEROS = (_HALF_REGS == 0).sum(axis=1)
#: registers of the last word past M (never set)
_PAST_M = WORDS * REGISTERS_PER_WORD - M


def _registers(state: list[int]) -> np.ndarray:
    words = np.asarray(state, dtype=np.int64)
    shifts = REGISTER_BITS * np.arange(REGISTERS_PER_WORD, dtype=np.int64)
    return ((words[:, None] >> shifts) & 0x1F).reshape(-1)[:M]


def _java_round(x: float) -> int:
    """``Math.round(double)``: floor(x + 0.5), saturating at Long's bounds."""
    if math.isinf(x):
        return 2**63 - 1 if x > 0 else -(2**63)
    return math.floor(x + 0.5)


register(
    Udaf(
        name="COUNT_DISTINCT",
        description="This function returns the number of items found in a group. The implementation is "
        "probabilistic with a typical accuracy (standard error) of less than 1%.",
        signatures=(Signature("val T", "BIGINT", CountDistinct, description="Count distinct"),),
    )
)
