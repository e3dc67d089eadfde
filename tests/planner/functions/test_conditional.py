"""COALESCE, IFNULL, NULLIF through DuckDB (QTT null.json)."""

from __future__ import annotations

import pytest
from conftest import evaluate, lit

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError
from ksqlpy.planner.functions import REGISTRY


def test_coalesce_returns_first_non_null() -> None:
    assert evaluate("coalesce", [(st.INTEGER, [None, 1]), lit(None, None), lit(5, st.INTEGER)]) == [5, 1]


def test_ifnull_on_arrays() -> None:
    arr = st.Array(st.INTEGER)
    assert evaluate("ifnull", [(arr, [None, [1]]), (arr, [[10, 20], [3]])]) == [[10, 20], [1]]


def test_nullif() -> None:
    assert evaluate("nullif", [(st.STRING, ["x", "y", None]), lit("x", st.STRING)]) == [None, "y", None]


def test_coalesce_without_arguments_is_rejected() -> None:
    with pytest.raises(AnalysisError, match=r"Function 'COALESCE' does not accept parameters \(\)"):
        REGISTRY.resolve("coalesce", [])
