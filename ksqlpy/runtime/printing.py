"""PRINT topic: the records of a topic as text lines, as ksqlDB's PRINT shows them."""

from __future__ import annotations

from typing import Any

from ksqlpy.errors import AnalysisError
from ksqlpy.parser import ast


def print_topic(session: Any, stmt: ast.PrintTopic) -> Any:
    engine = session.engine
    if engine.store.describe_topic(stmt.topic) is None:
        raise AnalysisError(f"Could not find topic '{stmt.topic}', or the KSQL user does not have permissions to list the topic. Topic names are case-sensitive.", pos=stmt.pos)
    raise AnalysisError("PRINT is not supported yet; use a push query (SELECT ... EMIT CHANGES).", pos=stmt.pos)
