"""Plan fidelity: does ksqlpy's planner build, from a case's statements, the plans ksqlDB built?

For each historical case (``plan.json`` + ``spec.json``), the case's statements are planned in
order against a catalog that grows as they run, and each resulting ``ksqlPlanV1`` is compared
with ksqlDB's as JSON. Only ``statementText`` is ignored: ksqlDB stores the statement as its
own formatter rewrites it, which is for people and does not change what runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ksqlpy import parser
from ksqlpy.errors import KsqlpyError
from ksqlpy.parser import ast
from ksqlpy.planner import ddl
from ksqlpy.planner.catalog import Catalog
from ksqlpy.planner.plans import PlanContext, plan_create_as_select, plan_insert_into
from ksqlpy.planner.steps import DropSourceCommand, KsqlPlan, RegisterTypeCommand
from ksqlpy.planner.steps.catalog import command_of
from ksqlpy.planner.steps.schema import type_text
from ksqlpy.planner.types import resolve_type

IGNORED_FIELDS = ("statementText",)


@dataclass(frozen=True, slots=True)
class FidelityResult:
    case: str
    matched: bool
    reason: str = ""


def compare_case(folder: Path) -> FidelityResult:
    plan_file = json.loads((folder / "plan.json").read_text())
    spec = json.loads((folder / "spec.json").read_text())
    # ksqlDB's plan in today's shape (older versions left out empty format properties and
    # wrote since-removed fields); reading and writing it back is that upgrade
    expected = [_strip(KsqlPlan.from_json(e).to_json()) for e in plan_file["plan"]]
    config = {k: v for k, v in (plan_file.get("configs") or {}).items() if v is not None}
    config.update({k: str(v) for k, v in (spec["testCase"].get("properties") or {}).items()})
    try:
        got = [_strip(p.to_json()) for p in plan_statements(spec["testCase"]["statements"], config)]
    except KsqlpyError as e:
        return FidelityResult(folder.name, False, f"planning failed: {type(e).__name__}: {e.message.splitlines()[0]}")
    except Exception as e:  # noqa: BLE001 - a crash is a result to report
        return FidelityResult(folder.name, False, f"crashed: {type(e).__name__}: {e}")
    if len(got) != len(expected):
        return FidelityResult(folder.name, False, f"{len(got)} plans, ksqlDB made {len(expected)}")
    for i, (g, want) in enumerate(zip(got, expected, strict=True)):
        if g != want:
            return FidelityResult(folder.name, False, f"plan {i + 1}: {first_difference(g, want)}")
    return FidelityResult(folder.name, True)


def plan_statements(statements: list[str], config: dict[str, Any]) -> Iterator[KsqlPlan]:
    catalog = Catalog()
    ctx = PlanContext(catalog=catalog, config=config)
    queries = 0
    for text in statements:
        stmt = parser.parse_statement(text)
        match stmt:
            case ast.CreateSource():
                source = ddl.source_from_create(stmt, catalog, config)
                catalog.add(source)
                yield KsqlPlan(statement_text=stmt.text, ddl_command=command_of(source, or_replace=stmt.or_replace))
            case ast.CreateAsSelect():
                prefix = "CSAS" if stmt.kind is ast.SourceKind.STREAM else "CTAS"
                planned = plan_create_as_select(stmt, ctx, f"{prefix}_{stmt.name}_{queries}")
                queries += 1
                catalog.add(planned.sink)
                yield planned.plan
            case ast.InsertInto():
                planned = plan_insert_into(stmt, catalog.source(stmt.target), ctx, f"INSERTQUERY_{queries}")
                queries += 1
                yield planned.plan
            case ast.DropSource():
                catalog.remove(stmt.name)
                yield KsqlPlan(statement_text=stmt.text, ddl_command=DropSourceCommand(source_name=stmt.name))
            case ast.RegisterType():
                t = resolve_type(stmt.type, catalog.types)
                catalog.types[stmt.name] = t
                yield KsqlPlan(
                    statement_text=stmt.text, ddl_command=RegisterTypeCommand(type=type_text(t), type_name=stmt.name)
                )
            case _:
                continue


def _strip(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in IGNORED_FIELDS}


def first_difference(got: Any, want: Any, path: str = "") -> str:
    if isinstance(got, dict) and isinstance(want, dict):
        for k in list(want) + [k for k in got if k not in want]:
            if k not in got:
                return f"{path}/{k}: missing"
            if k not in want:
                return f"{path}/{k}: not in ksqlDB's plan"
            if got[k] != want[k]:
                step = want.get("@type")
                where = f"{path}/{k}" if k not in ("source", "leftSource", "rightSource", "physicalPlan") else path
                if step and k not in ("source", "leftSource", "rightSource"):
                    where = f"{path}/{step}.{k}"
                return first_difference(got[k], want[k], where)
        return path
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        for g, w in zip(got, want, strict=True):
            if g != w:
                return first_difference(g, w, path)
    return f"{path}: {json.dumps(got)[:160]} != {json.dumps(want)[:160]}"


def run_fidelity(root: Path) -> list[FidelityResult]:
    return [compare_case(p) for p in sorted(root.iterdir()) if (p / "plan.json").is_file()]


def read_matching(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def main(argv: list[str] | None = None) -> int:
    """``python -m ksqlpy.testing.fidelity [PLANS] [--update FILE]``: print the share of plans
    ksqlpy builds exactly as ksqlDB did, the most common differences, and optionally add the
    matching cases to FILE (the list only grows)."""
    import argparse
    import collections
    import re

    from ksqlpy.testing.test_udfs import register_test_functions

    ap = argparse.ArgumentParser(prog="python -m ksqlpy.testing.fidelity")
    ap.add_argument("plans", nargs="?", default="../shared/qtt-plans", type=Path)
    ap.add_argument("--update", type=Path, metavar="FILE")
    ap.add_argument("--causes", type=int, default=15)
    args = ap.parse_args(argv)
    register_test_functions()
    results = run_fidelity(args.plans)
    matched = [r for r in results if r.matched]
    causes = collections.Counter(re.sub(r'"[^"]*"', '"…"', r.reason)[:120] for r in results if not r.matched)
    for cause, n in causes.most_common(args.causes):
        print(f"{n:5d}  {cause}")
    print(f"{len(matched)} of {len(results)} plans equal ksqlDB's ({len(matched) / max(1, len(results)):.1%})")
    if args.update is not None:
        listed = read_matching(args.update)
        new = {r.case for r in matched} - listed
        args.update.write_text("".join(f"{c}\n" for c in sorted(listed | new)))
        print(f"{len(new)} cases added to {args.update}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
