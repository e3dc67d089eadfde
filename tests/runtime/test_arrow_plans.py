"""Arrow's hash aggregation and join as :mod:`ksqlpy.runtime.arrow_plans` runs them: the same
results as pyarrow's ``Table.group_by`` and ``Table.join``, without importing ``pyarrow.dataset``."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ksqlpy.runtime.arrow_plans import aggregate_by, inner_join


@pytest.fixture(scope="module")
def rows() -> pa.Table:
    rng = random.Random(7)
    n = 3_000
    return pa.table(
        {
            "k": [rng.choice(["a", "b", None, "c"]) for _ in range(n)],
            "k2": [rng.randint(0, 3) for _ in range(n)],
            "v": [rng.choice([1, 2, None, -5, 2**40]) for _ in range(n)],
            "seq": list(range(n)),
        }
    )


AGGREGATIONS = [
    ("seq", "max"),
    ("seq", "last"),
    ("v", "sum", pc.ScalarAggregateOptions(min_count=0)),
    ("v", "min", pc.ScalarAggregateOptions(min_count=1)),
    ("v", "max"),
]


@pytest.mark.parametrize("keys", ["k", ["k"], ["k", "k2"]])
def test_aggregate_by_matches_table_group_by(rows: pa.Table, keys: str | list[str]) -> None:
    expected = rows.group_by(keys, use_threads=False).aggregate(AGGREGATIONS)
    got = aggregate_by(rows, keys, AGGREGATIONS)
    assert got.equals(expected)
    assert {"seq_max", "seq_last", "v_sum", "v_min", "v_max"} <= set(got.column_names)


def test_aggregate_by_without_aggregations_gives_one_row_per_group(rows: pa.Table) -> None:
    got = aggregate_by(rows, ["k", "k2"], [])
    assert got.equals(rows.group_by(["k", "k2"], use_threads=False).aggregate([]))
    assert got.num_rows == len(
        {(k, k2) for k, k2 in zip(rows["k"].to_pylist(), rows["k2"].to_pylist(), strict=True)}
    )


def test_inner_join_matches_table_join(rows: pa.Table) -> None:
    right = pa.table({"k": ["a", "c", "z", None], "k2": [0, 1, 2, 3], "x": [1.5, 2.5, 3.5, 4.5]})
    expected = rows.join(right, keys=["k", "k2"], join_type="inner").sort_by("seq")
    got = inner_join(rows, right, ["k", "k2"])
    assert got.schema == expected.schema
    assert got.sort_by("seq").equals(expected)
    assert got.num_rows > 0


def test_neither_imports_pyarrow_dataset() -> None:
    """The point of the module: an aggregation does not load Arrow's dataset, Parquet, Substrait
    and S3 libraries (``pyarrow.acero`` imports them)."""
    script = textwrap.dedent(
        """
        import sys
        import pyarrow as pa
        import ksqlpy.runtime.aggregate, ksqlpy.runtime.materialize
        from ksqlpy.runtime.arrow_plans import aggregate_by, inner_join
        t = pa.table({"k": ["a", "b", "a"], "v": [1, 2, 3]})
        assert aggregate_by(t, "k", [("v", "sum")]).column("v_sum").to_pylist() == [4, 2]
        assert inner_join(t, pa.table({"k": ["a"], "w": [9]}), ["k"]).num_rows == 2
        print(sorted(m for m in sys.modules if m.startswith(("pyarrow.dataset", "pyarrow.parquet", "pyarrow.acero"))))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
