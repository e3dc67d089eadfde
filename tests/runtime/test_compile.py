"""The step-tree compiler: ksqlDB's execution steps lowered into one fused operator.

Hand-written plans check the fusion itself (later steps inline earlier ones, so a chain is one
DuckDB query over ``input``, which is run here on a small batch); historical plans check that
real plans of each supported shape compile and that joins are refused by name; joins compile into a join tree."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from ksqlpy import sqltypes
from ksqlpy.errors import PlanError
from ksqlpy.parser.ast import SourceKind
from ksqlpy.planner import physical
from ksqlpy.planner.catalog import Catalog, Column, FormatInfo, Source
from ksqlpy.planner.functions import register_udfs
from ksqlpy.planner.steps import (
    CreateSourceCommand,
    KsqlPlan,
    QueryPlan,
    StreamAggregate,
    StreamFilter,
    StreamFlatMap,
    StreamGroupBy,
    StreamGroupByKey,
    StreamSelect,
    StreamSelectKey,
    StreamSink,
    StreamSource,
    StreamStreamJoin,
    TableFilter,
    TableSelect,
    TableSink,
)
from ksqlpy.planner.steps.catalog import source_of
from ksqlpy.planner.steps.formats import FormatInfo as PlanFormat
from ksqlpy.planner.steps.formats import Formats, TimestampColumn
from ksqlpy.runtime.compile import compile_query

REPO = Path(__file__).resolve().parents[2]
#: ../shared/qtt-plans beside the repository (or beside the folder of worktrees)
PLANS = Path(
    os.environ.get(
        "KSQLPY_QTT_PLANS",
        next(
            (
                p
                for p in (REPO.parent / "shared" / "qtt-plans", REPO.parents[1] / "shared" / "qtt-plans")
                if p.is_dir()
            ),
            REPO.parent / "shared" / "qtt-plans",
        ),
    )
)

JSON = Formats(key_format=PlanFormat(format="KAFKA"), value_format=PlanFormat(format="JSON"))
SCHEMA = "`ID` STRING KEY, `A` INTEGER, `B` STRING, `XS` ARRAY<INTEGER>"


def _source() -> StreamSource:
    return StreamSource(
        context="KsqlTopic/Source",
        topic_name="input",
        formats=JSON,
        source_schema=SCHEMA,
        pseudo_column_version=1,
    )


def _sink_source(name: str, schema: str, kind: SourceKind = SourceKind.STREAM) -> Source:
    return Source(
        name=name,
        kind=kind,
        topic=name,
        columns=_columns(schema),
        key_format=FormatInfo(format="KAFKA"),
        value_format=FormatInfo(format="JSON"),
    )


def _columns(schema: str) -> tuple[Column, ...]:
    from ksqlpy.planner.steps.schema import LogicalSchema

    return LogicalSchema.parse(schema).columns


def _catalog() -> Catalog:
    catalog = Catalog()
    catalog.add(
        Source(
            name="INPUT",
            kind=SourceKind.STREAM,
            topic="input",
            columns=_columns(SCHEMA),
            key_format=FormatInfo(format="KAFKA"),
            value_format=FormatInfo(format="JSON"),
            partitions=3,
        )
    )
    return catalog


def _plan(root: Any, sink: str = "OUTPUT") -> QueryPlan:
    return QueryPlan(sources=("INPUT",), sink=sink, physical_plan=root, query_id="CSAS_OUTPUT_0")


def _run(step: physical.SelectStep, rows: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The step's projection and filter run as the evaluator runs them: one query over ``input``."""
    con = duckdb.connect()
    register_udfs(con)
    con.register("input", pa.table(rows))
    items = ", ".join(f'{c.sql} AS "{c.name}"' for c in step.columns)
    sql = f"SELECT {items} FROM input" + (f" WHERE {step.where_sql}" if step.where_sql else "")
    return con.sql(sql).to_arrow_table().to_pylist()


BATCH = {
    "ID": ["a", "b", "c"],
    "A": [1, 5, 10],
    "B": ["x", "y", None],
    "XS": [[1, 2], [], [3]],
    "ROWTIME": [100, 200, 300],
    "ROWPARTITION": [0, 0, 0],
    "ROWOFFSET": [0, 1, 2],
}


