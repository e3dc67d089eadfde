"""ksqlDB's own aggregate conformance cases, folded through the sequential accumulators.

For the QTT cases shaped ``CREATE STREAM s (...); CREATE TABLE t AS SELECT k, FN(col[, literal])
AS A, ... FROM s GROUP BY k;`` (no window, WHERE or HAVING), every input record is added to its
group's state and the result compared with the expected output record for it (ksqlDB's tests run
with caching off: one output per input). The cases are read from /work/shared/qtt at test time.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
from pathlib import Path
from typing import Any

import pytest

from ksqlpy import sqltypes as st
from ksqlpy.errors import KsqlpyError
from ksqlpy.parser import ast, parse
from ksqlpy.planner.functions.aggregate import AggregateArg
from ksqlpy.planner.functions.aggregates import is_aggregate, resolve
from ksqlpy.planner.types import resolve_type

QTT = Path("/work/shared/qtt/query-validation-tests")
FILES = (
    "sum.json",
    "average-udaf.json",
    "standarddeviation.json",
    "collect-list.json",
    "collect-set.json",
    "topk-group-by.json",
    "topk-distinct.json",
    "latest-offset-udaf.json",
    "earliest-offset-udaf.json",
    "histogram.json",
    "attr.json",
    "correlation-udaf.json",
    "count.json",
    "min-group-by.json",
    "max-group-by.json",
)
_EPOCH = datetime.datetime(1970, 1, 1)


def _cases() -> list[Any]:
    if not QTT.is_dir():
        return []
    out = []
    for name in FILES:
        path = QTT / name
        if path.exists():
            for case in json.loads(path.read_text())["tests"]:
                out.append(pytest.param(case, id=f"{name}:{case['name']}"))
    return out


def to_python(value: Any, t: st.SqlType) -> Any:
    """A QTT JSON value as the runtime's Python value of ``t``."""
    if value is None:
        return None
    match t:
        case st.Decimal(scale=s):
            return decimal.Decimal(str(value)).quantize(decimal.Decimal(1).scaleb(-s))
        case st.Array(element=e):
            return [to_python(v, e) for v in value]
        case st.Map(key=k, value=v):
            return [(to_python(a, k), to_python(b, v)) for a, b in value.items()]
        case st.Struct(fields=fs):
            upper = {key.upper(): v for key, v in value.items()}
            return {f.name: to_python(upper.get(f.name.upper()), f.type) for f in fs}
    match t.base:
        case st.BaseType.INTEGER | st.BaseType.BIGINT:
            return int(value)
        case st.BaseType.DOUBLE:
            return float(value)
        case st.BaseType.STRING:
            return value if isinstance(value, str) else json.dumps(value)
        case st.BaseType.DATE:
            return (_EPOCH + datetime.timedelta(days=value)).date()
        case st.BaseType.TIME:
            return (_EPOCH + datetime.timedelta(milliseconds=value)).time()
        case st.BaseType.TIMESTAMP:
            return _EPOCH + datetime.timedelta(milliseconds=value)
        case st.BaseType.BYTES:
            return base64.b64decode(value)
    return value


def to_json(value: Any) -> Any:
    """A result as QTT writes it (dates as days, times and timestamps as milliseconds, ...)."""
    match value:
        case list() if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {k: to_json(v) for k, v in value}
        case list():
            return [to_json(v) for v in value]
        case dict():
            return {k: to_json(v) for k, v in value.items()}
        case datetime.datetime():
            return (value - _EPOCH) // datetime.timedelta(milliseconds=1)
        case datetime.date():
            return (value - _EPOCH.date()).days
        case datetime.time():
            return (value.hour * 3600 + value.minute * 60 + value.second) * 1000 + value.microsecond // 1000
        case bytes():
            return base64.b64encode(value).decode()
    return value


def matches(actual: Any, expected: Any) -> bool:
    match actual, expected:
        case decimal.Decimal(), _:
            return expected is not None and actual == decimal.Decimal(str(expected))
        case float(), (float() | int()):
            return actual == expected or math.isclose(actual, expected, rel_tol=1e-15)
        case dict(), dict():
            return {k.upper() for k in actual} == {k.upper() for k in expected} and all(
                matches(v, {k.upper(): x for k, x in expected.items()}[k.upper()]) for k, v in actual.items()
            )
        case list(), list():
            return len(actual) == len(expected) and all(matches(a, e) for a, e in zip(actual, expected))
    return bool(actual == expected)


