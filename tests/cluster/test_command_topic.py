"""Two engines with one service id on one broker form a cluster through the command topic: a
statement run on one is applied by the other's command runner, in order, with the same query id."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka_broker import engine_settings

from ksqlpy.errors import AnalysisError
from ksqlpy.runtime import results as r
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.store.kafka import KafkaStore

pytestmark = pytest.mark.kafka


def _eventually(check: Callable[[], bool], within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _settings(bootstrap: str, service_id: str, data: Path) -> dict[str, str]:
    return {**engine_settings(bootstrap, service_id=service_id, data_dir=data), "ksqlpy.query.ids": "command-offset"}


def test_statements_on_one_engine_are_applied_by_the_other(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    service = f"cmd_{run}_"
    a = Engine.open(_settings(kafka_bootstrap, service, tmp_path / "a"))
    b = Engine.open(_settings(kafka_bootstrap, service, tmp_path / "b"))
    try:
        (created,) = a.session().execute_all(
            f"CREATE STREAM views (id INT KEY, page STRING) WITH (kafka_topic='views_{run}', "
            "value_format='JSON', partitions=2);"
        )
        assert isinstance(created, r.CommandStatusEntity) and created.sequence_number >= 0
        (csas,) = a.session().execute_all("CREATE STREAM upper_views AS SELECT id, UCASE(page) AS page FROM views;")
        assert isinstance(csas, r.CommandStatusEntity) and csas.query_id is not None
        # ksqlDB's server numbering: one past the offset of the last command applied before it
        assert csas.query_id == f"CSAS_UPPER_VIEWS_{created.sequence_number + 1}"
        assert _eventually(lambda: csas.query_id in b.queries)
        assert b.catalog.find("UPPER_VIEWS") is not None
        # the other engine goes on from there: its statement sees what the first one created
        (dropped,) = b.session().execute_all(f"TERMINATE {csas.query_id};")
        assert isinstance(dropped, r.CommandStatusEntity)
        assert _eventually(lambda: csas.query_id not in a.queries)
        # the loser of a conflicting statement gets ksqlDB's error
        with pytest.raises(AnalysisError, match="A stream with the same name already exists"):
            b.session().execute_all(
                f"CREATE STREAM views (id INT KEY, page STRING) WITH (kafka_topic='views_{run}', value_format='JSON');"
            )
        (again,) = a.session().execute_all("CREATE STREAM upper_again AS SELECT id, UCASE(page) AS page FROM views;")
        assert isinstance(again, r.CommandStatusEntity) and again.query_id is not None
        # a server that joins later replays the topic (committed commands only) to the same state
        c = Engine.open(_settings(kafka_bootstrap, service, tmp_path / "c"))
        try:
            assert set(c.queries) == set(a.queries) == {again.query_id}
            assert set(c.catalog.sources) == set(a.catalog.sources)
        finally:
            c.close()
    finally:
        b.close()
        a.close()


def test_a_statement_raced_on_two_engines_has_one_winner(kafka_bootstrap: str, tmp_path: Path) -> None:
    import threading

    run = uuid.uuid4().hex[:8]
    service = f"race_{run}_"
    engines = [Engine.open(_settings(kafka_bootstrap, service, tmp_path / name)) for name in "ab"]
    results: list[object] = []
    start = threading.Barrier(2)

    def create(engine: Engine) -> None:
        start.wait()
        try:
            results.append(
                engine.session().execute_all(
                    f"CREATE STREAM raced (id INT KEY, v STRING) WITH (kafka_topic='raced_{run}', "
                    "value_format='JSON', partitions=1);"
                )[0]
            )
        except Exception as e:  # noqa: BLE001 - the test looks at what each one got
            results.append(e)

    try:
        assert all(e.runner is not None for e in engines)
        threads = [threading.Thread(target=create, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        won = [x for x in results if isinstance(x, r.CommandStatusEntity)]
        lost = [x for x in results if isinstance(x, AnalysisError)]
        assert len(won) == 1 and len(lost) == 1, results
        assert "Cannot add stream 'RACED': A stream with the same name already exists" in str(lost[0])
        assert all(e.catalog.find("RACED") is not None for e in engines)
    finally:
        for e in engines:
            e.close()


def _filters_aborted_records(bootstrap: str, topic: str) -> bool:
    """Whether the broker hides aborted transactions' records from read-committed consumers:
    Kafka does; the Tansu test broker delivers them (its fetches list no aborted transactions)."""
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka import TopicPartition as KafkaTopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: the result needs its handle
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": topic})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topic, "isolation.level": "read_committed",
         "enable.partition.eof": True}
    )
    consumer.assign([KafkaTopicPartition(topic, 0, 0)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is None:
                return False
            if error.code() == KafkaError._PARTITION_EOF:
                return True
        return True
    finally:
        consumer.close()


def test_an_aborted_command_is_never_applied(kafka_bootstrap: str, tmp_path: Path) -> None:
    from ksqlpy.runtime.commandlog import Command
    from ksqlpy.runtime.store.kafka_commands import KafkaCommandWriter

    run = uuid.uuid4().hex[:8]
    if not _filters_aborted_records(kafka_bootstrap, f"isolation_{run}"):
        pytest.skip("the broker delivers aborted records to read-committed consumers (Tansu does)")
    service = f"abort_{run}_"
    a = Engine.open(_settings(kafka_bootstrap, service, tmp_path / "a"))
    try:
        store = a.store
        assert isinstance(store, KafkaStore)
        writer = KafkaCommandWriter(store.client_settings("producer"), a.commands.topic, service)
        writer.begin()
        ghost = f"CREATE STREAM ghost (id INT KEY) WITH (kafka_topic='ghost_{run}', value_format='JSON', partitions=1);"
        writer.append(Command(ghost).encode())
        writer.abort()
        writer.close()
        (created,) = a.session().execute_all(
            f"CREATE STREAM real (id INT KEY) WITH (kafka_topic='real_{run}', value_format='JSON', partitions=1);"
        )
        assert isinstance(created, r.CommandStatusEntity)
        b = Engine.open(_settings(kafka_bootstrap, service, tmp_path / "b"))
        try:
            for engine in (a, b):
                assert engine.catalog.find("REAL") is not None and engine.catalog.find("GHOST") is None
        finally:
            b.close()
    finally:
        a.close()


def test_a_kept_writer_fenced_by_another_servers_writer_tries_again(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A server keeps its command topic producer between statements; another server's writer that
    was initialised and wrote nothing (its statement was refused) fences it all the same, and the
    next statement goes through with a new producer, validated again."""
    run = uuid.uuid4().hex[:8]
    service = f"kept_{run}_"
    a = Engine.open(_settings(kafka_bootstrap, service, tmp_path / "a"))
    b = Engine.open(_settings(kafka_bootstrap, service, tmp_path / "b"))
    try:
        assert a.runner is not None and b.runner is not None
        ddl = "CREATE STREAM {name} (id INT KEY, v STRING) WITH (kafka_topic='{name}_%s', value_format='JSON', partitions=1);"
        a.session().execute_all((ddl % run).format(name="first"))
        kept = a.runner._writer
        assert kept is not None
        a.session().execute_all((ddl % run).format(name="second"))
        assert a.runner._writer is kept  # nothing else was written: the same producer
        assert _eventually(lambda: b.catalog.find("SECOND") is not None)
        with pytest.raises(AnalysisError, match="A stream with the same name already exists"):
            b.session().execute_all((ddl % run).format(name="second"))
        (third,) = a.session().execute_all((ddl % run).format(name="third"))
        assert isinstance(third, r.CommandStatusEntity)
        assert a.runner._writer is not None and a.runner._writer is not kept
        assert _eventually(lambda: b.catalog.find("THIRD") is not None)
        # each command was applied once on each server, in the same order
        assert [s for s in a.catalog.sources if s in {"FIRST", "SECOND", "THIRD"}] == ["FIRST", "SECOND", "THIRD"]
        assert [s for s in b.catalog.sources if s in {"FIRST", "SECOND", "THIRD"}] == ["FIRST", "SECOND", "THIRD"]
    finally:
        b.close()
        a.close()
