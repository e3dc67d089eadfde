"""ksqlDB's aggregate functions (UDAFs): the library behind :mod:`ksqlpy.planner.functions.aggregate`.

Each module registers a family of functions when imported; importing this package imports them
all, adds them to :data:`~ksqlpy.planner.functions.registry.REGISTRY` as aggregate functions
(for SHOW FUNCTIONS / DESCRIBE FUNCTION) and to the library's own index that :func:`resolve`
reads. A resolved call is an :class:`~ksqlpy.planner.functions.aggregate.Accumulator` with the
sequential reference semantics of ksqlDB's UDAF and, for the common functions, a vectorized form.

Public API:

* :func:`resolve` ``(name, args, *, pos=None, config=None)``: the accumulator for a call;
  ``config`` holds query properties (``ksql.functions.collect_list.limit``, ...).
* :func:`is_aggregate` ``(name)``.
* :func:`udafs`: every registered UDAF with its signatures; ``Udaf.table_udaf`` tells which are
  undoable (ksqlDB's ``TableUdaf``, usable over tables).

Modules: ``numeric`` (COUNT, SUM, AVG, SUM_LIST), ``comparable`` (MIN, MAX), ``topk`` (TOPK,
TOPKDISTINCT), ``offset`` (LATEST_BY_OFFSET, EARLIEST_BY_OFFSET), ``collect`` (COLLECT_LIST,
COLLECT_SET, HISTOGRAM, ATTR), ``distinct`` (COUNT_DISTINCT), ``stats`` (STDDEV_SAMP,
STDDEV_SAMPLE, CORRELATION and the ksqlpy extensions STDDEV_POP, VAR_SAMP, VAR_POP); ``base``
holds signatures, resolution and Java arithmetic.

Every function has a vector form except HISTOGRAM, ATTR, COUNT_DISTINCT, the deviations and
MIN/MAX/TOPKDISTINCT over BYTES (see each module for why). Vector forms of COLLECT_LIST,
COLLECT_SET, TOPK(DISTINCT) and the offset functions ignore the sign (they are stream-only or
not undoable); the others handle retractions.

``COUNT(*)`` (an argument with ``star=True``, or no argument) counts rows: its accumulator has no
column arguments. Any other aggregate given ``*`` aggregates ROWTIME, as ksqlDB does; the operator
passes ROWTIME for that argument.
"""

from __future__ import annotations

from ksqlpy.planner.functions.aggregates import (  # noqa: F401  (registration)
    collect,
    comparable,
    distinct,
    numeric,
    offset,
    stats,
    topk,
)
from ksqlpy.planner.functions.aggregates.base import (
    COLLECT_LIST_LIMIT,
    COLLECT_SET_LIMIT,
    DEFAULT_COLLECT_LIMIT,
    Signature,
    Udaf,
    is_aggregate,
    resolve,
    udafs,
)

__all__ = [
    "COLLECT_LIST_LIMIT",
    "COLLECT_SET_LIMIT",
    "DEFAULT_COLLECT_LIMIT",
    "Signature",
    "Udaf",
    "is_aggregate",
    "resolve",
    "udafs",
]
