"""Array and map functions through DuckDB, with Java collection semantics (QTT array-*.json)."""

from __future__ import annotations

from conftest import evaluate, lit

from ksqlpy import sqltypes as st

INTS = st.Array(st.INTEGER)


def test_array_distinct_keeps_first_occurrence_order_and_one_null() -> None:
    assert evaluate("array_distinct", [(INTS, [[3, 1, None, 3, None, 1], [], None])]) == [[3, 1, None], [], None]


def test_set_operations_follow_the_left_array_order() -> None:
    left, right = (INTS, [[4, 1, 4, 2], [1], None]), (INTS, [[2, 5, 4], None, [1]])
    assert evaluate("array_union", [left, right]) == [[4, 1, 2, 5], None, None]
    assert evaluate("array_intersect", [left, right]) == [[4, 2], None, None]
    assert evaluate("array_except", [left, right]) == [[1], None, None]


def test_array_remove_and_contains_treat_null_as_an_element() -> None:
    assert evaluate("array_remove", [(INTS, [[1, None, 2, 1]]), lit(1, st.INTEGER)]) == [[None, 2]]
    assert evaluate("array_remove", [(INTS, [[1, None, 2]]), lit(None, st.INTEGER)]) == [[1, 2]]
    assert evaluate("array_contains", [(INTS, [[1, None], [1], None]), lit(None, st.INTEGER)]) == [True, False, False]


def test_array_sort_puts_nulls_last_in_both_directions() -> None:
    arr = (INTS, [[2, None, 1]])
    assert evaluate("array_sort", [arr]) == [[1, 2, None]]
    assert evaluate("array_sort", [arr, lit("desc", st.STRING)]) == [[2, 1, None]]
    assert evaluate("array_sort", [arr, lit("up", st.STRING)]) == [None]


def test_array_join_renders_nulls_as_java_does() -> None:
    assert evaluate("array_join", [(st.Array(st.BOOLEAN), [[True, None, False]])]) == ["true,null,false"]
    assert evaluate("array_join", [(INTS, [[1, 2]]), lit(None, st.STRING)]) == ["12"]


def test_slice_is_one_based_inclusive_and_null_out_of_range() -> None:
    arr = (st.Array(st.STRING), [["a", "b", "c", "d"]])
    assert evaluate("slice", [arr, lit(2, st.INTEGER), lit(3, st.INTEGER)]) == [["b", "c"]]
    assert evaluate("slice", [arr, lit(None, st.INTEGER), lit(2, st.INTEGER)]) == [["a", "b"]]
    assert evaluate("slice", [arr, lit(0, st.INTEGER), lit(2, st.INTEGER)]) == [None]
    assert evaluate("slice", [arr, lit(2, st.INTEGER), lit(9, st.INTEGER)]) == [None]


def test_generate_series_counts_down_when_end_is_below_start() -> None:
    assert evaluate("generate_series", [(st.INTEGER, [0, 4]), (st.INTEGER, [3, 3])]) == [[0, 1, 2, 3], [4, 3]]


def test_map_functions() -> None:
    m = st.Map(st.STRING, st.INTEGER)
    maps = (m, [[("a", 1), ("b", 2)]])
    assert evaluate("map_keys", [maps]) == [["a", "b"]]
    assert evaluate("map_values", [maps]) == [[1, 2]]
    assert evaluate("map_union", [maps, (m, [[("b", 3)]])]) == [{"a": 1, "b": 3}]


def test_java_hashmap_order_is_by_bucket_then_insertion() -> None:
    from ksqlpy.planner.functions.builtins_core import java_hashmap_order

    # String.hashCode buckets of a HashMap sized for three entries (capacity 4), as Java iterates them
    assert java_hashmap_order(["yes, thanks", "nope", "sure, yeah"]) == [1, 3, 2]
    assert java_hashmap_order(["yeowza", "nah", ""]) == [2, 3, 1]
    assert java_hashmap_order([]) == []
