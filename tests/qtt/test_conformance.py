"""ksqlDB's conformance cases (QTT), run on ksqlpy in one batch.

Every case under ``../shared/qtt`` runs once (one engine per case, in worker processes); the
test fails when a case listed in ``tests/qtt/passing.txt`` does not pass. The summary, the
current pass count and the most common failure causes are printed and written to
``tests/qtt/.last-run/`` (``summary.txt``, ``report.json``). ``update_passing.py`` adds new
passes to the list.

The run starts in the background as soon as the session has collected this test, and takes the
CPU other tests leave idle (``tests/qtt_background.py``); the test waits for its results.

Environment: ``KSQLPY_QTT`` overrides the corpus folder, ``KSQLPY_QTT_JOBS`` the number of
worker processes (default 4: cases mostly wait for their queries, so more workers than cores keep them busy);
``KSQLPY_QTT_FOREGROUND=1`` runs the cases when the test runs instead.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import qtt_background

from ksqlpy.testing import report
from ksqlpy.testing.qtt import load_cases
from ksqlpy.testing.runner import run_cases

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CORPUS = Path(os.environ.get("KSQLPY_QTT", REPO.parent / "shared" / "qtt"))
PASSING = HERE / "passing.txt"
LAST_RUN = HERE / ".last-run"


JOBS = int(os.environ.get("KSQLPY_QTT_JOBS", "4"))
BACKGROUND = qtt_background.register(
    "test_listed_cases_still_pass", lambda: load_cases([CORPUS]) if CORPUS.is_dir() else [], JOBS
)


def run_corpus() -> list[report.CaseResult]:
    """Run every case of the corpus; write the summary and JSON report to ``.last-run/``."""
    return write_reports(run_cases(load_cases([CORPUS]), jobs=JOBS))


def write_reports(results: list[report.CaseResult]) -> list[report.CaseResult]:
    """Write the summary and JSON report of ``results`` to ``.last-run/`` and print the summary."""
    text = io.StringIO()
    for file in sorted({r.file for r in results}):
        text.write(report.file_line(file, [r for r in results if r.file == file]) + "\n")
    report.write_causes(text, results, 30)
    text.write(report.summary_line(results) + "\n")
    LAST_RUN.mkdir(exist_ok=True)
    (LAST_RUN / "summary.txt").write_text(text.getvalue(), encoding="utf-8")
    report.write_json_report(LAST_RUN / "report.json", results)
    print(text.getvalue())
    return results


@pytest.mark.qtt
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the QTT corpus is absent ({CORPUS})")
def test_listed_cases_still_pass() -> None:
    passing = report.read_passing(PASSING)
    results, again = BACKGROUND.wait(passing)
    write_reports(results)
    if again:
        print(f"QTT: {len(again)} listed cases did not pass in the background and ran again: {again[:20]}")
    ran = {r.case_id for r in results}
    missing = sorted(passing - ran)
    broken = report.regressions(passing, results)
    print(f"QTT: {sum(r.passed for r in results)} cases pass ({len(passing)} listed in passing.txt)")
    lines = [f"{r.case_id}: {r.status}: {(r.error or '').splitlines()[0] if r.error else ''}" for r in broken]
    assert not broken, f"{len(broken)} listed cases no longer pass:\n" + "\n".join(lines[:50])
    assert not missing, f"{len(missing)} listed cases no longer exist:\n" + "\n".join(missing[:50])
