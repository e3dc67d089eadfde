"""CREATE ... AS SELECT statements printed as ksqlDB quotes them in planning errors: sanitized
(references qualified with their source, every selected expression named) and laid out by its
SqlFormatter."""

from __future__ import annotations

import pytest

from ksqlpy import parser
from ksqlpy.parser import ast
from ksqlpy.planner import ddl
from ksqlpy.planner.catalog import Catalog
from ksqlpy.planner.statement_text import planned_statement_text

SOURCES = [
    (
        "CREATE STREAM L (ID INT KEY, A INT, B INT, S STRUCT<F INT>, XS ARRAY<INT>) "
        "WITH (kafka_topic='l', value_format='JSON');"
    ),
    "CREATE STREAM R (ID INT KEY, A INT, C INT) WITH (kafka_topic='r', value_format='JSON');",
]


def text_of(sql: str) -> str | None:
    catalog = Catalog()
    for source in SOURCES:
        create = parser.parse_statement(source)
        assert isinstance(create, ast.CreateSource)
        catalog.add(ddl.source_from_create(create, catalog, {}))
    stmt = parser.parse_statement(sql)
    assert isinstance(stmt, ast.CreateAsSelect)
    return planned_statement_text(stmt, catalog)


def test_an_aggregation_is_qualified_named_and_laid_out() -> None:
    sql = (
        "create table t with (partitions=2, key_format='KAFKA') as "
        "select a, count(*) as n, b + 1 from l window tumbling (size 10 second) where b > 0 group by a;"
    )
    assert text_of(sql) == (
        "CREATE TABLE T WITH (KEY_FORMAT='KAFKA', PARTITIONS=2) AS SELECT\n"
        "  L.A A,\n"
        "  COUNT(*) N,\n"
        "  (L.B + 1) KSQL_COL_0\n"
        "FROM L L\n"
        "WINDOW TUMBLING ( SIZE 10 SECONDS ) \n"
        "WHERE (L.B > 0)\n"
        "GROUP BY L.A\n"
        "EMIT CHANGES"
    )


def test_a_join_names_its_clashing_columns_after_their_source() -> None:
    sql = "CREATE STREAM O AS SELECT L.ID, L.A, C FROM L JOIN R WITHIN 1 SECOND ON L.ID = R.ID EMIT CHANGES;"
    assert text_of(sql) == (
        "CREATE STREAM O AS SELECT\n"
        "  L.ID L_ID,\n"
        "  L.A L_A,\n"
        "  R.C C\n"
        "FROM L L\n"
        "INNER JOIN R R WITHIN 1 SECONDS ON ((L.ID = R.ID))\n"
        "EMIT CHANGES"
    )


def test_a_field_is_named_after_itself_and_a_lambda_parameter_stays_bare() -> None:
    sql = "CREATE STREAM O AS SELECT S->F, TRANSFORM(XS, X => X + A) FROM L;"
    assert text_of(sql) == (
        "CREATE STREAM O AS SELECT\n"
        "  L.S->F F,\n"
        "  TRANSFORM(L.XS, (X) => (X + L.A)) KSQL_COL_0\n"
        "FROM L L\n"
        "EMIT CHANGES"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE STREAM O AS SELECT * FROM NOPE;",
        "CREATE STREAM O AS SELECT A FROM L JOIN R WITHIN 1 SECOND ON L.ID = R.ID;",
    ],
)
def test_what_the_sanitizer_refuses_keeps_its_own_text(sql: str) -> None:
    assert text_of(sql) is None
