"""Starts the conformance runs of the selected tests in the background once pytest has collected
them (see ``tests/qtt_background.py``), and stops them when the session ends."""

from __future__ import annotations

import pytest
import qtt_background


def pytest_collection_finish(session: pytest.Session) -> None:
    qtt_background.start({item.name for item in session.items})


def pytest_sessionfinish(session: pytest.Session) -> None:
    qtt_background.stop()
