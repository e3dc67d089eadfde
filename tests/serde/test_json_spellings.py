"""JSON field names in any case on the columnar path: same answers as the exact path, without it.

ksqlDB matches a column to a JSON key by exact name first, then case-insensitively (the last such
key wins), at every level of nesting. The columnar decoder must give the per-record decoder's
answer for any mix of spellings, and keep records off the per-record path unless they need it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from ksqlpy import sqltypes as st
from ksqlpy.runtime.serde.base import build_column
from ksqlpy.runtime.serde.json import JsonDeserializer
from ksqlpy.runtime.serde.jsonkeys import ASCII_UPPERING

GEO = st.Struct((st.Field("LAT", st.DOUBLE), st.Field("LON", st.DOUBLE)))
ADDRESS = st.Struct((st.Field("CITY", st.STRING), st.Field("ZIP", st.INTEGER), st.Field("GEO", GEO)))
TAG = st.Struct((st.Field("K", st.STRING), st.Field("V", st.BIGINT)))
COLUMNS = [
    st.Field("ID", st.BIGINT),
    st.Field("NAME", st.STRING),
    st.Field("SCORE", st.DOUBLE),
    st.Field("OK", st.BOOLEAN),
    st.Field("Quoted", st.STRING),  # has lower-case letters: matches its exact spelling only
    st.Field("ADDRESS", ADDRESS),
    st.Field("TAGS", st.Array(TAG)),
]


class CountingDeserializer(JsonDeserializer):
    """A JSON deserializer that counts the records it decodes one by one."""

    def __init__(self, columns: list[st.Field]) -> None:
        super().__init__(columns, is_key=False, wrapped=True)
        self.exact_rows: list[int] = []

    def _slow_decode(self, data: pa.Array, rows: list[int], topic: str) -> Any:
        self.exact_rows.extend(rows)
        return super()._slow_decode(data, rows, topic)


def assert_paths_agree(
    columns: list[st.Field], records: list[bytes | None], de: CountingDeserializer | None = None
) -> CountingDeserializer:
    """Decode ``records`` as one batch (with ``de``, which may have decoded batches before) and
    each record on the exact path: same rows, presence and errors. Returns the deserializer,
    which says which records took the exact path."""
    de = de or CountingDeserializer(columns)
    batch = de.decode(pa.array(records, pa.binary()), topic="t")
    rows = [i for i, r in enumerate(records) if r is not None]  # null records are tombstones
    exact_columns, exact_present, exact_errors = JsonDeserializer(columns, is_key=False, wrapped=True)._slow_decode(
        pa.array(records, pa.binary()), rows, "t"
    )
    present = [False] * len(records)
    for row, p in zip(rows, exact_present):
        present[row] = p
    assert batch.present.to_pylist() == present
    assert [(e.row, e.message) for e in batch.errors] == [(e.row, e.message) for e in exact_errors]
    for i, c in enumerate(columns):
        expected: list[Any] = [None] * len(records)
        for row, value in zip(rows, build_column(exact_columns[i], c.type).to_pylist()):
            expected[row] = value
        assert batch.table.column(i).combine_chunks().to_pylist() == expected, c.name
    return de


# -- table-driven cases ------------------------------------------------------------------------


def test_lower_camel_and_mixed_spellings_stay_on_the_columnar_path() -> None:
    cols = [st.Field("USERID", st.STRING), st.Field("PAGEID", st.STRING), st.Field("DURATION", st.INTEGER)]
    records: list[bytes | None] = []
    for i in range(300):
        spelling = [("userid", "pageid", "duration"), ("userId", "pageId", "Duration"),
                    ("USERID", "PAGEID", "DURATION")][i % 3 if i >= 100 else 0]
        records.append(json.dumps(dict(zip(spelling, [f"u{i}", f"p{i}", i]))).encode())
    de = assert_paths_agree(cols, records)
    assert de.exact_rows == []
    out = de.decode(pa.array(records, pa.binary()))
    assert out.table.slice(100, 2).to_pylist() == [
        {"USERID": "u100", "PAGEID": "p100", "DURATION": 100},
        {"USERID": "u101", "PAGEID": "p101", "DURATION": 101},
    ]


def test_nested_struct_fields_in_any_case_stay_on_the_columnar_path() -> None:
    records: list[bytes | None] = [
        (
            b'{"id":1,"address":{"city":"Oslo","zip":150,"geo":{"lat":59.9,"lon":10.7}},'
            b'"tags":[{"k":"a","v":1},{"K":"b","V":2}]}'
        ),
        b'{"Id":2,"Address":{"City":"Rome","Zip":100,"Geo":null},"tags":[]}',
        b'{"ID":3,"ADDRESS":{"CITY":"Lima"},"TAGS":null,"name":"x"}',
    ]
    de = assert_paths_agree(COLUMNS, records)
    assert de.exact_rows == []
    row = de.decode(pa.array(records, pa.binary())).table.to_pylist()[0]
    assert row["ADDRESS"] == {"CITY": "Oslo", "ZIP": 150, "GEO": {"LAT": 59.9, "LON": 10.7}}
    assert row["TAGS"] == [{"K": "a", "V": 1}, {"K": "b", "V": 2}]


def test_other_keys_read_along_leave_no_spelling_unseen() -> None:
    # A producer's records hold a field that is no column's (the value repeats the key): once
    # its first batch was counted, the next ones read it too and need no counting of names. A
    # later batch that spells a name another way, or gives the other field another type, still
    # decodes as the exact path does.
    cols = [st.Field("VIEWTIME", st.BIGINT), st.Field("PAGEID", st.STRING), st.Field("DURATION", st.INTEGER)]

    def batch(user: Any, pageid: str = "pageid", every: int = 1) -> list[bytes | None]:
        return [
            json.dumps(
                {"viewtime": i, "userid": user(i), pageid if i % every == 0 else "pageid": f"p{i}", "duration": i}
            ).encode()
            for i in range(200)
        ]

    de = assert_paths_agree(cols, batch(lambda i: f"u{i}"))
    assert de._others == {"userid": pa.string()}
    assert_paths_agree(cols, batch(lambda i: f"u{i}"), de)
    mixed = batch(lambda i: f"u{i}", pageid="PageId", every=7)
    mixed[3] = b'{"viewtime":3,"userid":"u3","pageid":"a","PAGEid":"b","duration":3}'  # the last variant wins
    assert_paths_agree(cols, mixed, de)
    assert de.decode(pa.array(mixed, pa.binary())).table.column("PAGEID").to_pylist()[3] == "b"
    assert_paths_agree(cols, batch(lambda i: i if i % 2 else None), de)  # numbers and nulls
    assert_paths_agree(cols, batch(lambda i: {"id": i}), de)  # objects
    assert de.exact_rows == [3, 3]  # the record with two spellings, each time it was decoded


def test_a_name_spelled_twice_in_one_record_follows_ksqldb() -> None:
    cols = [st.Field("FOO", st.INTEGER), st.Field("BAR", st.INTEGER)]
    records: list[bytes | None] = [b'{"foo":%d,"bar":0}' % i for i in range(50)]
    records[10] = b'{"foo":1,"FOO":2,"bar":0}'  # the exact spelling wins
    records[20] = b'{"FOO":null,"foo":3,"bar":0}'  # even when null
    records[30] = b'{"foo":4,"Foo":5,"bar":0}'  # otherwise the last variant
    records[40] = b'{"bar":0,"S":{"foo":6}}'  # a key of another object is not the column's
    de = assert_paths_agree(cols, records)
    out = de.decode(pa.array(records, pa.binary())).table.column("FOO").to_pylist()
    assert [out[10], out[20], out[30], out[40]] == [2, None, 5, None]
    assert set(de.exact_rows) <= {10, 20, 30, 40}  # the others stay columnar


def test_keys_written_with_escapes_or_letters_that_upper_case_to_ascii() -> None:
    cols = [st.Field("ID", st.INTEGER), st.Field("STRASSE", st.STRING)]
    records: list[bytes | None] = [b'{"id":%d,"strasse":"x"}' % i for i in range(20)]
    records[3] = b'{"\\u0069d":3,"strasse":"x"}'  # "id", written with an escape
    records[5] = '{"ıd":5,"straße":"y"}'.encode()  # "ıd".upper() == "ID", "straße".upper() == "STRASSE"
    records[7] = b'{"id":7,"note":"say \\"id\\": 1","strasse":"x"}'  # an escaped quote in a value
    records[9] = '{"id":9,"strasse":"Straße"}'.encode()  # in a value such a letter is harmless
    de = assert_paths_agree(cols, records)
    out = de.decode(pa.array(records, pa.binary())).table.to_pylist()
    assert out[3]["ID"] == 3 and out[5] == {"ID": 5, "STRASSE": "y"} and out[7]["ID"] == 7
    assert set(de.exact_rows) <= {3, 5, 7}


def test_non_ascii_column_names_match_in_any_case() -> None:
    cols = [st.Field("ÄPFEL", st.INTEGER), st.Field("ID", st.INTEGER)]
    records: list[bytes | None] = [b'{"id":%d}' % i for i in range(20)]
    records[2] = '{"äpfel":2,"id":2}'.encode()
    records[4] = '{"ÄPFEL":4,"äpfel":5,"id":4}'.encode()
    records[6] = b'{"\\u00e4pfel":6,"id":6}'
    records[8] = '{"id":8,"note":"é"}'.encode()
    de = assert_paths_agree(cols, records)
    out = de.decode(pa.array(records, pa.binary())).table.column("ÄPFEL").to_pylist()
    assert [out[2], out[4], out[6], out[8], out[9]] == [2, 4, 6, None, None]
    assert set(de.exact_rows) <= {2, 4, 6, 8}  # records without such bytes stay columnar


def test_a_malformed_record_is_an_error_and_the_others_decode() -> None:
    cols = [st.Field("ID", st.BIGINT), st.Field("NAME", st.STRING)]
    records: list[bytes | None] = [b'{"id":%d,"name":"n%d"}' % (i, i) for i in range(100)]
    records[42] = b'{"id":42,"name":'
    records[43] = None
    de = assert_paths_agree(cols, records)
    out = de.decode(pa.array(records, pa.binary()), topic="t")
    assert [e.row for e in out.errors] == [42]
    assert out.errors[0].message.startswith("Failed to deserialize value from topic: t. Invalid JSON")
    assert out.table.column("NAME").to_pylist()[41] == "n41" and out.table.column("ID").to_pylist()[99] == 99
    assert out.present.to_pylist()[41:45] == [True, False, False, True]


def test_the_letters_that_upper_case_to_ascii_are_all_known() -> None:
    found = {
        c
        for c in map(chr, range(0x80, sys.maxunicode + 1))
        if not 0xD800 <= ord(c) < 0xE000 and c.upper().isascii()
    }
    assert found == set(ASCII_UPPERING)


# -- property: any spelling, nesting, nulls, missing fields, wrong types -------------------------


def spellings(name: str) -> hs.SearchStrategy[str]:
    """``name`` in some case: as is, lower, capitalized, or (less often, as a batch using many
    spellings of one name takes the exact path) any per-letter mix."""
    mixed = hs.lists(hs.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda ups: "".join(c.upper() if up else c.lower() for c, up in zip(name, ups))
    )
    usual = hs.sampled_from([name, name.lower(), name.capitalize()])
    return hs.integers(0, 9).flatmap(lambda i: mixed if i == 0 else usual)


def key_text(key: str) -> hs.SearchStrategy[str]:
    """How a producer writes ``key``: plainly, mostly; now and then with a letter escaped."""
    escaped = f'"\\u{ord(key[0]):04x}' + json.dumps(key)[2:] if key else json.dumps(key)
    return hs.sampled_from([json.dumps(key)] * 40 + [escaped, json.dumps(key.replace("i", "ı"))])


def scalar(t: st.SqlType, dirty: bool) -> hs.SearchStrategy[Any]:
    """JSON values for ``t``: mostly of its type, some null, and in dirty batches some that need
    ksqlDB's coercions or fail them."""
    good: hs.SearchStrategy[Any]
    match t.base:
        case st.BaseType.BIGINT | st.BaseType.INTEGER:
            good = hs.integers(-(2**31), 2**31 - 1)
            wrong: hs.SearchStrategy[Any] = hs.sampled_from(["12", 1.5, True, "x"])
        case st.BaseType.DOUBLE:
            good = hs.floats(allow_nan=False, allow_infinity=False, width=32) | hs.integers(-1000, 1000)
            wrong = hs.sampled_from(["2.5", "x", False])
        case st.BaseType.BOOLEAN:
            good = hs.booleans()
            wrong = hs.sampled_from(["true", 1])
        case _:
            good = hs.text(alphabet='abcID "\\é:{}', max_size=6)
            wrong = hs.sampled_from([3, 2.5, True])
    return hs.one_of(good, good, good, good, good, good, hs.none(), *([wrong] if dirty else []))


