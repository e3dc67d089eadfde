"""Add newly passing QTT cases to ``tests/qtt/passing.txt`` (the list only grows).

    python tests/qtt/update_passing.py [--report tests/qtt/.last-run/report.json]

Without ``--report`` the whole corpus is run first (as ``test_conformance.py`` does); with it,
the passes of an earlier run's JSON report are added.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # qtt_background, which test_conformance imports


def main(argv: list[str] | None = None) -> int:
    from ksqlpy.testing import report

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, help="a JSON report of an earlier run")
    args = parser.parse_args(argv)
    if args.report is not None:
        data = json.loads(args.report.read_text(encoding="utf-8"))
        results = [
            report.CaseResult(case_id=c["id"], file=c["file"], name=c["name"], format=c["format"],
                              status=c["status"])
            for c in data["cases"]
        ]
    else:
        from test_conformance import run_corpus

        results = run_corpus()
    passing = HERE / "passing.txt"
    added = report.update_passing(passing, results)
    print(f"{len(added)} cases added; {len(report.read_passing(passing))} listed in {passing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
