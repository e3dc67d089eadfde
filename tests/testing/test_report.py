"""Reports: summary line, causes, JSON report, the grow-only passing list, the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from ksqlpy.testing import cli, report
from ksqlpy.testing.compare import ProducedRecord
from ksqlpy.testing.qtt import Window


def result(case_id: str, status: str, error: str | None = None) -> report.CaseResult:
    return report.CaseResult(case_id=case_id, file="s/f.json", name=case_id, format=None, status=status,
                             error=error)


def test_summary_line_counts_errors_as_failed_and_mentions_skips() -> None:
    rs = [result("a", "passed"), result("b", "failed"), result("c", "error"), result("d", "skipped")]
    assert report.summary_line(rs) == "1 passed, 2 failed, 1 skipped"
    assert report.summary_line(rs[:2]) == "1 passed, 1 failed"


def test_causes_group_alike_failures() -> None:
    rs = [result("a", "failed", "Statement failed: Column 'X' cannot be resolved at line 1:3"),
          result("b", "failed", "Statement failed: Column 'YY' cannot be resolved at line 2:7"),
          result("c", "failed", "Topic 'O', message 0: Expected <1, 2> ...")]
    causes = dict(report.top_causes(rs))
    assert causes["Statement failed: Column '…' cannot be resolved at line L:C"] == 2
    located = [result(n, "failed", f"Line: {n}, Col: 9: Column 'X' is ambiguous.") for n in ("3", "4")]
    assert dict(report.top_causes(located))["Line: L, Col: C: Column '…' is ambiguous."] == 2
    assert causes["output records differ"] == 1


def test_json_report_holds_actual_records(tmp_path: Path) -> None:
    record = ProducedRecord(topic="O", key=1, value={"V": 2}, timestamp=3, window=Window(0, 5, "TIME"))
    r = report.CaseResult(case_id="s/f.json/x - JSON", file="s/f.json", name="x", format="JSON",
                          status="passed", outputs=(record,))
    path = tmp_path / "r.json"
    report.write_json_report(path, [r])
    (case,) = json.loads(path.read_text())["cases"]
    assert case["file"] == "s/f.json" and case["format"] == "JSON" and case["error"] is None
    assert case["outputs"] == [{"topic": "O", "key": 1, "value": {"V": 2}, "timestamp": 3,
                                "window": {"start": 0, "end": 5, "type": "time"}, "headers": []}]
    assert case["responses"] is None


def test_passing_list_only_grows(tmp_path: Path) -> None:
    path = tmp_path / "passing.txt"
    assert report.update_passing(path, [result("a", "passed"), result("b", "failed")]) == ["a"]
    assert report.update_passing(path, [result("a", "failed"), result("c", "passed")]) == ["c"]
    assert report.read_passing(path) == {"a", "c"}
    assert [r.case_id for r in report.regressions({"a", "c"}, [result("a", "failed"), result("c", "passed")])] == ["a"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    code = cli.run(parser.parse_args(argv))
    return code, capsys.readouterr().out


def test_cli_prints_file_line_and_final_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "f.json").write_text(json.dumps({"tests": [
        {"name": "off", "enabled": False, "statements": ["X;"], "expectedException": {}}]}))
    code, out = run_cli(["--qtt", str(folder), "--json-report", str(tmp_path / "r.json")], capsys)
    assert code == 0
    assert out.splitlines()[0].startswith("suite/f.json: 0/0 passed")
    assert out.splitlines()[-1] == "0 passed, 0 failed, 1 skipped"
    assert json.loads((tmp_path / "r.json").read_text())["cases"][0]["status"] == "skipped"


def test_json_report_keeps_the_error_a_case_expected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "suite"
    folder.mkdir()
    create = "CREATE STREAM INPUT (ID INT KEY, V INT) WITH (kafka_topic='input', value_format='JSON');"
    (folder / "f.json").write_text(json.dumps({"tests": [
        {"name": "bad column", "statements": [create, "CREATE STREAM OUTPUT AS SELECT NOPE FROM INPUT;"],
         "expectedException": {"message": "NOPE"}},
        {"name": "fine", "statements": [create, "CREATE STREAM OUTPUT AS SELECT ID, V FROM INPUT;"],
         "inputs": [{"topic": "input", "key": 1, "value": {"V": 2}}],
         "outputs": [{"topic": "OUTPUT", "key": 1, "value": {"V": 2}}]}]}))
    code, out = run_cli(["--qtt", str(folder), "--json-report", str(tmp_path / "r.json")], capsys)
    assert code == 0 and out.splitlines()[-1] == "2 passed, 0 failed"
    bad, fine = json.loads((tmp_path / "r.json").read_text())["cases"]
    assert bad["status"] == "passed"
    # the statement as ksqlDB's engine quotes a planning error's: sanitized and laid out anew
    assert bad["error"] == (
        "line 2:32: SELECT column 'NOPE' cannot be resolved.\n"
        "Statement: CREATE STREAM OUTPUT AS SELECT NOPE NOPE\nFROM INPUT INPUT\nEMIT CHANGES"
    )
    assert fine["status"] == "passed" and fine["error"] is None


def test_cli_needs_a_mode(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_cli([], capsys)
    assert code == 2
