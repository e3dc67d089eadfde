"""A concrete base for the library's accumulators: attributes set per resolved call."""

from __future__ import annotations

from typing import Any

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.aggregate import Accumulator, VectorForm


class BaseAccumulator(Accumulator):
    """An :class:`Accumulator` whose types and forms are fixed when the call resolves."""

    def __init__(
        self,
        *,
        name: str,
        return_type: st.SqlType,
        state_type: st.SqlType,
        column_args: tuple[int, ...] = (0,),
        supports_undo: bool = False,
        vector: VectorForm | None = None,
    ) -> None:
        self.name = name
        self.return_type = return_type
        self.state_type = state_type
        self.column_args = column_args
        self.supports_undo = supports_undo
        self.vector = vector

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} -> {self.return_type} (state {self.state_type})>"

    def result(self, state: Any) -> Any:
        return state
