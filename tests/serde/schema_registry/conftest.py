"""Fixtures: an embedded topic store on disk and its in-process schema registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ksqlpy.runtime.serde.registry import InProcessRegistry
from ksqlpy.runtime.store import open_store
from ksqlpy.runtime.store.base import TopicStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TopicStore]:
    opened = open_store({"ksqlpy.data.dir": str(tmp_path / "data")})
    yield opened
    opened.close()


@pytest.fixture
def registry(store: TopicStore) -> InProcessRegistry:
    return InProcessRegistry(store)
