"""ksqlDB's test-only functions exist for QTT cases run by the runner, never in a production engine."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from ksqlpy.testing.qtt import build_case
from ksqlpy.testing.runner import run_case

# Run in a fresh interpreter, where nothing has imported the QTT runner: each statement's error,
# or "accepted".
PRODUCTION = textwrap.dedent(
    """
    from ksqlpy.errors import KsqlpyError
    from ksqlpy.runtime.engine import Engine

    engine = Engine.open({"ksql.streams.state.dir": ":memory:"})
    statements = [
        "CREATE TABLE T AS SELECT K, TEST_UDAF(V) AS X FROM S GROUP BY K;",
        "CREATE STREAM A AS SELECT K, TEST_UDF(V, 'x') AS X FROM S;",
        "CREATE STREAM B AS SELECT K, TEST_UDTF(V) AS X FROM S;",
    ]
    try:
        session = engine.session()
        list(session.execute(
            "CREATE STREAM S (K INT KEY, V INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);"
        ))
        for statement in statements:
            try:
                list(session.execute(statement))
            except KsqlpyError as e:
                print(str(e).splitlines()[0])
            else:
                print("accepted")
    finally:
        engine.close()
    """
)


def test_a_production_engine_does_not_know_the_test_functions() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PRODUCTION], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    for line, name in zip(lines, ("TEST_UDAF", "TEST_UDF", "TEST_UDTF"), strict=True):
        assert line.endswith(f"Can't find any functions with the name '{name}'"), line


def test_the_runner_registers_them_for_its_cases() -> None:
    select = (
        "CREATE TABLE T AS SELECT K, TEST_UDAF(V) AS X, VAR_ARG(CAST(V AS BIGINT), 'ab', 'c') AS Y, "
        "LATEST_BY_OFFSET(TEST_UDF(V, 'x')) AS Z FROM S GROUP BY K;"
    )
    node = {
        "name": "sums",
        "statements": [
            "CREATE STREAM S (K INT KEY, V INT) WITH (kafka_topic='s', value_format='JSON');",
            select,
        ],
        "inputs": [
            {"topic": "s", "key": 1, "value": {"V": 4}, "timestamp": 1},
            {"topic": "s", "key": 1, "value": {"V": 5}, "timestamp": 2},
        ],
        "outputs": [
            {"topic": "T", "key": 1, "value": {"X": 4, "Y": 7.0, "Z": "doStuffIntString"}, "timestamp": 1},
            {"topic": "T", "key": 1, "value": {"X": 9, "Y": 15.0, "Z": "doStuffIntString"}, "timestamp": 2},
        ],
    }
    result = run_case(build_case(node, suite="s", file_name="f.json", fmt=None, config=None))
    assert result.status == "passed", result.error