@hs.composite
def json_value(draw: hs.DrawFn, t: st.SqlType, dirty: bool) -> str:
    match t:
        case st.Struct():
            return draw(json_object(t.fields, dirty))
        case st.Array(element=e):
            if draw(hs.integers(0, 5)) == 0:
                return "null"
            return "[" + ",".join(draw(hs.lists(json_value(e, dirty), max_size=3))) + "]"
    return json.dumps(draw(scalar(t, dirty)))


@hs.composite
def json_object(draw: hs.DrawFn, fields: tuple[st.Field, ...], dirty: bool) -> str:
    """An object for ``fields``: each present (in some spelling), missing or null; sometimes
    one spelled twice (the same way only in dirty batches: Arrow rejects that), sometimes with
    an extra field; in any order."""
    entries: list[str] = []
    for f in fields:
        presence = draw(hs.integers(0, 19))
        if presence == 0:
            continue
        keys = [draw(spellings(f.name))]
        if presence == 1:
            again = draw(spellings(f.name))
            if again != keys[0] or dirty:
                keys.append(again)
        for key in keys:
            value = "null" if presence == 2 else draw(json_value(f.type, dirty))
            entries.append(draw(key_text(key)) + ":" + value)
    if draw(hs.integers(0, 4)) == 0:
        entries.append('"extra":' + draw(hs.sampled_from(['"id"', "1", '{"id":2}', '"NAME"'])))
    entries = draw(hs.permutations(entries))
    return "{" + draw(hs.sampled_from([",", ", "])).join(entries) + "}"


