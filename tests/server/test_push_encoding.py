"""Rows a push query plan shares among its clients are encoded once per wire format."""

from __future__ import annotations

from ksqlpy.runtime.rows import Row
from ksqlpy.server.formats import DelimitedFormat, LegacyFormat
from ksqlpy.server.push import encode


def test_a_shared_row_is_encoded_once_per_format() -> None:
    row = Row(("k1", 7, None))
    first = encode(DelimitedFormat(), row)
    assert first == b'["k1",7,null]\n'
    assert encode(DelimitedFormat(), row) is first  # another client of the same plan
    assert encode(LegacyFormat(), row) == b',\n{"row":{"columns":["k1",7,null]}}'
    other = Row(("k2", 8, None))
    assert encode(DelimitedFormat(), other) == b'["k2",8,null]\n'
    assert encode(DelimitedFormat(), Row(("k1", 7, None), tombstone=True)) is None


def test_the_cache_stays_bounded_and_rows_past_it_encode_afresh() -> None:
    from ksqlpy.server import push

    first = Row(("first", 0, None))
    encoded_first = encode(DelimitedFormat(), first)
    rows = [Row((f"k{i}", i, None)) for i in range(3 * push.ENCODED_ROWS)]
    for row in rows:
        assert encode(DelimitedFormat(), row) == b'["%s",%d,null]\n' % (row.values[0].encode(), row.values[1])
    assert len(push._encoded) + len(push._encoded_before) <= 2 * push.ENCODED_ROWS
    assert encode(DelimitedFormat(), rows[-1]) is encode(DelimitedFormat(), rows[-1])  # still cached
    assert encode(DelimitedFormat(), first) == encoded_first  # long evicted: encoded again, the same


def test_a_shared_batch_is_joined_once_and_only_for_the_same_rows() -> None:
    from ksqlpy.server.push import encode_batch

    a, b, c = Row(("a", 1, None)), Row(("b", 2, None)), Row(("c", 3, None))
    tomb = Row(("b", 2, None), tombstone=True)
    body = encode_batch(DelimitedFormat(), [a, b, c])
    assert body == b'["a",1,null]\n["b",2,null]\n["c",3,null]\n'
    assert encode_batch(DelimitedFormat(), [a, b, c]) is body  # another client's drain of the batch
    # The same first row and length, other rows after it: joined afresh, never the cached body.
    assert encode_batch(DelimitedFormat(), [a, Row(("x", 9, None)), c]) == (
        b'["a",1,null]\n["x",9,null]\n["c",3,null]\n'
    )
    assert encode_batch(DelimitedFormat(), [a, tomb, c]) == b'["a",1,null]\n["c",3,null]\n'
