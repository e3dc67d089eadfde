"""Sequential semantics: ksqlDB's rules per function, merges, undo flags, COUNT_DISTINCT's hash."""

from __future__ import annotations

import datetime
import decimal
import math
import random
from collections.abc import Sequence
from typing import Any

import pytest
from harness import same, stored
from hypothesis import given, reject, settings
from hypothesis import strategies as hs
from strategies import small_values, values

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError, ExecutionError
from ksqlpy.planner.functions.aggregate import Accumulator, AggregateArg
from ksqlpy.planner.functions.aggregates import COLLECT_LIST_LIMIT, resolve, udafs
from ksqlpy.planner.functions.aggregates.distinct import WORDS, murmur_bytes
from ksqlpy.runtime.store.partitioner import murmur2_bytes


def call(
    name: str, *types: st.SqlType, literals: Sequence[Any] = (), config: dict[str, Any] | None = None
) -> Accumulator:
    args = [AggregateArg(t) for t in types] + [
        AggregateArg(st.BOOLEAN if isinstance(v, bool) else st.INTEGER, constant=v) for v in literals
    ]
    return resolve(name, args, config=config)


def fold(acc: Accumulator, rows: Sequence[Any], state: Any = None) -> Any:
    state = acc.initial() if state is None else state
    for r in rows:
        state = acc.add(state, r if isinstance(r, tuple) else (r,))
    return state


# ksqlDB's TableUdaf implementations: exactly these aggregate tables
UNDOABLE = {
    "COUNT",
    "SUM",
    "AVG",
    "COLLECT_LIST",
    "HISTOGRAM",
    "ATTR",
    "SUM_LIST",
    "STDDEV_SAMP",
    "STDDEV_SAMPLE",
    "CORRELATION",
    "STDDEV_POP",
    "VAR_SAMP",
    "VAR_POP",
}


def _library_udafs() -> list[Any]:
    """ksqlpy's own UDAFs (the conformance runner's test UDAFs, once registered by an earlier
    test, are not ksqlDB's library)."""
    from ksqlpy.testing.test_udfs import registered_names

    test_only = set(registered_names())
    return [u for u in udafs() if u.name.upper() not in test_only]


def test_undo_support_matches_ksqldb_table_udafs() -> None:
    flagged = {u.name.upper() for u in _library_udafs() if u.table_udaf}
    assert flagged == UNDOABLE
    for u in _library_udafs():
        for sig in u.signatures:
            first = sig.parsed[0].type
            t = (
                st.Array(st.DOUBLE)
                if "ARRAY" in str(first)
                else (st.STRING if u.name.upper() == "HISTOGRAM" else st.DOUBLE)
            )
            types = [t] * (len(sig.parsed) - sig.literals)
            if "otherCols" in sig.params:
                types = types[:1]
            literals = [
                2 if "INT" in str(p.type) else True for p in sig.parsed[len(sig.parsed) - sig.literals :]
            ]
            acc = call(u.name, *types, literals=literals)
            assert acc.supports_undo is u.table_udaf, acc


# --------------------------------------------------------------------------------------------
# merge: folding two halves and merging equals folding everything (where ksqlDB's merge is exact)

MERGEABLE = [
    ("COUNT", st.STRING, ()),
    ("SUM", st.BIGINT, ()),
    ("SUM", st.Decimal(12, 2), ()),
    ("MIN", st.STRING, ()),
    ("MAX", st.BYTES, ()),
    ("MAX", st.DOUBLE, ()),
    ("COLLECT_LIST", st.INTEGER, ()),
    ("COLLECT_SET", st.STRING, ()),
    ("HISTOGRAM", st.STRING, ()),
    ("ATTR", st.INTEGER, ()),
    ("TOPK", st.INTEGER, (3,)),
    ("TOPKDISTINCT", st.STRING, (2,)),
    ("TOPKDISTINCT", st.BYTES, (2,)),
    ("COUNT_DISTINCT", st.BIGINT, ()),
]


