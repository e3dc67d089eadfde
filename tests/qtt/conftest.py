"""Starts the conformance runs of the selected tests in the background once pytest has collected
them (see ``tests/qtt_background.py``), and stops them when the session ends.

The tests that wait for those runs go last in the session, so that their runs have the whole
session to use the CPU the other tests leave idle.
"""

from __future__ import annotations

import pytest
import qtt_background


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    waiting = [item for item in items if item.name in qtt_background.RUNS]
    if waiting:
        items[:] = [item for item in items if item.name not in qtt_background.RUNS] + waiting


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.option.collectonly:
        qtt_background.start({item.name for item in session.items})


def pytest_sessionfinish(session: pytest.Session) -> None:
    qtt_background.stop()
