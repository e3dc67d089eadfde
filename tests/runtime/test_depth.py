"""A statement whose planning runs out of Python frames is an error at its deepest expression
(the recursion limit is lowered for the test, since what the parser admits plans within the
engine's limit)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator

import pytest

from ksqlpy.errors import AnalysisError, Position
from ksqlpy.parser import parse_statement
from ksqlpy.runtime.depth import RECURSION_LIMIT, deepest_expression
from ksqlpy.runtime.engine import Engine

STREAM = "CREATE STREAM s (id VARCHAR KEY, a INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);"


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = Engine.open({"ksql.streams.state.dir": ":memory:"})
    engine.session().execute_all(STREAM)
    try:
        yield engine
    finally:
        engine.close()


def test_the_engine_allows_what_the_parser_admits(engine: Engine) -> None:
    assert sys.getrecursionlimit() >= RECURSION_LIMIT
    text = "SELECT id, " + " + ".join(["a"] * 60) + " AS x FROM s EMIT CHANGES;"
    query = engine.session().execute_query(text)
    try:
        assert [c.name for c in query.columns] == ["ID", "X"]
    finally:
        query.close()


def test_running_out_of_frames_is_an_error_at_the_deepest_expression(engine: Engine) -> None:
    text = "CREATE STREAM d AS SELECT id, 1 AS one, " + " + ".join(["a"] * 50) + " AS x FROM s;"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 300)  # enough to parse, not to plan
    try:
        with pytest.raises(AnalysisError, match="Expression too complex to compile") as raised:
            engine.session().execute_all(text)
    finally:
        sys.setrecursionlimit(limit)
    assert raised.value.pos == Position(1, text.index("a + a") + 1)
    assert str(raised.value).startswith(f"line 1:{text.index('a + a') + 1}: ")
    assert engine.catalog.find("D") is None  # nothing was created


def test_deepest_expression_of_a_statement() -> None:
    stmt = parse_statement("SELECT a, ABS(ABS(a + 1)) AS b, a * 2 FROM s;")
    pos, depth = deepest_expression(stmt)
    assert pos == Position(1, 11)
    assert depth > 4
