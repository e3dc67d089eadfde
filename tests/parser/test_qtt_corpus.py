"""Every statement of ksqlDB's conformance cases parses, and prints back to an equal tree.

The cases are read from ../shared/qtt at test time. Statements that ksqlDB itself rejects while
parsing (cases expecting a ParseFailedException or a syntax error) are expected to fail here too.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

import pytest
from qtt_corpus import QTT

from ksqlpy.errors import KsqlpyError, ParseError
from ksqlpy.parser import ast, parse
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


@functools.cache
def _parsed(statement: str) -> list[ast.Statement] | KsqlpyError:
    """``statement`` parsed, or the error it fails with. Many cases share statements, and both
    tests read them all: each distinct text is parsed once (the parser keeps no state between
    texts, so a text parses the same every time)."""
    try:
        return parse(statement)
    except KsqlpyError as error:
        return error


def test_qtt_statements_parse() -> None:
    total = 0
    unexpected: list[str] = []
    expected_failures = 0
    for case_id, statement, expects_error in _statements():
        total += 1
        error = _parsed(statement)
        if isinstance(error, KsqlpyError):
            if expects_error:
                expected_failures += 1
            else:
                unexpected.append(f"{case_id}: {statement}\n    {error}")
    assert total > 1000
    assert unexpected == [], "\n".join(unexpected)


@functools.cache
def _round_trip_problems(statement: str) -> tuple[str, ...]:
    """What goes wrong when ``statement``'s trees are printed and parsed again (nothing: ``()``)."""
    parsed = _parsed(statement)
    if isinstance(parsed, ParseError):
        return ()
    if isinstance(parsed, KsqlpyError):
        raise parsed
    problems: list[str] = []
    for node in parsed:
        printed = format_statement(node)
        try:
            again = parse(printed)
        except ParseError as error:
            problems.append(f"{printed}\n    {error}")
            continue
        if [without_text(n) for n in again] != [without_text(node)]:
            problems.append(f"{statement}\n    printed as {printed}")
    return tuple(problems)


def test_qtt_statements_round_trip() -> None:
    mismatches: list[str] = []
    for case_id, statement, _ in _statements():
        mismatches.extend(f"{case_id}: {problem}" for problem in _round_trip_problems(statement))
    assert not mismatches, "\n".join(mismatches[:20])
