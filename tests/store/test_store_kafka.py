"""Kafka-store behaviour beyond the shared contract: exactly-once transactions on the test broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from kafka_broker import FAST_CLIENT_CONFIG
from test_store_contract import fresh, read_n, records

from ksqlpy.errors import TopicError
from ksqlpy.runtime.store import open_store
from ksqlpy.runtime.store.base import TopicSpec
from ksqlpy.runtime.store.kafka import KafkaReader, KafkaStore

pytestmark = pytest.mark.kafka


@pytest.fixture
def eos_store(kafka_bootstrap: str) -> Iterator[KafkaStore]:
    config: dict[str, object] = {f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()}
    store = open_store(
        {"bootstrap.servers": kafka_bootstrap, "processing.guarantee": "exactly_once_v2", **config}
    )
    assert isinstance(store, KafkaStore) and store.exactly_once
    yield store
    store.close()


def test_aborted_transaction_is_invisible_and_committed_one_visible(eos_store: KafkaStore) -> None:
    source, sink, group = fresh(), fresh(), fresh("g")
    eos_store.create_topic(TopicSpec(name=source))
    eos_store.create_topic(TopicSpec(name=sink))
    eos_store.produce(source, records([b"a", b"b"]))
    with eos_store.open_reader([source], group=group) as reader:
        consumed = read_n(reader, 2)
        assert consumed.num_rows == 2
        with pytest.raises(RuntimeError), eos_store.transaction() as tx:
            tx.produce(sink, records([b"aborted"]))
            tx.commit_positions(group, reader.positions())
            raise RuntimeError("stop")
        assert eos_store.committed(group, source) == {}
        with eos_store.transaction() as tx:
            tx.produce(sink, records([b"A", b"B"]))
            tx.commit_positions(group, reader.positions())
    # Past both records; a reader that reached the end also stands past the transaction marker
    # that follows them.
    assert eos_store.committed(group, source)[0] in {2, eos_store.end_offsets(source)[0]}
    with eos_store.open_reader([sink]) as sink_reader:
        assert read_n(sink_reader, 2).column("value").to_pylist() == [b"A", b"B"]
        assert sink_reader.poll(timeout=0.5).num_rows == 0


def test_a_cluster_without_transactions_is_told_apart_from_other_failures() -> None:
    from confluent_kafka import KafkaError

    from ksqlpy.runtime.store.kafka import transactions_unsupported

    assert transactions_unsupported(KafkaError(KafkaError._UNSUPPORTED_FEATURE))
    assert transactions_unsupported(KafkaError(KafkaError.UNSUPPORTED_VERSION))
    # Unreachable or refused: not a reason to quietly weaken the guarantee.
    assert not transactions_unsupported(KafkaError(KafkaError._TIMED_OUT))
    assert not transactions_unsupported(KafkaError(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED))


def test_exactly_once_holds_on_a_broker_with_transactions(eos_store: KafkaStore) -> None:
    assert eos_store.exactly_once
    assert eos_store._consumer_config["isolation.level"] == "read_committed"


def _memory_limit(store: KafkaStore) -> str:
    (value,) = store.state_database.execute("SELECT current_setting('memory_limit')").fetchone() or ("",)
    return str(value)


def test_state_database_memory_is_capped(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A state file gets a memory limit by default (DuckDB's own is 80 % of the machine);
    ksqlpy.state.memory.limit sets another; an in-memory state database gets none."""
    config: dict[str, object] = {f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()}
    config["bootstrap.servers"] = kafka_bootstrap
    stores = [
        open_store({**config, "ksqlpy.data.dir": str(tmp_path / "a")}),
        open_store({**config, "ksqlpy.data.dir": str(tmp_path / "b"), "ksqlpy.state.memory.limit": "200MB"}),
        open_store(config),
    ]
    try:
        capped, configured, in_memory = (_memory_limit(s) for s in stores if isinstance(s, KafkaStore))
        assert capped.endswith("MiB") and float(capped.split()[0]) < 100
        assert configured.endswith("MiB") and 150 < float(configured.split()[0]) < 250
        assert in_memory != capped and in_memory != configured
    finally:
        for store in stores:
            store.close()


def test_bad_state_memory_limit_is_named(kafka_bootstrap: str, tmp_path: Path) -> None:
    with pytest.raises(TopicError, match=r"ksqlpy\.state\.memory\.limit"):
        open_store(
            {
                "bootstrap.servers": kafka_bootstrap,
                "ksqlpy.data.dir": str(tmp_path),
                "ksqlpy.state.memory.limit": "lots",
            }
        )