def _plan(case: dict[str, Any]) -> tuple[Any, ...] | None:
    """(columns, key column, group expression name, [(alias, accumulator, arg columns)]) or None."""
    if "expectedException" in case or len(case.get("statements", ())) != 2:
        return None
    formats = case.get("format", ["JSON"])
    if all(f.startswith("PROTOBUF") for f in formats) or "PROTOBUF" in " ".join(case["statements"]).upper():
        return None  # protobuf has no NULL scalars: its cases expect default values instead
    text = "\n".join(case["statements"]).replace("{FORMAT}", "JSON")
    try:
        source, sink = parse(text)
    except KsqlpyError:
        return None
    if not isinstance(source, ast.CreateSource):
        return None
    if not isinstance(sink, ast.CreateAsSelect):
        return None
    q = sink.query
    if (
        q.window
        or q.where
        or q.having
        or len(q.group_by) != 1
        or not isinstance(q.group_by[0], ast.ColumnRef)
    ):
        return None
    columns = {e.name: resolve_type(e.type, {}) for e in source.elements}
    keys = [e.name for e in source.elements if e.constraint is not None]
    aggregates = []
    config = {k: v for k, v in case.get("properties", {}).items() if k.startswith("ksql.functions.")}
    for item in q.select:
        if not isinstance(item, ast.SingleColumn):
            return None
        match item.expr:
            case ast.ColumnRef():
                continue
            case ast.FunctionCall(name=name, args=args, star=star) if is_aggregate(name):
                agg_args: list[AggregateArg] = []
                sources: list[tuple[str, Any]] = []  # ("col", name) or ("lit", value) per argument
                for a in args:
                    match a:
                        case ast.ColumnRef(name=c) if c in columns:
                            agg_args.append(AggregateArg(columns[c]))
                            sources.append(("col", c))
                        case ast.BooleanLiteral(value=v):
                            agg_args.append(AggregateArg(st.BOOLEAN, constant=v))
                            sources.append(("lit", v))
                        case ast.IntegerLiteral(value=v):
                            agg_args.append(AggregateArg(st.INTEGER, constant=v))
                            sources.append(("lit", v))
                        case _:
                            return None
                if star:
                    agg_args = [AggregateArg(None, star=True)]
                acc = resolve(name, agg_args, config=config)
                aggregates.append(
                    (item.alias or f"KSQL_COL_{len(aggregates)}", acc, [sources[i] for i in acc.column_args])
                )
            case _:
                return None
    is_table = source.kind == ast.SourceKind.TABLE
    delimited = "DELIMITED" in text.upper()
    return columns, keys, q.group_by[0].name, aggregates, is_table, delimited


def _row(
    record: dict[str, Any], columns: dict[str, st.SqlType], keys: list[str], delimited: bool
) -> dict[str, Any] | None:
    value = record.get("value")
    if value is None:
        return None
    names = [c for c in columns if c not in keys]
    if delimited:
        value = dict(zip(names, str(value).split(","), strict=False))
    upper = {k.upper(): v for k, v in value.items()}
    try:
        row = {c: to_python(upper.get(c), columns[c]) for c in names}
        if keys:
            row[keys[0]] = to_python(record.get("key"), columns[keys[0]])
    except OverflowError:
        pytest.skip("a DATE/TIMESTAMP outside Python's datetime range")
    return row


@pytest.mark.parametrize("case", _cases())
def test_qtt_case_folds_to_expected_outputs(case: dict[str, Any]) -> None:
    """Streams add each row; tables retract a key's old row (undo) before adding its new one."""
    plan = _plan(case)
    if plan is None:
        pytest.skip("not a plain GROUP BY of column arguments")
    columns, keys, group_by, aggregates, is_table, delimited = plan
    states: dict[str, list[Any]] = {}
    latest: dict[str, dict[str, Any]] = {}  # table input: each key's current row
    produced: list[dict[str, Any]] = []

    def apply(row: dict[str, Any], sign: int, emit: bool) -> None:
        group = json.dumps(to_json(row[group_by]))
        group_states = states.setdefault(group, [acc.initial() for _, acc, _ in aggregates])
        out: dict[str, Any] = {}
        for i, (alias, acc, sources) in enumerate(aggregates):
            args = tuple(row[v] if kind == "col" else v for kind, v in sources)
            step = acc.add if sign > 0 else acc.undo
            group_states[i] = step(group_states[i], args)
            out[alias] = acc.result(group_states[i])
        if emit:
            produced.append(out)

    for record in case["inputs"]:
        row = _row(record, columns, keys, delimited)
        if row is not None and row.get(group_by) is None:
            row = None  # ksqlDB drops rows whose group key is NULL
        if not is_table:
            if row is not None:
                apply(row, 1, emit=True)
            continue
        key = json.dumps(record.get("key"))
        old = latest.pop(key, None)
        same_group = old is not None and row is not None and old[group_by] == row[group_by]
        if old is not None:
            apply(old, -1, emit=not same_group)
        if row is not None:
            latest[key] = row
            apply(row, 1, emit=True)
    expected = [o["value"] for o in case["outputs"]]
    assert len(produced) == len(expected)
    for got, want in zip(produced, expected):
        if not isinstance(want, dict):
            want = {alias: v for (alias, _, _), v in zip(aggregates, str(want).split(","), strict=False)}
            got = {k: str(to_json(v)) for k, v in got.items()}
        for alias, value in got.items():
            assert matches(to_json(value), want[alias]), (
                f"{alias}: got {to_json(value)!r}, want {want[alias]!r}"
            )
