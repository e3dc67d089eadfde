"""Kafka store: a rebalance in the middle of rebuilding local state by re-reading records.

A reader whose local state is behind the group's commits re-reads its partitions up to the
committed offsets first (see ``test_kafka_state_rebuild``). When the group moves one of those
partitions to another member before the re-reading reaches its end, the partitions this member
keeps must go on past their committed offsets: the moved partition's re-reading is no longer
this member's to finish.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaTopicPartition
from kafka_broker import FAST_CLIENT_CONFIG
from test_store_contract import fresh, records

from ksqlpy.runtime.store import open_store
from ksqlpy.runtime.store.base import TopicSpec
from ksqlpy.runtime.store.kafka import KafkaStore

pytestmark = pytest.mark.kafka

#: records per partition before the rebalance; the member re-reads them slowly enough that the
#: rebalance comes first
BEFORE = 5_000
AFTER = 50


def _store(bootstrap: str, data_dir: Path) -> KafkaStore:
    config: dict[str, object] = {f"kafka.{k}": v for k, v in FAST_CLIENT_CONFIG.items()}
    store = open_store({"bootstrap.servers": bootstrap, "ksqlpy.data.dir": str(data_dir), **config})
    assert isinstance(store, KafkaStore)
    return store


def test_partitions_kept_after_a_rebalance_mid_replay_read_past_their_commits(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group = fresh("replay"), fresh("group")
    a, b = _store(kafka_bootstrap, tmp_path / "a"), _store(kafka_bootstrap, tmp_path / "b")
    try:
        a.create_topic(TopicSpec(name=topic, partitions=2))
        a.produce(topic, records([b"1"] * (2 * BEFORE), partitions=[0] * BEFORE + [1] * BEFORE))
        # The group committed both partitions to their end, while A's local state stands at their
        # start (as for a server restarted after others processed its partitions).
        committer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
        committer.commit(offsets=[KafkaTopicPartition(topic, p, BEFORE) for p in (0, 1)], asynchronous=False)
        committer.close()
        for p in (0, 1):
            a.state_database.execute("INSERT INTO ksqlpy.positions VALUES (?, ?, ?, 0)", [group, topic, p])

        with a.open_reader([topic], group=group, start="earliest") as first:
            deadline = time.monotonic() + 60
            while first.poll(max_records=1, timeout=0.2).num_rows == 0 and time.monotonic() < deadline:
                pass
            assert first.replaying, "A does not re-read its partitions to rebuild its state"

            with b.open_reader([topic], group=group, start="earliest") as second:
                # B joins: the group splits the partitions; A re-reads a record at a time meanwhile.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not (
                    len(first.assignment()) == 1 and len(second.assignment()) == 1
                ):
                    second.poll(max_records=1, timeout=0.05)
                    first.poll(max_records=1, timeout=0.05)
                    time.sleep(0.01)
                (kept,) = first.assignment()
                assert second.assignment() != [kept]

                a.produce(topic, records([b"2"] * AFTER, partitions=[kept.partition] * AFTER))
                seen: set[int] = set()
                deadline = time.monotonic() + 60
                while len(seen) < AFTER and time.monotonic() < deadline:
                    batch = first.poll(max_records=10_000, timeout=0.2)
                    seen.update(
                        o
                        for p, o in zip(
                            batch.column("partition").to_pylist(), batch.column("offset").to_pylist()
                        )
                        if p == kept.partition and o >= BEFORE
                    )
                assert seen == set(range(BEFORE, BEFORE + AFTER)), (
                    f"A read {len(seen)} of the {AFTER} records written to {kept} after the rebalance"
                )
    finally:
        a.close()
        b.close()
