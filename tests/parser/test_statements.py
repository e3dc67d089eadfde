"""Every statement kind builds the right node, with text and position."""

from __future__ import annotations

import pytest

from ksqlpy.errors import ParseError, Position
from ksqlpy.parser import ast, parse, parse_statement


def test_parse_splits_statements_and_keeps_their_text() -> None:
    text = "SHOW STREAMS;\n  -- a comment\n  DROP TABLE t DELETE TOPIC ;\nLIST TOPICS"
    first, second, third = parse(text)
    assert first == ast.Show(what=ast.ShowKind.STREAMS, text="SHOW STREAMS;")
    assert second == ast.DropSource(
        kind=ast.SourceKind.TABLE, name="T", delete_topic=True, text="DROP TABLE t DELETE TOPIC;"
    )
    assert second.pos == Position(3, 3)
    assert third.text == "LIST TOPICS;"


def test_create_stream_with_columns_and_properties() -> None:
    stmt = parse_statement(
        "CREATE OR REPLACE STREAM IF NOT EXISTS s (id INT KEY, `v` ARRAY<STRUCT<a STRING>>, "
        "h BYTES HEADER('k'), hs ARRAY<STRUCT<key STRING, value BYTES>> HEADERS) "
        "WITH (kafka_topic='t', partitions=-2, 'value_format'='JSON');"
    )
    assert isinstance(stmt, ast.CreateSource)
    assert (stmt.kind, stmt.name, stmt.or_replace, stmt.if_not_exists, stmt.is_source) == (
        ast.SourceKind.STREAM, "S", True, True, False,
    )
    assert [e.name for e in stmt.elements] == ["ID", "v", "H", "HS"]
    assert stmt.elements[0].constraint is ast.ColumnConstraint.KEY
    assert stmt.elements[1].type == ast.ArrayType(
        element=ast.StructType(fields=(ast.StructTypeField(name="A", type=ast.PrimitiveType(name="STRING")),))
    )
    assert (stmt.elements[2].constraint, stmt.elements[2].header_key) == (ast.ColumnConstraint.HEADER, "k")
    assert stmt.elements[3].constraint is ast.ColumnConstraint.HEADERS
    assert stmt.properties == (
        ast.Property(name="KAFKA_TOPIC", value=ast.StringLiteral(value="t")),
        ast.Property(name="PARTITIONS", value=ast.IntegerLiteral(value=-2)),
        ast.Property(name="VALUE_FORMAT", value=ast.StringLiteral(value="JSON")),
    )


