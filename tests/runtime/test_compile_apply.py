"""``Engine.apply_plan``: stored plans applied as they are, on the embedded store — DDL commands
change the catalog, query plans are compiled and run, tables are materialized."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ksqlpy import sqltypes
from ksqlpy.planner.steps import (
    AlterSourceCommand,
    CreateStreamCommand,
    CreateTableCommand,
    DropSourceCommand,
    DropTypeCommand,
    KsqlPlan,
    QueryPlan,
    RegisterTypeCommand,
    StreamAggregate,
    StreamFilter,
    StreamGroupBy,
    StreamSelect,
    StreamSink,
    StreamSource,
    StreamStreamJoin,
    TableSelect,
    TableSink,
)
from ksqlpy.planner.steps.commands import ColumnSpec
from ksqlpy.planner.steps.formats import FormatInfo, Formats
from ksqlpy.runtime.engine import Engine

JSON = Formats(key_format=FormatInfo(format="KAFKA"), value_format=FormatInfo(format="JSON"))
INPUT_SCHEMA = "`ID` STRING KEY, `REGION` STRING, `AMOUNT` INTEGER"


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    e = Engine.open(
        {
            "ksql.streams.state.dir": str(tmp_path / "data"),
            "ksql.streams.auto.offset.reset": "earliest",
            "ksql.logging.processing.stream.auto.create": "false",
        }
    )
    yield e
    e.close()


def _create_input(engine: Any) -> None:
    from ksqlpy.runtime.store.base import TopicSpec

    engine.store.create_topic(TopicSpec(name="orders", partitions=2))
    engine.apply_plan(
        KsqlPlan(
            statement_text="CREATE STREAM ORDERS ...",
            ddl_command=CreateStreamCommand(
                source_name="ORDERS", schema=INPUT_SCHEMA, topic_name="orders", formats=JSON
            ),
        )
    )


def _source() -> StreamSource:
    return StreamSource(
        context="KsqlTopic/Source",
        topic_name="orders",
        formats=JSON,
        source_schema=INPUT_SCHEMA,
        pseudo_column_version=1,
    )


def _produce(engine: Any, rows: list[tuple[str, dict[str, Any], int]]) -> None:
    engine.store.produce(
        "orders",
        pa.table(
            {
                "timestamp": pa.array([ts for _, _, ts in rows], pa.int64()),
                "key": pa.array([k.encode() for k, _, _ in rows], pa.binary()),
                "value": pa.array([json.dumps(v).encode() for _, v, _ in rows], pa.binary()),
            }
        ),
    )


def _read(engine: Any, topic: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    with engine.store.open_reader([topic], start="earliest") as reader:
        for _ in range(20):
            batch = reader.poll(10_000, timeout=0.05)
            if batch.num_rows == 0 and out:
                break
            for k, v in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist(), strict=True):
                out.append((k.decode(), None if v is None else json.loads(v)))
    return out


def test_stream_plan_runs_and_creates_its_sink(engine: Any) -> None:
    _create_input(engine)
    assert engine.catalog.source("ORDERS").partitions == 2
    project = StreamSelect(
        context="Project",
        source=StreamFilter(context="WhereFilter", source=_source(), filter_expression="(AMOUNT > 10)"),
        key_column_names=("ID",),
        select_expressions=("UCASE(REGION) AS REGION", "(AMOUNT * 2) AS DOUBLED"),
    )
    query = engine.apply_plan(
        KsqlPlan(
            statement_text="CREATE STREAM BIG AS SELECT ...",
            ddl_command=CreateStreamCommand(
                source_name="BIG",
                schema="`ID` STRING KEY, `REGION` STRING, `DOUBLED` INTEGER",
                topic_name="BIG",
                formats=JSON,
            ),
            query_plan=QueryPlan(
                sources=("ORDERS",),
                sink="BIG",
                physical_plan=StreamSink(context="BIG", source=project, formats=JSON, topic_name="BIG"),
                query_id="CSAS_BIG_0",
            ),
        )
    )
    assert query is not None and query.query_id == "CSAS_BIG_0"
    assert engine.queries["CSAS_BIG_0"] is query
    # the sink topic is created with the source topic's partitions
    assert engine.store.describe_topic("BIG").partitions == 2
    _produce(engine, [("a", {"REGION": "east", "AMOUNT": 5}, 1), ("b", {"REGION": "west", "AMOUNT": 20}, 2)])
    assert engine.wait_idle(20)
    assert _read(engine, "BIG") == [("b", {"REGION": "WEST", "DOUBLED": 40})]


def test_aggregation_plan_materializes_its_table(engine: Any) -> None:
    _create_input(engine)
    prepare = StreamSelect(
        context="Aggregate/Prepare",
        source=_source(),
        key_column_names=("ID",),
        select_expressions=("REGION AS REGION", "AMOUNT AS AMOUNT"),
    )
    group = StreamGroupBy(
        context="Aggregate/GroupBy", source=prepare, internal_formats=JSON, group_by_expressions=("REGION",)
    )
    agg = StreamAggregate(
        context="Aggregate/Aggregate",
        source=group,
        internal_formats=JSON,
        non_aggregate_columns=("REGION", "AMOUNT"),
        aggregation_functions=("SUM(AMOUNT)",),
    )
    project = TableSelect(
        context="Aggregate/Project",
        source=agg,
        key_column_names=("REGION",),
        select_expressions=("KSQL_AGG_VARIABLE_0 AS TOTAL",),
    )
    engine.apply_plan(
        KsqlPlan(
            statement_text="CREATE TABLE TOTALS AS SELECT ...",
            ddl_command=CreateTableCommand(
                source_name="TOTALS",
                schema="`REGION` STRING KEY, `TOTAL` INTEGER",
                topic_name="TOTALS",
                formats=JSON,
            ),
            query_plan=QueryPlan(
                sources=("ORDERS",),
                sink="TOTALS",
                physical_plan=TableSink(context="TOTALS", source=project, formats=JSON, topic_name="TOTALS"),
                query_id="CTAS_TOTALS_0",
            ),
        ),
        {"ksql.streams.cache.max.bytes.buffering": "0"},
    )
    assert "TOTALS" in engine.materializers
    _produce(
        engine,
        [("a", {"REGION": "east", "AMOUNT": 5}, 1), ("b", {"REGION": "east", "AMOUNT": 7}, 2)],
    )
    assert engine.wait_idle(20)
    assert _read(engine, "TOTALS") == [("east", {"TOTAL": 5}), ("east", {"TOTAL": 12})]


def test_ddl_commands_change_the_catalog(engine: Any) -> None:
    _create_input(engine)
    engine.apply_plan(
        KsqlPlan(
            statement_text="CREATE TYPE ADDRESS AS STRUCT<CITY STRING>;",
            ddl_command=RegisterTypeCommand(type="STRUCT<`CITY` STRING>", type_name="ADDRESS"),
        )
    )
    assert engine.catalog.types["ADDRESS"] == sqltypes.Struct((sqltypes.Field("CITY", sqltypes.STRING),))
    engine.apply_plan(
        KsqlPlan(
            statement_text="ALTER STREAM ORDERS ADD COLUMN NOTE STRING;",
            ddl_command=AlterSourceCommand(
                source_name="ORDERS",
                ksql_type="STREAM",
                new_columns=(ColumnSpec(name="NOTE", type="STRING"),),
            ),
        )
    )
    assert engine.catalog.source("ORDERS").column("NOTE") is not None
    engine.apply_plan(
        KsqlPlan(statement_text="DROP TYPE ADDRESS;", ddl_command=DropTypeCommand(type_name="ADDRESS"))
    )
    assert "ADDRESS" not in engine.catalog.types
    engine.apply_plan(
        KsqlPlan(statement_text="DROP STREAM ORDERS;", ddl_command=DropSourceCommand(source_name="ORDERS"))
    )
    assert engine.catalog.find("ORDERS") is None


def test_a_self_join_plan_runs(engine: Any) -> None:
    _create_input(engine)
    left = StreamSelect(
        context="PrependAliasLeft",
        source=_source(),
        key_column_names=("ID",),
        select_expressions=("AMOUNT AS L",),
    )
    right = StreamSelect(
        context="PrependAliasRight",
        source=_source(),
        key_column_names=("ID",),
        select_expressions=("AMOUNT AS R",),
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
    plan = KsqlPlan(
        statement_text="CREATE STREAM J AS SELECT ...",
        ddl_command=CreateStreamCommand(
            source_name="J", schema="`ID` STRING KEY, `L` INTEGER, `R` INTEGER", topic_name="J", formats=JSON
        ),
        query_plan=QueryPlan(
            sources=("ORDERS",),
            sink="J",
            physical_plan=StreamSink(
                context="J",
                source=StreamSelect(
                    context="Project",
                    source=join,
                    key_column_names=("ID",),
                    select_expressions=("L AS L", "R AS R"),
                ),
                formats=JSON,
                topic_name="J",
            ),
            query_id="CSAS_J_0",
        ),
    )
    query = engine.apply_plan(plan)
    assert query is not None and query.query_id == "CSAS_J_0"
    # one topic read by both sides: each record reaches the left side first, then the right
    _produce(engine, [("a", {"AMOUNT": 5}, 1000), ("a", {"AMOUNT": 7}, 1500), ("a", {"AMOUNT": 9}, 9000)])
    assert engine.wait_idle(20)
    rows = [(k, v["L"], v["R"]) for k, v in _read(engine, "J")]
    # within one second of each other: 5 and 7 join every way; 9 joins only itself
    assert rows == [("a", 5, 5), ("a", 7, 5), ("a", 5, 7), ("a", 7, 7), ("a", 9, 9)]
