"""Joins ksqlDB refuses, refused with its words and in its order, by the pure planner."""

from __future__ import annotations

import pytest

from ksqlpy import parser
from ksqlpy.errors import AnalysisError, NodeLocationError
from ksqlpy.parser import ast
from ksqlpy.planner import ddl
from ksqlpy.planner.catalog import Catalog
from ksqlpy.planner.plans import PlanContext, plan_create_as_select

SOURCES = [
    "CREATE STREAM L (ID INT KEY, A INT, B INT) WITH (kafka_topic='l', value_format='JSON');",
    "CREATE STREAM R (ID INT KEY, A INT, C INT) WITH (kafka_topic='r', value_format='JSON');",
    "CREATE TABLE T (ID INT PRIMARY KEY, A INT) WITH (kafka_topic='t', value_format='JSON', partitions=2);",
    "CREATE STREAM K (ID INT KEY, V STRING) WITH (kafka_topic='k', value_format='KAFKA');",
    (
        "CREATE STREAM W (ID INT KEY, A INT) WITH (kafka_topic='w', value_format='JSON', "
        "WINDOW_TYPE='SESSION');"
    ),
    (
        "CREATE STREAM W2 (ID INT KEY, A INT) WITH (kafka_topic='w2', value_format='JSON', "
        "WINDOW_TYPE='SESSION');"
    ),
]


def plan(sql: str) -> None:
    catalog = Catalog()
    for text in SOURCES:
        create = parser.parse_statement(text)
        assert isinstance(create, ast.CreateSource)
        catalog.add(ddl.source_from_create(create, catalog, {}))
    stmt = parser.parse_statement(sql)
    assert isinstance(stmt, ast.CreateAsSelect)
    plan_create_as_select(stmt, PlanContext(catalog=catalog, config={}), "CSAS_OUTPUT_0")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "CREATE STREAM O AS SELECT L.ID, A FROM L JOIN R WITHIN 1 SECOND ON L.ID = R.ID;",
            "Line: 1, Col: 33: Column 'A' is ambiguous. Could be L.A or R.A.",
        ),
        (
            "CREATE STREAM O AS SELECT X.* FROM L JOIN R WITHIN 1 SECOND ON L.ID = R.ID;",
            "'X' is not a valid stream/table name or alias.",
        ),
        (
            # the column is resolved before the missing WITHIN is noticed
            "CREATE STREAM O AS SELECT * FROM L JOIN R ON L.ID = R.NOPE;",
            "Line: 1, Col: 53: JOIN ON column 'R.NOPE' cannot be resolved.",
        ),
        (
            "CREATE STREAM O AS SELECT L.B, R.C FROM L JOIN R WITHIN 1 SECOND ON L.ID = R.ID;",
            "must include the join expressions L.ID or R.ID in its projection (eg, SELECT L.ID...).",
        ),
        (
            "CREATE STREAM O AS SELECT L.B, R.C FROM L FULL JOIN R WITHIN 1 SECOND ON L.ID = R.ID;",
            (
                "ROWKEY was added as a synthetic key column because the join criteria did not match any "
                "source column."
            ),
        ),
        (
            "CREATE TABLE O AS SELECT * FROM T JOIN L ON T.ID = L.ID;",
            (
                "Invalid join order: table-stream joins are not supported; only stream-table joins. "
                "Got T [INNER] JOIN L."
            ),
        ),
        (
            "CREATE STREAM O AS SELECT * FROM L JOIN T ON L.ID = T.ID;",
            (
                "Can't join `L` with `T` since the number of partitions don't match. `L` partitions = 1; "
                "`T` partitions = 2."
            ),
        ),
        (
            "CREATE STREAM O AS SELECT * FROM K JOIN L WITHIN 1 SECOND ON K.ID = L.ID;",
            "Source(s) K are using the 'KAFKA' value format. This format does not yet support JOIN.",
        ),
        (
            "CREATE STREAM O AS SELECT * FROM W JOIN L WITHIN 1 SECOND ON W.ID = L.ID;",
            "Can not join windowed source to non-windowed source.\n`W` is SESSION windowed\n`L` is not windowed",
        ),
        (
            (
                "CREATE STREAM O AS SELECT W.ID, W.WINDOWEND AS WINDOWEND FROM W JOIN W2 WITHIN 1 SECOND "
                "ON W.ID = W2.ID;"
            ),
            "Reserved column name in select: `WINDOWEND`. Please remove or alias the column.",
        ),
    ],
)
def test_join_errors_read_as_ksqldb_words_them(sql: str, message: str) -> None:
    with pytest.raises(AnalysisError) as raised:
        plan(sql)
    assert message in str(raised.value)


def test_column_errors_carry_their_node_location() -> None:
    with pytest.raises(NodeLocationError) as raised:
        plan("CREATE STREAM O AS SELECT * FROM L JOIN R WITHIN 1 SECOND ON L.ID = R.NOPE;")
    assert raised.value.pos is not None and (raised.value.pos.line, raised.value.pos.column) == (1, 69)