def test_end_of_partition_events_among_records_are_set_aside(eos_store: KafkaStore) -> None:
    """The reader's check for polled events that are not records is by identity: comparing the
    client's KafkaError with None leaves an error pending, which a later call then raises."""
    from confluent_kafka import KafkaError, Message

    from ksqlpy.runtime.store.base import TopicPartition

    source = fresh()
    eos_store.create_topic(TopicSpec(name=source))
    with eos_store.open_reader([source]) as reader:
        assert isinstance(reader, KafkaReader)
        record = Message(topic=source, partition=0, offset=0, value=b"a", timestamp=(1, 1000))
        end = Message(topic=source, partition=0, offset=1, error=KafkaError(KafkaError._PARTITION_EOF))
        assert reader._usable([record]) == [record]
        assert reader._usable([record, end]) == [record]
        assert reader._eof == {TopicPartition(source, 0): 1}
        assert int("7") == 7  # no error left pending by the checks above


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_poll_converts_its_records_a_slice_at_a_time_into_one_batch(
    eos_store: KafkaStore, monkeypatch: pytest.MonkeyPatch, partitions: int
) -> None:
    """A poll turns the client's messages into Arrow a few at a time (so a large batch never has
    all its Message objects alive at once), yet hands out one batch, one chunk per column, in
    each partition's order, no larger than asked, with the positions past its last records."""
    from ksqlpy.runtime.store import kafka
    from ksqlpy.runtime.store.base import TopicPartition

    monkeypatch.setattr(kafka, "_CONVERT_RECORDS", 7)
    source = fresh()
    eos_store.create_topic(TopicSpec(name=source, partitions=partitions))
    n = 200
    keys = [b"k%d" % (i % 5) for i in range(n)]
    eos_store.produce(source, records([b"v%d" % i for i in range(n)], keys=keys))
    batches = []
    with eos_store.open_reader([source]) as reader:
        got = 0
        for _ in range(200):
            if got >= n:
                break
            batch = reader.poll(max_records=30, timeout=0.2)
            batches.append(batch)
            got += batch.num_rows
        positions = reader.positions()
    assert got == n
    assert max(b.num_rows for b in batches) <= 30
    assert any(b.num_rows > 7 for b in batches)  # some batch was made of several slices
    assert all(b.column(c).num_chunks == 1 for b in batches if b.num_rows for c in b.column_names)
    read = pa.concat_tables(batches)
    assert sorted(read.column("value").to_pylist()) == sorted(b"v%d" % i for i in range(n))
    for p in range(partitions):
        offsets = [
            o
            for part, o in zip(read.column("partition").to_pylist(), read.column("offset").to_pylist())
            if part == p
        ]
        assert offsets == list(range(len(offsets)))
        # past the last record (and past a transaction marker, if any followed it)
        assert positions[TopicPartition(source, p)] >= len(offsets)
    assert set(read.column("topic").to_pylist()) == {source}
    # each key's records keep their order
    for key in set(keys):
        values = [
            int(v[1:]) for k, v in zip(read.column("key").to_pylist(), read.column("value").to_pylist()) if k == key
        ]
        assert values == sorted(values)


def test_a_produce_hands_its_records_over_a_slice_at_a_time(
    eos_store: KafkaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A produce turns its records into the client's objects a few at a time, yet every record
    lands once, in order, with its own key, timestamp, headers and given partition, and records
    without a key go round-robin over the partitions as they would in one piece."""
    from ksqlpy.runtime.store import kafka
    from ksqlpy.runtime.store.partitioner import partitions_for_keys

    monkeypatch.setattr(kafka, "_CONVERT_RECORDS", 7)
    source = fresh()
    eos_store.create_topic(TopicSpec(name=source, partitions=3))
    n = 100
    keys: list[bytes | None] = [None if i % 3 else b"k%d" % i for i in range(n)]
    given: list[int | None] = [2 if i % 10 == 5 else None for i in range(n)]
    headers = [[{"key": "h", "value": b"%d" % i}] if i % 4 == 0 else None for i in range(n)]
    batch = records(
        [b"v%d" % i for i in range(n)],
        keys=keys,
        partitions=given,
        timestamps=[5000 + i for i in range(n)],
        headers=headers,
    )
    eos_store.produce(source, batch)
    chosen = partitions_for_keys(pa.array(keys, pa.binary()), 3, null_start=0).to_pylist()
    expected = {b"v%d" % i: (keys[i], 5000 + i, given[i] if given[i] is not None else chosen[i]) for i in range(n)}
    with eos_store.open_reader([source]) as reader:
        read = read_n(reader, n)
    got = {
        value: (key, timestamp, partition)
        for value, key, timestamp, partition in zip(
            read.column("value").to_pylist(),
            read.column("key").to_pylist(),
            read.column("timestamp").to_pylist(),
            read.column("partition").to_pylist(),
        )
    }
    assert got == expected
    with_headers = {v: h for v, h in zip(read.column("value").to_pylist(), read.column("headers").to_pylist()) if h}
    assert with_headers == {b"v%d" % i: [{"key": "h", "value": b"%d" % i}] for i in range(0, n, 4)}
    values, partitions = read.column("value").to_pylist(), read.column("partition").to_pylist()
    for p in range(3):
        in_partition = [int(v[1:]) for v, part in zip(values, partitions) if part == p]
        assert in_partition == sorted(in_partition)
