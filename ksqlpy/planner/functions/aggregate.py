"""Aggregate functions: the contract between the aggregate library and the aggregation operator.

An aggregate call (``SUM(x)``, ``TOPK(x, 3)``, ``LATEST_BY_OFFSET(x, 2, false)``) resolves to an
:class:`Accumulator`: its result type, the type of its state, and two equivalent ways to compute
it, which must agree exactly (same state values, same results):

* **Sequential** (the reference semantics, ksqlDB's ``Udaf`` interface): :meth:`initial`,
  :meth:`add`, :meth:`undo` (table aggregation retracting a row's old value), :meth:`merge`
  (session windows joining), :meth:`result`, over Python values. States are Python values of
  :attr:`state_type` as pyarrow's ``as_py`` gives them and as ``pa.array([...], type)`` takes
  them back, so the operator can load and store them in DuckDB.
* **Vectorized** (:attr:`vector`, optional but present for the common functions): SQL templates
  the operator runs over a whole micro-batch in DuckDB. ``running`` is a window-function
  expression giving, for each row, the partial state of the rows of its group seen so far in
  the batch, including it; ``combine`` folds the state stored before the batch with such a
  partial; ``result`` turns a state into the function's result.

The operator uses the vectorized form when every aggregate of a query has one (and the query is
not session-windowed), and the sequential form otherwise.

Each row carries a *sign*: ``+1`` adds the row, ``-1`` retracts it (table aggregation). A
vectorized form with ``supports_undo`` handles both; without it the operator only uses it on
stream input.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ksqlpy import sqltypes
from ksqlpy.errors import Position

#: marks an argument that is not a constant
NOT_CONSTANT: Any = object()


@dataclass(frozen=True, slots=True)
class AggregateArg:
    """One argument of an aggregate call, as the analyzer compiled it."""

    #: its SQL type; None for a NULL literal
    type: sqltypes.SqlType | None
    #: its value when it is a literal (TOPK's k, LATEST_BY_OFFSET's n), else NOT_CONSTANT
    constant: Any = NOT_CONSTANT
    #: the ``*`` of ``COUNT(*)``
    star: bool = False


@dataclass(frozen=True, slots=True)
class VectorForm:
    """An aggregate as DuckDB SQL over a batch (see the module docstring).

    ``running(args, sign, over)``: ``args`` are the SQL texts of the per-row argument columns (in
    :attr:`Accumulator.column_args` order), ``sign`` the SQL of the row's sign (an INTEGER, 1 or
    -1), ``over`` the window clause to append to window functions (``OVER (PARTITION BY ...
    ORDER BY ... ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)``). Returns SQL of the partial
    state (of :attr:`Accumulator.state_type`).

    ``combine(prior, partial)``: SQL of the state after ``partial`` is applied to ``prior``;
    ``prior`` is NULL when the group had no state before the batch.

    ``result(state)``: SQL of the function's result from a state.
    """

    running: Callable[[Sequence[str], str, str], str]
    combine: Callable[[str, str], str]
    result: Callable[[str], str]
    supports_undo: bool = False


class Accumulator(abc.ABC):
    """A resolved aggregate call."""

    #: the function's name as ksqlDB prints it (upper case)
    name: str
    #: the result type
    return_type: sqltypes.SqlType
    #: the type of the state stored between batches (DuckDB/Arrow through sqltypes)
    state_type: sqltypes.SqlType
    #: indices of the call's arguments that are per-row inputs (the others are constants)
    column_args: tuple[int, ...] = (0,)
    #: whether :meth:`undo` exists (ksqlDB's TableUdaf); tables can only be aggregated with these
    supports_undo: bool = False
    #: the vectorized form, when there is one
    vector: VectorForm | None = None

    @abc.abstractmethod
    def initial(self) -> Any:
        """The state of a group with no rows."""

    @abc.abstractmethod
    def add(self, state: Any, args: tuple[Any, ...]) -> Any:
        """The state after one row; ``args`` are the values of :attr:`column_args`."""

    def add_owned(self, state: Any, args: tuple[Any, ...]) -> Any:
        """:meth:`add` for a caller that owns ``state`` (nothing else refers to it), which may
        then be changed in place rather than copied: states can be large."""
        return self.add(state, args)

    def undo(self, state: Any, args: tuple[Any, ...]) -> Any:
        """The state after retracting a row added earlier (table aggregation)."""
        raise NotImplementedError(f"{self.name} cannot be undone")

    @abc.abstractmethod
    def merge(self, a: Any, b: Any) -> Any:
        """The state of two merged groups (session windows)."""

    @abc.abstractmethod
    def result(self, state: Any) -> Any:
        """The function's value for a state."""


def resolve_aggregate(
    name: str,
    args: Sequence[AggregateArg],
    *,
    pos: Position | None = None,
    config: Mapping[str, Any] | None = None,
) -> Accumulator:
    """Resolve a call of aggregate function ``name``.

    Raises :class:`ksqlpy.errors.AnalysisError` with ksqlDB's wording for an unknown function,
    arguments of the wrong types, or a parameter that must be a literal and is not.
    """
    from ksqlpy.planner.functions import aggregates  # the library registers itself on import

    return aggregates.resolve(name, args, pos=pos, config=config)


def is_aggregate(name: str) -> bool:
    """Whether ``name`` is an aggregate function (so GROUP BY analysis applies)."""
    from ksqlpy.planner.functions import aggregates

    return aggregates.is_aggregate(name)