def test_filter_and_projections_fuse_into_one_query_over_input() -> None:
    inner = StreamSelect(
        context="Inner",
        source=StreamFilter(context="WhereFilter", source=_source(), filter_expression="(A > 2)"),
        key_column_names=("ID",),
        select_expressions=("(A + 1) AS C", "B AS B"),
    )
    outer = StreamSelect(
        context="Project",
        source=inner,
        key_column_names=("K",),
        select_expressions=("(C * 2) AS D", "B AS B"),
    )
    root = StreamSink(context="OUTPUT", source=outer, formats=JSON, topic_name="OUTPUT")
    sink = _sink_source("OUTPUT", "`K` STRING KEY, `D` INTEGER, `B` STRING")
    plan = compile_query(_plan(root), _catalog(), sink, {})
    step = plan.step
    assert isinstance(step, physical.SelectStep)
    assert step.kind is physical.StepKind.STREAM_SELECT and not step.rekeyed
    assert [(c.name, c.type, c.is_key) for c in step.columns] == [
        ("K", sqltypes.STRING, True),
        ("D", sqltypes.INTEGER, False),
        ("B", sqltypes.STRING, False),
    ]
    # the outer projection reads the inner one's expression, not a column named C
    assert '"C"' not in step.columns[1].sql and '"A"' in step.columns[1].sql
    assert step.source.name == "INPUT" and step.source.partitions == 3 and step.source.null_values
    assert _run(step, BATCH) == [{"K": "b", "D": 12, "B": "y"}, {"K": "c", "D": 22, "B": None}]
    assert plan.query_id == "CSAS_OUTPUT_0" and plan.sink is sink


def test_partition_by_rekeys_from_the_key_expression() -> None:
    select_key = StreamSelectKey(context="PartitionBy", source=_source(), key_expressions=("(A * 10)",))
    project = StreamSelect(
        context="Project",
        source=select_key,
        key_column_names=("NEWKEY",),
        select_expressions=("B AS B", "ID AS ID"),
    )
    root = StreamSink(context="OUTPUT", source=project, formats=JSON, topic_name="OUTPUT")
    sink = _sink_source("OUTPUT", "`NEWKEY` INTEGER KEY, `B` STRING, `ID` STRING")
    step = compile_query(_plan(root), _catalog(), sink, {}).step
    assert isinstance(step, physical.SelectStep) and step.rekeyed
    assert [c.name for c in step.key_columns] == ["NEWKEY"]
    assert _run(step, BATCH)[0] == {"NEWKEY": 10, "B": "x", "ID": "a"}
    assert step.timestamp_sql == '"ROWTIME"'


def test_sink_timestamp_column_sets_the_output_timestamp() -> None:
    project = StreamSelect(
        context="Project",
        source=_source(),
        key_column_names=("ID",),
        select_expressions=("(CAST(A AS BIGINT) * 1000) AS T",),
    )
    root = StreamSink(
        context="OUTPUT",
        source=project,
        formats=JSON,
        topic_name="OUTPUT",
        timestamp_column=TimestampColumn(column="T"),
    )
    sink = _sink_source("OUTPUT", "`ID` STRING KEY, `T` BIGINT")
    step = compile_query(_plan(root), _catalog(), sink, {}).step
    assert isinstance(step, physical.SelectStep)
    # the sink step's TIMESTAMP column (the DDL command given here has none) times the output
    assert step.timestamp_sql == step.columns[1].sql


def test_flat_map_multiplies_rows() -> None:
    flat = StreamFlatMap(context="FlatMap", source=_source(), table_functions=("EXPLODE(XS)",))
    project = StreamSelect(
        context="Project", source=flat, key_column_names=("ID",), select_expressions=("KSQL_SYNTH_0 AS X",)
    )
    root = StreamSink(context="OUTPUT", source=project, formats=JSON, topic_name="OUTPUT")
    step = compile_query(
        _plan(root), _catalog(), _sink_source("OUTPUT", "`ID` STRING KEY, `X` INTEGER"), {}
    ).step
    assert isinstance(step, physical.SelectStep) and step.multiplies_rows
    assert sorted((r["ID"], r["X"]) for r in _run(step, BATCH)) == [("a", 1), ("a", 2), ("c", 3)]


