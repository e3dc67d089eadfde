"""The join tree a query's join steps compile to: pure data the join operator runs.

Every side of a join hands its parent a batch of changes in one shape: the join key as
:data:`KEY`, the side's value columns by name, :data:`TS` (the record's timestamp) and
:data:`DELETE` (a tombstone, or a stream record without a value). A side is a topic read
through its fused pre-join chain (:class:`JoinInput`), another join (:class:`JoinNode`), or a
join's output re-keyed (:class:`Rekeyed`), which is how ksqlDB's plans nest n-way joins.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ksqlpy import sqltypes
from ksqlpy.planner.catalog import FormatInfo, Source
from ksqlpy.planner.physical import SelectStep

#: the join key's column in the batches passed between join operators
KEY = "__JK"
TS = "__TS"
DELETE = "__DELETE"
#: a foreign-key join's left side: the foreign key of each row (its left join expression)
FOREIGN_KEY = "__FK"
#: the fields of a windowed join key: the key, its window's start and end
WINDOWED_KEY_FIELDS = ("K", "WS", "WE")


def windowed_key_type(key: sqltypes.SqlType) -> sqltypes.Struct:
    """The join key of windowed sources inside the join operators: the key with its window,
    as a struct, since two records of windowed sources join only when their windows are the
    same too (Kafka Streams compares the windowed keys)."""
    k, ws, we = WINDOWED_KEY_FIELDS
    return sqltypes.Struct(
        fields=(sqltypes.Field(k, key), sqltypes.Field(ws, sqltypes.BIGINT), sqltypes.Field(we, sqltypes.BIGINT))
    )


class JoinKind(enum.Enum):
    STREAM_STREAM = "stream-stream"
    STREAM_TABLE = "stream-table"
    TABLE_TABLE = "table-table"
    FOREIGN_KEY = "foreign-key"


@dataclass(frozen=True, slots=True, kw_only=True)
class Repartition:
    """Where ksqlDB re-keys a join side through an internal topic: its name after the query's
    application id (``Join-left-repartition``, ``LeftSourceKeyed-SelectKey-repartition``), the
    formats the plan gives it, and, for a re-keyed table, the changelog topic of the table it
    materializes (``LeftSourceKeyed-Materialize-changelog``)."""

    topic: str
    key_format: FormatInfo
    value_format: FormatInfo
    changelog: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreLog:
    """The changelog topic of one side's window store of a stream-stream join, named after the
    query's application id as Kafka Streams names it (``KSTREAM-JOINTHIS-0000000008-store``
    + ``-changelog``), and the formats the plan gives the side (``left/rightInternalFormats``)."""

    topic: str
    key_format: FormatInfo
    value_format: FormatInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinInput:
    """A topic read through its pre-join chain (re-key, PrependAlias select): ``select``'s key
    column is named :data:`KEY`; the left side of a foreign-key join also computes
    :data:`FOREIGN_KEY`, which is not one of its values."""

    source: Source
    select: SelectStep
    #: the state store ksqlDB materializes this side in when it is a join's table side
    store: str = ""
    repartition: Repartition | None = None

    @property
    def value_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.select.value_columns if c.name != FOREIGN_KEY)


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinNode:
    """One join step. ``output`` describes its result as a source (key column :data:`KEY`), so
    the steps above it compile over it as over a topic; ``synthetic``: the key is also copied
    into the value column of that name (ksqlDB's ROWKEY of FULL OUTER and expression joins)."""

    context: str
    kind: JoinKind
    join_type: str  # INNER, LEFT, RIGHT or OUTER
    left: JoinSide
    right: JoinSide
    output: Source
    synthetic: str | None = None
    before_ms: int = 0
    after_ms: int = 0
    grace_ms: int | None = None
    #: both sides are windowed sources: between join operators the key is
    #: :func:`windowed_key_type`; the join's result has the plain key and WINDOWSTART/WINDOWEND
    windowed: bool = False
    #: a stream-stream join's window stores (left, right), where ksqlpy knows their names
    stores: tuple[StoreLog, StoreLog] | None = None

    @property
    def value_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.output.value_columns)

    def inputs(self) -> list[JoinInput]:
        """The topics this join reads, left to right."""
        out: list[JoinInput] = []
        for side in (self.left, self.right):
            match side:
                case JoinInput():
                    out.append(side)
                case JoinNode():
                    out += side.inputs()
                case Rekeyed():
                    out += side.base.inputs()
        return out

    def nodes(self) -> list[JoinNode]:
        """This join and the joins under it, innermost first."""
        out: list[JoinNode] = []
        for side in (self.left, self.right):
            if isinstance(side, JoinNode):
                out += side.nodes()
            elif isinstance(side, Rekeyed):
                out += side.base.nodes()
        return [*out, self]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rekeyed:
    """A join's output through a stateless chain (re-key, select) into another join."""

    base: JoinNode
    select: SelectStep
    store: str = ""
    repartition: Repartition | None = None

    @property
    def value_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.select.value_columns)


JoinSide = JoinInput | JoinNode | Rekeyed

__all__ = [
    "DELETE",
    "FOREIGN_KEY",
    "KEY",
    "TS",
    "WINDOWED_KEY_FIELDS",
    "JoinInput",
    "JoinKind",
    "JoinNode",
    "JoinSide",
    "Rekeyed",
    "Repartition",
    "StoreLog",
    "windowed_key_type",
]