def test_create_source_table_without_columns() -> None:
    stmt = parse_statement("CREATE SOURCE TABLE t WITH (kafka_topic='t', format='AVRO');")
    assert isinstance(stmt, ast.CreateSource)
    assert stmt.is_source and stmt.kind is ast.SourceKind.TABLE and stmt.elements == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CREATE TABLE I (ID INT KEY) WITH (kafka_topic='i');", "Line: 1, Col: 17: Column `ID` is a 'KEY' column"),
        ("CREATE STREAM I (ID INT PRIMARY KEY) WITH (kafka_topic='i');", "Column `ID` is a 'PRIMARY KEY' column"),
    ],
)
def test_key_constraint_must_suit_the_source_kind(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse(text)


def test_types() -> None:
    stmt = parse_statement(
        "CREATE STREAM s (a INT, b INTEGER, c BIGINT, d DOUBLE, e DECIMAL(4, 2), f STRING, g VARCHAR, "
        "h BYTES, i DATE, j TIME, k TIMESTAMP, l BOOLEAN, m MAP<STRING, INT>, n MY_TYPE) WITH (kafka_topic='x');"
    )
    assert isinstance(stmt, ast.CreateSource)
    assert [e.type for e in stmt.elements] == [
        ast.PrimitiveType(name="INTEGER"),
        ast.PrimitiveType(name="INTEGER"),
        ast.PrimitiveType(name="BIGINT"),
        ast.PrimitiveType(name="DOUBLE"),
        ast.DecimalType(precision=4, scale=2),
        ast.PrimitiveType(name="STRING"),
        ast.PrimitiveType(name="STRING"),
        ast.PrimitiveType(name="BYTES"),
        ast.PrimitiveType(name="DATE"),
        ast.PrimitiveType(name="TIME"),
        ast.PrimitiveType(name="TIMESTAMP"),
        ast.PrimitiveType(name="BOOLEAN"),
        ast.MapType(key=ast.PrimitiveType(name="STRING"), value=ast.PrimitiveType(name="INTEGER")),
        ast.NamedType(name="MY_TYPE"),
    ]


def test_create_as_select_with_every_clause() -> None:
    stmt = parse_statement(
        "CREATE TABLE out WITH (kafka_topic='o') AS SELECT l.k, COUNT(*) AS n FROM left_s l "
        "LEFT OUTER JOIN right_s AS r WITHIN (1 SECOND, 2 SECONDS) GRACE PERIOD 3 SECONDS ON l.k = r.k "
        "FULL JOIN third t WITHIN 5 MINUTES ON l.k = t.k "
        "WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS, RETENTION 1 DAY, GRACE PERIOD 0 SECONDS) "
        "WHERE l.x > 1 GROUP BY l.k HAVING COUNT(*) > 2 EMIT FINAL;"
    )
    assert isinstance(stmt, ast.CreateAsSelect)
    query = stmt.query
    assert isinstance(query.from_, ast.Join)
    assert query.from_.left == ast.Table(name="LEFT_S", alias="L")
    first, second = query.from_.rights
    assert first.type is ast.JoinType.LEFT and first.source == ast.Table(name="RIGHT_S", alias="R")
    assert first.within == ast.Within(
        before=ast.Duration(value=1, unit="SECOND"),
        after=ast.Duration(value=2, unit="SECONDS"),
        grace=ast.Duration(value=3, unit="SECONDS"),
    )
    assert second.type is ast.JoinType.FULL and second.within is not None
    assert second.within.before == second.within.after == ast.Duration(value=5, unit="MINUTES")
    assert query.window == ast.HoppingWindow(
        size=ast.Duration(value=10, unit="SECONDS"),
        advance=ast.Duration(value=5, unit="SECONDS"),
        retention=ast.Duration(value=1, unit="DAY"),
        grace=ast.Duration(value=0, unit="SECONDS"),
    )
    assert query.window.size.millis == 10_000
    assert query.group_by == (ast.ColumnRef(name="K", source="L"),)
    assert query.refinement is ast.Refinement.FINAL
    assert query.select[1] == ast.SingleColumn(expr=ast.FunctionCall(name="COUNT", star=True), alias="N")


def test_session_and_tumbling_windows() -> None:
    q = parse_statement("SELECT * FROM s WINDOW SESSION (30 SECONDS) GROUP BY a EMIT CHANGES;")
    assert isinstance(q, ast.QueryStatement)
    assert q.query.window == ast.SessionWindow(gap=ast.Duration(value=30, unit="SECONDS"))
    q = parse_statement("SELECT * FROM s WINDOW TUMBLING (SIZE 1 HOUR, RETENTION 2 DAYS) GROUP BY a;")
    assert isinstance(q, ast.QueryStatement)
    assert q.query.window == ast.TumblingWindow(
        size=ast.Duration(value=1, unit="HOUR"), retention=ast.Duration(value=2, unit="DAYS")
    )
    assert q.query.refinement is None


def test_pull_query_partition_by_limit_and_select_forms() -> None:
    q = parse_statement("SELECT s.*, v->*, a b FROM s PARTITION BY (a, b) EMIT CHANGES LIMIT 10;")
    assert isinstance(q, ast.QueryStatement)
    assert q.query.select == (
        ast.AllColumns(source="S"),
        ast.StructAll(base=ast.ColumnRef(name="V")),
        ast.SingleColumn(expr=ast.ColumnRef(name="A"), alias="B"),
    )
    assert q.query.partition_by == (ast.ColumnRef(name="A"), ast.ColumnRef(name="B"))
    assert q.query.limit == 10


def test_insert_statements() -> None:
    ins = parse_statement("INSERT INTO t WITH (query_id='q') SELECT * FROM s;")
    assert isinstance(ins, ast.InsertInto) and ins.target == "T"
    assert ins.properties == (ast.Property(name="QUERY_ID", value=ast.StringLiteral(value="q")),)
    vals = parse_statement("INSERT INTO t (a, `b`) VALUES (1, 'x');")
    assert vals == ast.InsertValues(
        target="T",
        columns=("A", "b"),
        values=(ast.IntegerLiteral(value=1), ast.StringLiteral(value="x")),
        text="INSERT INTO t (a, `b`) VALUES (1, 'x');",
    )
    assert parse_statement("INSERT INTO t VALUES ();") == ast.InsertValues(
        target="T", columns=None, values=(), text="INSERT INTO t VALUES ();"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SHOW STREAMS EXTENDED", ast.Show(what=ast.ShowKind.STREAMS, extended=True)),
        ("list tables", ast.Show(what=ast.ShowKind.TABLES)),
        ("SHOW QUERIES", ast.Show(what=ast.ShowKind.QUERIES)),
        ("SHOW TOPICS", ast.Show(what=ast.ShowKind.TOPICS)),
        ("SHOW ALL TOPICS", ast.Show(what=ast.ShowKind.ALL_TOPICS)),
        ("SHOW PROPERTIES", ast.Show(what=ast.ShowKind.PROPERTIES)),
        ("SHOW FUNCTIONS", ast.Show(what=ast.ShowKind.FUNCTIONS)),
        ("SHOW TYPES", ast.Show(what=ast.ShowKind.TYPES)),
        ("SHOW VARIABLES", ast.Show(what=ast.ShowKind.VARIABLES)),
        ("SHOW CONNECTORS", ast.Show(what=ast.ShowKind.CONNECTORS)),
        ("DESCRIBE s EXTENDED", ast.DescribeSource(name="S", extended=True)),
        ("DESCRIBE STREAMS", ast.DescribeSource(name=None, all_of=ast.SourceKind.STREAM)),
        ("DESCRIBE TABLES EXTENDED", ast.DescribeSource(name=None, all_of=ast.SourceKind.TABLE, extended=True)),
        ("DESCRIBE FUNCTION substring", ast.DescribeFunction(name="SUBSTRING")),
        ("TERMINATE CSAS_X_0", ast.TerminateQuery(query_id="CSAS_X_0")),
        ("TERMINATE ALL", ast.TerminateQuery(query_id=None)),
        ("PAUSE q1", ast.PauseQuery(query_id="Q1")),
        ("RESUME ALL", ast.ResumeQuery(query_id=None)),
        ("EXPLAIN CTAS_T_1", ast.Explain(query_id="CTAS_T_1")),
        ("PRINT 'Topic' FROM BEGINNING INTERVAL 3 LIMIT 2", ast.PrintTopic(topic="Topic", from_beginning=True, interval=3, limit=2)),
        ("PRINT my_topic SAMPLE 2", ast.PrintTopic(topic="MY_TOPIC", interval=2)),
        ("SET 'auto.offset.reset' = 'earliest'", ast.SetProperty(name="auto.offset.reset", value="earliest")),
        ("UNSET 'auto.offset.reset'", ast.UnsetProperty(name="auto.offset.reset")),
        ("DEFINE myVar = 'it''s'", ast.DefineVariable(name="myVar", value="it's")),
        ("UNDEFINE select", ast.UndefineVariable(name="select")),
        ("DROP STREAM IF EXISTS s", ast.DropSource(kind=ast.SourceKind.STREAM, name="S", if_exists=True)),
        ("DROP TYPE IF EXISTS t", ast.DropType(name="T", if_exists=True)),
        (
            "CREATE TYPE IF NOT EXISTS addr AS STRUCT<street STRING>",
            ast.RegisterType(
                name="ADDR",
                type=ast.StructType(fields=(ast.StructTypeField(name="STREET", type=ast.PrimitiveType(name="STRING")),)),
                if_not_exists=True,
            ),
        ),
        (
            "ALTER TABLE t ADD COLUMN a INT, ADD b STRING",
            ast.AlterSource(
                kind=ast.SourceKind.TABLE,
                name="T",
                add_columns=(
                    ast.TableElement(name="A", type=ast.PrimitiveType(name="INTEGER")),
                    ast.TableElement(name="B", type=ast.PrimitiveType(name="STRING")),
                ),
            ),
        ),
        (
            "ASSERT NOT EXISTS TOPIC 'x' WITH (partitions=1) TIMEOUT 3 SECONDS",
            ast.AssertTopic(
                topic="x",
                properties=(ast.Property(name="PARTITIONS", value=ast.IntegerLiteral(value=1)),),
                exists=False,
                timeout=ast.Duration(value=3, unit="SECONDS"),
            ),
        ),
        ("ASSERT SCHEMA SUBJECT 'x-value' ID 4", ast.AssertSchema(subject="x-value", id=4)),
    ],
)
def test_other_statements(text: str, expected: ast.Statement) -> None:
    stmt = parse_statement(text)
    assert stmt == type(expected)(**{**_fields(expected), "text": text + ";"})


