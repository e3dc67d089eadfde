"""TIMESTAMPTOSTRING and FORMAT_TIMESTAMP with a constant pattern and a fixed-offset zone format in
DuckDB (``strftime``) rather than row by row in Python: the text must be the row-wise formatter's
(``javafmt``, Java's ``DateTimeFormatter``) for every instant, including those outside the years
the DuckDB form covers, and NULLs."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from conftest import compile_call, evaluate, lit

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions import datetime as dtf
from ksqlpy.planner.functions import javafmt

S = st.STRING

PATTERNS = [
    "yyyy-MM-dd HH:mm:ss.SSS",
    "yyyy-MM-dd'T'HH:mm:ss.SSSX",
    "yyyy-MM-dd'T'HH:mm:ssXXX",
    "dd/MM/yy h:m:s a",
    "EEE, d MMM yyyy HH:mm:ss Z",
    "EEEE MMMM d, uuuu 'at' H 'o''clock' zzz",
    "D DDD LLL LLLL M d s SSSSSS SSSSSSSSS '100%'",
    "yyyyMMddHHmmssSSS xx xxx O",
    "'week' VV",
]
ZONES = ["UTC", "Z", "+05:30", "-08:00", "UTC+01:00", "GMT", "Etc/UTC"]

# epoch ms: near now, spread over centuries, before the epoch, and years the DuckDB form leaves
# to the row-wise formatter (before year 1, and 10000 on)
_MS = [0, -1, 1, 1_700_000_000_123, 946_684_799_999, -62_135_596_800_000, -62_135_596_800_001,
       253_402_300_799_999, 253_402_300_800_000, 300_000_000_000_000, -70_000_000_000_000]


def _instants(seed: int) -> list[int | None]:
    rnd = random.Random(seed)
    values: list[int | None] = list(_MS)
    values += [rnd.randint(-62_000_000_000_000, 253_000_000_000_000) for _ in range(150)]
    values += [rnd.randint(0, 2_000_000_000_000) for _ in range(150)]
    values.insert(5, None)
    return values


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("zone", ZONES)
def test_timestamptostring_in_duckdb_writes_what_the_row_wise_formatter_does(pattern: str, zone: str) -> None:
    sql, _, _ = compile_call("timestamptostring", [(st.BIGINT, [0]), lit(pattern, S), lit(zone, S)])
    assert "strftime" in sql.lower()  # the vector form was chosen
    values = _instants(hash((pattern, zone)) & 0xFFFF)
    got = evaluate("timestamptostring", [(st.BIGINT, values), lit(pattern, S), lit(zone, S)])
    compared = 0
    for v, text in zip(values, got, strict=True):
        try:
            want = None if v is None else dtf._millis_to_string(v, pattern, zone)
        except OverflowError:
            # Python's datetime cannot hold the instant in UTC (year 10000 on) though its local
            # time is within year 9999 here: the row-wise formatter gives NULL, Java the text
            continue
        except javafmt.PatternError:
            want = None
        assert text == want, v
        compared += 1
    assert compared >= len(values) - 5  # the few instants Python cannot hold


def test_format_timestamp_in_duckdb_writes_what_the_row_wise_formatter_does() -> None:
    values = [dt.datetime(2018, 5, 11, 21, 58, 33, 123000), dt.datetime(100, 3, 1, 5, 6, 7), None,
              dt.datetime(1969, 12, 31, 23, 59, 59, 999000), dt.datetime(9999, 12, 31, 12, 0)]
    for pattern in PATTERNS:
        for args in ([lit(pattern, S)], [lit(pattern, S), lit("+05:30", S)]):
            sql, _, _ = compile_call("format_timestamp", [(st.TIMESTAMP, [values[0]]), *args])
            assert "strftime" in sql.lower()
            got = evaluate("format_timestamp", [(st.TIMESTAMP, values), *args])
            zone = "UTC" if len(args) == 1 else "+05:30"
            assert got == [None if v is None else dtf._format_timestamp(v, pattern, zone) for v in values]


@pytest.mark.parametrize(
    ("pattern", "zone"),
    [
        ("yyyy-MM-dd HH:mm", "America/Los_Angeles"),  # offsets change: row by row
        ("YYYY-ww", "UTC"),  # week-based fields have no strftime form
        ("yyyy-MM-dd[ HH:mm]", "UTC"),  # optional sections
        ("y-M-d", "UTC"),  # Java pads nothing, strftime's %Y would pad to 4
        ("yyyy-MM-dd HH:mm", "Mars/Olympus"),  # unknown zone: NULL, as ksqlDB gives
    ],
)
def test_patterns_and_zones_without_a_duckdb_form_stay_row_wise(pattern: str, zone: str) -> None:
    sql, _, _ = compile_call("timestamptostring", [(st.BIGINT, [0]), lit(pattern, S), lit(zone, S)])
    assert "strftime" not in sql.lower()
    values = [1_700_000_000_123, 17, None]
    got = evaluate("timestamptostring", [(st.BIGINT, values), lit(pattern, S), lit(zone, S)])
    want = []
    for v in values:
        try:
            want.append(None if v is None else dtf._millis_to_string(v, pattern, zone))
        except javafmt.PatternError:
            want.append(None)
    assert got == want


def test_a_pattern_from_a_column_stays_row_wise() -> None:
    got = evaluate("timestamptostring", [(st.BIGINT, [0, 86_400_000]), (S, ["yyyy", "MM-dd"])])
    assert got == ["1970", "01-02"]
