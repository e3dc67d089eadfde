"""Plan fidelity: from a historical case's statements, ksqlpy's planner builds the plans ksqlDB
built (compared as JSON; only ``statementText`` is ignored, see ksqlpy.testing.fidelity). The
cases listed in ``fidelity-matching.txt`` must keep matching; the list only grows
(``python -m ksqlpy.testing.fidelity --update`` adds new matches)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ksqlpy.testing.fidelity import read_matching, run_fidelity

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
PLANS = Path(os.environ.get("KSQLPY_QTT_PLANS", REPO.parent / "shared" / "qtt-plans"))
MATCHING = HERE / "fidelity-matching.txt"


@pytest.mark.skipif(not PLANS.is_dir(), reason=f"the historical plans are absent ({PLANS})")
def test_listed_plans_still_match_ksqldb() -> None:
    from ksqlpy.testing.test_udfs import register_test_functions

    register_test_functions()
    results = {r.case: r for r in run_fidelity(PLANS)}
    listed = read_matching(MATCHING)
    matched = sum(r.matched for r in results.values())
    print(f"plan fidelity: {matched} of {len(results)} plans equal ksqlDB's ({matched / len(results):.1%})")
    missing = sorted(listed - set(results))
    broken = sorted(f"{c}: {results[c].reason}" for c in listed & set(results) if not results[c].matched)
    assert not broken, f"{len(broken)} plans no longer match ksqlDB's:\n" + "\n".join(broken[:30])
    assert not missing, "listed cases no longer exist: " + ", ".join(missing[:20])