def _fields(node: object) -> dict[str, object]:
    return {name: getattr(node, name) for name in node.__dataclass_fields__}  # type: ignore[attr-defined]


def test_explain_statement() -> None:
    stmt = parse_statement("EXPLAIN SELECT * FROM s EMIT CHANGES;")
    assert isinstance(stmt, ast.Explain) and isinstance(stmt.statement, ast.QueryStatement)
    assert stmt.statement.text == "SELECT * FROM s EMIT CHANGES;"
    stmt = parse_statement("EXPLAIN CREATE STREAM o AS SELECT * FROM s;")
    assert isinstance(stmt, ast.Explain) and isinstance(stmt.statement, ast.CreateAsSelect)


def test_non_reserved_keywords_as_names() -> None:
    stmt = parse_statement(
        "CREATE STREAM key (key STRING KEY, value INT, timestamp BIGINT, type STRING, date DATE) "
        "WITH (kafka_topic='k');"
    )
    assert isinstance(stmt, ast.CreateSource)
    assert stmt.name == "KEY"
    assert [e.name for e in stmt.elements] == ["KEY", "VALUE", "TIMESTAMP", "TYPE", "DATE"]
    q = parse_statement("SELECT key, timestamp AS ts FROM emit_s e EMIT CHANGES;")
    assert isinstance(q, ast.QueryStatement)
    assert q.query.from_ == ast.Table(name="EMIT_S", alias="E")
    assert q.query.refinement is ast.Refinement.CHANGES


def test_exactly_one_statement() -> None:
    with pytest.raises(ParseError):
        parse_statement("SHOW STREAMS; SHOW TABLES;")
