"""JSON, URL and BYTES-conversion functions through DuckDB (QTT json*, url.json, bytes-and-strings.json)."""

from __future__ import annotations

import datetime as dt
import random
import struct

import pytest
from conftest import evaluate, lit

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.conversion import java_double_to_string

S = st.STRING


def test_extractjsonfield_keeps_number_text_and_bounds() -> None:
    docs = ['{"array": [1, 2, 3]}', '{"array": [1.23450]}', "not json"]
    assert evaluate("extractjsonfield", [(S, docs), lit("$.array[0]", S)]) == ["1", "1.23450", None]
    assert evaluate("extractjsonfield", [(S, docs), lit("$.array[-1]", S)]) == [None, None, None]
    assert evaluate("extractjsonfield", [(S, ['{"a": {"b": "x"}}', '{"a": {"b": {"c": 1}}}']), lit("$.a.b", S)]) == [
        "x", '{"c":1}']
    assert evaluate("extractjsonfield", [(S, ['{"a b": 2}']), lit("$['a b']", S)]) == ["2"]


def test_json_inspection_functions() -> None:
    assert evaluate("is_json_string", [(S, ["[1, 2, 3]", "1", "", "abc", None])]) == [True, True, False, False, False]
    assert evaluate("json_array_length", [(S, ["[1, [1, [2]], 3]", "{}", "abc", None])]) == [3, None, None, None]
    assert evaluate("json_keys", [(S, ['{"a": "abc", "b": { "c": "a" }, "d": 1}', "[]"])]) == [["a", "b", "d"], None]
    assert evaluate("json_records", [(S, ['{"a": "abc", "b": { "c": "a" }, "d": 1}'])]) == [
        {"a": "abc", "b": '{"c":"a"}', "d": "1"}]  # a string field unquoted, as Jackson's textValue()
    assert evaluate("json_items", [(S, ["[1, 2, 3]", '[{"type": "A"}]', "abc"])]) == [["1", "2", "3"], ['{"type":"A"}'], None]


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [('{"a": 1}', '{"b": 2}', '{"a":1,"b":2}'), ('{"a": {"5": 6}}', '{"a": {"3": 4}}', '{"a":{"3":4}}'),
     ("[1, 2]", "[3, 4]", "[1,2,3,4]"), ("null", "null", "[null,null]"), ("[1, 2]", '{"a": 1}', '[1,2,{"a":1}]'),
     ("1", "2", "[1,2]"), ("abc", "[1]", None), (None, "[1]", None)],
)
def test_json_concat(left: str | None, right: str | None, expected: str | None) -> None:
    assert evaluate("json_concat", [(S, [left]), (S, [right])]) == [expected]


def test_json_array_contains() -> None:
    assert evaluate("json_array_contains", [(S, ["[1, 2, 3]", "[1, 2]", "{}", None]), lit(3, st.INTEGER)]) == [
        True, False, False, False]
    assert evaluate("json_array_contains", [(S, ['["a", "b"]']), lit("b", S)]) == [True]


def test_to_json_string() -> None:
    assert evaluate("to_json_string", [(st.INTEGER, [1, None])]) == ["1", "null"]
    assert evaluate("to_json_string", [(S, ["abc"])]) == ['"abc"']
    assert evaluate("to_json_string", [(st.DOUBLE, [123.456])]) == ["123.456"]
    assert evaluate("to_json_string", [(st.TIME, [dt.time(16, 43, 40)])]) == ['"16:43:40"']
    assert evaluate("to_json_string", [(st.DATE, [dt.date(2021, 10, 11)])]) == ['"2021-10-11"']
    assert evaluate("to_json_string", [(st.TIMESTAMP, [dt.datetime(2021, 6, 30, 12, 18, 39, 446000)])]) == [
        '"2021-06-30T12:18:39.446"']
    struct = st.Struct((st.Field("ID", st.INTEGER), st.Field("NAME", S)))
    assert evaluate("to_json_string", [(struct, [{"ID": 1, "NAME": "A"}])]) == ['{"ID":1,"NAME":"A"}']
    assert evaluate("to_json_string", [lit(None, None)]) == ["null"]


def test_url_extractors() -> None:
    urls = ["http://www.test.com/?query#fragment", "http://test@confluent.io:8080/nested/path?q=2", "www.confluent.io"]
    assert evaluate("url_extract_fragment", [(S, urls)]) == ["fragment", None, None]
    assert evaluate("url_extract_host", [(S, urls)]) == ["www.test.com", "confluent.io", None]
    assert evaluate("url_extract_path", [(S, urls)]) == ["/", "/nested/path", "www.confluent.io"]
    assert evaluate("url_extract_port", [(S, urls)]) == [None, 8080, None]
    assert evaluate("url_extract_protocol", [(S, urls)]) == ["http", "http", None]
    assert evaluate("url_extract_query", [(S, urls)]) == ["query", "q=2", None]
    assert evaluate("url_extract_parameter", [(S, ["http://www.test.com/?one=a&two=b&three"]), lit("two", S)]) == ["b"]
    assert evaluate("url_extract_parameter", [(S, ["http://test.com?a%20b=c%20d"]), lit("a b", S)]) == ["c d"]