@pytest.mark.parametrize(("name", "t", "literals"), MERGEABLE, ids=lambda v: str(v))
@settings(max_examples=30, deadline=None)
@given(data=hs.data())
def test_merge_equals_folding_the_union(
    name: str, t: st.SqlType, literals: tuple[Any, ...], data: hs.DataObject
) -> None:
    acc = call(name, t, literals=literals, config={COLLECT_LIST_LIMIT: 5})
    xs = data.draw(hs.lists(hs.none() | small_values(t), max_size=8))
    ys = data.draw(hs.lists(hs.none() | small_values(t), max_size=8))
    try:
        merged = acc.merge(fold(acc, xs), fold(acc, ys))
        whole = fold(acc, xs + ys)
    except ExecutionError:
        reject()  # the DECIMAL sum overflowed, which other tests cover
    if name == "HISTOGRAM":  # a map: entry order carries no meaning
        merged, whole = sorted(merged), sorted(whole)
    if name == "TOPK":  # merge keeps ties from both sides; equal values are interchangeable
        merged, whole = sorted(merged), sorted(whole)
    assert same(acc.result(merged), acc.result(whole))


@pytest.mark.parametrize(("name", "t", "literals"), MERGEABLE, ids=lambda v: str(v))
@settings(max_examples=15, deadline=None)
@given(data=hs.data())
def test_states_round_trip_through_duckdb(
    name: str, t: st.SqlType, literals: tuple[Any, ...], data: hs.DataObject
) -> None:
    acc = call(name, t, literals=literals)
    try:
        state = fold(acc, data.draw(hs.lists(hs.none() | values(t), max_size=6)))
    except ExecutionError:
        reject()  # the DECIMAL sum overflowed
    assert same(stored(acc, state), state)


# --------------------------------------------------------------------------------------------
# per-function rules


def test_collect_list_keeps_nulls_up_to_the_configured_limit() -> None:
    acc = call("COLLECT_LIST", st.INTEGER, config={COLLECT_LIST_LIMIT: 3})
    state = fold(acc, [1, None, 2, 3, 4])
    assert acc.result(state) == [1, None, 2]
    assert acc.result(acc.undo(state, (1,))) == [None, 2]
    assert acc.result(acc.undo(state, (4,))) == [1, None, 2]  # never added: over the limit
    default = call("COLLECT_LIST", st.INTEGER)
    assert len(fold(default, range(1005))) == 1000
    unlimited = call("COLLECT_LIST", st.INTEGER, config={COLLECT_LIST_LIMIT: -1})
    assert len(fold(unlimited, range(1005))) == 1005


def test_collect_set_keeps_first_arrivals() -> None:
    acc = call("COLLECT_SET", st.STRING)
    assert acc.result(fold(acc, ["b", "a", "b", None, None, "c"])) == ["b", "a", None, "c"]
    assert not acc.supports_undo


def test_topk_with_other_columns_keeps_earlier_ties() -> None:
    acc = call("TOPK", st.INTEGER, st.STRING, literals=(3,))
    assert acc.column_args == (0, 1)
    element = acc.return_type
    assert isinstance(element, st.Array) and isinstance(element.element, st.Struct)
    assert [f.name for f in element.element.fields] == ["sort_col", "col0"]
    state = fold(acc, [(0, "zero"), (100, "one"), (99, "two"), (None, "x"), (100, None)])
    assert acc.result(state) == [
        {"sort_col": 100, "col0": "one"},
        {"sort_col": 100, "col0": None},
        {"sort_col": 99, "col0": "two"},
    ]
    assert acc.result(acc.add(state, (99, "late"))) == acc.result(state)


def test_topkdistinct_and_topk_reject_non_literal_k() -> None:
    with pytest.raises(AnalysisError, match="Parameter 2 passed to function TOPK must be a literal constant"):
        resolve("TOPK", [AggregateArg(st.INTEGER), AggregateArg(st.INTEGER)])
    acc = call("TOPKDISTINCT", st.Decimal(2, 1), literals=(2,))
    d = decimal.Decimal
    assert acc.result(fold(acc, [d("9.8"), d("8.9"), d("9.8"), d("7.8"), d("9.9")])) == [d("9.9"), d("9.8")]


