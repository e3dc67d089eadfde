"""Tables materialized into ``mat."<NAME>"``: upserts, tombstones, CTAS sinks, DROP, restart."""

from __future__ import annotations

import json
from collections.abc import Callable

import pyarrow as pa

from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.materialize import HIDDEN_COLUMNS

USERS = (
    "CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR, age INT) "
    "WITH (kafka_topic='users', value_format='JSON', partitions=2);"
)


def insert_users(engine: Engine, rows: list[tuple[str, str, int]]) -> None:
    session = engine.session()
    for uid, name, age in rows:
        session.execute_all(f"INSERT INTO users (id, name, age) VALUES ('{uid}', '{name}', {age});")


def state(engine: Engine, name: str) -> dict[tuple[object, ...], tuple[object, ...]]:
    """Visible rows of a materialized table as {key: values}; asserts one row per key."""
    assert engine.wait_idle()
    cur = engine.store.state_cursor()
    table = cur.sql(f'SELECT * FROM mat."{name}"').to_arrow_table()
    table = table.drop_columns(list(HIDDEN_COLUMNS)).drop_columns(["ROWTIME"])
    source = engine.catalog.source(name)
    nkeys = len(source.key_columns) + (2 if source.window is not None else 0)
    out: dict[tuple[object, ...], tuple[object, ...]] = {}
    for row in table.to_pylist():
        values = tuple(row.values())
        key = tuple(tuple(sorted(k.items())) if isinstance(k, dict) else k for k in values[:nkeys])
        assert key not in out
        out[key] = values[nkeys:]
    return out


def tombstone(engine: Engine, topic: str, key: bytes) -> None:
    engine.store.produce(
        topic,
        pa.table({"timestamp": pa.array([1], pa.int64()), "key": pa.array([key]), "value": pa.nulls(1, pa.binary())}),
    )


def test_source_table_keeps_last_value_per_key(engine: Engine) -> None:
    engine.session().execute_all(USERS)
    insert_users(engine, [("a", "Ann", 3), ("b", "Bob", 4), ("a", "Ann2", 5)])
    assert state(engine, "USERS") == {("a",): ("Ann2", 5), ("b",): ("Bob", 4)}


def test_tombstone_deletes_key(engine: Engine) -> None:
    engine.session().execute_all(USERS)
    insert_users(engine, [("a", "Ann", 3), ("b", "Bob", 4)])
    tombstone(engine, "users", b"a")
    assert state(engine, "USERS") == {("b",): ("Bob", 4)}


