"""Where ksqlDB's conformance cases are, for the tests that read them.

``$KSQLPY_QTT`` when set; else the nearest ``shared/qtt`` beside the repository or beside a folder
above it, so a checkout at ``/work/main`` and a git worktree at ``/work/wt/<name>`` both find
``/work/shared/qtt``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def corpus_path() -> Path:
    configured = os.environ.get("KSQLPY_QTT")
    if configured:
        return Path(configured)
    for base in REPO.parents:
        candidate = base / "shared" / "qtt"
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "qtt"


QTT = corpus_path()
