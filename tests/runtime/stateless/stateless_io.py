"""Feeding and reading JSON topics of an engine in tests."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from ksqlpy.runtime.engine import Engine


def produce(engine: Engine, topic: str, rows: list[tuple[bytes | None, Any]]) -> None:
    """Produce (key bytes, JSON value) records; a value of None is a null value."""
    engine.store.produce(
        topic,
        pa.table(
            {
                "timestamp": pa.array(list(range(len(rows))), pa.int64()),
                "key": pa.array([k for k, _ in rows], pa.binary()),
                "value": pa.array([None if v is None else json.dumps(v).encode() for _, v in rows], pa.binary()),
            }
        ),
    )


def read(engine: Engine, topic: str) -> list[tuple[bytes | None, Any]]:
    out: list[tuple[bytes | None, Any]] = []
    with engine.store.open_reader([topic], start="earliest") as reader:
        for _ in range(20):
            batch = reader.poll(10_000, timeout=0.05)
            if batch.num_rows == 0 and out:
                break
            for k, v in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist()):
                out.append((k, None if v is None else json.loads(v)))
    return out


def schema(engine: Engine, name: str) -> list[tuple[str, str, bool]]:
    source = engine.catalog.find(name)
    assert source is not None
    return [(c.name, str(c.type), c.is_key) for c in source.columns]
