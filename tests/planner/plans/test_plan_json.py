"""Plans read and write ksqlDB's plan JSON: every serialized plan in ../shared/qtt-plans loads,
plans written by ksqlDB 8.x come back byte-for-byte equal (as JSON values), older ones reach a
fixed point, and an unknown step type is refused with its name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ksqlpy.planner.steps import KsqlPlan, PlanFormatError, StreamSelect, StreamSource, known_types

REPO = Path(__file__).resolve().parents[3]
PLANS = Path(os.environ.get("KSQLPY_QTT_PLANS", REPO.parent / "shared" / "qtt-plans"))

pytestmark = pytest.mark.skipif(not PLANS.is_dir(), reason=f"the historical plans are absent ({PLANS})")


def _cases() -> list[Path]:
    return sorted(p for p in PLANS.iterdir() if (p / "plan.json").is_file())


def test_every_historical_plan_loads_and_ksqldb_8_plans_round_trip() -> None:
    cases = _cases()
    assert len(cases) > 1000
    exact = fixed = 0
    for case in cases:
        entries = json.loads((case / "plan.json").read_text())["plan"]
        version = json.loads((case / "spec.json").read_text())["version"]
        plans = [KsqlPlan.from_json(e) for e in entries]
        written = [p.to_json() for p in plans]
        if version.startswith("8."):
            assert written == entries, case.name
            exact += 1
        else:
            # older plans are upgraded to today's shape; that shape is stable
            again = [KsqlPlan.from_json(w).to_json() for w in written]
            assert again == written, case.name
            fixed += 1
    assert exact > 1000 and fixed > 100


def test_step_tree_is_walkable() -> None:
    entry = {
        "@type": "ksqlPlanV1",
        "statementText": "CREATE STREAM B AS SELECT * FROM A;",
        "ddlCommand": None,
        "queryPlan": {
            "sources": ["A"],
            "sink": "B",
            "physicalPlan": {
                "@type": "streamSelectV1",
                "properties": {"queryContext": "Project"},
                "source": {
                    "@type": "streamSourceV1",
                    "properties": {"queryContext": "KsqlTopic/Source"},
                    "topicName": "a",
                    "formats": {
                        "keyFormat": {"format": "KAFKA", "properties": {}},
                        "valueFormat": {"format": "JSON", "properties": {}},
                    },
                    "timestampColumn": None,
                    "sourceSchema": "`K` STRING KEY, `V` INTEGER",
                    "pseudoColumnVersion": 1,
                },
                "keyColumnNames": ["K"],
                "selectedKeys": None,
                "selectExpressions": ["V AS V"],
            },
            "queryId": "CSAS_B_0",
            "runtimeId": None,
        },
    }
    plan = KsqlPlan.from_json(entry)
    assert plan.query_plan is not None
    steps = list(plan.query_plan.physical_plan.walk())
    assert [type(s) for s in steps] == [StreamSelect, StreamSource]
    assert [s.context for s in steps] == ["Project", "KsqlTopic/Source"]
    assert plan.to_json() == entry


def test_unknown_step_type_is_refused_by_name() -> None:
    entry = {
        "@type": "ksqlPlanV1",
        "statementText": "x",
        "ddlCommand": None,
        "queryPlan": {
            "sources": [],
            "sink": None,
            "physicalPlan": {"@type": "streamTeleportV9", "properties": {"queryContext": "X"}},
            "queryId": "Q",
        },
    }
    with pytest.raises(PlanFormatError, match="Unknown plan element type 'streamTeleportV9'"):
        KsqlPlan.from_json(entry)
    assert "streamSelectV1" in known_types() and "streamTeleportV9" not in known_types()


def test_missing_required_field_is_named() -> None:
    with pytest.raises(PlanFormatError, match="Missing field 'selectExpressions'"):
        KsqlPlan.from_json(
            {
                "@type": "ksqlPlanV1",
                "statementText": "x",
                "queryPlan": {
                    "sources": [],
                    "sink": None,
                    "physicalPlan": {
                        "@type": "streamSelectV1",
                        "properties": {"queryContext": "Project"},
                        "source": {"@type": "streamSourceV1", "properties": {"queryContext": "S"},
                                   "topicName": "t", "formats": {"keyFormat": {"format": "KAFKA"},
                                   "valueFormat": {"format": "JSON"}}, "sourceSchema": ""},
                    },
                    "queryId": "Q",
                },
            }
        )


def test_every_ddl_command_round_trips_through_the_catalog() -> None:
    from ksqlpy.planner.steps import CreateSourceCommand
    from ksqlpy.planner.steps.catalog import command_of, source_of

    seen = 0
    for case in _cases():
        for entry in json.loads((case / "plan.json").read_text())["plan"]:
            command = KsqlPlan.from_json(entry).ddl_command
            if not isinstance(command, CreateSourceCommand) or "`" not in command.schema:
                continue
            if any(t in command.schema for t in ("ADDRESS", "PERSON")):  # custom types, registered earlier
                continue
            assert command_of(source_of(command), or_replace=command.or_replace) == command, case.name
            seen += 1
    assert seen > 2500
