"""Changelog record values: a state table of integers, booleans and strings is logged as JSON
(one statement per batch), any other as Arrow IPC, and restoring reads both back exactly."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from ksqlpy.runtime.changelog import StateTable, TableLog, latest_rows

TRICKY = ['a"b', "back\\slash \\x41", "line\nbreak", "é ✓", "", None]


def _log(con: duckdb.DuckDBPyConnection, columns: str) -> TableLog:
    con.execute("CREATE SCHEMA IF NOT EXISTS agg")
    con.execute(f"CREATE TABLE agg.t ({columns})")
    return TableLog(StateTable("agg.t", ("K",), "t-changelog", "P"), con, con)


def _restored(log: TableLog, *batches: pa.Table) -> pa.Table:
    records = pa.concat_tables(batches)
    records = records.append_column("offset", pa.array(np.arange(records.num_rows, dtype=np.int64)))
    return latest_rows(records.select(["offset", "key", "value", "headers"]), log.shape)


def _sorted(table: pa.Table) -> list[dict[str, object]]:
    return sorted(table.to_pylist(), key=repr)


def test_a_table_of_scalars_is_logged_as_json_and_restored_exactly() -> None:
    con = duckdb.connect()
    log = _log(con, "K VARCHAR, N BIGINT, OK BOOLEAN, P INTEGER")
    rows = pa.table(
        {
            "K": pa.array(TRICKY, pa.string()),
            "N": pa.array([2**63 - 1, -(2**63), 0, None, 7, 8], pa.int64()),
            "OK": pa.array([True, False, None, True, True, False]),
            "P": pa.array([0, 1, 0, 1, 0, 1], pa.int32()),
        }
    )
    log.upserted(rows)
    log.deleted(rows.slice(0, 1).select(["K", "P"]))
    records = log.drain()
    assert records is not None
    assert all(v.startswith(b"{") for v in records.column("value").to_pylist()[:6])
    restored = _restored(log, records)
    assert restored.schema == log.shape.schema
    assert _sorted(restored) == _sorted(rows.slice(1))


def test_other_tables_stay_arrow_ipc_and_an_older_ipc_record_is_superseded() -> None:
    con = duckdb.connect()
    log = _log(con, "K VARCHAR, X DOUBLE, P INTEGER")
    assert log.shape.json_types is None
    rows = pa.table({"K": ["a", "b"], "X": [0.1, float("nan")], "P": pa.array([0, 0], pa.int32())})
    log.upserted(rows)
    records = log.drain()
    assert records is not None
    assert all(v.startswith(b"\xff") for v in records.column("value").to_pylist())
    restored = {r["K"]: r["X"] for r in _restored(log, records).to_pylist()}
    assert restored["a"] == 0.1 and math.isnan(restored["b"])

    con2 = duckdb.connect()
    scalars = _log(con2, "K VARCHAR, N BIGINT, P INTEGER")
    old = pa.table({"K": ["a", "b"], "N": [1, 2], "P": pa.array([0, 0], pa.int32())})
    (batch,) = old.cast(scalars.shape.schema).to_batches()
    ipc = [batch.slice(i, 1).serialize().to_pybytes() for i in range(2)]
    scalars.upserted(old.slice(0, 1).set_column(1, "N", pa.array([10], pa.int64())))
    newer = scalars.drain()
    assert newer is not None
    older = newer.take([0, 0]).set_column(3, "value", pa.array(ipc, pa.binary()))
    older = older.set_column(
        2, "key", pa.concat_arrays([newer.column("key").chunk(0), pa.array([b'{"K":"b"}'])])
    )
    assert _sorted(_restored(scalars, older, newer)) == [
        {"K": "a", "N": 10, "P": 0},
        {"K": "b", "N": 2, "P": 0},
    ]


@pytest.mark.parametrize("n", [0, 1])
def test_an_empty_or_single_batch_restores(n: int) -> None:
    con = duckdb.connect()
    log = _log(con, "K VARCHAR, N BIGINT, P INTEGER")
    log.upserted(pa.table({"K": ["k"] * n, "N": [1] * n, "P": pa.array([0] * n, pa.int32())}))
    records = log.drain()
    if n == 0:
        assert records is None
        return
    assert records is not None
    assert _restored(log, records).to_pylist() == [{"K": "k", "N": 1, "P": 0}]