def test_topk_is_limited_to_ksqldb_types() -> None:
    with pytest.raises(AnalysisError, match="Function 'TOPK' does not accept parameters"):
        call("TOPK", st.DATE, literals=(2,))
    assert call("TOPKDISTINCT", st.DATE, literals=(2,)).return_type == st.Array(st.DATE)


def test_histogram_counts_and_undoes() -> None:
    acc = call("HISTOGRAM", st.STRING)
    state = fold(acc, ["foo", "bar", "foo", None])
    assert dict(acc.result(state)) == {"foo": 2, "bar": 1}
    state = acc.undo(acc.undo(state, ("bar",)), ("foo",))
    assert dict(acc.result(state)) == {"foo": 1}
    assert acc.state_type == st.Map(st.STRING, st.BIGINT)


def test_attr_is_null_once_two_values_are_present() -> None:
    acc = call("ATTR", st.STRING)
    one = fold(acc, ["1", "1"])
    assert acc.result(one) == "1"
    two = acc.add(one, ("2",))
    assert acc.result(two) is None
    assert acc.result(acc.undo(acc.undo(two, ("1",)), ("1",))) == "2"
    assert acc.result(fold(acc, [None])) is None


@pytest.mark.parametrize(
    ("literals", "rows", "expected"),
    [
        ((), [12, None, 13], [12, 12, 13]),
        ((False,), [12, None, 13], [12, None, 13]),
        ((2,), [12, None, 13], [[12], [12], [12, 13]]),
        ((2, False), [12, None, 13], [[12], [12, None], [None, 13]]),
    ],
)
def test_latest_by_offset_forms(literals: tuple[Any, ...], rows: list[Any], expected: list[Any]) -> None:
    acc = call("LATEST_BY_OFFSET", st.INTEGER, literals=literals)
    state = acc.initial()
    results = []
    for r in rows:
        state = acc.add(state, (r,))
        results.append(acc.result(state))
    assert results == expected


def test_offset_sessions_merge_in_window_order() -> None:
    latest = call("LATEST_BY_OFFSET", st.INTEGER)
    earliest = call("EARLIEST_BY_OFFSET", st.INTEGER)
    for acc, want in ((latest, 3), (earliest, 1)):
        a, b = fold(acc, [1]), fold(acc, [3])
        merged = acc.merge(acc.merge(acc.initial(), a), b)
        assert acc.result(merged) == want
    # an ignored NULL in the later window does not hide the earlier value
    assert latest.result(latest.merge(fold(latest, [1]), fold(latest, [None]))) == 1
    many = call("EARLIEST_BY_OFFSET", st.INTEGER, literals=(2, False))
    merged = many.merge(fold(many, [None]), fold(many, [1]))
    assert many.result(merged) == [None, 1]
    assert [e["SEQ"] for e in merged] == [1, 2]


def test_offset_n_must_be_positive() -> None:
    with pytest.raises(AnalysisError, match="latestN must be 1 or greater"):
        call("LATEST_BY_OFFSET", st.INTEGER, literals=(0,))
    with pytest.raises(AnalysisError, match="earliestN must be 1 or greater"):
        call("EARLIEST_BY_OFFSET", st.INTEGER, literals=(-1, True))


def test_stddev_samp_is_ksqldbs_sample_variance_and_stddev_sample_its_root() -> None:
    samp = call("STDDEV_SAMP", st.INTEGER)
    sample = call("STDDEV_SAMPLE", st.INTEGER)
    rows = [10, 20, 30, 40]
    assert samp.result(fold(samp, rows)) == pytest.approx(166.66666666666666)
    assert sample.result(fold(sample, rows)) == pytest.approx(166.66666666666666**0.5)
    assert samp.result(fold(samp, [5])) == 0.0
    state = fold(samp, rows)
    assert samp.result(samp.undo(state, (40,))) == pytest.approx(100.0)
    pop = call("VAR_POP", st.DOUBLE)
    assert pop.result(fold(pop, [1.0, 3.0])) == pytest.approx(1.0)


