"""``ksqlpy test``: run QTT conformance cases, or one ksql-test-runner style test.

QTT mode::

    ksqlpy test --qtt ../shared/qtt [--filter SUBSTR] [-j N] [--json-report FILE]
                [--update-passing [FILE]] [--causes N]

prints a progress line per file (pass counts; failing cases with their reason), the most common
failure causes, and finally exactly ``N passed, M failed`` (``, K skipped`` when any).

Stored-plan mode runs the same way, each case from ksqlDB's serialized plans rather than its
statements (see :mod:`ksqlpy.testing.plans`)::

    ksqlpy test --plans ../shared/qtt-plans [--filter SUBSTR] [-j N] [--json-report FILE] ...

ksql-test-runner mode (ksqlDB's testing tool)::

    ksqlpy test --sql-file statements.sql --input-file input.json --output-file output.json

where the input file is ``{"inputs": [record, ...]}`` and the output file
``{"outputs": [record, ...]}`` (records as in QTT files). It prints ``>>> Test passed!`` or
``>>> Test failed: <reason>``. The exit status is 0 when everything passed, else 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ksqlpy.testing import report
from ksqlpy.testing.qtt import load_cases
from ksqlpy.testing.runner import RunOptions, run_cases
from ksqlpy.testing.testtool import load_tool_case

DEFAULT_PASSING = Path("tests/qtt/passing.txt")
DEFAULT_PLANS_PASSING = Path("tests/qtt/plans-passing.txt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    qtt = parser.add_argument_group("conformance cases (QTT)")
    qtt.add_argument("--qtt", nargs="+", metavar="PATH", help="QTT files or folders to run")
    qtt.add_argument(
        "--plans", nargs="+", metavar="PATH", help="stored-plan case folders (or folders of them) to run"
    )
    qtt.add_argument("--filter", metavar="SUBSTR", help="run only cases whose id contains SUBSTR")
    qtt.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="worker processes (default 1)")
    qtt.add_argument("--json-report", type=Path, metavar="FILE", help="write every case's result and outputs")
    qtt.add_argument(
        "--update-passing",
        nargs="?",
        const=DEFAULT_PASSING,
        type=Path,
        metavar="FILE",
        help=f"add newly passing cases to FILE (default {DEFAULT_PASSING}, with --plans "
        f"{DEFAULT_PLANS_PASSING}); the list only grows",
    )
    qtt.add_argument("--causes", type=int, default=20, metavar="N", help="show the N most common failure causes")
    qtt.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="time limit per case")
    qtt.add_argument("-v", "--verbose", action="store_true", help="print failure reasons in full")
    tool = parser.add_argument_group("ksql-test-runner compatible mode")
    tool.add_argument("-s", "--sql-file", type=Path, help="a file of statements to test")
    tool.add_argument("-i", "--input-file", type=Path, help='JSON file {"inputs": [...]}')
    tool.add_argument("-o", "--output-file", type=Path, help='JSON file {"outputs": [...]}')


def run(args: argparse.Namespace) -> int:
    if args.sql_file is not None or args.output_file is not None:
        return run_tool(args)
    if not args.qtt and not args.plans:
        print("ksqlpy test: give --qtt PATH..., --plans PATH... or --sql-file/--output-file", file=sys.stderr)
        return 2
    return run_qtt(args)


def run_qtt(args: argparse.Namespace) -> int:
    out = sys.stdout
    header = report.PASSING_HEADER
    try:
        if args.plans:
            from ksqlpy.testing.plans import load_plan_cases

            cases = load_plan_cases(args.plans, filter=args.filter)
            if args.qtt:
                cases += load_cases(args.qtt, filter=args.filter)
            if args.update_passing == DEFAULT_PASSING:
                args.update_passing = DEFAULT_PLANS_PASSING
            header = report.PLANS_PASSING_HEADER
        else:
            cases = load_cases(args.qtt, filter=args.filter)
    except (OSError, ValueError) as e:
        print(f"ksqlpy test: {e}", file=sys.stderr)
        return 2

    def on_file(file: str, results: list[report.CaseResult]) -> None:
        report.write_file_results(out, file, results, verbose=args.verbose)

    results = run_cases(
        cases, jobs=max(1, args.jobs), options=RunOptions(case_timeout=args.timeout), on_file=on_file
    )
    if args.causes:
        report.write_causes(out, results, args.causes)
    if args.json_report is not None:
        report.write_json_report(args.json_report, results)
    if args.update_passing is not None:
        added = report.update_passing(args.update_passing, results, header=header)
        out.write(f"{len(added)} cases added to {args.update_passing}\n")
    out.write(report.summary_line(results) + "\n")
    c = report.counts(results)
    return 0 if not (c[report.FAILED] or c[report.ERROR]) else 1


def run_tool(args: argparse.Namespace) -> int:
    from ksqlpy.testing.runner import run_case

    if args.sql_file is None or args.output_file is None:
        print("ksqlpy test: --sql-file and --output-file are required", file=sys.stderr)
        return 2
    try:
        case = load_tool_case(args.sql_file, args.input_file, args.output_file)
    except (OSError, ValueError) as e:
        print(f"\t >>> Test failed: {e}")
        return 1
    result = run_case(case, RunOptions(case_timeout=args.timeout))
    if result.passed:
        print("\t >>> Test passed!")
        return 0
    print(f"\t >>> Test failed: {result.error}")
    return 1
