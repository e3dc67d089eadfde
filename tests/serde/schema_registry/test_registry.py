"""The in-process registry: subjects, versions, ids, durability in the store; wire headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksqlpy.runtime.serde.registry import (
    InProcessRegistry,
    SchemaRegistryError,
    read_header,
    subject_name,
    wire_header,
)
from ksqlpy.runtime.store import open_store


def test_subjects_follow_the_topic_name_strategy() -> None:
    assert subject_name("orders", is_key=True) == "orders-key"
    assert subject_name("orders", is_key=False) == "orders-value"


def test_wire_header_is_magic_byte_then_big_endian_id() -> None:
    assert wire_header(258) == b"\x00\x00\x00\x01\x02"
    assert read_header(wire_header(70000) + b"payload") == 70000
    with pytest.raises(ValueError, match="Unknown magic byte"):
        read_header(b"\x01\x00\x00\x00\x01")
    with pytest.raises(ValueError):
        read_header(b"\x00\x00")


def test_registering_versions_and_reusing_ids(registry: InProcessRegistry) -> None:
    first = registry.register("t-value", '"int"', "AVRO")
    again = registry.register("t-value", '"int"', "AVRO")
    second = registry.register("t-value", '"long"', "AVRO")
    shared = registry.register("u-value", '"int"', "AVRO")
    assert first == again == shared
    assert second != first
    latest = registry.latest("t-value")
    assert latest is not None and (latest.id, latest.version, latest.schema) == (second, 2, '"long"')
    assert registry.by_id(first).schema == '"int"'
    assert registry.subjects() == ["t-value", "u-value"]
    assert registry.latest("missing-value") is None
    with pytest.raises(SchemaRegistryError):
        registry.by_id(999)


def test_explicit_ids(registry: InProcessRegistry) -> None:
    assert registry.register("t-value", '"int"', "AVRO", schema_id=101) == 101
    assert registry.register("t-key", '"string"', "AVRO") == 102
    with pytest.raises(SchemaRegistryError):
        registry.register("u-value", '"long"', "AVRO", schema_id=101)


def test_delete_subject(registry: InProcessRegistry) -> None:
    schema_id = registry.register("t-value", '"int"', "AVRO")
    registry.delete_subject("t-value")
    assert registry.latest("t-value") is None
    assert registry.by_id(schema_id).schema == '"int"'


def test_schemas_survive_a_restart_and_are_seen_by_other_instances(tmp_path: Path) -> None:
    config = {"ksqlpy.data.dir": str(tmp_path / "data")}
    store = open_store(config)
    try:
        writer, reader = InProcessRegistry(store), InProcessRegistry(store)
        schema_id = writer.register("t-value", '{"type": "string"}', "AVRO")
        assert reader.by_id(schema_id).schema == '{"type": "string"}'
    finally:
        store.close()
    store = open_store(config)
    try:
        reopened = InProcessRegistry(store)
        latest = reopened.latest("t-value")
        assert latest is not None and latest.id == schema_id
        assert reopened.register("t-value", '{"type": "long"}', "AVRO") == schema_id + 1
    finally:
        store.close()