@hs.composite
def batches(draw: hs.DrawFn) -> list[bytes | None]:
    """Records for :data:`COLUMNS`; a third of the batches dirty, with wrong types, keys
    spelled twice the same way, and records that are not objects or not JSON."""
    dirty = draw(hs.integers(0, 2)) == 0
    records: list[bytes | None] = [
        o.encode() for o in draw(hs.lists(json_object(tuple(COLUMNS), dirty), min_size=1, max_size=40))
    ]
    odd = [None, b"null"] + ([b'{"ID":', b"[1]", b'{"ID":1}{"ID":2}'] if dirty else [])
    for record in draw(hs.lists(hs.sampled_from(odd), max_size=3)):
        records.insert(draw(hs.integers(0, len(records))), record)
    return records


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_columnar_and_exact_paths_agree_on_any_spelling(records: list[bytes | None]) -> None:
    assert_paths_agree(COLUMNS, records)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.lists(batches(), min_size=2, max_size=4))
def test_columnar_and_exact_paths_agree_batch_after_batch(records: list[list[bytes | None]]) -> None:
    # One deserializer for all: what it learnt of the spellings and other keys of the batches
    # before must not change the answer for the next.
    de = CountingDeserializer(COLUMNS)
    for batch in records:
        assert_paths_agree(COLUMNS, batch, de)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.lists(spellings("USERID"), min_size=1, max_size=3), hs.lists(spellings("V"), min_size=1, max_size=2),
       hs.integers(1, 200))
def test_batches_of_consistent_spellings_never_take_the_exact_path(
    users: list[str], vs: list[str], n: int
) -> None:
    cols = [st.Field("USERID", st.STRING), st.Field("V", st.Struct((st.Field("V", st.INTEGER),)))]
    records: list[bytes | None] = [
        json.dumps({users[i % len(users)]: f"u{i}", vs[i % len(vs)]: {vs[(i + 1) % len(vs)]: i}}).encode()
        for i in range(n)
    ]
    de = assert_paths_agree(cols, records)
    assert de.exact_rows == []
