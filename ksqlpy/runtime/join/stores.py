"""The names Kafka Streams gives a stream-stream join's window stores, and so their changelogs.

Kafka Streams names a processor or store it is not given a name for after a counter of every
name it generated before (``KSTREAM-JOINTHIS-0000000016-store``). ksqlDB's topology for a join
query consumes that counter in a fixed pattern, learned from ksqlDB's own topologies (the
``topology`` files of its historical plans), which :func:`store_numbers` follows:

- a stream source, windowed or not, takes three names (source, value transformer, peek), a
  re-key one more (two in plans of ksqlDB before 0.15);
- a table source takes six, a re-keyed table six more (``toStream``, select-key, repartition,
  materialization);
- a stream-stream join takes two, three per repartitioned input, then its two stores
  (``JOINTHIS``/``OUTERTHIS`` for the left, ``JOINOTHER``/``OUTEROTHER`` for the right) and one
  more for the merge; its inputs are built left first;
- a stream-table join builds its table first.

What follows a stream-table join, a table-table join, a RIGHT join (built mirrored) or a join
with a GRACE PERIOD (which adds a store) is not modelled: joins whose number depends on those
get no name.
"""

from __future__ import annotations

from ksqlpy.planner.steps import steps as s


def store_numbers(root: s.ExecutionStep) -> dict[int, int]:
    """The number of the left window store of each stream-stream join under ``root`` whose
    number is known, by ``id`` of its step (the right store's is one more)."""
    found: dict[int, int] = {}
    _count(root, 0, found)
    return found


def _count(step: s.ExecutionStep, at: int, found: dict[int, int]) -> int | None:
    """The counter after building ``step`` from ``at``, or None when not modelled."""
    match step:
        case s.StreamSource() | s.WindowedStreamSource():
            return at + 3
        case s.TableSource() | s.TableSourceV1():
            return at + 6
        case s.StreamSelectKey():
            inner = _count(step.source, at, found)
            return None if inner is None else inner + 1
        case s.StreamSelectKeyV1():  # plans of ksqlDB before 0.15: a filter and a key mapper
            inner = _count(step.source, at, found)
            return None if inner is None else inner + 2
        case s.TableSelectKey():
            inner = _count(step.source, at, found)
            return None if inner is None else inner + 6
        case s.StreamSelect() | s.TableSelect():
            return _count(step.source, at, found)
        case s.StreamStreamJoin():
            if step.join_type.upper() == "RIGHT" or step.grace_millis is not None:
                return None
            left = _count(step.left_source, at, found)
            right = None if left is None else _count(step.right_source, left, found)
            if right is None:
                return None
            this = right + 2 + 3 * sum(_rekeyed(side) for side in (step.left_source, step.right_source))
            found[id(step)] = this
            return this + 3
        case s.StreamTableJoin():
            table = _count(step.right_source, at, found)
            if table is not None:
                _count(step.left_source, table, found)
            return None
    return None


def _rekeyed(step: s.ExecutionStep) -> bool:
    """Whether a join input is re-keyed (and so repartitioned) before the join."""
    while isinstance(step, s.OneInput):
        if isinstance(step, s.StreamSelectKey | s.StreamSelectKeyV1):
            return True
        step = step.source
    return False


def store_names(step: s.StreamStreamJoin, number: int) -> tuple[str, str]:
    """The changelog topic names (after the application id) of the join's two stores."""
    join_type = step.join_type.upper()
    this = "OUTERTHIS" if join_type == "OUTER" else "JOINTHIS"
    other = "OUTEROTHER" if join_type in ("LEFT", "OUTER") else "JOINOTHER"
    return (
        f"KSTREAM-{this}-{number:010d}-store-changelog",
        f"KSTREAM-{other}-{number + 1:010d}-store-changelog",
    )


__all__ = ["store_names", "store_numbers"]
