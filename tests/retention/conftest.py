"""Fixtures for window retention tests: a real engine on the embedded store, reopenable."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ksqlpy.runtime.engine import Engine


def open_engine(data: Path) -> Engine:
    return Engine.open({"ksql.streams.state.dir": str(data), "ksql.streams.auto.offset.reset": "earliest"})


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def opener(data_dir: Path) -> Callable[[], Engine]:
    """Opens (or re-opens, after a close) the engine on the test's data directory."""
    return lambda: open_engine(data_dir)


@pytest.fixture
def engine(data_dir: Path) -> Iterator[Engine]:
    e = open_engine(data_dir)
    yield e
    e.close()
