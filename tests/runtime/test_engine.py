"""The engine facade end to end on the embedded store: DDL, persistent and push queries,
INSERT VALUES, the processing log, metadata statements and restart from the command log."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from ksqlpy.errors import AnalysisError, ParseError
from ksqlpy.runtime import results as r
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.session import QueryEndpointError

PAGEVIEWS = (
    "CREATE STREAM pageviews (user_id VARCHAR KEY, page VARCHAR, duration INT) "
    "WITH (kafka_topic='pageviews', value_format='JSON', partitions=1);"
)
LONG_VIEWS = (
    "CREATE STREAM long_views AS SELECT user_id, page, duration * 1000 AS duration_ms "
    "FROM pageviews WHERE duration > 30;"
)


def read_topic(engine: Engine, topic: str) -> list[tuple[bytes | None, object, int]]:
    out = []
    with engine.store.open_reader([topic], start="earliest") as reader:
        for _ in range(20):
            batch = reader.poll(10_000, timeout=0.05)
            if batch.num_rows == 0 and out:
                break
            for k, v, ts in zip(
                batch.column("key").to_pylist(), batch.column("value").to_pylist(), batch.column("timestamp").to_pylist()
            ):
                out.append((k, None if v is None else json.loads(v), ts))
    return out


def produce_json(engine: Engine, topic: str, rows: list[tuple[str, object, int]]) -> None:
    engine.store.produce(
        topic,
        pa.table(
            {
                "timestamp": pa.array([ts for _, _, ts in rows], pa.int64()),
                "key": pa.array([k.encode() for k, _, _ in rows], pa.binary()),
                "value": pa.array([v if isinstance(v, bytes) else json.dumps(v).encode() for _, v, _ in rows], pa.binary()),
            }
        ),
    )


@pytest.fixture
def engine(tmp_path: Path):
    e = Engine.open({"ksql.streams.state.dir": str(tmp_path / "data")})
    yield e
    e.close()


def test_csas_filters_and_projects_into_the_sink_topic(engine: Engine) -> None:
    s = engine.session()
    created = s.execute_all(PAGEVIEWS)[0]
    assert isinstance(created, r.CommandStatusEntity) and created.message == "Stream created"
    status = s.execute_all(LONG_VIEWS)[0]
    assert isinstance(status, r.CommandStatusEntity)
    assert status.query_id == "CSAS_LONG_VIEWS_0"
    produce_json(engine, "pageviews", [("u1", {"PAGE": "home", "DURATION": 12}, 1000), ("u2", {"page": "docs", "duration": 40}, 2000)])
    assert engine.wait_idle()
    assert read_topic(engine, "LONG_VIEWS") == [(b"u2", {"PAGE": "docs", "DURATION_MS": 40000}, 2000)]


def test_malformed_record_goes_to_the_processing_log_and_the_query_keeps_running(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(PAGEVIEWS + LONG_VIEWS)
    produce_json(engine, "pageviews", [("u1", b"{not json", 1), ("u2", {"PAGE": "a", "DURATION": 31}, 2)])
    assert engine.wait_idle()
    assert [v for _, v, _ in read_topic(engine, "LONG_VIEWS")] == [{"PAGE": "a", "DURATION_MS": 31000}]
    log_entries = read_topic(engine, engine.plog.topic)
    assert len(log_entries) == 1
    entry = log_entries[0][1]
    assert entry["LOGGER"] == "CSAS_LONG_VIEWS_0"
    assert entry["MESSAGE"]["DESERIALIZATIONERROR"]["topic"] == "pageviews"


def test_insert_values_and_push_query_with_limit(engine: Engine) -> None:
    s = engine.session({"auto.offset.reset": "earliest"})
    s.execute_all(PAGEVIEWS)
    assert s.execute_all(
        "INSERT INTO pageviews (user_id, page, duration) VALUES ('u1', 'home', 12);"
        "INSERT INTO pageviews (user_id, page, duration) VALUES ('u2', 'docs', 40);"
    ) == [None, None]
    q = s.execute_query("SELECT user_id, duration FROM pageviews EMIT CHANGES LIMIT 2;")
    assert [f.name for f in q.columns] == ["USER_ID", "DURATION"]
    rows = []
    for _ in range(100):
        rows += q.poll(0.1)
        if q.done:
            break
    assert [row.values for row in rows] == [("u1", 12), ("u2", 40)]
    assert q.end_reason == "LIMIT"
    q.close()


def test_restart_replays_the_command_log_and_resumes_without_reprocessing(tmp_path: Path) -> None:
    config = {"ksql.streams.state.dir": str(tmp_path / "data")}
    with Engine.open(config) as first:
        first.session().execute_all(PAGEVIEWS + LONG_VIEWS)
        produce_json(first, "pageviews", [("u1", {"PAGE": "a", "DURATION": 50}, 1)])
        assert first.wait_idle()
    with Engine.open(config) as second:
        assert set(second.catalog.sources) == {"KSQL_PROCESSING_LOG", "PAGEVIEWS", "LONG_VIEWS"}
        assert list(second.queries) == ["CSAS_LONG_VIEWS_0"]
        produce_json(second, "pageviews", [("u2", {"PAGE": "b", "DURATION": 60}, 2)])
        assert second.wait_idle()
        assert [k for k, _, _ in read_topic(second, "LONG_VIEWS")] == [b"u1", b"u2"]


def test_metadata_statements(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(PAGEVIEWS + LONG_VIEWS)
    streams = s.execute_all("SHOW STREAMS;")[0]
    assert isinstance(streams, r.SourceList)
    assert [x.name for x in streams.sources] == ["KSQL_PROCESSING_LOG", "LONG_VIEWS", "PAGEVIEWS"]
    desc = s.execute_all("DESCRIBE long_views;")[0]
    assert isinstance(desc, r.SourceDescription)
    assert [(f.name, str(f.type)) for f in desc.fields] == [
        ("USER_ID", "STRING"), ("PAGE", "STRING"), ("DURATION_MS", "INTEGER")
    ]
    queries = s.execute_all("SHOW QUERIES;")[0]
    assert isinstance(queries, r.QueryList) and [q.id for q in queries.queries] == ["CSAS_LONG_VIEWS_0"]
    with pytest.raises(AnalysisError, match="Cannot drop PAGEVIEWS"):
        s.execute_all("DROP STREAM pageviews;")
    s.execute_all("TERMINATE CSAS_LONG_VIEWS_0; DROP STREAM long_views DELETE TOPIC;")
    assert engine.store.describe_topic("LONG_VIEWS") is None


def test_errors_name_the_problem(engine: Engine) -> None:
    s = engine.session()
    with pytest.raises(ParseError) as parse_error:
        s.execute_all("CREATE STREEM x (a INT) WITH (kafka_topic='x', value_format='JSON');")
    assert parse_error.value.pos is not None
    with pytest.raises(AnalysisError, match="NOPE does not exist"):
        s.execute_all("CREATE STREAM x AS SELECT * FROM nope;")
    with pytest.raises(QueryEndpointError):
        s.execute_all("SELECT * FROM pageviews EMIT CHANGES;")
    s.execute_all("CREATE STREAM src (k STRING KEY, v INT) WITH (kafka_topic='src', value_format='JSON', partitions=1);")
    with pytest.raises(AnalysisError) as unknown_sink:
        s.execute_all("INSERT INTO nowhere SELECT * FROM src;")
    # ksqlDB points just after ``INSERT INTO``, whatever the spacing
    assert str(unknown_sink.value).startswith("Line: 1, Col: 13: Source `NOWHERE` does not exist.")


def test_processing_log_messages_name_the_topic(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(PAGEVIEWS + LONG_VIEWS)
    produce_json(engine, "pageviews", [("u1", {"PAGE": "a", "DURATION": [1]}, 1)])
    assert engine.wait_idle()
    (entry,) = [v for _, v, _ in read_topic(engine, engine.plog.topic)]
    error = entry["MESSAGE"]["DESERIALIZATIONERROR"]
    assert error["ERRORMESSAGE"].startswith("Failed to deserialize value from topic: pageviews. ")
    assert "from topic: ?" not in json.dumps(entry)


def test_json_numbers_out_of_int_range_narrow_as_ksqldb_does(engine: Engine) -> None:
    # ksqlDB's JsonSerdeUtils.toInteger/toLong take Jackson's intValue()/asLong() of the number:
    # the integral part's low 32 (64) bits, not an error. 3e9 and 1e30 into INT, 1e30 into BIGINT.
    s = engine.session()
    s.execute_all(
        "CREATE STREAM nums (k VARCHAR KEY, i INT, b BIGINT) WITH (kafka_topic='nums', value_format='JSON', partitions=1);"
        "CREATE STREAM nums_out AS SELECT k, i, b FROM nums;"
    )
    produce_json(engine, "nums", [("a", b'{"I": 3e9, "B": 1e30}', 1), ("b", b'{"I": 1e30, "B": 2147483648}', 2)])
    assert engine.wait_idle()
    assert [v for _, v, _ in read_topic(engine, "NUMS_OUT")] == [
        {"I": -1294967296, "B": 5076944270305263616},
        {"I": 1073741824, "B": 2147483648},
    ]
    assert read_topic(engine, engine.plog.topic) == []


def test_insert_into_casts_literals_and_decimals_to_the_sinks_decimal_columns(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(
        "CREATE STREAM src (k STRING KEY, d DECIMAL(3, 1)) WITH (kafka_topic='src', value_format='JSON', partitions=1);"
        "CREATE STREAM sink (k STRING KEY, c1 DECIMAL(5, 2), d DECIMAL(6, 2)) "
        "WITH (kafka_topic='sink', value_format='JSON', partitions=1);"
        "INSERT INTO sink SELECT k, 1 AS c1, d FROM src;"
    )
    produce_json(engine, "src", [("a", {"D": 12.5}, 1000)])
    assert engine.wait_idle()
    assert read_topic(engine, "sink") == [(b"a", {"C1": 1.0, "D": 12.5}, 1000)]
    # a literal that does not fit the sink's DECIMAL, and a narrowing, are still refused
    with pytest.raises(AnalysisError, match="Incompatible schema between results and sink"):
        s.execute_all("INSERT INTO sink SELECT k, 1000 AS c1, d FROM src;")
    s.execute_all("CREATE STREAM wide (k STRING KEY, c1 DECIMAL(5, 2), d DECIMAL(9, 4)) "
                  "WITH (kafka_topic='wide', value_format='JSON', partitions=1);")
    with pytest.raises(AnalysisError, match="Incompatible schema between results and sink"):
        s.execute_all("INSERT INTO sink SELECT k, c1, d FROM wide;")


def test_new_query_planner_lets_a_stream_query_drop_the_key(tmp_path: Path) -> None:
    engine = Engine.open(
        {"ksql.streams.state.dir": str(tmp_path / "data"), "ksql.new.query.planner.enabled": "true"}
    )
    try:
        s = engine.session()
        s.execute_all(PAGEVIEWS + "CREATE STREAM pages AS SELECT page FROM pageviews;")
        produce_json(engine, "pageviews", [("u1", {"PAGE": "home", "DURATION": 12}, 1000)])
        assert engine.wait_idle()
        assert read_topic(engine, "PAGES") == [(None, {"PAGE": "home"}, 1000)]
        assert not engine.catalog.source("PAGES").key_columns
    finally:
        engine.close()
