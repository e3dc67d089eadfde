"""Table functions multiply rows: one output row per element, several functions zipped."""

from __future__ import annotations

import pytest
from stateless_io import produce, read

from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.engine import Engine

TEST = (
    "CREATE STREAM TEST (K STRING KEY, A ARRAY<INT>, B ARRAY<STRING>) "
    "WITH (kafka_topic='test', value_format='JSON', partitions=1);"
)


def test_explode_zips_several_arrays_padding_the_shorter_with_nulls(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(TEST + "CREATE STREAM OUTPUT AS SELECT K, EXPLODE(A) AS X, EXPLODE(B) AS Y FROM TEST;")
    produce(engine, "test", [(b"k1", {"A": [1, 2, 3], "B": ["a"]}), (b"k2", {"A": [], "B": None}), (b"k3", {"A": [4]})])
    assert engine.wait_idle()
    assert read(engine, "OUTPUT") == [
        (b"k1", {"X": 1, "Y": "a"}),
        (b"k1", {"X": 2, "Y": None}),
        (b"k1", {"X": 3, "Y": None}),
        (b"k3", {"X": 4, "Y": None}),
    ]


def test_cube_explode_yields_every_combination(engine: Engine) -> None:
    s = engine.session()
    s.execute_all(TEST + "CREATE STREAM OUTPUT AS SELECT K, CUBE_EXPLODE(B) AS C FROM TEST;")
    produce(engine, "test", [(b"k", {"B": ["x", "y"]})])
    assert engine.wait_idle()
    assert [v["C"] for _, v in read(engine, "OUTPUT")] == [[None, None], [None, "y"], ["x", None], ["x", "y"]]


def test_table_functions_reject_table_sources(engine: Engine) -> None:
    s = engine.session()
    s.execute_all("CREATE TABLE T (K STRING PRIMARY KEY, A ARRAY<INT>) WITH (kafka_topic='t', value_format='JSON', partitions=1);")
    with pytest.raises(AnalysisError, match="Table source is not supported with table functions"):
        s.execute_all("CREATE TABLE O AS SELECT K, EXPLODE(A) AS X FROM T;")