def test_aggregation_chain_becomes_one_aggregate_step() -> None:
    prepare = StreamSelect(
        context="Aggregate/Prepare",
        source=StreamFilter(context="WhereFilter", source=_source(), filter_expression="(A > 0)"),
        key_column_names=("ID",),
        select_expressions=("B AS B", "A AS A", "(A * 2) AS KSQL_INTERNAL_COL_2"),
    )
    group = StreamGroupBy(
        context="Aggregate/GroupBy", source=prepare, internal_formats=JSON, group_by_expressions=("B",)
    )
    agg = StreamAggregate(
        context="Aggregate/Aggregate",
        source=group,
        internal_formats=JSON,
        non_aggregate_columns=("B", "A"),
        aggregation_functions=("SUM(KSQL_INTERNAL_COL_2)", "COUNT(A)"),
    )
    having = TableFilter(
        context="Aggregate/HavingFilter", source=agg, filter_expression="(KSQL_AGG_VARIABLE_1 > 1)"
    )
    project = TableSelect(
        context="Aggregate/Project",
        source=having,
        key_column_names=("B",),
        select_expressions=("KSQL_AGG_VARIABLE_0 AS S", "CONCAT(B, '!') AS BB"),
    )
    root = TableSink(context="OUTPUT", source=project, formats=JSON, topic_name="OUTPUT")
    sink = _sink_source("OUTPUT", "`B` STRING KEY, `S` INTEGER, `BB` STRING", SourceKind.TABLE)
    step = compile_query(_plan(root), _catalog(), sink, {"ksql.streams.cache.max.bytes.buffering": "0"}).step
    assert isinstance(step, physical.AggregateStep)
    assert step.per_record and step.window is None and not step.emit_final
    assert step.where_sql is not None and '"A"' in step.where_sql
    assert [(k.name, k.sql) for k in step.group_keys] == [("__K0", '"B"')]
    assert [c.name for c in step.calls] == ["KSQL_AGG_VARIABLE_0", "KSQL_AGG_VARIABLE_1"]
    # the call reads the Prepare step's expression, inlined
    assert '"A"' in step.calls[0].args_sql[0] and "KSQL_INTERNAL" not in step.calls[0].args_sql[0]
    assert step.having_sql is not None and "KSQL_AGG_VARIABLE_1" in step.having_sql
    # the group key is read from the aggregated relation, also inside expressions
    assert [(c.name, c.is_key) for c in step.columns] == [("B", True), ("S", False), ("BB", False)]
    assert step.columns[0].sql == '"__K0"' and '"__K0"' in step.columns[2].sql


def test_join_compiles_into_a_join_tree_under_the_projection() -> None:
    left = StreamSelect(
        context="PrependAliasLeft",
        source=_source(),
        key_column_names=("ID",),
        select_expressions=("A AS L_A",),
    )
    right = StreamSelect(
        context="PrependAliasRight",
        source=_source(),
        key_column_names=("ID",),
        select_expressions=("A AS R_A",),
    )
    join = StreamStreamJoin(
        context="Join",
        join_type="INNER",
        left_source=left,
        right_source=right,
        left_internal_formats=JSON,
        right_internal_formats=JSON,
        before_millis=1.0,
        after_millis=1.0,
    )
    root = StreamSink(
        context="OUTPUT",
        source=StreamSelect(
            context="Project", source=join, key_column_names=("ID",), select_expressions=("L_A AS A",)
        ),
        formats=JSON,
        topic_name="OUTPUT",
    )
    plan = compile_query(_plan(root), _catalog(), _sink_source("OUTPUT", "`ID` STRING KEY, `A` INTEGER"), {})
    assert plan.join is not None and plan.join.kind.value == "stream-stream"
    assert [i.select.value_columns[0].name for i in plan.join.inputs()] == ["L_A", "R_A"]
    # the projection reads the join's output: its key and the left side's value
    assert isinstance(plan.step, physical.SelectStep) and plan.step.source.name == plan.join.output.name
    assert [c.sql for c in plan.step.columns] == ['"__JK"', '"L_A"']


def test_unknown_shapes_are_refused_by_name() -> None:
    filter_only = StreamSink(
        context="OUTPUT",
        source=StreamFilter(context="WhereFilter", source=_source(), filter_expression="(A > 1)"),
        formats=JSON,
        topic_name="OUTPUT",
    )
    with pytest.raises(PlanError, match="streamFilterV1 at WhereFilter"):
        compile_query(_plan(filter_only), _catalog(), _sink_source("OUTPUT", SCHEMA), {})


# ------------------------------------------------------------------------------ historical plans


def _compile_case(name: str) -> list[physical.QueryPlan]:
    data = json.loads((PLANS / name / "plan.json").read_text())
    catalog = Catalog()
    compiled = []
    for entry in data["plan"]:
        plan = KsqlPlan.from_json(entry)
        command = plan.ddl_command
        assert isinstance(command, CreateSourceCommand)
        source = source_of(command, catalog.types)
        catalog.add(source)
        if plan.query_plan is not None:
            compiled.append(compile_query(plan.query_plan, catalog, source, data["configs"]))
    return compiled


