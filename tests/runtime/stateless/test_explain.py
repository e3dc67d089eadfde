"""EXPLAIN <statement>: the query a statement would run, described without running it."""

from __future__ import annotations

from ksqlpy.runtime import results as r
from ksqlpy.runtime.engine import Engine

INPUT = "CREATE STREAM INPUT (ID INT KEY, NAME STRING) WITH (kafka_topic='input', value_format='JSON', partitions=1);"


def test_explain_create_as_select_describes_without_creating(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(INPUT)
    (d,) = s.execute_all("EXPLAIN CREATE STREAM OUTPUT AS SELECT ID, UCASE(NAME) AS N FROM INPUT WHERE ID > 1;")
    assert isinstance(d, r.QueryDescription)
    assert d.id == "CSAS_OUTPUT_0"
    assert d.sources == ("INPUT",) and d.sinks == ("OUTPUT",) and d.sink_topics == ("OUTPUT",)
    assert [(f.name, f.kind) for f in d.fields] == [("ID", r.FieldKind.KEY), ("N", None)]
    # ksqlDB's plan summary of the steps the statement would run
    source = "ID INTEGER KEY, NAME STRING, ROWTIME BIGINT, ROWPARTITION INTEGER, ROWOFFSET BIGINT, ID INTEGER"
    assert d.execution_plan == (
        " > [ SINK ] | Schema: ID INTEGER KEY, N STRING | Logger: CSAS_OUTPUT_0.OUTPUT\n"
        "\t\t > [ PROJECT ] | Schema: ID INTEGER KEY, N STRING | Logger: CSAS_OUTPUT_0.Project\n"
        f"\t\t\t\t > [ FILTER ] | Schema: {source} | Logger: CSAS_OUTPUT_0.WhereFilter\n"
        f"\t\t\t\t\t\t > [ SOURCE ] | Schema: {source} | Logger: CSAS_OUTPUT_0.KsqlTopic.Source"
    )
    assert engine.catalog.find("OUTPUT") is None and not engine.queries
    # the id was not used up: the statement itself gets it
    (status,) = s.execute_all("CREATE STREAM OUTPUT AS SELECT ID, UCASE(NAME) AS N FROM INPUT WHERE ID > 1;")
    assert status.query_id == "CSAS_OUTPUT_0"


def test_explain_select_is_a_push_query_description(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(INPUT)
    (d,) = s.execute_all("EXPLAIN SELECT * FROM INPUT EMIT CHANGES;")
    assert isinstance(d, r.QueryDescription)
    assert d.query_type is r.QueryType.PUSH and d.sinks == ()
    assert [f.name for f in d.fields] == ["ID", "NAME"]
