"""The checks ksqlDB makes on a join, in its words: unknown and ambiguous columns, windowed and
KAFKA-format sources, co-partitioning, re-keying windowed sources, reserved names and the key
a persistent join's projection must include.

:mod:`ksqlpy.planner.plans.joins` calls the checks on each join of the tree as it plans it;
:mod:`ksqlpy.planner.plans.queries` calls those ksqlDB makes after it analyzed the whole query
(formats, partitions, the key in the projection), so errors come in ksqlDB's order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ksqlpy.errors import AnalysisError, NodeLocationError
from ksqlpy.parser import ast
from ksqlpy.planner.catalog import (
    PSEUDO_COLUMNS,
    RESERVED_COLUMN_NAMES,
    WINDOW_BOUND_COLUMNS,
    Source,
    WindowType,
)
from ksqlpy.planner.plans import expressions as ex
from ksqlpy.planner.select import KeyMissingError

if TYPE_CHECKING:
    from ksqlpy.planner.plans.joins import PlannedJoin, Side


SYNTHETIC_JOIN_KEY_DOC_URL = "https://cnfl.io/2LV7ouS"


def key_missing_error(join: PlannedJoin, sink_name: str | None, columns: tuple[str, ...]) -> KeyMissingError:
    """ksqlDB's JoinNode.validateKeyPresent: the projection of a persistent join must include
    one of the join expressions (all of the left table's primary key for a foreign-key join)."""
    if join.foreign_key:
        left = join.sides[0]
        missing = [c.name for c in left.source.key_columns]
        noun = "column" if len(missing) == 1 else "columns"
        return KeyMissingError(
            f"Primary key {noun} missing in projection. For foreign-key table-table joins, the projection "
            "must include all primary key columns from the left input table "
            f"(`{left.alias}`). Missing {noun}: " + ", ".join(f"`{m}`" for m in missing) + ".",
            columns=columns,
        )
    viable = [join.key_name] if join.synthetic else list(join.viable_written)
    types = "join expression" if len(viable) == 1 else "join expressions"
    joined = viable[0] if len(viable) == 1 else ", ".join(viable[:-1]) + " or " + viable[-1]
    see = f"See {SYNTHETIC_JOIN_KEY_DOC_URL}." if join.synthetic else ""
    synthetic = (
        f"\n{viable[0]} was added as a synthetic key column because the join criteria did not match any "
        "source column. This expression must be included in the projection and may be aliased. "
        if join.synthetic
        else ""
    )
    return KeyMissingError(
        f"Key missing from projection (ie, SELECT). {see}\n"
        f"The query used to build `{sink_name}` must include the {types} {joined} in its projection "
        f"(eg, SELECT {viable[0]}...).{synthetic}",
        columns=columns,
    )


def check_reserved_names(query: ast.Query, persistent: bool) -> None:
    """ksqlDB's Analyzer on the projection: no alias may be a pseudo column or window bound, and a
    persistent query may not select one under its own name (``L.WINDOWEND AS WINDOWEND`` too)."""
    for item in query.select:
        if not isinstance(item, ast.SingleColumn):
            continue
        e, alias = item.expr, item.alias
        if alias is None and isinstance(e, ast.ColumnRef) and not (e.source and e.name in PSEUDO_COLUMNS):
            alias = e.name  # a qualified pseudo column is named after its source: L_ROWTIME
        if alias not in RESERVED_COLUMN_NAMES:
            continue
        if not (isinstance(e, ast.ColumnRef) and e.name == alias):
            raise AnalysisError(
                f"`{alias}` is a reserved column name. You cannot use it as an alias for a column."
            )
        if persistent:
            raise AnalysisError(
                f"Reserved column name in select: `{alias}`. Please remove or alias the column."
            )


def check_window_bounds(query: ast.Query) -> None:
    """A windowed aggregation over a join cannot yet name its window bounds: every source of the
    join offers them (ksqlDB's ColumnReferenceValidator, https://github.com/confluentinc/ksql/issues/5931)."""
    clauses: list[tuple[str, Any]] = [
        ("WHERE", query.where),
        ("GROUP BY", query.group_by),
        ("HAVING", query.having),
        ("SELECT", tuple(i.expr for i in query.select if isinstance(i, ast.SingleColumn))),
    ]
    for clause, exprs in clauses:
        for node in ex.walk(exprs):
            if isinstance(node, ast.ColumnRef) and node.source is None and node.name in WINDOW_BOUND_COLUMNS:
                raise NodeLocationError(f"{clause} column '{node.name}' cannot be resolved.", pos=node.pos)


def check_windowing(left: Side | None, right: Side | None) -> None:
    """ksqlDB's Analyzer: windowed sources join only windowed sources of a compatible kind."""
    if left is None or right is None:
        return
    lw, rw = left.source.window, right.source.window
    if (lw is None) != (rw is None):
        raise AnalysisError(
            "Can not join windowed source to non-windowed source.\n"
            f"`{left.alias}` is {lw.type.value if lw else 'not'} windowed\n"
            f"`{right.alias}` is {rw.type.value if rw else 'not'} windowed"
        )
    if lw is None or rw is None:
        return
    session = WindowType.SESSION
    if (lw.type is session) != (rw.type is session):
        raise AnalysisError(
            "Incompatible windowed sources.\n"
            f"Left source: {lw.type.value}\n"
            f"Right source: {rw.type.value}\n"
            "Session windowed sources can only be joined to other session windowed sources, and may still "
            "not result in expected behaviour as session bounds must be an exact match for the join to work\n"
            "Hopping and tumbling windowed sources can only be joined to other hopping and tumbling windowed "
            "sources"
        )


def has_column(side: Side, name: str) -> bool:
    """Whether a column reference to ``side`` resolves: its columns, pseudo columns and, for a
    windowed source, the window bounds."""
    if side.source.column(name) is not None or name in PSEUDO_COLUMNS:
        return True
    return side.source.window is not None and name in WINDOW_BOUND_COLUMNS


def ambiguous(ref: ast.ColumnRef, owners: list[Side]) -> NodeLocationError:
    """ksqlDB's AmbiguousColumnException: ``Column 'F0' is ambiguous. Could be I1.F0 or I2.F0.``"""
    names = sorted(f"{x.alias}.{ref.name}" for x in owners)
    could_be = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return NodeLocationError(
        f"Column '{ref.name}' is ambiguous. Could be {could_be}.",
        pos=ref.pos,
        stage="Exception while preparing statement: ",  # ksqlDB finds these before it analyzes
    )


def check_repartition(source: Source) -> None:
    """A windowed key cannot be re-keyed (ksqlDB's SchemaKStream.selectKey)."""
    if source.window is not None:
        raise AnalysisError(
            "Implicit repartitioning of windowed sources is not supported. "
            "See https://github.com/confluentinc/ksql/issues/4385."
        )


KAFKA_VALUE_FORMAT_LIMITATION = (
    "The KAFKA format is primarily intended for use as a key format. It can be used as a value format, "
    "but can not be used in any operation that requires a repartition or changelog topic.\n"
    "Removing this limitation requires enhancements to the core of KSQL. This will come in a future "
    "release. Until then, avoid using the KAFKA format for values.\n"
    "If you have an existing topic with KAFKA formatted values you can duplicate the data and serialize "
    "using Avro or JSON with a statement such as: \n\n"
    "'CREATE STREAM <new-stream-name> WITH(VALUE_FORMAT='Avro') AS SELECT * FROM "
    "<existing-kafka-formated-stream-name>;'\n"
    "For more info see https://github.com/confluentinc/ksql/issues/3060"
)


def check_join_formats(join: PlannedJoin) -> None:
    """The KAFKA value format cannot be joined (ksqlDB's Analyzer.validate)."""
    kafka = [x.alias for x in join.sides if x.source.value_format.format == "KAFKA"]
    if kafka:
        raise AnalysisError(
            f"Source(s) {', '.join(kafka)} are using the 'KAFKA' value format. This format does not yet "
            "support JOIN.\n" + KAFKA_VALUE_FORMAT_LIMITATION
        )


def check_partitions(join: PlannedJoin, partitions_of: Callable[[Source], int]) -> None:
    """Co-partitioning, outermost join first, as ksqlDB checks it when it builds the topology:
    each join's left input has the partitions of the last source it joined."""
    if join.foreign_key:
        return

    sides = join.sides
    for i in range(len(sides) - 1, 0, -1):
        left, right = partitions_of(sides[i - 1].source), partitions_of(sides[i].source)
        if left != right:
            first, new = sides[0].alias, sides[i].alias
            raise AnalysisError(
                f"Can't join `{first}` with `{new}` since the number of partitions don't match. `{first}` "
                f"partitions = {left}; `{new}` partitions = {right}. Please repartition either one so that "
                "the number of partitions match."
            )
