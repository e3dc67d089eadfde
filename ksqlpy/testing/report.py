"""Results of running QTT cases: per-file progress lines, the summary, the JSON report, the
grouping of failures by cause, and the ``passing.txt`` list.

``passing.txt`` holds one case id per line (see :attr:`ksqlpy.testing.qtt.QttCase.case_id`),
sorted; lines starting with ``#`` are comments. The list only grows: :func:`update_passing`
adds newly passing cases and never removes any.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ksqlpy.testing.compare import ProducedRecord

PASSED = "passed"
FAILED = "failed"
ERROR = "error"
SKIPPED = "skipped"


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """What running one case gave: a verdict, what was produced and why it failed."""

    case_id: str
    file: str
    name: str
    format: str | None
    status: str
    outputs: tuple[ProducedRecord, ...] = ()
    responses: tuple[Mapping[str, Any], ...] | None = None
    error: str | None = None
    seconds: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.case_id,
            "file": self.file,
            "name": self.name,
            "format": self.format,
            "status": self.status,
            "outputs": [r.to_json() for r in self.outputs],
            "responses": None if self.responses is None else list(self.responses),
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }
        return data


# ---------------------------------------------------------------------------------------------
# Console
# ---------------------------------------------------------------------------------------------


def counts(results: Iterable[CaseResult]) -> Counter[str]:
    return Counter(r.status for r in results)


def summary_line(results: Sequence[CaseResult]) -> str:
    """``N passed, M failed`` (+ ``, K skipped``); errors count as failed."""
    c = counts(results)
    line = f"{c[PASSED]} passed, {c[FAILED] + c[ERROR]} failed"
    if c[SKIPPED]:
        line += f", {c[SKIPPED]} skipped"
    return line


def file_line(file: str, results: Sequence[CaseResult]) -> str:
    c = counts(results)
    failed = c[FAILED] + c[ERROR]
    mark = "ok" if not failed else "FAIL"
    text = f"{file}: {c[PASSED]}/{len(results) - c[SKIPPED]} passed [{mark}]"
    if c[SKIPPED]:
        text += f" ({c[SKIPPED]} skipped)"
    return text


def write_file_results(out: TextIO, file: str, results: Sequence[CaseResult], *, verbose: bool) -> None:
    """The compact progress line of a file, then each failing case with its reason."""
    out.write(file_line(file, results) + "\n")
    for r in results:
        if r.status in (FAILED, ERROR):
            reason = (r.error or "").strip()
            if not verbose:
                reason = _first_lines(reason, 6)
            out.write(f"  {r.status.upper()}: {r.case_id}\n")
            if reason:
                out.write("    " + reason.replace("\n", "\n    ") + "\n")
    out.flush()


def _first_lines(text: str, n: int) -> str:
    lines = text.splitlines()
    return "\n".join(lines[:n] + (["..."] if len(lines) > n else []))


# ---------------------------------------------------------------------------------------------
# Failure causes
# ---------------------------------------------------------------------------------------------

_VARIABLE_PARTS = (
    (re.compile(r"Topic '?[^ ]+?'?[,.] (message \d+: )?"), "Topic T, "),
    (re.compile(r"line \d+:\d+"), "line L:C"),
    (re.compile(r"Line: \d+, Col: \d+"), "Line: L, Col: C"),
    # Quoted names, not apostrophes ("Can't"): the opening quote follows no letter.
    (re.compile(r"(?<![A-Za-z])'[^']*'"), "'…'"),
    (re.compile(r"`[^`]*`"), "`…`"),
    (re.compile(r"\b\d+\b"), "N"),
)


def _blank(text: str) -> str:
    for pattern, replacement in _VARIABLE_PARTS:
        text = pattern.sub(replacement, text)
    return text[:160]


def cause_of(error: str) -> str:
    """A failure's cause with names and numbers blanked, so that alike failures group.

    Output mismatches caused by a failed query are grouped by the query's error."""
    lines = error.strip().splitlines()
    first = lines[0] if lines else "(no message)"
    if first.startswith("Topic ") and "Expected" in first:
        if "Query errors:" in lines and lines.index("Query errors:") + 1 < len(lines):
            return "query failed: " + _blank(lines[lines.index("Query errors:") + 1].strip())
        return "output records differ" if "records but it was" not in first else "output record count differs"
    return _blank(first)


def top_causes(results: Iterable[CaseResult], limit: int = 30) -> list[tuple[str, int]]:
    causes = Counter(cause_of(r.error or "") for r in results if r.status in (FAILED, ERROR))
    return causes.most_common(limit)


def write_causes(out: TextIO, results: Sequence[CaseResult], limit: int = 30) -> None:
    causes = top_causes(results, limit)
    if not causes:
        return
    out.write("Most common failure causes:\n")
    out.writelines(f"  {n:5d}  {cause}\n" for cause, n in causes)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def write_json_report(path: Path, results: Sequence[CaseResult]) -> None:
    data = {
        "summary": dict(counts(results)),
        "cases": [r.to_json() for r in sorted(results, key=lambda r: r.case_id)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")


def read_passing(path: Path) -> set[str]:
    if not path.exists():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.rstrip("\n") for line in lines if line.strip() and not line.startswith("#")}


PASSING_HEADER = (
    "# QTT cases ksqlpy passes: '<suite>/<file>.json/<case>[ - <FORMAT>][ - config=<v>]'.\n"
    "# tests/qtt/test_conformance.py fails when one of them stops passing. The list only grows:\n"
    "# `ksqlpy test --qtt ../shared/qtt --update-passing` adds new passes; remove lines by hand.\n"
)


PLANS_PASSING_HEADER = (
    "# Stored-plan cases ksqlpy passes: '<case folder>/<test case name>' (../shared/qtt-plans).\n"
    "# tests/qtt/test_plans.py fails when one of them stops passing. The list only grows:\n"
    "# `ksqlpy test --plans ../shared/qtt-plans --update-passing` adds new passes; remove lines by hand.\n"
)


def update_passing(path: Path, results: Iterable[CaseResult], *, header: str = PASSING_HEADER) -> list[str]:
    """Add newly passing cases to ``path``; return the added ids."""
    known = read_passing(path)
    added = sorted({r.case_id for r in results if r.passed} - known)
    if added or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = sorted(known | set(added))
        path.write_text(header + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return added


def regressions(passing: set[str], results: Iterable[CaseResult]) -> list[CaseResult]:
    """Cases listed as passing that did not pass this time (cases not run are not counted)."""
    return sorted((r for r in results if r.case_id in passing and not r.passed), key=lambda r: r.case_id)