@pytest.mark.skipif(not PLANS.is_dir(), reason=f"the historical plans are absent ({PLANS})")
@pytest.mark.parametrize(
    ("case", "shape"),
    [
        ("array-min-max-sort_-_array_max", "select"),
        ("as_value_-_partition_by", "rekeyed"),
        ("cube_-_cube_three_columns", "flat map"),
        ("group-by_-_complex_UDAF_params_matching_HAVING", "aggregate"),
        ("suppress_-_should_suppress_after_a_filter_WHERE_clause", "final"),
        ("earliest-offset-udaf_-_merging_session_windows", "session"),
        ("attr_-_table_attr_with_tombstones", "table aggregate"),
    ],
)
def test_historical_plans_compile(case: str, shape: str) -> None:
    (plan,) = _compile_case(case)
    step = plan.step
    match shape:
        case "select":
            assert isinstance(step, physical.SelectStep) and not step.rekeyed
        case "rekeyed":
            assert isinstance(step, physical.SelectStep) and step.rekeyed
            assert [c.name for c in step.key_columns] == ["KSQL_COL_0"]
        case "flat map":
            assert isinstance(step, physical.SelectStep) and step.multiplies_rows
        case "aggregate":
            assert isinstance(step, physical.AggregateStep) and step.having_sql is not None
            assert [k.sql for k in step.group_keys] == ['"V0"', '"V1"']
            # HAVING's (V0 + V1) reads the group keys
            assert '"__K0"' in step.having_sql and '"__K1"' in step.having_sql
        case "final":
            assert isinstance(step, physical.AggregateStep) and step.emit_final
            assert step.window is not None and (step.window.size_ms, step.window.grace_ms) == (2, 1)
        case "session":
            assert isinstance(step, physical.AggregateStep)
            assert step.window is not None and step.window.is_session and step.window.gap_ms == 1000
        case "table aggregate":
            assert isinstance(step, physical.AggregateStep) and step.source.is_table


@pytest.mark.skipif(not PLANS.is_dir(), reason=f"the historical plans are absent ({PLANS})")
def test_historical_foreign_key_join_plan_computes_the_foreign_key_on_its_left_side() -> None:
    name = "fk-join_-_Should_support_left_join_with_left_value-column_expression"
    (plan,) = _compile_case(name)
    assert plan.join is not None and plan.join.kind.value == "foreign-key"
    left = plan.join.left
    assert [c.sql for c in left.select.columns if c.name == "__FK"] == ['"FOREIGN_KEY"']
    # the foreign key is not one of the values the join passes on
    assert "__FK" not in left.value_names and plan.step.source.is_table


def test_old_plans_without_key_names_write_the_sink_key() -> None:
    # ksqlDB before 0.15 did not write keyColumnNames: the sink's DDL command names the key
    prepare = StreamSelect(
        context="Aggregate/Prepare", source=_source(), select_expressions=("B AS B", "ROWTIME AS ROWTIME")
    )
    group = StreamGroupBy(
        context="Aggregate/GroupBy", source=prepare, internal_formats=JSON, group_by_expressions=("B",)
    )
    agg = StreamAggregate(
        context="Aggregate/Aggregate",
        source=group,
        internal_formats=JSON,
        non_aggregate_columns=("B", "ROWTIME"),
        aggregation_functions=("COUNT(ROWTIME)",),
    )
    project = TableSelect(
        context="Aggregate/Project", source=agg, select_expressions=("KSQL_AGG_VARIABLE_0 AS N",)
    )
    root = TableSink(context="OUTPUT", source=project, formats=JSON, topic_name="OUTPUT")
    sink = _sink_source("OUTPUT", "`ALIASED` STRING KEY, `N` BIGINT", SourceKind.TABLE)
    step = compile_query(_plan(root), _catalog(), sink, {}).step
    assert [(c.name, c.is_key, c.sql) for c in step.columns] == [
        ("ALIASED", True, '"__K0"'),
        ("N", False, '"KSQL_AGG_VARIABLE_0"'),
    ]
    assert not step.per_record  # the cache is on unless the config turns it off


@pytest.mark.parametrize(("name", "char"), [("SPACE", " "), ("TAB", "\t"), ("|", "|")])
def test_named_delimiters_of_plans_become_characters(name: str, char: str) -> None:
    from ksqlpy.planner.steps import CreateStreamCommand
    from ksqlpy.runtime.compile import source_from_command

    formats = Formats(
        key_format=PlanFormat(format="KAFKA"),
        value_format=PlanFormat(format="DELIMITED", properties=(("delimiter", name),)),
    )
    command = CreateStreamCommand(source_name="S", schema=SCHEMA, topic_name="s", formats=formats)
    assert source_from_command(command).value_format.properties == {"delimiter": char}


