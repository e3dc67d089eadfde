"""Joins: the join tree of a query, as ksqlDB's LogicalPlanner builds it, and the query over it.

A ``FROM a JOIN b ON ... JOIN c ON ...`` is a left-deep tree. Each leaf reads its topic
(``KafkaTopic_<prefix>Left/Source``), is re-keyed by its join expression when that is not its
key (``<prefix>LeftSourceKeyed``, streams only) and gets its columns prefixed with its alias
(``PrependAlias<prefix>Left``: ``B AS L_B``, pseudo and key columns included); each inner join
adds ``L_`` to the prefix. The join step names its key column: a join column the projection
selects, else the first one, or the synthetic ``ROWKEY`` for FULL OUTER joins and joins on
expressions.

The rest of the query is planned over the join's result as if it were one source: column
references ``L.B`` become ``L_B``, ``*`` and ``L.*`` expand to the prefixed columns, and the
stateless and aggregation planners build their steps on top of the join step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ksqlpy.errors import AnalysisError, NodeLocationError
from ksqlpy.parser import ast
from ksqlpy.planner import scope as scopes
from ksqlpy.planner.catalog import (
    PSEUDO_COLUMNS,
    WINDOW_BOUND_COLUMNS,
    Catalog,
    Source,
)
from ksqlpy.planner.expressions.scope import ColumnScope, ScopeColumn
from ksqlpy.planner.plans import expressions as ex
from ksqlpy.planner.plans.join_checks import (
    ambiguous,
    check_repartition,
    check_reserved_names,
    check_window_bounds,
    check_windowing,
    has_column,
)
from ksqlpy.planner.plans.join_keys import join_key_format, resolve_key_formats
from ksqlpy.planner.plans.sources import internal_formats, source_step
from ksqlpy.planner.steps import steps as s
from ksqlpy.planner.steps.catalog import catalog_format
from ksqlpy.planner.steps.schema import resolve_schema

JOIN_TYPES = {
    ast.JoinType.INNER: "INNER",
    ast.JoinType.LEFT: "LEFT",
    ast.JoinType.RIGHT: "RIGHT",
    ast.JoinType.FULL: "OUTER",
}
# how ksqlDB's JoinNode.JoinType prints itself in errors
_READABLE = {
    "INNER": "[INNER] JOIN",
    "LEFT": "LEFT [OUTER] JOIN",
    "RIGHT": "RIGHT [OUTER] JOIN",
    "OUTER": "[FULL] OUTER JOIN",
}


@dataclass(frozen=True, slots=True)
class Side:
    """One source of a join, under its alias."""

    source: Source
    alias: str

    def prefixed(self, name: str) -> str:
        return f"{self.alias}_{name}"


@dataclass(slots=True)
class _Node:
    """A subtree of the join: its step, the sides under it and its join equivalence set."""

    step: s.ExecutionStep
    sides: list[Side]
    is_table: bool
    #: the expressions that evaluate to the subtree's key (ksqlDB's join equivalence set)
    equivalent: list[ast.Expr] = field(default_factory=list)
    viable: list[ast.ColumnRef] = field(default_factory=list)
    leaf: bool = False


@dataclass(frozen=True, slots=True)
class PlannedJoin:
    """The join tree's root step, the sides in FROM order, the result as a catalog source (the
    left-most source's topic and formats, the join's columns), and the query rewritten over it."""

    step: s.ExecutionStep
    sides: tuple[Side, ...]
    source: Source
    query: ast.Query
    key_name: str
    synthetic: bool
    viable: tuple[str, ...]
    foreign_key: bool
    #: the viable key expressions as written in the join criteria (``S1.ID``), for errors
    viable_written: tuple[str, ...] = ()


def plan_join(
    query: ast.Query, catalog: Catalog, config: Mapping[str, Any], *, persistent: bool = True
) -> PlannedJoin:
    join = query.from_
    assert isinstance(join, ast.Join)
    sides = [_side(join.left, catalog)]
    for right in join.rights:
        side = _side(right.source, catalog)
        if any(x.alias == side.alias for x in sides):
            raise AnalysisError(f"Can not join '{side.alias}' to '{side.alias}': self joins are not yet supported.", pos=right.pos)
        sides.append(side)
    by_alias = {x.alias: x for x in sides}
    names = {x.source.name: x for x in sides}

    def side_of(qualifier: str) -> Side | None:
        return by_alias.get(qualifier) or names.get(qualifier)

    node = _leaf(sides[0], "L_" * (len(join.rights) - 1), "Left")
    node_prefixes: list[str] = []
    count = len(join.rights)
    for i, right in enumerate(join.rights):
        prefix = "L_" * (count - 1 - i)
        node = _join(node, sides[i + 1], right, prefix, query, side_of, sides, config)
        node_prefixes.append(prefix)
    check_reserved_names(query, persistent)
    if query.window is not None:
        check_window_bounds(query)
    assert isinstance(node.step, s.JoinStep)
    default_key_format = str(config.get("ksql.persistence.default.format.key", "KAFKA"))
    root = resolve_key_formats(node.step, default_key_format)
    schema = resolve_schema(root, catalog.types)
    fk = isinstance(root, s.ForeignKeyTableTableJoin)
    key_name = schema.key[0].name if schema.key else "ROWKEY"
    synthetic = not fk and not node.viable
    leftmost = sides[0].source
    key_format = leftmost.key_format
    joined_key = join_key_format(node.step, default_key_format)
    if joined_key[0].format.upper() != key_format.format.upper():
        # the result is keyed in the join's key format (a NONE-keyed stream re-keyed on a value
        # takes the other side's), not necessarily the left-most source's
        key_format = catalog_format(joined_key[0], joined_key[1], key=True)
    result = Source(
        name=leftmost.name,
        kind=ast.SourceKind.TABLE if node.is_table else ast.SourceKind.STREAM,
        topic=leftmost.topic,
        columns=schema.columns,
        key_format=key_format,
        value_format=leftmost.value_format,
        window=leftmost.window if not node.is_table or leftmost.window else None,
        partitions=leftmost.partitions,
        replicas=leftmost.replicas,
        null_values=False,
    )
    rewritten = _rewrite_query(query, sides, side_of, key_name if synthetic else None, result)
    return PlannedJoin(
        step=root,
        sides=tuple(sides),
        source=result,
        query=rewritten,
        key_name=key_name,
        synthetic=synthetic,
        viable=tuple(_col_name(r, side_of) for r in node.viable),
        foreign_key=fk,
        viable_written=tuple(ex.text(r) for r in node.viable),
    )


def _side(table: ast.Table, catalog: Catalog) -> Side:
    source = catalog.source(table.name, table.pos)
    return Side(source=source, alias=table.alias or table.name)


def _leaf(side: Side, prefix: str, which: str) -> _Node:
    step = source_step(side.source, context=f"KafkaTopic_{prefix}{which}/Source")
    return _Node(step=step, sides=[side], is_table=side.source.is_table, leaf=True)


def _col_name(ref: ast.ColumnRef, side_of: Any) -> str:
    side = side_of(ref.source) if ref.source else None
    return side.prefixed(ref.name) if side is not None else ref.name


def _join(
    left: _Node,
    right_side: Side,
    joined: ast.JoinedSource,
    prefix: str,
    query: ast.Query,
    side_of: Any,
    sides: list[Side],
    config: Mapping[str, Any],
) -> _Node:
    join_type = JOIN_TYPES[joined.type]
    on = joined.on
    if not isinstance(on, ast.Comparison):
        if isinstance(on, ast.LogicalBinary) and all(
            isinstance(x, ast.Comparison) and x.op is ast.ComparisonOp.EQUAL for x in (on.left, on.right)
        ):
            raise AnalysisError(
                f"Invalid join condition: joins on multiple conditions are not yet supported. Got {ex.text(on)}.",
                pos=on.pos,
            )
        raise AnalysisError(f"Unsupported join expression: {ex.text(on)}", pos=on.pos)
    if on.op is not ast.ComparisonOp.EQUAL:
        raise AnalysisError("Only equality join criteria is supported.", pos=on.pos)
    qualified_left = _qualify(on.left, sides, side_of)
    qualified_right = _qualify(on.right, sides, side_of)
    left_src = _only_source(qualified_left, on, joined)
    right_src = _only_source(qualified_right, on, joined)
    right_alias = right_side.alias
    check_windowing(side_of(left_src), side_of(right_src))
    # errors quote the condition as written, whichever side names the new source
    written = f"{_display(qualified_left)} = {_display(qualified_right)}"
    if left_src == right_alias and right_src != right_alias:
        qualified_left, qualified_right = qualified_right, qualified_left
        left_src, right_src = right_src, left_src
    if right_src != right_alias or left_src not in {x.alias for x in left.sides}:
        raise AnalysisError(
            f"Invalid join condition: {ex.text(on)}. Each side of the join comparison must reference "
            "exactly one source: the new source and one already joined.",
            pos=on.pos,
        )
    right_is_table = right_side.source.is_table
    within = joined.within
    if not left.is_table and not right_is_table:
        if within is None:
            raise AnalysisError(
                "Stream-Stream joins must have a WITHIN clause specified. None was provided. To learn about "
                "how to specify a WITHIN clause with a stream-stream join, please visit: "
                "https://docs.confluent.io/current/ksql/docs/syntax-reference.html#create-stream-as-select",
                pos=joined.pos,
            )
    elif within is not None:
        if left.is_table:
            raise AnalysisError(
                "A window definition was provided for a Table-Table join. These joins are not windowed. Please "
                "drop the window definition (i.e. the WITHIN clause) and try to execute your Table-Table join again.",
                pos=within.pos,
            )
        raise AnalysisError(
            "A window definition was provided for a Stream-Table join. These joins are not windowed. Please drop "
            "the window definition (ie. the WITHIN clause) and try to execute your join again.",
            pos=within.pos,
        )
    right_name = right_side.source.name
    fk = False
    if not left.is_table and right_is_table:
        if join_type == "OUTER":
            raise AnalysisError(
                f"Invalid join type: full-outer join not supported for stream-table join. Got "
                f"{_source_name(left_src, side_of)} {_READABLE[join_type]} {right_name}.",
                pos=joined.pos,
            )
        if join_type == "RIGHT":
            raise AnalysisError(
                f"Invalid join type: right join not supported for stream-table join. Got "
                f"{_source_name(left_src, side_of)} {_READABLE[join_type]} {right_name}.",
                pos=joined.pos,
            )
        if not _on_key(qualified_right, right_side):
            raise AnalysisError(
                "Invalid join condition: stream-table joins require to join on the table's primary key. "
                f"Got {written}.",
                pos=on.pos,
            )
    elif left.is_table:
        if not right_is_table:
            raise AnalysisError(
                "Invalid join order: table-stream joins are not supported; only stream-table joins. Got "
                f"{_source_name(left_src, side_of)} {_READABLE[join_type]} {right_name}.",
                pos=joined.pos,
            )
        if not _on_key(qualified_right, right_side):
            raise AnalysisError(
                "Invalid join condition: table-table joins require to join on the primary key of the right "
                f"input table. Got {written}.",
                pos=on.pos,
            )
        left_side = side_of(left_src)
        if not _on_key(qualified_left, left_side) or not left.leaf and not _in(qualified_left, left.equivalent):
            fk = not (not left.leaf and _in(qualified_left, left.equivalent))
        if fk:
            if join_type == "OUTER":
                raise AnalysisError(
                    "Invalid join type: full-outer join not supported for foreign-key table-table join. Got "
                    f"{_source_name(left_src, side_of)} {_READABLE[join_type]} {right_name}.",
                    pos=joined.pos,
                )
            if not left.leaf:
                raise AnalysisError(
                    "Invalid join condition: foreign-key table-table joins are not supported as part of n-way "
                    f"joins. Got {written}.",
                    pos=on.pos,
                )
            if join_type == "RIGHT":
                raise AnalysisError("RIGHT OUTER JOIN on a foreign key is not supported")
    _check_types(qualified_left, qualified_right, sides, side_of, left, right_side, fk)

    # the two inputs, re-keyed by their join expressions where needed and prefixed
    left_step = _prepare(left, qualified_left, prefix + "Left", side_of, fk, config)
    right_node = _leaf(right_side, prefix, "Right")
    right_step = _prepare(right_node, qualified_right, prefix + "Right", side_of, fk, config)

    equivalent: list[ast.Expr] = []
    viable: list[ast.ColumnRef] = []
    if fk and left.leaf:
        # A foreign-key join's result keeps its left table's primary key: a join after it on
        # that key needs no re-keying (ksqlDB allows a foreign-key join to start an n-way join).
        left_table = left.sides[0]
        equivalent = [ast.ColumnRef(name=c.name, source=left_table.alias) for c in left_table.source.key_columns]
    if join_type != "OUTER" and not fk:
        # both sides of the criteria are the key, expressions as well as columns: in
        # ``A JOIN B ON A.ID = ABS(B.ID) JOIN C ON ABS(B.ID) = C.ID`` the second join is on A.ID
        keys: list[ast.Expr] = [qualified_left, qualified_right]
        lefts = left.equivalent
        include_left = any(_in(k, lefts) for k in keys)
        equivalent = keys
        if include_left:
            equivalent = _union(equivalent, lefts)
        candidates = [*left.viable, qualified_left, qualified_right]
        for c in candidates:
            if isinstance(c, ast.ColumnRef) and _in(c, equivalent) and not _in(c, viable):
                viable.append(c)
    elif fk and len(left.sides[0].source.key_columns) == 1:
        # a foreign-key join's result keeps the left table's primary key: a later join on it
        # joins on the key
        left_key = ast.ColumnRef(name=left.sides[0].source.key_columns[0].name, source=left.sides[0].alias)
        equivalent, viable = [left_key], [left_key]
    context = f"{prefix}Join"
    step: s.ExecutionStep
    if fk:
        step = s.ForeignKeyTableTableJoin(
            context=context,
            join_type=join_type,
            left_join_expression=ex.text(_aliased(qualified_left, side_of)),
            formats=internal_formats(left.sides[0].source),
            left_source=left_step,
            right_source=right_step,
        )
    else:
        key_name = _key_name(viable, query, side_of, sides)
        if not left.is_table and not right_is_table:
            assert within is not None
            step = s.StreamStreamJoin(
                context=context,
                join_type=join_type,
                left_internal_formats=internal_formats(left.sides[0].source),
                right_internal_formats=internal_formats(right_side.source),
                left_source=left_step,
                right_source=right_step,
                before_millis=within.before.millis / 1000,
                after_millis=within.after.millis / 1000,
                grace_millis=None if within.grace is None else within.grace.millis / 1000,
                key_col_name=key_name,
            )
        elif not left.is_table:
            step = s.StreamTableJoin(
                context=context,
                join_type=join_type,
                internal_formats=internal_formats(left.sides[0].source),
                left_source=left_step,
                right_source=right_step,
                key_col_name=key_name,
            )
        else:
            step = s.TableTableJoin(
                context=context, join_type=join_type, left_source=left_step, right_source=right_step, key_col_name=key_name
            )
    return _Node(
        step=step,
        sides=[*left.sides, right_side],
        is_table=left.is_table and right_is_table,
        equivalent=equivalent,
        viable=viable,
    )


def _in(e: ast.Expr, xs: Sequence[ast.Expr]) -> bool:
    """Whether the qualified expression ``e`` is one of ``xs`` (positions aside)."""
    if isinstance(e, ast.ColumnRef):
        return any(isinstance(x, ast.ColumnRef) and x.source == e.source and x.name == e.name for x in xs)
    written = ex.text(e)
    return any(not isinstance(x, ast.ColumnRef) and ex.text(x) == written for x in xs)


def _union(a: list[ast.Expr], b: list[ast.Expr]) -> list[ast.Expr]:
    out = list(a)
    for x in b:
        if not _in(x, out):
            out.append(x)
    return out


def _source_name(alias: str, side_of: Any) -> str:
    side = side_of(alias)
    return side.source.name if side is not None else alias


def _display(e: ast.Expr) -> str:
    return ex.text(e)


def _on_key(e: ast.Expr, side: Side) -> bool:
    keys = side.source.key_columns
    return isinstance(e, ast.ColumnRef) and len(keys) == 1 and keys[0].name == e.name


def _qualify(e: ast.Expr, sides: list[Side], side_of: Any) -> ast.Expr:
    """Column references of ``e`` with their source alias (unqualified ones resolved)."""

    def fn(node: Any) -> Any | None:
        if not isinstance(node, ast.ColumnRef):
            return None
        if node.source is not None:
            side = side_of(node.source)
            if side is None:
                raise AnalysisError(f"Source '{node.source}' does not exist.", pos=node.pos)
            if not has_column(side, node.name):
                raise NodeLocationError(
                    f"JOIN ON column '{node.source}.{node.name}' cannot be resolved.", pos=node.pos
                )
            return dataclasses.replace(node, source=side.alias)
        owners = [x for x in sides if has_column(x, node.name)]
        if len(owners) != 1:
            if not owners:
                raise NodeLocationError(f"JOIN ON column '{node.name}' cannot be resolved.", pos=node.pos)
            raise ambiguous(node, owners)
        return dataclasses.replace(node, source=owners[0].alias)

    return ex.rewrite(e, fn)  # type: ignore[no-any-return]


def _only_source(e: ast.Expr, on: ast.Comparison, joined: ast.JoinedSource) -> str:
    refs = {n.source for n in ex.walk(e) if isinstance(n, ast.ColumnRef)}
    if len(refs) != 1:
        raise AnalysisError(
            f"Invalid comparison expression '{ex.text(e)}' in join '{ex.text(on)}'. Each side of the join "
            "comparision must contain references from exactly one source.",
            pos=on.pos,
        )
    return str(next(iter(refs)))


def _aliased(e: ast.Expr, side_of: Any) -> ast.Expr:
    """``L.B`` → ``L_B``: a qualified expression over the prefixed columns."""

    def fn(node: Any) -> Any | None:
        if isinstance(node, ast.ColumnRef) and node.source is not None:
            side = side_of(node.source)
            return ast.ColumnRef(name=side.prefixed(node.name) if side else node.name, pos=node.pos)
        return None

    return ex.rewrite(e, fn)  # type: ignore[no-any-return]


def _check_types(
    left: ast.Expr, right: ast.Expr, sides: list[Side], side_of: Any, left_node: _Node, right_side: Side, fk: bool
) -> None:
    scope = _qualified_scope(sides)
    lt = scopes.compile_expr(left, scope, clause="JOIN ON").type
    rt = scopes.compile_expr(right, scope, clause="JOIN ON").type
    if lt != rt:
        raise AnalysisError(
            f"Invalid join condition: types don't match. Got {ex.text(left)}{{{lt}}} = {ex.text(right)}{{{rt}}}."
        )


def _qualified_scope(sides: list[Side] | tuple[Side, ...]) -> ColumnScope:
    cols: list[ScopeColumn] = []
    for x in sides:
        for c in x.source.columns:
            cols.append(ScopeColumn(c.name, c.type, x.alias))
        for name, t in PSEUDO_COLUMNS.items():
            cols.append(ScopeColumn(name, t, x.alias))
        if x.source.window is not None:
            for name, t in WINDOW_BOUND_COLUMNS.items():
                cols.append(ScopeColumn(name, t, x.alias))
    return ColumnScope(tuple(cols))


def _prepare(
    node: _Node, expr: ast.Expr, which: str, side_of: Any, fk: bool, config: Mapping[str, Any]
) -> s.ExecutionStep:
    """Re-key a join input by its join expression (when that is not already its key) and, for a
    source, prefix its columns with its alias."""
    step = node.step
    if node.leaf:
        side = node.sides[0]
        if not fk and not _on_key(expr, side):
            if side.source.is_table:
                raise AnalysisError(
                    f"Cannot repartition a TABLE source. If this is a join, make sure that the criteria uses "
                    f"the TABLE's key column {', '.join(c.name for c in side.source.key_columns)} instead of "
                    f"{ex.text(expr)}"
                )
            check_repartition(side.source)
            step = s.StreamSelectKey(
                context=f"{which}SourceKeyed", source=step, key_expressions=(ex.text(ex.unqualified(expr)),)
            )
        schema = resolve_schema(step)
        keys = tuple(side.prefixed(c.name) for c in schema.key)
        selects = tuple(f"{ex.select_text(ast.ColumnRef(name=c.name), side.prefixed(c.name))}" for c in schema.value)
        if side.source.is_table:
            return s.TableSelect(
                context=f"PrependAlias{which}",
                source=step,
                key_column_names=keys,
                select_expressions=selects,
                internal_formats=internal_formats(side.source),
            )
        return s.StreamSelect(
            context=f"PrependAlias{which}", source=step, key_column_names=keys, selected_keys=None, select_expressions=selects
        )
    if fk or _in(expr, node.equivalent):
        return step
    check_repartition(node.sides[0].source)
    return s.StreamSelectKey(
        context=f"{which}SourceKeyed", source=step, key_expressions=(ex.text(_aliased(expr, side_of)),)
    )


def _key_name(viable: list[ast.ColumnRef], query: ast.Query, side_of: Any, sides: list[Side]) -> str:
    if not viable:
        taken = {c.name for x in sides for c in x.source.columns}
        name, i = "ROWKEY", 0
        while name in taken:
            i += 1
            name = f"ROWKEY_{i}"
        return name
    projected = [r for r in viable if _projected(r, query, side_of)]
    chosen = projected[0] if projected else viable[0]
    return _col_name(chosen, side_of)


def _projected(ref: ast.ColumnRef, query: ast.Query, side_of: Any) -> bool:
    side = side_of(ref.source)
    for item in query.select:
        match item:
            case ast.AllColumns(source=None):
                return True
            case ast.AllColumns(source=q) if side_of(q) is side:
                return True
            case ast.SingleColumn(expr=ast.ColumnRef(name=n, source=q)) if n == ref.name:
                if q is not None and side_of(q) is side:
                    return True
                if q is None and side is not None and side.source.column(n) is not None:
                    return True
    return False


# ------------------------------------------------------------------------------ the query over it


def _rewrite_query(
    query: ast.Query, sides: list[Side], side_of: Any, synthetic: str | None, result: Source
) -> ast.Query:
    """The query over the join's result: ``L.B`` → ``L_B``, stars expanded to prefixed columns."""

    def column(node: Any, bound: frozenset[str]) -> Any | None:
        if not isinstance(node, ast.ColumnRef):
            return None
        if node.source is None and node.name in bound:
            return node
        if node.source is None and synthetic is not None and node.name == synthetic:
            return node
        if node.source is None:
            owners = [
                x for x in sides
                if x.source.column(node.name) is not None
            ]
            if len(owners) > 1:
                raise ambiguous(node, owners)
            if not owners:
                return None  # unknown: the analyzer reports it
            return ast.ColumnRef(name=owners[0].prefixed(node.name), pos=node.pos)
        side = side_of(node.source)
        if side is None:
            raise AnalysisError(f"Source '{node.source}' does not exist.", pos=node.pos)
        return ast.ColumnRef(name=side.prefixed(node.name), pos=node.pos)

    def rewrite(e: Any) -> Any:
        return _rewrite_refs(e, column, frozenset())

    select: list[ast.SelectItem] = []
    for item in query.select:
        match item:
            case ast.AllColumns(source=None) if query.partition_by:
                select.extend(_repartitioned_star(result, item.pos))
            case ast.AllColumns(source=None):
                if synthetic is not None:
                    select.append(ast.SingleColumn(expr=ast.ColumnRef(name=synthetic, pos=item.pos)))
                for x in sides:
                    select.extend(_star(x, item.pos))
            case ast.AllColumns(source=q):
                side = side_of(q)
                if side is None:
                    raise AnalysisError(f"Source '{q}' does not exist.", pos=item.pos)
                select.extend(_star(side, item.pos))
            case ast.SingleColumn(expr=e, alias=a):
                new = rewrite(e)
                if a is None and isinstance(e, ast.ColumnRef) and isinstance(new, ast.ColumnRef):
                    # ksqlDB names a column by its name, prefixed with its source's alias only
                    # where more than one source has a column of that name
                    # (every source has the pseudo columns, a windowed one its window bounds)
                    owners = sum(1 for x in sides if _has_column(x.source, e.name))
                    clashing = owners > 1 or (e.source is not None and e.name in PSEUDO_COLUMNS)
                    a = new.name if clashing else e.name
                select.append(ast.SingleColumn(expr=new, alias=a, pos=item.pos))
            case ast.StructAll(base=b):
                select.append(ast.StructAll(base=rewrite(b), pos=item.pos))
    return dataclasses.replace(
        query,
        select=tuple(select),
        from_=ast.Table(name=result.name, pos=query.from_.pos),
        where=rewrite(query.where) if query.where is not None else None,
        group_by=tuple(rewrite(e) for e in query.group_by),
        partition_by=tuple(rewrite(e) for e in query.partition_by),
        having=rewrite(query.having) if query.having is not None else None,
    )


