"""Embedded-store behaviour beyond the shared contract: one DuckDB transaction for records, positions
and state; durability across reopen and kill -9; retention and compaction."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from test_store_contract import read_n, records

from ksqlpy.runtime.store.base import TopicPartition, TopicSpec
from ksqlpy.runtime.store.embedded import EmbeddedStore


def open_at(path: Path) -> EmbeddedStore:
    return EmbeddedStore(path, maintenance_interval=None)


def test_aborted_transaction_leaves_nothing(tmp_path: Path) -> None:
    store = open_at(tmp_path / "log.duckdb")
    store.create_topic(TopicSpec(name="out"))
    with store.transaction() as tx:
        tx.connection.execute("CREATE TABLE counts (k VARCHAR, n BIGINT)")
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as tx:
        tx.produce("out", records([b"lost"]))
        tx.commit_positions("g", {TopicPartition("in", 0): 7})
        tx.connection.execute("INSERT INTO counts VALUES ('a', 1)")
        raise RuntimeError("boom")
    assert store.end_offsets("out") == {0: 0}
    assert store.committed("g", "in") == {}
    assert store.cursor().execute("SELECT count(*) FROM counts").fetchone() == (0,)
    with store.open_reader(["out"]) as reader:
        assert reader.poll(timeout=0).num_rows == 0
    # Offsets handed out inside the aborted transaction are reused: the log has no gap.
    store.produce("out", records([b"kept"]))
    with store.open_reader(["out"]) as reader:
        assert reader.poll(timeout=0).column("offset").to_pylist() == [0]
    store.close()


def test_store_produce_inside_a_transaction_goes_with_it(tmp_path: Path) -> None:
    """``store.produce`` of a one-partition topic commits on its own, unless the thread has a
    transaction open: then it is part of it, and aborts with it."""
    store = open_at(tmp_path / "log.duckdb")
    store.create_topic(TopicSpec(name="out"))
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.produce("out", records([b"lost"]))
        raise RuntimeError("boom")
    assert store.end_offsets("out") == {0: 0}
    store.produce("out", records([b"a", b"b"]))
    store.produce("out", records([b"c"]))
    assert store.end_offsets("out") == {0: 3}
    store.close()
    store = open_at(tmp_path / "log.duckdb")
    with store.open_reader(["out"]) as reader:
        batch = reader.poll(timeout=0)
    assert batch.column("offset").to_pylist() == [0, 1, 2]
    assert batch.column("value").to_pylist() == [b"a", b"b", b"c"]
    store.close()


def test_committed_transaction_is_durable_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    store = open_at(path)
    store.create_topic(TopicSpec(name="out", partitions=2, config={"cleanup.policy": "delete"}))
    with store.transaction() as tx:
        tx.connection.execute("CREATE TABLE counts (k VARCHAR, n BIGINT)")
        tx.connection.execute("INSERT INTO counts VALUES ('a', 2)")
        tx.produce("out", records([b"x", b"y"], keys=[b"a", b"a"]))
        tx.commit_positions("g", {TopicPartition("in", 0): 2})
    ends = store.end_offsets("out")
    store.close()

    reopened = open_at(path)
    assert reopened.describe_topic("out") == TopicSpec(
        name="out", partitions=2, config={"cleanup.policy": "delete"}
    )
    assert reopened.end_offsets("out") == ends
    assert reopened.committed("g", "in") == {0: 2}
    assert reopened.cursor().execute("SELECT k, n FROM counts").fetchall() == [("a", 2)]
    with reopened.open_reader(["out"]) as reader:
        assert reader.poll().column("value").to_pylist() == [b"x", b"y"]
    reopened.produce("out", records([b"z"], keys=[b"a"]))
    assert sum(reopened.end_offsets("out").values()) == 3
    reopened.close()


def test_committed_positions_move_forward_and_go_with_their_topic(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    store = open_at(path)
    store.create_topic(TopicSpec(name="in", partitions=2))
    for offset in (3, 5):
        with store.transaction() as tx:
            tx.commit_positions("g", {TopicPartition("in", 0): offset, TopicPartition("in", 1): offset + 1})
    assert store.committed("g", "in") == {0: 5, 1: 6}
    assert store.committed("other", "in") == {}
    store.close()
    store = open_at(path)
    rows = store.cursor().execute("SELECT count(*) FROM topic_log.group_offsets").fetchone()
    assert rows == (2,)  # one row per group and partition, updated in place
    assert store.committed("g", "in") == {0: 5, 1: 6}
    store.delete_topic("in")
    assert store.committed("g", "in") == {}
    store.create_topic(TopicSpec(name="in"))
    with store.open_reader(["in"], group="g") as reader:
        assert reader.positions() == {TopicPartition("in", 0): 0}
    store.close()


def test_reader_picks_up_a_topic_created_later(tmp_path: Path) -> None:
    store = open_at(tmp_path / "log.duckdb")
    with store.open_reader(["later"], group="g") as reader:
        assert reader.poll(timeout=0).num_rows == 0
        assert reader.assignment() == []
        store.create_topic(TopicSpec(name="later", partitions=2))
        store.produce("later", records([b"v"], partitions=[1]))
        assert read_n(reader, 1).column("partition").to_pylist() == [1]
        assert reader.assignment() == [TopicPartition("later", 0), TopicPartition("later", 1)]
    store.close()


def test_retention_by_time_and_bytes(tmp_path: Path) -> None:
    store = open_at(tmp_path / "log.duckdb")
    now = int(time.time() * 1000)
    store.create_topic(TopicSpec(name="timed", config={"retention.ms": "60000"}))
    store.produce(
        "timed", records([b"old", b"older", b"fresh"], timestamps=[now - 120_000, now - 90_000, now])
    )
    store.create_topic(TopicSpec(name="sized", config={"retention.bytes": "10"}))
    store.produce("sized", records([b"aaaa", b"bbbb", b"cccc", b"dddd"], keys=[b"k"] * 4))
    store.run_maintenance(now_ms=now)
    with store.open_reader(["timed", "sized"]) as reader:
        rows = read_n(reader, 3).to_pylist()
    assert sorted((r["topic"], r["value"]) for r in rows) == [
        ("sized", b"cccc"),
        ("sized", b"dddd"),
        ("timed", b"fresh"),
    ]
    assert store.start_offsets("timed") == {0: 2}
    assert store.end_offsets("timed") == {0: 3}  # offsets never go back
    store.close()


def test_compaction_keeps_latest_per_key_and_drops_old_tombstones(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    store = open_at(path)
    store.create_topic(
        TopicSpec(name="c", config={"cleanup.policy": "compact", "delete.retention.ms": "1000"})
    )
    store.produce(
        "c",
        records(
            [b"a1", b"b1", b"a2", None, b"c1", b"n1", b"n2"],
            keys=[b"a", b"b", b"a", b"b", b"c", None, None],
        ),
    )
    now = int(time.time() * 1000)
    store.run_maintenance(now_ms=now)
    with store.open_reader(["c"]) as reader:
        kept = [(r["offset"], r["key"], r["value"]) for r in reader.poll().to_pylist()]
    assert kept == [(2, b"a", b"a2"), (3, b"b", None), (4, b"c", b"c1"), (5, None, b"n1"), (6, None, b"n2")]
    store.run_maintenance(now_ms=now + 5_000)  # the tombstone is now older than delete.retention.ms
    store.close()
    reopened = open_at(path)
    with reopened.open_reader(["c"]) as reader:
        assert [r["value"] for r in reader.poll().to_pylist()] == [b"a2", b"c1", b"n1", b"n2"]
    assert reopened.end_offsets("c") == {0: 7}
    reopened.close()


_PRODUCER = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from ksqlpy.runtime.store.base import TopicSpec
    from ksqlpy.runtime.store.embedded import EmbeddedStore

    store = EmbeddedStore(sys.argv[1], maintenance_interval=None)
    store.create_topic(TopicSpec(name="acked", partitions=3), exist_ok=True)
    n = 0
    while True:
        values = [str(i).encode() for i in range(n, n + 500)]
        store.produce("acked", pa.table({
            "timestamp": pa.array([0] * 500, pa.int64()),
            "key": pa.array(values, pa.binary()),
            "value": pa.array(values, pa.binary()),
        }))
        n += 500
        print(n, flush=True)
    """
)


