"""Date/time functions through DuckDB; expected values from ksqlDB's QTT date/time cases."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import Unit, evaluate, lit

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions import javafmt

S, I = st.STRING, st.INTEGER


def test_timestamptostring_with_zone_names() -> None:
    assert evaluate("timestamptostring", [(st.BIGINT, [1526075913000]), lit("yyyy-MM-dd HH:mm:ss zzz", S),
                                          lit("America/Los_Angeles", S)]) == ["2018-05-11 14:58:33 PDT"]
    assert evaluate("format_timestamp", [(st.TIMESTAMP, [dt.datetime(2018, 5, 11, 21, 58, 33), None]),
                                         lit("yyyy-MM-dd HH:mm:ss zzz", S), lit("Europe/London", S)]) == [
        "2018-05-11 22:58:33 BST", None]


def test_parse_timestamp_and_stringtotimestamp() -> None:
    assert evaluate("parse_timestamp", [(S, ["2018-05-11T21:58:33"]), lit("yyyy-MM-dd'T'HH:mm:ss", S)]) == [
        dt.datetime(2018, 5, 11, 21, 58, 33)]
    assert evaluate("stringtotimestamp", [(S, ["2018-05-11T21:58:33Z", "not a timestamp"]),
                                          lit("yyyy-MM-dd'T'HH:mm:ssX", S)]) == [1526075913000, None]
    assert evaluate("stringtotimestamp", [(S, ["2018-05-11 14:58:33"]), lit("yyyy-MM-dd HH:mm:ss", S),
                                          lit("America/Los_Angeles", S)]) == [1526075913000]


def test_format_time_per_row_patterns() -> None:
    assert evaluate("format_time", [(st.TIME, [dt.time(0, 1, 5), dt.time(0, 20, 34, 567000), None]),
                                    (S, ["HH_mm_ss_SSS", "HHmmss'AAAAA'", "HH"])]) == [
        "00_01_05_000", "002034AAAAA", None]


def test_parse_date_follows_simpledateformat() -> None:
    texts = ["2018-05-11Lit", "11/05/2019", "01-Jan-2022", "01-01-1970", "2004", "2003-12-24-01-01"]
    patterns = ["yyyy-MM-dd'Lit'", "dd/MM/yyyy", "dd-MMM-yyyy", "dd-MM-yyyy", "yyyy-MM-dd", "yyyy-MM-dd"]
    assert evaluate("stringtodate", [(S, texts), (S, patterns)]) == [17662, 18027, 18993, 0, None, 12410]
    assert evaluate("parse_date", [(S, texts[:1]), (S, patterns[:1])]) == [dt.date(2018, 5, 11)]


def test_format_date_and_datetostring() -> None:
    days = [17662, 18027, 18993, 0]
    patterns = ["yyyy-MM-dd", "dd/MM/yyyy", "dd-MMM-yyyy", "dd-MM-yyyy"]
    expected = ["2018-05-11", "11/05/2019", "01-Jan-2022", "01-01-1970"]
    assert evaluate("datetostring", [(I, days), (S, patterns)]) == expected
    dates = [dt.date(1970, 1, 1) + dt.timedelta(days=d) for d in days]
    assert evaluate("format_date", [(st.DATE, dates), (S, patterns)]) == expected


def test_format_date_with_time_field_is_null() -> None:
    assert evaluate("format_date", [(st.DATE, [dt.date(2020, 1, 1)]), lit("HH", S)]) == [None]


def test_parse_time() -> None:
    assert evaluate("parse_time", [(S, ["10:11:12.345", "2020-01-01"]), (S, ["HH:mm:ss.SSS", "yyyy-MM-dd"])]) == [
        dt.time(10, 11, 12, 345000), None]


def test_convert_tz_by_offsets() -> None:
    ts = [dt.datetime(1970, 1, 1, 0, 0, 0, 100000), dt.datetime(2020, 5, 11, 21, 58, 33), None]
    result = evaluate("convert_tz", [(st.TIMESTAMP, ts), lit("+0200", S), lit("+0500", S)])
    assert result == [dt.datetime(1970, 1, 1, 3, 0, 0, 100000), dt.datetime(2020, 5, 12, 0, 58, 33), None]


def test_epoch_conversions() -> None:
    assert evaluate("unix_timestamp", [(st.TIMESTAMP, [dt.datetime(2018, 5, 11, 21, 58, 33)])]) == [1526075913000]
    assert evaluate("unix_date", [(st.DATE, [dt.date(2018, 5, 11)])]) == [17662]
    assert evaluate("from_unixtime", [(st.BIGINT, [1526075913000])]) == [dt.datetime(2018, 5, 11, 21, 58, 33)]
    assert evaluate("from_days", [(I, [17662])]) == [dt.date(2018, 5, 11)]
    assert evaluate("unix_date", [])[0] > 19000


def test_interval_arithmetic() -> None:
    ts = dt.datetime(2018, 5, 11)
    assert evaluate("timestampadd", [Unit("SECONDS"), (I, [5, None]), (st.TIMESTAMP, [ts, ts])]) == [
        dt.datetime(2018, 5, 11, 0, 0, 5), None]
    assert evaluate("timestampsub", [Unit("DAYS"), (I, [1]), (st.TIMESTAMP, [ts])]) == [dt.datetime(2018, 5, 10)]
    assert evaluate("dateadd", [Unit("DAYS"), (I, [3]), (st.DATE, [dt.date(2018, 5, 11)])]) == [dt.date(2018, 5, 14)]
    assert evaluate("datesub", [Unit("HOURS"), (I, [25]), (st.DATE, [dt.date(2018, 5, 11)])]) == [dt.date(2018, 5, 9)]
    assert evaluate("timeadd", [Unit("HOURS"), (I, [3]), (st.TIME, [dt.time(22, 0)])]) == [dt.time(1, 0)]
    assert evaluate("timesub", [Unit("MINUTES"), (I, [90]), (st.TIME, [dt.time(1, 0)])]) == [dt.time(23, 30)]


def test_wrong_argument_types_use_ksqldb_wording() -> None:
    from ksqlpy.errors import AnalysisError
    from ksqlpy.planner.functions import REGISTRY
    from ksqlpy.planner.functions.registry import UnitArg

    with pytest.raises(AnalysisError, match=r"Function 'timestampsub' does not accept parameters"):
        REGISTRY.resolve("TIMESTAMPSUB", [st.TIMESTAMP, st.INTEGER, st.TIMESTAMP])
    REGISTRY.resolve("TIMESTAMPSUB", [UnitArg("DAYS"), st.INTEGER, st.TIMESTAMP])


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2018-05-11T14:58:33.123-07:00"), ("EEEE, MMMM d, yy h:mm a", "Friday, May 11, 18 2:58 PM"),
     ("D Q ''x''", "131 2 '-07'"), ("Z O", "-0700 GMT-7"), ("[HH]", "14")],
)
def test_java_patterns_format_like_datetimeformatter(pattern: str, expected: str) -> None:
    value = dt.datetime(2018, 5, 11, 21, 58, 33, 123000, tzinfo=dt.UTC).astimezone(
        javafmt.zone_of("America/Los_Angeles"))
    assert javafmt.format_value(pattern, value) == expected


def test_java_pattern_errors() -> None:
    with pytest.raises(javafmt.PatternError, match="Unknown pattern letter: t"):
        javafmt.compile_pattern("yyyy-tt")
    with pytest.raises(javafmt.PatternError, match="Unknown time-zone ID"):
        javafmt.zone_of("Mars/Base")
