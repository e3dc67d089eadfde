"""ksqlDB's test-only functions exist for QTT cases run by the runner, never in a production engine."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from ksqlpy.testing.qtt import build_case
from ksqlpy.testing.runner import run_case

# A fresh interpreter: nothing there has imported the QTT runner.
PRODUCTION = textwrap.dedent(
    """
    from ksqlpy.errors import KsqlpyError
    from ksqlpy.runtime.engine import Engine

    engine = Engine.open({"ksql.streams.state.dir": ":memory:"})
    try:
        session = engine.session()
        list(session.execute("CREATE STREAM S (K INT KEY, V INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);"))
        try:
            list(session.execute("CREATE TABLE T AS SELECT K, TEST_UDAF(V) AS X FROM S GROUP BY K;"))
        except KsqlpyError as e:
            print(str(e))
        else:
            print("accepted")
    finally:
        engine.close()
    """
)


def test_a_production_engine_does_not_know_the_test_functions() -> None:
    done = subprocess.run([sys.executable, "-c", PRODUCTION], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Can't find any functions with the name 'TEST_UDAF'" in done.stdout


def test_the_runner_registers_them_for_its_cases() -> None:
    node = {
        "name": "sums",
        "statements": [
            "CREATE STREAM S (K INT KEY, V INT) WITH (kafka_topic='s', value_format='JSON');",
            "CREATE TABLE T AS SELECT K, TEST_UDAF(V) AS X, VAR_ARG(CAST(V AS BIGINT), 'ab', 'c') AS Y "
            "FROM S GROUP BY K;",
        ],
        "inputs": [
            {"topic": "s", "key": 1, "value": {"V": 4}, "timestamp": 1},
            {"topic": "s", "key": 1, "value": {"V": 5}, "timestamp": 2},
        ],
        "outputs": [
            {"topic": "T", "key": 1, "value": {"X": 4, "Y": 7.0}, "timestamp": 1},
            {"topic": "T", "key": 1, "value": {"X": 9, "Y": 15.0}, "timestamp": 2},
        ],
    }
    result = run_case(build_case(node, suite="s", file_name="f.json", fmt=None, config=None))
    assert result.status == "passed", result.error