def test_url_param_encoding_round_trips() -> None:
    assert evaluate("url_encode_param", [(S, ["?foo $bar", "hello&world", "nothing"])]) == [
        "%3Ffoo+%24bar", "hello%26world", "nothing"]
    assert evaluate("url_decode_param", [(S, ["%3Ffoo+%24bar", "hello%26world"])]) == ["?foo $bar", "hello&world"]


def test_numbers_from_bytes() -> None:
    assert evaluate("int_from_bytes", [(st.BYTES, [struct.pack(">i", 2021), b"\x01"])]) == [2021, None]
    assert evaluate("int_from_bytes", [(st.BYTES, [struct.pack("<i", 2021)]), lit("LITTLE_ENDIAN", S)]) == [2021]
    assert evaluate("bigint_from_bytes", [(st.BYTES, [struct.pack(">q", 5000000000)])]) == [5000000000]
    assert evaluate("double_from_bytes", [(st.BYTES, [struct.pack(">d", 532.8738323)])]) == [532.8738323]


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1.0"), (123.456, "123.456"), (1e7, "1.0E7"), (12345678.9, "1.23456789E7"), (1.234e-5, "1.234E-5"),
     (0.001, "0.001"), (-2.5e20, "-2.5E20"), (float("nan"), "NaN"), (float("-inf"), "-Infinity"), (-0.0, "-0.0")],
)
def test_java_double_to_string(value: float, text: str) -> None:
    assert java_double_to_string(value) == text


def _extract_as_written(text: str, path: str) -> str | None:
    """EXTRACTJSONFIELD's meaning, spelled out: the whole text parsed keeping numbers as written."""
    from ksqlpy.planner.functions.json import _INVALID, _path_steps, dump_json, parse_json

    node = parse_json(text)
    try:
        steps = _path_steps(path)
    except ValueError:
        return None
    for step in steps:
        if node is _INVALID:
            return None
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and 0 <= step < len(node) else _INVALID
        else:
            node = node[step] if isinstance(node, dict) and step in node else _INVALID
    if node is None or node is _INVALID:
        return None
    text = node if isinstance(node, str) else dump_json(node)
    return text.encode("utf-8", "replace").decode("utf-8")  # Java writes '?' for a lone surrogate


def _random_json(rnd: random.Random, depth: int = 0) -> str:
    kind = rnd.randrange(12 if depth < 3 else 8)
    if kind == 0:
        return rnd.choice(["1", "-0", "1.50", "1e400", "-2.5E-3", "18446744073709551616", "9223372036854775808"])
    if kind == 1:
        return rnd.choice(["NaN", "-Infinity", "true", "false", "null"])
    if kind in (2, 3):
        return rnd.choice(['"x"', '"h\\u00e9 \\"q\\""', '"\\ud800"', '"tab\\tnl\\n"', '""', '"\\u0000"'])
    if kind in (4, 5, 6, 7):
        return str(rnd.randint(-(2**40), 2**40))
    if kind < 10:
        items = [_random_json(rnd, depth + 1) for _ in range(rnd.randrange(4))]
        return "[" + rnd.choice([",", ", "]).join(items) + "]"
    keys = rnd.sample(["a", "b", "a b", "x"], rnd.randrange(1, 4)) + (["a"] if rnd.random() < 0.2 else [])
    return "{" + ",".join(f'"{k}": {_random_json(rnd, depth + 1)}' for k in keys) + "}"


def test_extractjsonfield_agrees_with_parsing_numbers_as_written_over_random_documents() -> None:
    rnd = random.Random(7)
    docs = [_random_json(rnd) for _ in range(3000)]
    docs += ["not json", "", "{", '{"a":1,}', "[1,2", '{"a": 1} x', " \t\n{\"a\": 1}", "https://x?q=1", "NaN", None]  # type: ignore[list-item]
    for path in ["$", "$.a", "$.a.b", "$['a b']", '$["x"]', "$[0]", "$.a[1]", "$[1].a", "$.a[-1]", "bad"]:
        got = evaluate("extractjsonfield", [(S, docs), lit(path, S)])
        want = [None if d is None else _extract_as_written(d, path) for d in docs]
        assert got == want, path