def test_correlation_of_a_line_and_of_nothing() -> None:
    acc = call("CORRELATION", st.INTEGER, st.INTEGER)
    assert acc.result(fold(acc, [(1, 2), (2, 4), (3, 6), (None, 1)])) == pytest.approx(1.0)
    assert math.isnan(acc.result(acc.initial()))  # 0 / 0, as Java computes it


def test_sum_list_skips_null_elements() -> None:
    acc = call("SUM_LIST", st.Array(st.INTEGER))
    assert acc.result(fold(acc, [[1, None, 2], None, [3]])) == 6
    with pytest.raises(AnalysisError, match="does not accept parameters"):
        call("SUM_LIST", st.Array(st.STRING))


# --------------------------------------------------------------------------------------------
# COUNT_DISTINCT


@given(
    data=hs.binary(max_size=24).filter(
        lambda b: len(b) % 4 in (0, 1) and all(x < 0x80 for x in b[len(b) & ~3 :])
    )
)
def test_murmur_matches_kafkas_murmur2_for_the_same_seed(data: bytes) -> None:
    # stream-lib and Kafka share MurmurHash 2's body; stream-lib's tail reads its last 2 or 3 bytes
    # in reverse and sign-extends them, so only whole blocks and one-byte ASCII tails agree
    assert murmur_bytes(data, seed=0x9747B28C) == murmur2_bytes(data) & 0xFFFFFFFF


def test_murmur_tail_follows_stream_lib() -> None:
    # two tail bytes: h ^= data[len - 2] << 8; h ^= data[len - 1] (sign-extended)
    assert murmur_bytes(b"\x00\x01") != murmur_bytes(b"\x01\x00")
    assert murmur_bytes(b"\xff") != murmur_bytes(b"\x7f")


@settings(max_examples=30, deadline=None)
@given(xs=hs.lists(hs.integers(-(2**40), 2**40), max_size=40))
def test_count_distinct_counts_small_sets_and_ignores_repeats(xs: list[int]) -> None:
    acc = call("COUNT_DISTINCT", st.BIGINT)
    state = fold(acc, xs)
    assert len(state) == WORDS
    assert fold(acc, xs, state) == state  # adding the same values again changes nothing
    distinct = len(set(xs))
    assert abs(acc.result(state) - distinct) <= max(1, distinct // 50)


def test_count_distinct_hashes_each_type() -> None:
    for t, vs in (
        (st.STRING, ["a", "b", "a"]),
        (st.DOUBLE, [1.5, 2.5, 1.5]),
        (st.DATE, [datetime.date(2020, 1, 1), datetime.date(2020, 1, 2), datetime.date(2020, 1, 1)]),
        (st.Decimal(4, 1), [decimal.Decimal("1.0"), decimal.Decimal("2.0"), decimal.Decimal("1.0")]),
    ):
        acc = call("COUNT_DISTINCT", t)
        assert acc.result(fold(acc, vs + [None])) == 2


@pytest.mark.parametrize("seed", range(40))
def test_count_distinct_estimates_from_the_registers_of_its_state(seed: int) -> None:
    # stream-lib's HyperLogLog.cardinality(), register by register: the harmonic mean of
    # 2^-register, or linear counting over the empty registers while the estimate is small
    rng = random.Random(seed)
    m = 16384
    empty = rng.choice([0.0, 0.001, 0.3, 0.9, 1.0])
    registers = [0 if rng.random() < empty else rng.choice([1, 2, 3, rng.randrange(1, 32)]) for _ in range(m)]
    words = [0] * WORDS
    for j, r in enumerate(registers):
        words[j // 6] |= r << (5 * (j % 6))
    state = [w - (1 << 32) if w & 0x80000000 else w for w in words]
    alpha_mm = (0.7213 / (1 + 1.079 / m)) * m * m
    estimate = alpha_mm / math.fsum(2.0**-r for r in registers)
    zeros = registers.count(0)
    if estimate <= 2.5 * m:
        estimate = m * math.log(m / zeros) if zeros else math.inf
    expected = 2**63 - 1 if math.isinf(estimate) else math.floor(estimate + 0.5)
    assert call("COUNT_DISTINCT", st.STRING).result(state) == expected
