"""Content negotiation and response framing, without a server."""

from __future__ import annotations

import orjson
import pytest

from ksqlpy import sqltypes
from ksqlpy.server import wire
from ksqlpy.server.formats import DelimitedFormat, JsonArrayFormat, LegacyFormat

COLUMNS = (sqltypes.Field("USERID", sqltypes.STRING), sqltypes.Field("N", sqltypes.Decimal(4, 2)))


@pytest.mark.parametrize(
    ("accept", "route", "expected"),
    [
        (None, "query-stream", wire.DELIMITED),
        ("*/*", "query-stream", wire.DELIMITED),
        ("application/json", "query-stream", wire.JSON),
        ("application/vnd.ksql.v1+json; charset=utf-8", "query-stream", wire.KSQL_V1_JSON),
        ("text/html;q=0.9, application/*;q=0.5", "plain", wire.KSQL_V1_JSON),
        ("application/json;q=0.1, application/vnd.ksqlapi.delimited.v1", "query", wire.DELIMITED),
        ("text/csv", "inserts-stream", None),
    ],
)
def test_negotiate(accept: str | None, route: str, expected: str | None) -> None:
    assert wire.negotiate(accept, wire.PRODUCES[route]) == expected


def test_legacy_format_is_one_json_array_one_element_per_line() -> None:
    f = LegacyFormat()
    body = (
        f.header("transient_PV_1", COLUMNS, ())
        + f.row(["u1", 1.5], False)
        + f.row([None, "k"], True)
        + f.end("Limit Reached")
    )
    lines = body.split(b",\n")
    assert lines[0].startswith(b"[") and lines[-1].endswith(b"]") and not body.endswith(b"\n")
    parsed = orjson.loads(body)
    assert parsed[0] == {"header": {"queryId": "transient_PV_1", "schema": "`USERID` STRING, `N` DECIMAL(4, 2)"}}
    assert parsed[1] == {"row": {"columns": ["u1", 1.5]}}
    assert parsed[2] == {"row": {"columns": [None, "k"], "tombstone": True}}
    assert parsed[3] == {"finalMessage": "Limit Reached"}


def test_pull_header_marks_key_columns() -> None:
    header = orjson.loads(LegacyFormat().header("query_1", COLUMNS, ("USERID",)) + b"]")
    assert header[0]["header"]["schema"] == "`USERID` STRING KEY, `N` DECIMAL(4, 2)"


def test_pull_header_lists_header_columns_after_the_keys() -> None:
    """ksqlDB's pull ``SELECT *`` schema keeps header columns as headers, listed before the
    values (the rows still carry them last)."""
    columns = (
        sqltypes.Field("K", sqltypes.INTEGER),
        sqltypes.Field("TEXT", sqltypes.STRING),
        sqltypes.Field("H", sqltypes.BYTES),
        sqltypes.Field("ALL", sqltypes.Array(sqltypes.STRING)),
    )
    header = orjson.loads(LegacyFormat().header("query_1", columns, ("K",), (("H", "abc"), ("ALL", None))) + b"]")
    assert header[0]["header"]["schema"] == (
        "`K` INTEGER KEY, `H` BYTES HEADER('abc'), `ALL` ARRAY<STRING> HEADERS, `TEXT` STRING"
    )


def test_delimited_lines_drop_tombstones() -> None:
    f = DelimitedFormat()
    chunks = [f.header("q", COLUMNS, ()), f.row(["a", 1], False), f.row([None, "a"], True), f.end(None)]
    assert chunks[2] is None and chunks[3] is None
    assert orjson.loads(chunks[0]) == {"queryId": "q", "columnNames": ["USERID", "N"],
                                       "columnTypes": ["STRING", "DECIMAL(4, 2)"]}
    assert chunks[1] == b'["a",1]\n'


def test_json_array_format_has_no_newlines() -> None:
    f = JsonArrayFormat()
    body = f.header("q", COLUMNS, ()) + (f.row(["a", 1], False) or b"") + f.end(None)
    assert b"\n" not in body
    assert orjson.loads(body)[1] == ["a", 1]
