"""Every statement of ksqlDB's conformance cases parses, and prints back to an equal tree.

The cases are read from ../shared/qtt at test time. Statements that ksqlDB itself rejects while
parsing (cases expecting a ParseFailedException or a syntax error) are expected to fail here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from qtt_corpus import QTT

from ksqlpy.errors import KsqlpyError, ParseError
from ksqlpy.parser import parse
from ksqlpy.parser.formatter import format_statement
from tests.parser.conftest import without_text

# Measured: 3787 statements, 20 rejected, every one of them in a case that expects ksqlDB to
# reject it too. Unexpected failures must stay at zero.

pytestmark = [pytest.mark.qtt, pytest.mark.skipif(not QTT.is_dir(), reason=f"the QTT corpus is absent ({QTT})")]


def _statements() -> Iterator[tuple[str, str, bool]]:
    """(case id, statement, whether the case expects an error)."""
    for path in sorted(QTT.glob("*/*.json")):
        for case in json.loads(path.read_text()).get("tests", []):
            expects_error = bool(case.get("expectedException") or case.get("expectedError"))
            fmt = (case.get("format") or ["JSON"])[0]
            for statement in case.get("statements", []):
                yield f"{path.name}: {case['name']}", statement.replace("{FORMAT}", fmt), expects_error


def test_qtt_statements_parse() -> None:
    total = 0
    unexpected: list[str] = []
    expected_failures = 0
    for case_id, statement, expects_error in _statements():
        total += 1
        try:
            parse(statement)
        except KsqlpyError as error:
            if expects_error:
                expected_failures += 1
            else:
                unexpected.append(f"{case_id}: {statement}\n    {error}")
    assert total > 1000
    assert unexpected == [], "\n".join(unexpected)


def test_qtt_statements_round_trip() -> None:
    mismatches: list[str] = []
    for case_id, statement, _ in _statements():
        try:
            parsed = parse(statement)
        except ParseError:
            continue
        for node in parsed:
            printed = format_statement(node)
            try:
                again = parse(printed)
            except ParseError as error:
                mismatches.append(f"{case_id}: {printed}\n    {error}")
                continue
            if [without_text(n) for n in again] != [without_text(node)]:
                mismatches.append(f"{case_id}: {statement}\n    printed as {printed}")
    assert not mismatches, "\n".join(mismatches[:20])
