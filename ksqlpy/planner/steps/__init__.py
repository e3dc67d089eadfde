"""Plans as data, in ksqlDB's own format.

``steps`` holds the execution steps (a query's tree), ``commands`` what the command log stores
(``ksqlPlanV1``: DDL command plus query plan), ``formats`` the value objects both use, and
``json`` how each reads and writes itself. See :mod:`ksqlpy.planner.steps.steps`.
"""

from ksqlpy.planner.steps.commands import (
    AlterSourceCommand,
    CreateSourceCommand,
    CreateStreamCommand,
    CreateTableCommand,
    DdlCommand,
    DropSourceCommand,
    DropTypeCommand,
    KsqlPlan,
    QueryPlan,
    RegisterTypeCommand,
)
from ksqlpy.planner.steps.formats import (
    FormatInfo,
    Formats,
    TimestampColumn,
    WindowExpression,
    WindowInfo,
    WindowTime,
)
from ksqlpy.planner.steps.json import PlanFormatError, dump, known_types, load_typed
from ksqlpy.planner.steps.steps import (
    AggregateStep,
    ExecutionStep,
    FilterStep,
    ForeignKeyTableTableJoin,
    GroupByStep,
    JoinStep,
    OneInput,
    SinkStep,
    SourceStep,
    StreamAggregate,
    StreamFilter,
    StreamFlatMap,
    StreamGroupBy,
    StreamGroupByKey,
    StreamGroupByV1,
    StreamSelect,
    StreamSelectKey,
    StreamSelectKeyV1,
    StreamSink,
    StreamSource,
    StreamStreamJoin,
    StreamTableJoin,
    StreamWindowedAggregate,
    TableAggregate,
    TableFilter,
    TableGroupBy,
    TableGroupByV1,
    TableSelect,
    TableSelectKey,
    TableSink,
    TableSource,
    TableSourceV1,
    TableSuppress,
    TableTableJoin,
    WindowedStreamSource,
    WindowedTableSource,
)

__all__ = [name for name in dir() if not name.startswith("_")]
