"""The command log stores plans, and a restart runs them as stored.

A plan written by another version of the planner (here: one that projected ``DURATION`` times
ten) keeps running after a restart with today's planner, which would plan the statement
differently; the planner is never consulted on restart; and a stored plan this build cannot read
stops the start with a message naming what it does not know, instead of being skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from test_engine import PAGEVIEWS, produce_json, read_topic

from ksqlpy.errors import KsqlpyError
from ksqlpy.planner.steps import KsqlPlan
from ksqlpy.runtime import session as session_module
from ksqlpy.runtime.commandlog import Command
from ksqlpy.runtime.engine import Engine

CSAS = "CREATE STREAM long_views AS SELECT user_id, page, duration FROM pageviews;"


def _older_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan CSAS as a different planner version would: DURATION AS DURATION becomes (DURATION * 10)."""
    plan = session_module.plan_create_as_select

    def older(*args: Any, **kwargs: Any) -> Any:
        planned = plan(*args, **kwargs)
        text = orjson.dumps(planned.plan.to_json()).replace(b'"DURATION AS DURATION"', b'"(DURATION * 10) AS DURATION"')
        return type(planned)(
            plan=KsqlPlan.from_json(orjson.loads(text)), sink=planned.sink, source=planned.source, step=planned.step
        )

    monkeypatch.setattr(session_module, "plan_create_as_select", older)


def test_a_restart_runs_the_stored_plan_not_the_statement_planned_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"ksql.streams.state.dir": str(tmp_path / "data")}
    with monkeypatch.context() as m:
        _older_planner(m)
        with Engine.open(config) as first:
            first.session().execute_all(PAGEVIEWS + CSAS)
            produce_json(first, "pageviews", [("u1", {"PAGE": "a", "DURATION": 5}, 1)])
            assert first.wait_idle()
            assert [v["DURATION"] for _, v, _ in read_topic(first, "LONG_VIEWS")] == [50]

    def planner_must_not_run(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a restart planned a statement again")

    monkeypatch.setattr(session_module, "plan_create_as_select", planner_must_not_run)
    with Engine.open(config) as second:
        assert list(second.queries) == ["CSAS_LONG_VIEWS_0"]
        produce_json(second, "pageviews", [("u2", {"PAGE": "b", "DURATION": 7}, 2)])
        assert second.wait_idle()
        # today's planner would project DURATION as it is; the stored plan multiplies it
        assert [v["DURATION"] for _, v, _ in read_topic(second, "LONG_VIEWS")] == [50, 70]
        (explained,) = second.session().execute_all("EXPLAIN CSAS_LONG_VIEWS_0;")
        assert "Logger: CSAS_LONG_VIEWS_0.Project" in explained.execution_plan


def test_the_command_log_holds_ksqldb_plans(tmp_path: Path) -> None:
    with Engine.open({"ksql.streams.state.dir": str(tmp_path / "data")}) as engine:
        engine.session().execute_all(PAGEVIEWS + CSAS)
        commands = [c for _, c in engine.commands.replay()]
    plans = [KsqlPlan.from_json(c.plan) for c in commands if c.plan is not None]
    csas = next(p for p in plans if p.query_plan is not None)
    assert csas.query_plan is not None and csas.query_plan.query_id == "CSAS_LONG_VIEWS_0"
    assert [s.TYPE for s in csas.query_plan.physical_plan.walk()] == ["streamSinkV1", "streamSelectV1", "streamSourceV1"]
    assert csas.to_json()["ddlCommand"]["@type"] == "createStreamV1"


def test_a_stored_plan_this_build_cannot_read_stops_the_start(tmp_path: Path) -> None:
    config = {"ksql.streams.state.dir": str(tmp_path / "data")}
    with Engine.open(config) as first:
        first.session().execute_all(PAGEVIEWS + CSAS)
        stored = next(c for _, c in first.commands.replay() if c.query_id is not None)
        future = orjson.loads(orjson.dumps(stored.plan))
        future["queryPlan"]["physicalPlan"]["source"]["@type"] = "streamTeleportV9"
        first.commands.append(Command("CREATE STREAM teleported AS SELECT * FROM pageviews;", {}, "CSAS_X_9", future))
    with pytest.raises(KsqlpyError, match="streamTeleportV9"):
        Engine.open(config)
