"""Compares what a case produced with what its QTT file expects.

The rules follow ksqlDB's ``ExpectedRecordComparator`` and ``TestExecutor``:

* objects match field by field (an expected field ``f`` may match the actual field ``F``) and
  must have the same number of fields; arrays match element by element;
* numbers compare by value whatever their type (``1``, ``1.0`` and ``Decimal('1.00')`` agree),
  but never with booleans; a string matches a decimal of the same value;
* a record's timestamp is checked only when the expected record gives one (and not at all when
  it expects ``0`` from a case fed only by INSERT VALUES); its window only when the expected
  record has one; its headers always (no ``headers`` means none);
* REST responses match when every field the expected response names matches; a field name may
  carry an operator (``queryId|starts_with``) and a string may contain ``{STATEMENT}``.

Every check returns ``None`` when things match, else a message saying what differs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ksqlpy.testing.qtt import Header, QttRecord, Window


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducedRecord:
    """A record read back from a sink topic, with key and value decoded to JSON level."""

    topic: str
    key: Any
    value: Any
    timestamp: int
    partition: int = 0
    window: Window | None = None
    headers: tuple[Header, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "key": to_plain_json(self.key),
            "value": to_plain_json(self.value),
            "timestamp": self.timestamp,
            "window": None if self.window is None else self.window.to_json(),
            "headers": [h.to_json() for h in self.headers],
        }


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def numbers_equal(actual: Any, expected: Any) -> bool:
    """Equal by value; a float side is compared as a float (what a DOUBLE column holds)."""
    if isinstance(actual, float) or isinstance(expected, float):
        try:
            return float(actual) == float(expected)
        except (OverflowError, ValueError):
            return False
    return Decimal(actual) == Decimal(expected)


def matches(actual: Any, expected: Any) -> bool:
    """Whether an actual JSON-level value matches an expected one (see module docs)."""
    match expected:
        case None:
            return actual is None
        case bool():
            return isinstance(actual, bool) and actual == expected
        case int() | float() | Decimal():
            return _is_number(actual) and numbers_equal(actual, expected)
        case str():
            if isinstance(actual, str):
                return actual == expected
            if isinstance(actual, Decimal):
                try:
                    return Decimal(expected) == actual
                except InvalidOperation:
                    return False
            return False
        case Mapping():
            if not isinstance(actual, Mapping) or len(actual) != len(expected):
                return False
            for name, want in expected.items():
                got = actual.get(name)
                if got is None:
                    got = actual.get(name.upper())
                if not matches(got, want):
                    return False
            return True
        case Sequence():
            if not isinstance(actual, Sequence) or isinstance(actual, str | bytes):
                return False
            return len(actual) == len(expected) and all(
                matches(a, e) for a, e in zip(actual, expected, strict=True)
            )
        case _:
            return bool(actual == expected)


def to_plain_json(value: Any) -> Any:
    """JSON-ready form of a decoded value: decimals become numbers, bytes base64 text."""
    match value:
        case Decimal():
            exponent = value.as_tuple().exponent
            return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
        case bytes():
            return base64.b64encode(value).decode("ascii")
        case Mapping():
            return {str(k): to_plain_json(v) for k, v in value.items()}
        case list() | tuple():
            return [to_plain_json(v) for v in value]
        case _:
            return value


def render(value: Any) -> str:
    """Compact JSON text of a value, for messages."""
    return json.dumps(to_plain_json(value), separators=(",", ":"), default=str)


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


def _render_headers(headers: Sequence[Header]) -> str:
    return ", ".join(f"{{KEY={h.key},VALUE={h.to_json()['VALUE']}}}" for h in headers)


def _render_record(key: Any, value: Any, timestamp: int | None, window: Window | None,
                   headers: Sequence[Header]) -> str:
    text = f"<{render(key)}, {render(value)}> with timestamp={timestamp}"
    if window is not None:
        text += f" window={render(window.to_json())}"
    return text + f" and headers=[{_render_headers(headers)}]"


def compare_record(
    expected: QttRecord, actual: ProducedRecord, *, inserts_only: bool = False, ignore_headers: bool = False
) -> bool:
    """Whether one produced record matches one expected record."""
    if expected.window is not None and actual.window != expected.window:
        return False
    if not matches(actual.key, expected.key) or not matches(actual.value, expected.value):
        return False
    if not ignore_headers and tuple(expected.headers or ()) != tuple(actual.headers):
        return False
    if expected.timestamp is not None and actual.timestamp != expected.timestamp:
        # A case fed by INSERT VALUES only may leave its expected timestamps at 0.
        return inserts_only and expected.timestamp == 0
    return True


def compare_topic(
    topic: str,
    expected: Sequence[QttRecord],
    actual: Sequence[ProducedRecord],
    *,
    inserts_only: bool = False,
    ignore_headers: bool = False,
) -> str | None:
    """``None`` when ``actual`` matches ``expected`` record by record, else what differs.
    ``ignore_headers``: the REST suite does not compare headers."""
    if len(actual) != len(expected):
        produced = "\n".join(
            "  " + _render_record(a.key, a.value, a.timestamp, a.window, a.headers) for a in actual
        )
        return (
            f"Topic {topic}. Expected <{len(expected)}> records but it was <{len(actual)}>"
            + (f"\nActual records:\n{produced}" if actual else "")
        )
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if not compare_record(want, got, inserts_only=inserts_only, ignore_headers=ignore_headers):
            return (
                f"Topic '{topic}', message {index}: Expected "
                + _render_record(want.key, want.value, want.timestamp, want.window, want.headers or ())
                + " but was "
                + _render_record(got.key, got.value, got.timestamp, got.window, got.headers)
            )
    return None


# ---------------------------------------------------------------------------------------------
# REST responses
# ---------------------------------------------------------------------------------------------

STATEMENT_MACRO = "{STATEMENT}"


def deep_equal(actual: Any, expected: Any) -> bool:
    """Structural equality with numbers by value (booleans stay booleans)."""
    if _is_number(expected) and _is_number(actual):
        return numbers_equal(actual, expected)
    if isinstance(expected, Mapping):
        return (
            isinstance(actual, Mapping)
            and actual.keys() == expected.keys()
            and all(deep_equal(actual[k], expected[k]) for k in expected)
        )
    if isinstance(expected, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(expected)
            and all(deep_equal(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return type(actual) is type(expected) and actual == expected


def match_fields(
    actual: Any,
    expected: Mapping[str, Any],
    *,
    statement: str,
    path: str,
    unordered: list[tuple[str, Any, Any]] | None = None,
) -> str | None:
    """Check the fields ``expected`` names (only those) against ``actual``.

    With ``unordered`` given, a row's ``columns`` are not compared here but collected as
    ``(path, actual, expected)`` for :func:`_match_unordered`.
    """
    if not isinstance(actual, Mapping):
        return f"Response mismatch at {path}: expected an object but was {render(actual)}"
    for raw_key, raw_value in expected.items():
        name, _, operator = raw_key.partition("|")
        want = raw_value.replace(STATEMENT_MACRO, statement) if isinstance(raw_value, str) else raw_value
        if name not in actual:
            return f"Response mismatch at {path}: no field '{name}' in {render(actual)}"
        got = actual[name]
        where = f"{path}->{name}"
        if isinstance(want, Mapping):
            problem = match_fields(got, want, statement=statement, path=where, unordered=unordered)
            if problem is not None:
                return problem
        elif unordered is not None and name == "columns" and path.endswith("->row"):
            unordered.append((where, got, want))
        elif operator.upper() == "STARTS_WITH":
            if not (isinstance(got, str) and isinstance(want, str) and got.startswith(want)):
                return f"Response mismatch at {where}: expected to start with {render(want)} but was {render(got)}"
        elif not deep_equal(got, want):
            return f"Response mismatch at {where}: expected {render(want)} but was {render(got)}"
    return None


def compare_responses(
    actual: Sequence[Mapping[str, Any]],
    expected: Sequence[Mapping[str, Any]],
    statements: Sequence[str],
    *,
    verify_order: bool = False,
) -> str | None:
    """Compare per-statement responses: ``{"admin": entity}`` or ``{"query": [row, ...]}``.

    As in ksqlDB's REST test runner, a query's rows are matched as a multiset of their
    ``columns`` unless ``verify_order`` is set: a table scan's order is the store's, not the
    query's, and ksqlDB does not promise one.
    """
    if len(actual) < len(expected):
        return f"Not enough responses: expected {len(expected)} but got {len(actual)}"
    for index, want in enumerate(expected):
        if len(want) != 1:
            return f"responses[{index}] should have exactly one field"
        kind, payload = next(iter(want.items()))
        got = actual[index]
        statement = statements[index] if index < len(statements) else ""
        path = f"responses[{index}]->{kind}"
        if kind not in got:
            return f"Response mismatch at responses[{index}]: expected {kind} but was {render(got)}"
        if kind == "admin":
            problem = match_fields(got[kind], payload, statement=statement, path=path)
        elif kind == "query":
            problem = _compare_query_rows(
                got[kind], payload, statement=statement, path=path, verify_order=verify_order
            )
        else:
            problem = f"Response type {kind} is not supported"
        if problem is not None:
            return problem
    return None


def _compare_query_rows(
    actual: Sequence[Mapping[str, Any]],
    expected: Sequence[Any],
    *,
    statement: str,
    path: str,
    verify_order: bool,
) -> str | None:
    if len(actual) != len(expected):
        return (
            f"row count mismatch at {path}: expected {len(expected)} rows "
            f"{render(list(expected))} but got {len(actual)} {render(list(actual))}"
        )
    unordered: list[tuple[str, Any, Any]] | None = None if verify_order else []
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        problem = match_fields(got, want, statement=statement, path=f"{path}[{index}]", unordered=unordered)
        if problem is not None:
            return problem
    return _match_unordered(unordered or [])


def _match_unordered(pairs: Sequence[tuple[str, Any, Any]]) -> str | None:
    """Match each expected row's columns with a distinct actual row's, in any order."""
    left = [got for _, got, _ in pairs]
    for where, got, want in pairs:
        match = next((i for i, candidate in enumerate(left) if deep_equal(candidate, want)), None)
        if match is None:
            return (
                f"Response mismatch at {where}: expected {render(want)} but was {render(got)} "
                f"(rows compared in any order; no row has these columns)"
            )
        del left[match]
    return None