def test_acknowledged_records_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    child = subprocess.Popen(
        [sys.executable, "-c", _PRODUCER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout is not None
    acked = 0
    for line in child.stdout:
        acked = int(line)
        if acked >= 20_000:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert acked == 20_000

    store = open_at(path)
    with store.open_reader(["acked"]) as reader:
        got = pa.concat_tables([reader.poll(max_records=100_000, timeout=0) for _ in range(3)])
    # Every acknowledged batch is there, each batch whole or not at all: the first n values, n a
    # multiple of the batch size (the kill may come after a batch is stored but before it is acked).
    n = got.num_rows
    assert n >= acked and n % 500 == 0
    assert sorted(got.column("value").to_pylist(), key=int) == [str(i).encode() for i in range(n)]
    assert sum(store.end_offsets("acked").values()) == n
    store.close()


def test_concurrent_producers_and_tailing_readers(tmp_path: Path) -> None:
    store = open_at(tmp_path / "log.duckdb")
    store.create_topic(TopicSpec(name="busy", partitions=3))
    producers, batches, size = 4, 25, 40
    total = producers * batches * size
    seen: dict[int, list[dict[str, object]]] = {}

    def produce(worker: int) -> None:
        for b in range(batches):
            values = [f"{worker}-{b}-{i}".encode() for i in range(size)]
            store.produce("busy", records(values, keys=values))

    def read(reader_id: int) -> None:
        with store.open_reader(["busy"]) as reader:
            rows: list[dict[str, object]] = []
            for _ in range(2_000):
                if len(rows) >= total:
                    break
                rows += reader.poll(max_records=500, timeout=0.5).to_pylist()
            seen[reader_id] = rows

    threads = [threading.Thread(target=read, args=(r,)) for r in range(2)]
    threads += [threading.Thread(target=produce, args=(w,)) for w in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    expected = {
        f"{w}-{b}-{i}".encode() for w in range(producers) for b in range(batches) for i in range(size)
    }
    for rows in seen.values():
        assert len(rows) == total
        assert {r["value"] for r in rows} == expected
        for p in range(3):
            offsets = [r["offset"] for r in rows if r["partition"] == p]
            assert offsets == list(range(len(offsets)))
    assert len(seen) == 2
    assert sum(store.end_offsets("busy").values()) == total
    store.close()


def test_background_maintenance_applies_retention(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "log.duckdb", maintenance_interval=0.05)
    store.create_topic(TopicSpec(name="short", config={"retention.ms": "0"}))
    store.produce("short", records([b"gone"], timestamps=[0]))
    for _ in range(400):
        if store.start_offsets("short") == {0: 1}:
            break
        time.sleep(0.05)
    assert store.start_offsets("short") == {0: 1}
    with store.open_reader(["short"]) as reader:
        assert reader.poll(timeout=0).num_rows == 0
    store.close()


def test_records_read_just_after_their_append_are_those_in_the_log(tmp_path: Path) -> None:
    """A reader keeping up with small appends reads them from the store's memory of them: the
    same records, columns and types as a read of the log, across appends and after a
    transaction's records (not kept); retention, which may delete any of them, forgets them."""
    from ksqlpy.runtime.store import embedded

    store = open_at(tmp_path / "log.duckdb")
    now = int(time.time() * 1000)
    many = embedded.RECENT_ROWS + 1
    store.create_topic(TopicSpec(name="t", config={"retention.ms": "60000"}))
    tail = store.open_reader(["t"])
    got: list[pa.Table] = []
    headers = [[{"key": "h", "value": b"v"}], None]
    store.produce("t", records([b"a", None], keys=[b"k", None], headers=headers, timestamps=[now, now]))
    got.append(tail.poll(timeout=0))
    store.produce("t", records([b"b"], timestamps=[now]))
    store.produce("t", records([b"c", b"d"], timestamps=[now - 1, now]))
    bounds = store._bounds[(store._topic("t").id, 0)]
    assert [first for first, _, _ in bounds.recent] == [0, 2, 3]
    assert embedded._recent_records(bounds.recent, 2, 5) is not None
    got.append(tail.poll(timeout=0))
    with store.transaction() as tx:
        tx.produce("t", records([b"e"], timestamps=[now]))
    assert bounds.recent == ()  # the transaction's records were not kept
    store.produce("t", records([b"f"] * many, timestamps=[now] * many))
    assert bounds.recent == ()  # too many to keep
    got.append(tail.poll(max_records=1, timeout=0))
    store.produce("t", records([b"g"], timestamps=[now]))
    assert embedded._recent_records(bounds.recent, 6 + many, 7 + many) is not None
    got.append(read_n(tail, many + 1))
    with store.open_reader(["t"]) as log:
        bounds.recent = ()  # read from the log only
        expected = read_n(log, many + 7)
    read = pa.concat_tables(got)
    assert read.schema == expected.schema
    assert read.to_pylist() == expected.to_pylist()

    store.produce("t", records([b"old", b"new"], timestamps=[now - 120_000, now]))
    assert bounds.recent != ()
    store.run_maintenance(now_ms=now)
    assert bounds.recent == ()  # retention deleted one of them
    assert read_n(tail, 1).column("value").to_pylist() == [b"new"]
    tail.close()
    store.close()
