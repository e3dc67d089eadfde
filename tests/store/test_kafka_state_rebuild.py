"""Kafka store: local state that is behind the group's Kafka commits is rebuilt by re-reading
the records in between, without producing their outputs again.

A tiny stateful "query" drives the store the way the runtime does: poll a batch, update a
running sum in ``tx.state``, produce one output per record, commit positions, all in one
transaction.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kafka_broker import FAST_CLIENT_CONFIG
from test_store_contract import fresh, read_n, records

from ksqlpy.runtime.store import open_store
from ksqlpy.runtime.store.base import TopicSpec
from ksqlpy.runtime.store.kafka import KafkaStore

pytestmark = pytest.mark.kafka


def _store(bootstrap: str, data_dir: Path) -> KafkaStore:
    config: dict[str, object] = {f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()}
    store = open_store({
        "bootstrap.servers": bootstrap, "processing.guarantee": "exactly_once_v2",
        "ksqlpy.data.dir": str(data_dir), **config,
    })
    assert isinstance(store, KafkaStore)
    return store


def _run(store: KafkaStore, source: str, sink: str, group: str, n: int) -> None:
    """Process ``n`` more source records: state = running sum, one output record each."""
    with store.open_reader([source], group=group) as reader:
        done = 0
        for _ in range(300):
            if done >= n:
                break
            batch = reader.poll(max_records=n - done, timeout=0.2)
            if batch.num_rows == 0:
                continue
            with store.transaction() as tx:
                tx.state.execute("CREATE TABLE IF NOT EXISTS total (v BIGINT)")
                row = tx.state.execute("SELECT max(v) FROM total").fetchone()
                total = int(row[0]) if row and row[0] is not None else 0
                outputs = []
                for value in batch.column("value").to_pylist():
                    total += int(value)
                    outputs.append(str(total).encode())
                tx.state.execute("DELETE FROM total")
                tx.state.execute("INSERT INTO total VALUES (?)", [total])
                tx.produce(sink, records(outputs))
                tx.commit_positions(group, reader.positions())
            done += batch.num_rows
        assert done == n


def _total(store: KafkaStore) -> int:
    row = store.state_cursor().execute("SELECT max(v) FROM total").fetchone()
    return int(row[0])


def _sink(store: KafkaStore, sink: str, n: int) -> list[int]:
    with store.open_reader([sink]) as reader:
        got = read_n(reader, n)
        assert reader.poll(timeout=0.5).num_rows == 0
    return [int(v) for v in got.column("value").to_pylist()]


@pytest.mark.parametrize("loss", ["lost state directory", "state one batch behind"])
def test_state_behind_kafka_is_rebuilt_without_duplicate_outputs(
    kafka_bootstrap: str, tmp_path: Path, loss: str
) -> None:
    source, sink, group = fresh(), fresh(), fresh("g")
    first = _store(kafka_bootstrap, tmp_path / "a")
    first.create_topic(TopicSpec(name=source))
    first.create_topic(TopicSpec(name=sink))
    first.produce(source, records([b"1", b"2", b"3"]))
    _run(first, source, sink, group, 3)
    first.state_database.execute("CHECKPOINT")
    snapshot = tmp_path / "snapshot.duckdb"
    shutil.copy(tmp_path / "a" / "state.duckdb", snapshot)
    first.produce(source, records([b"10", b"20"]))
    _run(first, source, sink, group, 2)
    first.close()

    data_dir = tmp_path / "b"
    data_dir.mkdir()
    if loss == "state one batch behind":
        shutil.copy(snapshot, data_dir / "state.duckdb")
    second = _store(kafka_bootstrap, data_dir)
    second.produce(source, records([b"100"]))
    replayed = 2 if loss == "state one batch behind" else 5
    _run(second, source, sink, group, replayed + 1)
    assert _total(second) == 136
    # Every output exactly once: the re-read records' outputs were not produced again.
    assert _sink(second, sink, 6) == [1, 3, 6, 16, 36, 136]
    second.close()
