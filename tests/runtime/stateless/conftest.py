"""An embedded-store engine for stateless query tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ksqlpy.runtime.engine import Engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = Engine.open({"ksql.streams.state.dir": str(tmp_path / "data")})
    yield e
    e.close()
