"""State stores on a real DuckDB: batch changes, look-ups, expiry, and the changelog records a
logged store makes of them (compaction keys, tombstones, one standalone value per row)."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa

from ksqlpy.runtime.state import StateStore, StoreKind

SCHEMA = pa.schema([("k", pa.string()), ("v", pa.int64()), ("ts", pa.int64())])


def _store(kind: StoreKind = StoreKind.KEY_VALUE) -> StateStore:
    return StateStore(
        name="KafkaTopic_Right-Reduce",
        namespace="joins",
        owner="CSAS_OUT_0",
        schema=SCHEMA,
        keys=("k",),
        kind=kind,
        time="ts" if kind is StoreKind.WINDOW else None,
    )


def _rows(*rows: tuple[str, int, int]) -> pa.Table:
    return pa.table(
        {"k": [r[0] for r in rows], "v": [r[1] for r in rows], "ts": [r[2] for r in rows]}, SCHEMA
    )


def _contents(con: duckdb.DuckDBPyConnection, store: StateStore) -> list[tuple[object, ...]]:
    return sorted(con.execute(f"SELECT k, v, ts FROM {store.table}").fetchall())


def test_upsert_delete_and_lookup_by_key() -> None:
    con = duckdb.connect()
    store = _store()
    store.create(con)
    assert store.table == 'joins."CSAS_OUT_0/KafkaTopic_Right-Reduce"'
    store.upsert(con, _rows(("a", 1, 10), ("b", 2, 20)))
    store.upsert(con, _rows(("a", 3, 30)))
    assert _contents(con, store) == [("a", 3, 30), ("b", 2, 20)]
    store.delete(con, pa.table({"k": ["b", "zz"]}))
    assert _contents(con, store) == [("a", 3, 30)]
    found = store.lookup(con, pa.table({"k": ["a", "c"]}))
    assert found.to_pylist() == [{"k": "a", "v": 3, "ts": 30}]


def test_upsert_with_keep_deletes_the_rows_not_kept() -> None:
    con = duckdb.connect()
    store = _store()
    store.create(con)
    store.upsert(con, _rows(("a", 1, 10), ("b", 2, 20)))
    batch = _rows(("a", 5, 50), ("b", 6, 60)).append_column("keep", pa.array([True, False]))
    store.upsert(con, batch, keep="keep")
    assert _contents(con, store) == [("a", 5, 50)]


def test_a_logged_store_turns_its_changes_into_changelog_records() -> None:
    con = duckdb.connect()
    store = _store(StoreKind.WINDOW)
    store.create(con)
    log = store.log_to("_confluent-ksql-svc_query_CSAS_OUT_0", duckdb.connect(), con)
    assert log.topic == "_confluent-ksql-svc_query_CSAS_OUT_0-KafkaTopic_Right-Reduce-changelog"
    store.upsert(con, _rows(("a", 1, 10), ("b", 2, 20)))
    store.update_where(con, "v = v + 100", "k = 'b'")
    store.expire(con, 15)  # a window store forgets what is at or before the horizon
    assert _contents(con, store) == [("b", 102, 20)]
    records = log.drain()
    assert records is not None
    keys = [json.loads(k) for k in records.column("key").to_pylist()]
    assert keys == [{"k": "a"}, {"k": "b"}, {"k": "b"}, {"k": "a"}]
    values = records.column("value").to_pylist()
    assert values[3] is None  # the expired row's tombstone
    # each value is the whole row, readable on its own (a row of strings and integers as JSON)
    assert json.loads(values[2]) == {"k": "b", "v": 102, "ts": 20}
    assert log.drain() is None  # drained once


def test_an_unlogged_store_records_nothing_and_a_keyless_store_holds_one_row() -> None:
    con = duckdb.connect()
    times = StateStore(
        name="Join-StreamTime",
        namespace="joins",
        owner="Q",
        schema=pa.schema([("stream_time", pa.int64())]),
        keys=(),
    )
    times.create(con)
    times.replace_all(con, pa.table({"stream_time": [5]}))
    times.replace_all(con, pa.table({"stream_time": [7]}))
    assert con.execute(f"SELECT * FROM {times.table}").fetchall() == [(7,)]
    assert times.log is None
    log = times.log_to("app", duckdb.connect(), con)
    times.replace_all(con, pa.table({"stream_time": [9]}))
    records = log.drain()
    assert records is not None and records.column("key").to_pylist() == [b"{}"]


def test_a_store_adopts_its_table_from_before_stores_were_named() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA joins")
    con.execute('CREATE TABLE joins."Q/Join/R" (k VARCHAR, v BIGINT, ts BIGINT)')
    con.execute("INSERT INTO joins.\"Q/Join/R\" VALUES ('a', 1, 10)")
    store = StateStore(
        name="KafkaTopic_Right-Reduce",
        namespace="joins",
        owner="Q",
        schema=SCHEMA,
        keys=("k",),
        previous="Q/Join/R",
    )
    store.create(con)
    assert _contents(con, store) == [("a", 1, 10)]
    store.drop(con)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'joins'").fetchone() == (0,)