def test_ctas_sink_is_materialized_with_filter_deletes(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(USERS)
    session.execute_all("CREATE TABLE adults AS SELECT id, name FROM users WHERE age >= 18;")
    insert_users(engine, [("a", "Ann", 30), ("b", "Bob", 12), ("c", "Cid", 40)])
    assert state(engine, "ADULTS") == {("a",): ("Ann",), ("c",): ("Cid",)}
    # An update that no longer passes the filter is a tombstone in the sink: the key goes.
    insert_users(engine, [("a", "Ann", 10)])
    assert state(engine, "ADULTS") == {("c",): ("Cid",)}


def test_multi_column_key(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(
        "CREATE TABLE t (a INT PRIMARY KEY, b VARCHAR PRIMARY KEY, v DOUBLE) "
        "WITH (kafka_topic='t', format='JSON', partitions=1);"
    )
    session.execute_all(
        "INSERT INTO t (a, b, v) VALUES (1, 'x', 1.5); INSERT INTO t (a, b, v) VALUES (1, 'y', 2.5);"
        "INSERT INTO t (a, b, v) VALUES (1, 'x', 3.5);"
    )
    assert state(engine, "T") == {(1, "x"): (3.5,), (1, "y"): (2.5,)}


def test_drop_table_drops_state(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(USERS)
    insert_users(engine, [("a", "Ann", 3)])
    assert state(engine, "USERS")
    session.execute_all("DROP TABLE users;")
    assert "USERS" not in engine.materializers
    cur = engine.store.state_cursor()
    tables = cur.sql("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'mat'").fetchall()
    assert ("USERS",) not in tables


def test_recreated_table_starts_from_its_own_topic(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(USERS)
    insert_users(engine, [("a", "Ann", 3)])
    assert state(engine, "USERS") == {("a",): ("Ann", 3)}
    session.execute_all("DROP TABLE users DELETE TOPIC;")
    session.execute_all(USERS)
    insert_users(engine, [("b", "Bob", 4)])
    assert state(engine, "USERS") == {("b",): ("Bob", 4)}


def test_state_survives_restart_without_reprocessing(opener: Callable[[], Engine]) -> None:
    engine = opener()
    try:
        session = engine.session()
        session.execute_all(USERS)
        session.execute_all("CREATE TABLE adults AS SELECT id, name, age FROM users WHERE age >= 18;")
        insert_users(engine, [("a", "Ann", 30), ("b", "Bob", 40), ("a", "Ann", 31)])
        before = state(engine, "ADULTS")
        assert before == {("a",): ("Ann", 31), ("b",): ("Bob", 40)}
        group = engine.materializers["ADULTS"].group
        sink_ends = engine.store.end_offsets("ADULTS")
    finally:
        engine.close()
    engine = opener()
    try:
        assert engine.wait_idle()
        m = engine.materializers["ADULTS"]
        # Resumed at the committed positions: nothing read twice, the state is what it was.
        assert m.group == group
        assert m.records_in == 0
        assert engine.store.committed(group, "ADULTS") == sink_ends
        assert state(engine, "ADULTS") == before
        insert_users(engine, [("c", "Cid", 50)])
        assert state(engine, "ADULTS") == {**before, ("c",): ("Cid", 50)}
        assert m.records_in == 1
    finally:
        engine.close()


def test_windowed_source_table_and_bad_keys(engine: Engine) -> None:
    from ksqlpy.runtime.serde import WindowKind, join_windowed_keys

    engine.session().execute_all(
        "CREATE TABLE w (k VARCHAR PRIMARY KEY, n INT) WITH (kafka_topic='w', value_format='JSON', "
        "partitions=1, window_type='TUMBLING', window_size='10 SECONDS');"
    )
    inner = pa.array([b"a", b"a", b"b"], pa.binary())
    starts = pa.array([0, 10_000, 0], pa.int64())
    keys = join_windowed_keys(inner, starts, None, WindowKind.TUMBLING).to_pylist() + [b"x"]
    engine.store.produce(
        "w",
        pa.table(
            {
                "timestamp": pa.array([1, 2, 3, 4], pa.int64()),
                "key": pa.array(keys, pa.binary()),
                "value": pa.array([b'{"N": 1}', b'{"N": 2}', b'{"N": 3}', b'{"N": 4}'], pa.binary()),
            }
        ),
    )
    # The short key goes to the processing log; the materializer keeps going.
    assert state(engine, "W") == {("a", 0, 10_000): (1,), ("a", 10_000, 20_000): (2,), ("b", 0, 10_000): (3,)}
    assert engine.materializers["W"].error is None
    assert engine.plog.count == 1


def test_struct_key_upserts_without_an_index(engine: Engine) -> None:
    session = engine.session()
    session.execute_all(
        "CREATE TABLE s (id STRUCT<a INT, b VARCHAR> PRIMARY KEY, v INT) WITH (kafka_topic='s', format='JSON', partitions=1);"
    )
    rows = [({"A": 1, "B": "x"}, 1), ({"A": 2, "B": "y"}, 2), ({"A": 1, "B": "x"}, 3)]
    engine.store.produce(
        "s",
        pa.table(
            {
                "timestamp": pa.array([1] * len(rows), pa.int64()),
                "key": pa.array([json.dumps(k).encode() for k, _ in rows], pa.binary()),
                "value": pa.array([json.dumps({"V": v}).encode() for _, v in rows], pa.binary()),
            }
        ),
    )
    assert state(engine, "S") == {
        ((("A", 1), ("B", "x")),): (3,),
        ((("A", 2), ("B", "y")),): (2,),
    }


def test_a_keys_unreadable_last_record_leaves_it_its_earlier_one(engine: Engine) -> None:
    # Only each key's last record of a batch is decoded, unless one of those cannot be read.
    engine.session().execute_all(USERS)
    values = [b'{"NAME": "Ann", "AGE": 3}', b"{not json", b"{not json", b'{"NAME": "Bob", "AGE": 4}']
    engine.store.produce(
        "users",
        pa.table(
            {
                "timestamp": pa.array([1, 2, 3, 4], pa.int64()),
                "key": pa.array([b"a", b"a", b"b", b"b"]),
                "value": pa.array(values),
            }
        ),
    )
    assert state(engine, "USERS") == {("a",): ("Ann", 3), ("b",): ("Bob", 4)}
