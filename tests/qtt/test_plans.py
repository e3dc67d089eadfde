"""ksqlDB's stored plans (``../shared/qtt-plans``) run on ksqlpy: each case applies ksqlDB's own
serialized plans, never its statement text, then compares outputs as QTT cases do.

``test_listed_plan_cases_still_pass`` runs the cases listed in ``tests/qtt/plans-passing.txt``
(in worker processes) and fails when one of them no longer passes or no longer exists. Only the
listed cases run, to keep CI short; ``KSQLPY_PLANS_ALL=1`` runs the whole corpus and prints the
pass count and the most common failure causes. Both write ``tests/qtt/.last-run/plans-summary.txt``
and ``plans-report.json``; ``ksqlpy test --plans ../shared/qtt-plans --update-passing`` adds new
passes to the list.

The run starts in the background as soon as the session has collected the test (after the QTT
run, when both are selected), and takes the CPU other tests leave idle
(``tests/qtt_background.py``); the test waits for its results.

Environment: ``KSQLPY_QTT_PLANS`` overrides the corpus folder, ``KSQLPY_PLANS_JOBS`` the number
of worker processes (default 4: a case mostly waits for its queries to go idle, so four workers
share two cores well; the listed cases take about three minutes on two cores);
``KSQLPY_QTT_FOREGROUND=1`` runs the cases when the test runs instead.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import qtt_background

from ksqlpy.planner.steps import (
    CreateStreamCommand,
    ForeignKeyTableTableJoin,
    KsqlPlan,
    QueryPlan,
    StreamFilter,
    StreamSelect,
    StreamSink,
    StreamSource,
)
from ksqlpy.planner.steps.formats import FormatInfo, Formats
from ksqlpy.testing import report
from ksqlpy.testing.plans import load_plan_cases
from ksqlpy.testing.runner import run_cases

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
#: ../shared/qtt-plans beside the repository (or beside the folder of worktrees)
_DEFAULT = next(
    (
        p
        for p in (REPO.parent / "shared" / "qtt-plans", REPO.parents[1] / "shared" / "qtt-plans")
        if p.is_dir()
    ),
    REPO.parent / "shared" / "qtt-plans",
)
CORPUS = Path(os.environ.get("KSQLPY_QTT_PLANS", _DEFAULT))
PASSING = HERE / "plans-passing.txt"
LAST_RUN = HERE / ".last-run"


def plan_folders() -> list[Path]:
    """The case folders to run: those of the listed cases, or every one with ``KSQLPY_PLANS_ALL``."""
    if not CORPUS.is_dir():
        return []
    if os.environ.get("KSQLPY_PLANS_ALL"):
        return [CORPUS]
    # an id is '<case folder>/<test case name>'; folder names hold no '/'
    names = sorted({case_id.split("/", 1)[0] for case_id in report.read_passing(PASSING)})
    return [CORPUS / name for name in names if (CORPUS / name / "plan.json").is_file()]


JOBS = int(os.environ.get("KSQLPY_PLANS_JOBS", "4"))
BACKGROUND = qtt_background.register(
    "test_listed_plan_cases_still_pass", lambda: load_plan_cases(plan_folders()), JOBS
)


def run_plans(folders: list[Path]) -> list[report.CaseResult]:
    return write_reports(run_cases(load_plan_cases(folders), jobs=JOBS))


def write_reports(results: list[report.CaseResult]) -> list[report.CaseResult]:
    text = io.StringIO()
    report.write_causes(text, results, 30)
    text.write(report.summary_line(results) + "\n")
    LAST_RUN.mkdir(exist_ok=True)
    (LAST_RUN / "plans-summary.txt").write_text(text.getvalue(), encoding="utf-8")
    report.write_json_report(LAST_RUN / "plans-report.json", results)
    print(text.getvalue())
    return results


@pytest.mark.qtt
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the stored plans are absent ({CORPUS})")
def test_listed_plan_cases_still_pass() -> None:
    passing = report.read_passing(PASSING)
    assert passing, f"{PASSING} lists no case"
    results, again = BACKGROUND.wait(passing)
    write_reports(results)
    if again:
        print(f"Stored plans: {len(again)} listed cases did not pass in the background and ran again: "
              f"{again[:20]}")
    ran = {r.case_id for r in results}
    missing = sorted(passing - ran)
    broken = report.regressions(passing, results)
    print(f"Stored plans: {sum(r.passed for r in results)} cases pass ({len(passing)} listed)")
    lines = [f"{r.case_id}: {r.status}: {(r.error or '').splitlines()[0] if r.error else ''}" for r in broken]
    assert not broken, f"{len(broken)} listed cases no longer pass:\n" + "\n".join(lines[:50])
    assert not missing, f"{len(missing)} listed cases no longer exist:\n" + "\n".join(missing[:50])


# ------------------------------------------------------------------------------ the runner itself

JSON = Formats(key_format=FormatInfo(format="KAFKA"), value_format=FormatInfo(format="JSON"))
SCHEMA = "`ID` STRING KEY, `V` INTEGER"


def _write_case(folder: Path, *, join: bool = False, expected_v: int = 20) -> None:
    """A case folder as ksqlDB writes them: a stream, a CSAS filtering and doubling it."""
    source = StreamSource(
        context="KsqlTopic/Source",
        topic_name="input",
        formats=JSON,
        source_schema=SCHEMA,
        pseudo_column_version=1,
    )
    inner = (
        source
        if not join
        else ForeignKeyTableTableJoin(  # a join the runtime refuses
            context="Join",
            join_type="OUTER",
            left_source=source,
            right_source=source,
            left_join_expression="V",
            formats=JSON,
        )
    )
    project = StreamSelect(
        context="Project",
        source=StreamFilter(context="WhereFilter", source=inner, filter_expression="(V > 5)"),
        key_column_names=("ID",),
        select_expressions=("(V * 2) AS V",),
    )
    plans = [
        KsqlPlan(
            # the text is never run: a mistake in it must not matter
            statement_text="CREATE STREAM INPUT (ID STRING KEY, V INT) WITH (KAFKA_TOPIC='input', VALUE_FORMAT='JSON');",
            ddl_command=CreateStreamCommand(
                source_name="INPUT", schema=SCHEMA, topic_name="input", formats=JSON
            ),
        ),
        KsqlPlan(
            statement_text="CREATE STREAM OUTPUT AS SELECT ID, V * 3 AS V FROM INPUT;",
            ddl_command=CreateStreamCommand(
                source_name="OUTPUT", schema=SCHEMA, topic_name="OUTPUT", formats=JSON
            ),
            query_plan=QueryPlan(
                sources=("INPUT",),
                sink="OUTPUT",
                physical_plan=StreamSink(context="OUTPUT", source=project, formats=JSON, topic_name="OUTPUT"),
                query_id="CSAS_OUTPUT_0",
            ),
        ),
    ]
    spec = {
        "version": "8.0.0",
        "path": "query-validation-tests/example.json",
        "testCase": {
            "name": "doubles big values",
            "inputs": [
                {"topic": "input", "key": "a", "value": {"V": 1}},
                {"topic": "input", "key": "b", "value": {"V": 10}},
            ],
            "outputs": [{"topic": "OUTPUT", "key": "b", "value": {"V": expected_v}}],
            "topics": [{"name": "input", "replicas": 1, "numPartitions": 4}],
            "statements": [p.statement_text for p in plans],
            "post": {"sources": [], "topics": {"topics": [{"name": "OUTPUT", "partitions": 4}]}},
        },
    }
    folder.mkdir(parents=True)
    configs = {"ksql.streams.cache.max.bytes.buffering": "0", "ksql.service.id": "some.ksql.service.id"}
    (folder / "plan.json").write_text(json.dumps({"plan": [p.to_json() for p in plans], "configs": configs}))
    (folder / "spec.json").write_text(json.dumps(spec))


def test_plans_command_runs_cases_from_their_plans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ksqlpy.main import main

    _write_case(tmp_path / "corpus" / "example_-_doubles")
    _write_case(tmp_path / "corpus" / "example_-_wrong", expected_v=30)
    _write_case(tmp_path / "corpus" / "example_-_joined", join=True)
    report_file = tmp_path / "report.json"
    passing = tmp_path / "plans-passing.txt"
    code = main(
        [
            "test",
            "--plans",
            str(tmp_path / "corpus"),
            "--json-report",
            str(report_file),
            "--update-passing",
            str(passing),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "example_-_doubles: 1/1 passed [ok]" in out
    assert "OUTER foreign-key joins are not supported: fkTableTableJoinV1 at Join" in out
    assert out.rstrip().endswith("1 passed, 2 failed")
    cases = {c["id"]: c for c in json.loads(report_file.read_text())["cases"]}
    assert cases["example_-_doubles/doubles big values"]["status"] == "passed"
    assert cases["example_-_doubles/doubles big values"]["file"] == "example_-_doubles"
    assert cases["example_-_doubles/doubles big values"]["name"] == "doubles big values"
    # the plan ran, not the text (which multiplies by 3)
    assert cases["example_-_wrong/doubles big values"]["outputs"][0]["value"] == {"V": 20}
    assert report.read_passing(passing) == {"example_-_doubles/doubles big values"}
