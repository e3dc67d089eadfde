"""ksqlDB's JSON functions: EXTRACTJSONFIELD, IS_JSON_STRING, JSON_ARRAY_LENGTH, JSON_ARRAY_CONTAINS,
JSON_CONCAT, JSON_ITEMS, JSON_KEYS, JSON_RECORDS and TO_JSON_STRING.

JSON text is parsed in Python with numbers kept as written (``1.23450`` stays ``1.23450``, as
Jackson's tree keeps it) and written back compactly (``{"a":1}``), which is how ksqlDB prints
nodes. Invalid JSON gives NULL. TO_JSON_STRING serialises any SQL value with DuckDB's ``to_json``,
except TIMESTAMP, which ksqlDB writes as ``LocalDateTime.toString()`` (``2021-06-30T12:18:39.446``).
"""

from __future__ import annotations

import datetime as dt
import functools
import json as std_json
import re
from decimal import Decimal
from typing import Any

import orjson
from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.misc import cast_to, fn, list_of, udf
from ksqlpy.planner.functions.registry import REGISTRY, Call, Category, CompileRule, ScalarFunction, Variant

J = Category.JSON
_INVALID = object()


def _register(name: str, description: str, *variants: Variant) -> None:
    REGISTRY.register(ScalarFunction(name=name, category=J, description=description, variants=variants))


def parse_json(text: str) -> Any:
    """A JSON value with numbers as ``int``/``Decimal`` of their text; ``_INVALID`` when not JSON."""
    try:
        return std_json.loads(text, parse_float=Decimal)
    except ValueError:
        return _INVALID


def dump_json(value: Any) -> str:
    """Compact JSON, numbers printed as parsed."""
    match value:
        case None:
            return "null"
        case bool():
            return "true" if value else "false"
        case int() | Decimal():
            return str(value)
        case float():
            return repr(value)
        case str():
            return std_json.dumps(value, ensure_ascii=False)
        case list():
            return "[" + ",".join(dump_json(v) for v in value) + "]"
        case dict():
            return "{" + ",".join(f"{std_json.dumps(k, ensure_ascii=False)}:{dump_json(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


# ---------------------------------------------------------------------------------------------
# EXTRACTJSONFIELD: a JsonPath subset ($.a.b, $.a[0], $['a'], $["a"])

_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[\s*'([^']*)'\s*\]|\[\s*\"([^\"]*)\"\s*\]|\[\s*(-?\d+)\s*\]")


@functools.lru_cache(maxsize=256)
def _path_steps(path: str) -> tuple[str | int, ...]:
    if not path.startswith("$"):
        raise ValueError(f"Invalid JSON path: {path}")
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _PATH_STEP.match(path, pos)
        if m is None:
            raise ValueError(f"Invalid JSON path: {path}")
        name, quoted1, quoted2, index = m.groups()
        steps.append(int(index) if index is not None else (name or quoted1 or quoted2 or ""))
        pos = m.end()
    return tuple(steps)


def _at(node: Any, steps: tuple[str | int, ...]) -> Any:
    """The node at ``steps`` (``_INVALID`` when there is none)."""
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, list) or not 0 <= step < len(node):
                return _INVALID
            node = node[step]
        else:
            if not isinstance(node, dict) or step not in node:
                return _INVALID
            node = node[step]
    return node


def _has_float(node: Any) -> bool:
    if isinstance(node, float):
        return True
    if isinstance(node, list):
        return any(map(_has_float, node))
    if isinstance(node, dict):
        return any(map(_has_float, node.values()))
    return False


#: What Python's parser takes and orjson refuses: NaN and infinities, lone surrogates (escaped:
#: text from Arrow has none of its own), integers past 64 bits and doubles past their range.
_ORJSON_REFUSES = re.compile(r"NaN|Infinity|\\u|\d{19}|[eE][+-]?\d{3}")


def _extract(text: str, path: str) -> str | None:
    steps = _path_steps(path)
    # orjson parses several times faster; it gives floats, not their text, so a result holding a
    # float, and what orjson refuses (NaN, integers past 64 bits, lone surrogates, invalid
    # JSON), are parsed again keeping numbers as written.
    try:
        node = _at(orjson.loads(text), steps)
    except orjson.JSONDecodeError:
        if _ORJSON_REFUSES.search(text) is None:
            return None  # not JSON
        return _as_written(parse_json(text), steps)
    if _has_float(node):
        return _as_written(parse_json(text), steps)
    if node is None or node is _INVALID:
        return None
    return node if isinstance(node, str) else dump_json(node)


def _as_written(document: Any, steps: tuple[str | int, ...]) -> str | None:
    node = _at(document, steps)
    if node is None or node is _INVALID:
        return None
    text = node if isinstance(node, str) else dump_json(node)
    # A lone surrogate (``"\ud800"``) has no UTF-8 form: '?' stands for it, as Java writes it.
    return text.encode("utf-8", "replace").decode("utf-8")


#: How every JSON document starts, Python's parser's NaN and Infinity included: text that does
#: not is not JSON, NULL without a call to Python.
_JSON_START = "^[ \\t\\n\\r]*[\\[{\"0-9tfnNI-]"


def _extract_rule(rowwise: CompileRule) -> CompileRule:
    def compile_extract(call: Call) -> exp.Expression:
        text = call.sql[0]
        could_be = fn("regexp_matches", text, exp.Literal.string(_JSON_START))
        return exp.Case(ifs=[exp.If(this=could_be, true=rowwise(call))], default=exp.Null())

    return compile_extract


