"""How many records went through each step of a query's plan, from its operators' row counts.

The runtime does not run a plan's steps one by one: it fuses them (see :mod:`ksqlpy.runtime.compile`
and :mod:`ksqlpy.runtime.join.compile`), and its operators count rows at a few points per batch
(:class:`~ksqlpy.runtime.stats.OperatorCounts`). Here the step tree is walked the way the
compiler fuses it, and each step gets the count of the point its output is observed at:

- a source step: the records read from its topic (``source/<i>``, inputs numbered left to right);
- in a fused stateless chain: the steps before its first filter or table function, the rows into
  the operator; a filter and the steps after it, the rows out of it (a table's filter forwards a
  tombstone for a row that stops matching, as ksqlDB's does, and counts it). Between a filter and
  a table function nothing is observed apart, and the count is unknown (None);
- in an aggregation: a WHERE filter (and the steps up to GROUP BY), the rows that passed it; the
  GROUP BY, the rows with a non-null group; the aggregate and the steps above it (projection,
  HAVING), the changes the aggregation emitted;
- a join: the rows it emitted;
- the sink: the records written.

Counts are since the query started on this server (a restarted query starts again from zero).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ksqlpy.planner.steps import steps as s
from ksqlpy.planner.steps.render import OP_NAMES


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRecords:
    """One step of a plan, in tree order (``depth``: its indentation in EXPLAIN's plan)."""

    context: str
    type: str
    operation: str
    depth: int
    records: int | None


def step_records(root: s.ExecutionStep, counts: Mapping[str, int]) -> list[StepRecords]:
    """The steps of ``root``'s tree, parents first (as EXPLAIN lists them), each with the records
    that went through it according to ``counts`` (an :class:`OperatorCounts` snapshot)."""
    points = _points(root)
    out: list[StepRecords] = []

    def visit(step: s.ExecutionStep, depth: int) -> None:
        point = points.get(id(step))
        out.append(
            StepRecords(
                context=step.context,
                type=step.TYPE,
                operation=OP_NAMES.get(type(step), step.TYPE),
                depth=depth,
                records=None if point is None else counts.get(point, 0),
            )
        )
        for child in step.sources:
            visit(child, depth + 1)

    visit(root, 0)
    return out


def _points(root: s.ExecutionStep) -> dict[int, str]:
    """Each step's counting point (by ``id``), mirroring how the compiler fuses the tree."""
    points: dict[int, str] = {}
    if not isinstance(root, s.SinkStep):
        return points
    points[id(root)] = "sink"
    inputs = itertools.count()
    chain = _chain(root.source)
    if chain is None:
        return points
    head = chain[0]
    if isinstance(head, s.JoinStep):
        _join(head, points, inputs)
    else:
        points[id(head)] = f"source/{next(inputs)}"
    _fused(chain[1:], "main", points)
    return points


def _join(step: s.JoinStep, points: dict[int, str], inputs: Iterator[int]) -> None:
    points[id(step)] = f"join/{step.context}"
    for side in (step.left_source, step.right_source):
        chain = _chain(side)
        if chain is None:
            return
        head = chain[0]
        if isinstance(head, s.JoinStep):
            _join(head, points, inputs)
            _fused(chain[1:], f"rekey/{head.context}", points)
        else:
            index = next(inputs)
            points[id(head)] = f"source/{index}"
            _fused(chain[1:], f"side/{index}", points)


def _fused(chain: list[s.ExecutionStep], operator: str, points: dict[int, str]) -> None:
    """Points of a chain of steps the compiler fuses into the one operator ``operator``."""
    if any(isinstance(st, s.AggregateStep) for st in chain):
        at = "in"
        for st in chain:
            if isinstance(st, s.AggregateStep):
                at = "out"
            elif at in ("in", "where") and isinstance(st, s.GroupByStep | s.StreamGroupByKey):
                at = "grouped"
            elif at == "in" and isinstance(st, s.FilterStep):
                at = "where"
            points[id(st)] = f"{operator}/{at}"
        return
    flat_map = next((i for i, st in enumerate(chain) if isinstance(st, s.StreamFlatMap)), None)
    seen: str | None = "in"
    for i, st in enumerate(chain):
        if isinstance(st, s.FilterStep) and seen == "in":
            # past a filter rows are observed only at the operator's output: after a table
            # function still to come, they are not
            seen = None if flat_map is not None and flat_map > i else "out"
        elif isinstance(st, s.StreamFlatMap):
            seen = "out"
        if seen is not None:
            points[id(st)] = f"{operator}/{seen}"


def _chain(top: s.ExecutionStep) -> list[s.ExecutionStep] | None:
    """The steps from a source (or a join) up to ``top``, source first; None for a shape the
    compiler does not fuse (it refuses such plans)."""
    out: list[s.ExecutionStep] = []
    step = top
    while True:
        out.append(step)
        if isinstance(step, s.SourceStep | s.JoinStep):
            break
        if not isinstance(step, s.OneInput):
            return None
        step = step.source
    out.reverse()
    return out


__all__ = ["StepRecords", "step_records"]
