"""Output and response comparison rules (ksqlDB's ExpectedRecordComparator)."""

from __future__ import annotations

from decimal import Decimal

from ksqlpy.testing.compare import ProducedRecord, compare_responses, compare_topic, matches
from ksqlpy.testing.qtt import Header, QttRecord, Window


def test_numbers_compare_by_value_but_not_with_booleans() -> None:
    assert matches(1, 1) and matches(1.0, 1) and matches(Decimal("1.00"), Decimal("1.0"))
    assert matches(0.1, Decimal("0.1"))
    assert not matches(True, 1) and not matches(1, True)
    assert not matches("1", 1)
    assert matches(Decimal("12.30"), "12.3")


def test_objects_need_same_size_and_fall_back_to_upper_case_names() -> None:
    assert matches({"V": 1}, {"v": 1})
    assert not matches({"V": 1, "W": 2}, {"V": 1})
    assert not matches({"V": 1}, {"V": 1, "W": None})
    assert matches({"A": [1, {"B": None}]}, {"A": [1, {"B": None}]})
    assert not matches([1, 2], [1])
    assert matches(None, None) and not matches(0, None)


def rec(**kw: object) -> ProducedRecord:
    base = {"topic": "O", "key": 1, "value": {"V": 1}, "timestamp": 10}
    base.update(kw)
    return ProducedRecord(**base)  # type: ignore[arg-type]


def test_topic_comparison_checks_count_order_timestamp_window_headers() -> None:
    want = [QttRecord(topic="O", key=1, value={"V": 1}, timestamp=10)]
    assert compare_topic("O", want, [rec()]) is None
    assert "Expected <1> records but it was <0>" in (compare_topic("O", want, []) or "")
    assert "message 0" in (compare_topic("O", want, [rec(timestamp=11)]) or "")
    no_ts = [QttRecord(topic="O", key=1, value={"V": 1})]
    assert compare_topic("O", no_ts, [rec(timestamp=99)]) is None
    zero = [QttRecord(topic="O", key=1, value={"V": 1}, timestamp=0)]
    assert compare_topic("O", zero, [rec()], inserts_only=True) is None
    assert compare_topic("O", zero, [rec()]) is not None
    windowed = [QttRecord(topic="O", key=1, value={"V": 1}, window=Window(0, 5, "TIME"))]
    assert compare_topic("O", windowed, [rec(window=Window(0, 5, "TIME"))]) is None
    assert compare_topic("O", windowed, [rec(window=Window(0, 6, "TIME"))]) is not None
    assert compare_topic("O", want, [rec(headers=(Header("h", b"x"),))]) is not None
    assert compare_topic("O", want, [rec(headers=(Header("h", b"x"),))], ignore_headers=True) is None


def test_responses_match_named_fields_operators_and_statement_macro() -> None:
    statements = ["CREATE STREAM X;", "SELECT * FROM X;"]
    actual = [
        {"admin": {"@type": "currentStatus", "statementText": "CREATE STREAM X;", "commandId": "c"}},
        {"query": [{"header": {"queryId": "transient_X_1", "schema": "`A` INTEGER"}},
                   {"row": {"columns": [1.0]}}, {"finalMessage": "Limit Reached"}]},
    ]
    expected = [
        {"admin": {"@type": "currentStatus", "statementText": "{STATEMENT}"}},
        {"query": [{"header": {"queryId|starts_with": "transient_", "schema": "`A` INTEGER"}},
                   {"row": {"columns": [1]}}, {"finalMessage": "Limit Reached"}]},
    ]
    assert compare_responses(actual, expected, statements) is None
    wrong = [expected[0], {"query": expected[1]["query"][:2]}]
    assert "row count mismatch" in (compare_responses(actual, wrong, statements) or "")
    bad_type = [{"admin": {"@type": "streams"}}]
    assert "@type" in (compare_responses(actual, bad_type, statements) or "")
    assert "Not enough responses" in (compare_responses([], bad_type, statements) or "")


def test_query_rows_match_in_any_order_unless_the_case_verifies_order() -> None:
    statements = ["SELECT * FROM T;"]
    header = {"header": {"schema": "`K` STRING KEY, `V` INTEGER"}}
    actual = [{"query": [header, {"row": {"columns": ["b", 2]}}, {"row": {"columns": ["a", 1]}}]}]
    expected = [{"query": [header, {"row": {"columns": ["a", 1]}}, {"row": {"columns": ["b", 2]}}]}]
    assert compare_responses(actual, expected, statements) is None
    problem = compare_responses(actual, expected, statements, verify_order=True)
    assert problem is not None and "responses[0]->query[1]->row->columns" in problem
    # a multiset: one actual row cannot stand for two expected ones
    twice = [{"query": [header, {"row": {"columns": ["a", 1]}}, {"row": {"columns": ["a", 1]}}]}]
    assert compare_responses(actual, twice, statements) is not None
    assert compare_responses(twice, expected, statements) is not None