def _has_column(source: Source, name: str) -> bool:
    if name in PSEUDO_COLUMNS:
        return True
    if name in WINDOW_BOUND_COLUMNS:
        return source.window is not None
    return source.column(name) is not None


def _star(side: Side, pos: Any) -> list[ast.SelectItem]:
    """A side's ``*``: its keys, its window bounds when windowed (ksqlDB's ``orderColumns``:
    a join's sides carry them as aliased value columns), then its values and headers."""
    names = [c.name for c in side.source.key_columns]
    if side.source.window is not None:
        names += list(WINDOW_BOUND_COLUMNS)
    names += [c.name for c in (*side.source.value_columns, *side.source.header_columns)]
    return [
        ast.SingleColumn(expr=ast.ColumnRef(name=side.prefixed(n), pos=pos), alias=side.prefixed(n), pos=pos)
        for n in names
    ]


def _repartitioned_star(result: Source, pos: Any) -> list[ast.SelectItem]:
    """``*`` over a join that PARTITION BY re-keys: every value column of the join's result,
    the sides' copied pseudo and key columns (``L_ROWTIME``, ``L_A``) included, as ksqlDB's
    ``UserRepartitionNode`` resolves it (the new key is moved first by the PARTITION BY)."""
    return [
        ast.SingleColumn(expr=ast.ColumnRef(name=c.name, pos=pos), alias=c.name, pos=pos)
        for c in result.value_columns
    ]


def _rewrite_refs(node: Any, fn: Any, bound: frozenset[str]) -> Any:
    if isinstance(node, ast.Lambda):
        inner = bound | frozenset(node.params)
        return dataclasses.replace(node, body=_rewrite_refs(node.body, fn, inner))
    if isinstance(node, tuple):
        return tuple(_rewrite_refs(x, fn, bound) for x in node)
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return node
    replaced = fn(node, bound)
    if replaced is not None:
        return replaced
    changes = {}
    for f in dataclasses.fields(node):
        if f.name == "pos":
            continue
        value = getattr(node, f.name)
        new = _rewrite_refs(value, fn, bound)
        if new is not value:
            changes[f.name] = new
    return dataclasses.replace(node, **changes) if changes else node
