"""Records through each step of a running query's plan (``step_counts``), on the embedded store:
a filter, a table function, an aggregation and a join, counted from the fused operators."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.step_counts import StepRecords, step_records

PAGEVIEWS = (
    "CREATE STREAM pageviews (user_id VARCHAR KEY, page VARCHAR, duration INT, tags ARRAY<VARCHAR>) "
    "WITH (kafka_topic='pageviews', value_format='JSON', partitions=1);"
)
INSERTS = "".join(
    f"INSERT INTO pageviews (user_id, page, duration, tags) VALUES ('u{i}', '{page}', {d}, ARRAY['a', 'b']);"
    for i, (page, d) in enumerate([("home", 10), ("docs", 40), ("home", 50), ("faq", 5), ("docs", 20)])
)


@pytest.fixture
def engine(tmp_path: Path):
    e = Engine.open({"ksql.streams.state.dir": str(tmp_path / "data")})
    yield e
    e.close()


def steps_of(engine: Engine, query_id: str) -> list[StepRecords]:
    plan = engine.ksql_plans[query_id].query_plan
    assert plan is not None
    return step_records(plan.physical_plan, engine.queries[query_id].operator_counts.snapshot())


def counts(engine: Engine, query_id: str) -> list[tuple[str, int, int | None]]:
    return [(s.operation, s.depth, s.records) for s in steps_of(engine, query_id)]


def run(engine: Engine, *statements: str) -> list[str]:
    s = engine.session({"auto.offset.reset": "earliest"})
    s.execute_all(PAGEVIEWS + INSERTS)
    ids = []
    for text in statements:
        status = s.execute_all(text)[0]
        ids.append(status.query_id)  # type: ignore[union-attr]
    assert engine.wait_idle()
    return ids


def test_a_filter_counts_what_passed_and_the_sink_what_was_written(engine: Engine) -> None:
    (qid,) = run(engine, "CREATE STREAM long_views AS SELECT user_id, page FROM pageviews WHERE duration > 30;")
    assert counts(engine, qid) == [("SINK", 0, 2), ("PROJECT", 1, 2), ("FILTER", 2, 2), ("SOURCE", 3, 5)]
    steps = steps_of(engine, qid)
    assert [s.type for s in steps] == ["streamSinkV1", "streamSelectV1", "streamFilterV1", "streamSourceV1"]
    assert steps[-1].context == "KsqlTopic/Source"


def test_a_table_function_multiplies_the_records_after_it(engine: Engine) -> None:
    (qid,) = run(engine, "CREATE STREAM tags AS SELECT user_id, EXPLODE(tags) AS tag FROM pageviews;")
    assert counts(engine, qid) == [("SINK", 0, 10), ("PROJECT", 1, 10), ("FLAT_MAP", 2, 10), ("SOURCE", 3, 5)]


def test_an_aggregation_counts_its_input_groups_and_changes(engine: Engine) -> None:
    (qid,) = run(
        engine,
        "CREATE TABLE per_page AS SELECT page, COUNT(*) AS n FROM pageviews WHERE duration > 8 GROUP BY page;",
    )
    by_op = {op: n for op, _, n in counts(engine, qid)}
    assert by_op["SOURCE"] == 5 and by_op["FILTER"] == 4 and by_op["GROUP_BY"] == 4
    # one change per page at least, one per record at most
    assert 2 <= by_op["AGGREGATE"] <= 4 and by_op["SINK"] == by_op["AGGREGATE"]


def test_a_join_counts_both_sources(engine: Engine) -> None:
    s = engine.session({"auto.offset.reset": "earliest"})
    s.execute_all(
        "CREATE TABLE pages (page VARCHAR PRIMARY KEY, title VARCHAR) "
        "WITH (kafka_topic='pages', value_format='JSON', partitions=1);"
        "INSERT INTO pages (page, title) VALUES ('home', 'Home');"
        "INSERT INTO pages (page, title) VALUES ('docs', 'Docs');"
    )
    (qid,) = run(
        engine,
        "CREATE STREAM titled AS SELECT v.page, v.user_id, p.title FROM pageviews v "
        "JOIN pages p ON v.page = p.page;",
    )
    steps = counts(engine, qid)
    sources = [n for op, _, n in steps if op == "SOURCE"]
    assert sorted(sources) == [2, 5]  # the pages table's two rows, the five page views
    by_op = {op: n for op, _, n in steps}
    assert by_op["JOIN"] == 4 and by_op["SINK"] == 4  # 'faq' has no page


def test_an_n_way_join_counts_each_join_and_the_re_keying_between_them(engine: Engine) -> None:
    s = engine.session({"auto.offset.reset": "earliest"})
    s.execute_all(
        "CREATE TABLE pages (page VARCHAR PRIMARY KEY, title VARCHAR) "
        "WITH (kafka_topic='pages', value_format='JSON', partitions=1);"
        "CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR) "
        "WITH (kafka_topic='users', value_format='JSON', partitions=1);"
        "INSERT INTO pages (page, title) VALUES ('home', 'Home');"
        "INSERT INTO users (id, name) VALUES ('u1', 'Ann');"
        "INSERT INTO users (id, name) VALUES ('u2', 'Bo');"
    )
    (qid,) = run(
        engine,
        "CREATE STREAM named AS SELECT v.user_id, v.page, p.title, u.name FROM pageviews v "
        "JOIN pages p ON v.page = p.page JOIN users u ON v.user_id = u.id;",
    )
    by_context = {st.context: st.records for st in steps_of(engine, qid)}
    # two of five views are of 'home'; of those, one is by a known user (u2)
    assert by_context["KafkaTopic_L_Left/Source"] == 5
    assert by_context["KafkaTopic_L_Right/Source"] == 1 and by_context["KafkaTopic_Right/Source"] == 2
    assert by_context["L_Join"] == 2 and by_context["LeftSourceKeyed"] == 2
    assert by_context["Join"] == 1 and by_context["NAMED"] == 1