def test_sink_listing_the_same_keys_in_another_order_keeps_them() -> None:
    # ksqlDB's new planner recorded sinks with the keys in projection order
    two_keys = "`K1` STRING KEY, `K2` INTEGER KEY, `V` STRING"
    source = StreamSource(
        context="KsqlTopic/Source", topic_name="input", formats=JSON, source_schema=two_keys
    )
    project = StreamSelect(
        context="Project", source=source, key_column_names=("K1", "K2"), select_expressions=("V AS V",)
    )
    root = StreamSink(context="OUTPUT", source=project, formats=JSON, topic_name="OUTPUT")
    sink = _sink_source("OUTPUT", "`K2` INTEGER KEY, `K1` STRING KEY, `V` STRING")
    step = compile_query(_plan(root), _catalog(), sink, {}).step
    assert [(c.name, c.sql) for c in step.key_columns] == [("K1", '"K1"'), ("K2", '"K2"')]


def test_old_plans_group_by_several_expressions_into_one_string_key() -> None:
    from ksqlpy.planner.steps import StreamGroupByV1

    prepare = StreamSelect(
        context="Aggregate/Prepare",
        source=_source(),
        select_expressions=("A AS A", "B AS B", "ROWTIME AS ROWTIME"),
    )
    group = StreamGroupByV1(
        context="Aggregate/GroupBy", source=prepare, internal_formats=JSON, group_by_expressions=("B", "A")
    )
    agg = StreamAggregate(
        context="Aggregate/Aggregate",
        source=group,
        internal_formats=JSON,
        non_aggregate_columns=("A", "B", "ROWTIME"),
        aggregation_functions=("COUNT(ROWTIME)",),
    )
    project = TableSelect(
        context="Aggregate/Project", source=agg, select_expressions=("KSQL_AGG_VARIABLE_0 AS N",)
    )
    root = TableSink(context="OUTPUT", source=project, formats=JSON, topic_name="OUTPUT")
    sink = _sink_source("OUTPUT", "`KSQL_COL_1` STRING KEY, `N` BIGINT", SourceKind.TABLE)
    step = compile_query(_plan(root), _catalog(), sink, {}).step
    assert isinstance(step, physical.AggregateStep)
    (key,) = step.group_keys
    assert key.type == sqltypes.STRING
    con = duckdb.connect()
    con.register("input", pa.table(BATCH))
    assert [r[0] for r in con.sql(f"SELECT {key.sql} FROM input").fetchall()] == [
        "x|+|1",
        "y|+|5",
        "null|+|10",
    ]


def test_carried_columns_read_as_their_latest_value() -> None:
    # ksqlDB before 0.15 projected a non-aggregate column that is not a group key (a source
    # declared with KEY='b'): the aggregation carries its value from the group's latest record
    prepare = StreamSelect(
        context="Aggregate/Prepare", source=_source(), select_expressions=("B AS B", "ROWTIME AS ROWTIME")
    )
    group = StreamGroupByKey(context="Aggregate/GroupBy", source=prepare, internal_formats=JSON)
    agg = StreamAggregate(
        context="Aggregate/Aggregate",
        source=group,
        internal_formats=JSON,
        non_aggregate_columns=("B", "ROWTIME"),
        aggregation_functions=("COUNT(ROWTIME)",),
    )
    project = TableSelect(
        context="Aggregate/Project", source=agg, select_expressions=("B AS B", "KSQL_AGG_VARIABLE_0 AS N")
    )
    root = TableSink(context="OUTPUT", source=project, formats=JSON, topic_name="OUTPUT")
    sink = _sink_source("OUTPUT", "`ID` STRING KEY, `B` STRING, `N` BIGINT", SourceKind.TABLE)
    step = compile_query(_plan(root), _catalog(), sink, {}).step
    assert isinstance(step, physical.AggregateStep)
    carried = step.calls[-1]
    assert carried.name == "__CARRIED_B" and carried.accumulator.name == "LATEST_BY_OFFSET"
    assert carried.args_sql == ('"B"',)
    assert [(c.name, c.sql) for c in step.value_columns] == [
        ("B", '"__CARRIED_B"'),
        ("N", '"KSQL_AGG_VARIABLE_0"'),
    ]
    # a null is a value too: the latest record's null replaces an earlier value
    acc = carried.accumulator
    assert acc.result(acc.add(acc.add(acc.initial(), ("x",)), (None,))) is None
    assert acc.result(acc.add(acc.add(acc.initial(), (None,)), ("y",))) == "y"