_register("extractjsonfield", "Given a STRING that contains JSON data, extract the value at the specified "
          "JSONPath or NULL if the specified path does not exist.",
          Variant("input STRING, path STRING", returns="STRING",
                  compile=_extract_rule(udf("ksql_extractjsonfield", ("VARCHAR", "VARCHAR"), "VARCHAR", _extract))))

# ---------------------------------------------------------------------------------------------
# Inspecting JSON text


def _is_json(text: str | None) -> bool:
    return text is not None and text.strip() != "" and parse_json(text) is not _INVALID


def _array_length(text: str) -> int | None:
    node = parse_json(text)
    return len(node) if isinstance(node, list) else None


def _keys(text: str) -> list[str] | None:
    node = parse_json(text)
    return list(node) if isinstance(node, dict) else None


def _records(text: str) -> list[tuple[str, str]] | None:
    node = parse_json(text)
    if not isinstance(node, dict):
        return None
    # a JSON string value comes as its text, unquoted (Jackson's TextNode.textValue())
    return [(k, v if isinstance(v, str) else dump_json(v)) for k, v in node.items()]


def _items(text: str) -> list[str] | None:
    node = parse_json(text)
    return [dump_json(v) for v in node] if isinstance(node, list) else None


def _concat(texts: list[str | None]) -> str | None:
    nodes = [parse_json(t) if t is not None else _INVALID for t in texts]
    if any(n is _INVALID for n in nodes):
        return None
    objects = [n for n in nodes if isinstance(n, dict)]
    if len(objects) == len(nodes):
        merged: dict[str, Any] = {}
        for o in objects:
            merged.update(o)
        return dump_json(merged)
    items: list[Any] = []
    for n in nodes:
        items.extend(n if isinstance(n, list) else [n])
    return dump_json(items)


def _array_contains(text: str, value_json: str | None) -> bool:
    node = parse_json(text)
    if not isinstance(node, list):
        return False
    target = None if value_json is None else parse_json(value_json)
    return any(type(v) is type(target) and v == target for v in node)


_register("IS_JSON_STRING", "Given a STRING, returns true if it can be parsed as a valid JSON value.",
          Variant("json STRING", returns="BOOLEAN",
                  compile=udf("ksql_is_json_string", ("VARCHAR",), "BOOLEAN", _is_json, null_in_null_out=False)))
_register("JSON_ARRAY_LENGTH", "Given a STRING containing a JSON array, returns the number of its elements.",
          Variant("json STRING", returns="INT",
                  compile=udf("ksql_json_array_length", ("VARCHAR",), "INTEGER", _array_length)))
_register("JSON_KEYS", "Given a STRING containing a JSON object, returns its keys.",
          Variant("json STRING", returns="ARRAY<STRING>",
                  compile=udf("ksql_json_keys", ("VARCHAR",), "VARCHAR[]", _keys)))
_register("JSON_RECORDS", "Given a STRING containing a JSON object, returns its fields as a map of JSON texts.",
          Variant("json STRING", returns="MAP<STRING, STRING>",
                  compile=udf("ksql_json_records", ("VARCHAR",), "MAP(VARCHAR, VARCHAR)", _records)))
_register("JSON_ITEMS", "Given a STRING containing a JSON array, returns its elements as JSON texts.",
          Variant("json STRING", returns="ARRAY<STRING>",
                  compile=udf("ksql_json_items", ("VARCHAR",), "VARCHAR[]", _items)))

udf("ksql_json_concat", ("VARCHAR[]",), "VARCHAR", _concat)
_register("JSON_CONCAT", "Merges JSON objects, or concatenates JSON arrays and values into one array.",
          Variant("jsonStrings STRING...", returns="STRING",
                  compile=lambda call: fn("ksql_json_concat", list_of(call.sql))))

udf("ksql_json_array_contains", ("VARCHAR", "VARCHAR"), "BOOLEAN", _array_contains, null_in_null_out=False)


def _array_contains_rule(call: Call) -> exp.Expression:
    text, value = call.sql
    return exp.Case(
        ifs=[exp.If(this=exp.Is(this=text.copy(), expression=exp.Null()), true=exp.false())],
        default=fn("ksql_json_array_contains", text, cast_to(fn("to_json", value), "VARCHAR")),
    )


_register("JSON_ARRAY_CONTAINS", "Given a STRING containing a JSON array, checks if a value is one of its elements.",
          Variant("jsonArray STRING, val T", returns="BOOLEAN", compile=_array_contains_rule))

# ---------------------------------------------------------------------------------------------
# TO_JSON_STRING


def _local_date_time(value: dt.datetime) -> str:
    """``LocalDateTime.toString()``: seconds and fraction only when non-zero."""
    text = value.strftime("%Y-%m-%dT%H:%M")
    if value.second or value.microsecond:
        text += f":{value.second:02d}"
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}" if value.microsecond % 1000 == 0 else f".{value.microsecond:06d}"
    return f'"{text}"'


udf("ksql_timestamp_json", ("TIMESTAMP",), "VARCHAR", _local_date_time)


def _to_json_string(call: Call) -> exp.Expression:
    arg = call.args[0]
    if arg.type == st.TIMESTAMP:
        inner: exp.Expression = fn("ksql_timestamp_json", call.sql[0])
    elif arg.type is None:
        return exp.Literal.string("null")
    else:
        inner = cast_to(fn("to_json", call.sql[0]), "VARCHAR")
    return fn("coalesce", inner, exp.Literal.string("null"))


_register("TO_JSON_STRING", "Given any ksqlDB value, returns its JSON text; NULL becomes 'null'.",
          Variant("input T", returns="STRING", compile=_to_json_string))

__all__ = ["dump_json", "parse_json"]
