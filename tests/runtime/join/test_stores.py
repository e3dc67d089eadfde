"""The window store names of stream-stream joins equal those in ksqlDB's topologies: for every
historical plan whose join a number is given to, the topology ksqlDB built from that plan has
stores of those names (``KSTREAM-JOINTHIS-0000000016-store``)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ksqlpy.planner.steps import steps as s
from ksqlpy.planner.steps.commands import KsqlPlan
from ksqlpy.runtime.join.stores import store_names, store_numbers
from ksqlpy.testing.plans import upgraded_plan

REPO = Path(__file__).resolve().parents[3]
PLANS = Path(os.environ.get("KSQLPY_QTT_PLANS", REPO.parent / "shared" / "qtt-plans"))
_STORE = re.compile(r"KSTREAM-(?:JOIN|OUTER)(?:THIS|OTHER)-\d+-store")


def _steps(step: s.ExecutionStep) -> Iterator[s.ExecutionStep]:
    yield step
    for name in ("source", "left_source", "right_source"):
        child = getattr(step, name, None)
        if isinstance(child, s.ExecutionStep):
            yield from _steps(child)


@pytest.mark.skipif(not PLANS.is_dir(), reason=f"the historical plans are absent ({PLANS})")
def test_window_store_names_match_ksqldb_topologies() -> None:
    checked = 0
    wrong: list[str] = []
    for folder in sorted(PLANS.iterdir()):
        topology = folder / "topology"
        if not topology.is_file():
            continue
        names = set(_STORE.findall(topology.read_text(encoding="utf-8")))
        if not names:
            continue
        for entry in json.loads((folder / "plan.json").read_text(encoding="utf-8"))["plan"]:
            if not entry.get("queryPlan"):
                continue
            plan = KsqlPlan.from_json(upgraded_plan(entry))
            assert plan.query_plan is not None
            join = next((x for x in _steps(plan.query_plan.physical_plan) if isinstance(x, s.JoinStep)), None)
            if join is None:
                continue
            numbers = store_numbers(join)
            for step in _steps(join):
                if isinstance(step, s.StreamStreamJoin) and id(step) in numbers:
                    checked += 1
                    expected = {n.removesuffix("-changelog") for n in store_names(step, numbers[id(step)])}
                    if not expected <= names:
                        wrong.append(f"{folder.name}: {sorted(expected)} not in {sorted(names)}")
    assert checked > 100  # the model covers most of ksqlDB's stream-stream joins
    assert not wrong, "\n".join(wrong[:10])
