"""Compiled expressions give ksqlDB's values (Java semantics) when run in DuckDB."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ksqlpy import sqltypes as st

INT, BIGINT, DOUBLE, STRING = st.INTEGER, st.BIGINT, st.DOUBLE, st.STRING

CASES: list[tuple[str, dict[str, st.SqlType], list[dict[str, Any]], st.SqlType, list[Any]]] = [
    # precedence (operators.json)
    ("2 * 3 + 4", {}, [{}], INT, [10]),
    ("6 % 4 / 2 * 6", {}, [{}], INT, [6]),
    ("NOT 4 > 11", {}, [{}], st.BOOLEAN, [True]),
    ("true OR false AND true", {}, [{}], st.BOOLEAN, [True]),
    ("1 BETWEEN 0 AND 2 AND 'b' BETWEEN 'a' AND 'c'", {}, [{}], st.BOOLEAN, [True]),
    # Java integer semantics: wrap-around, truncating division, dividend-signed modulus
    ("A + 1", {"A": INT}, [{"A": 2**31 - 1}], INT, [-(2**31)]),
    ("A * 2", {"A": BIGINT}, [{"A": 2**63 - 1}], BIGINT, [-2]),
    ("-A", {"A": INT}, [{"A": -(2**31)}], INT, [-(2**31)]),
    ("A / 2", {"A": INT}, [{"A": -7}, {"A": 7}], INT, [-3, 3]),
    ("A % 3", {"A": INT}, [{"A": -7}, {"A": 7}], INT, [-1, 1]),
    ("A / 0", {"A": INT}, [{"A": 1}], INT, [None]),
    ("A + 1", {"A": INT}, [{"A": 1}], INT, [2]),
    ("A + 1", {"A": BIGINT}, [{"A": 1}], BIGINT, [2]),
    # doubles follow IEEE
    ("A / 0", {"A": DOUBLE}, [{"A": 1.0}, {"A": 0.0}], DOUBLE, [float("inf"), None]),
    # DECIMAL (decimal.json)
    ("A + A + B", {"A": st.Decimal(4, 2), "B": st.Decimal(2, 1)}, [{"A": Decimal("10.01"), "B": Decimal("5.1")}],
     st.Decimal(6, 2), [Decimal("25.12")]),
    ("A / B", {"A": st.Decimal(3, 1), "B": st.Decimal(2, 1)},
     [{"A": Decimal("10.1"), "B": Decimal("2.0")}, {"A": Decimal("10.1"), "B": Decimal("0.0")}],
     st.Decimal(9, 6), [Decimal("5.050000"), None]),
    ("A % B", {"A": st.Decimal(3, 1), "B": st.Decimal(2, 1)},
     [{"A": Decimal("10.1"), "B": Decimal("-2.0")}, {"A": Decimal("10.1"), "B": Decimal("0.0")}],
     st.Decimal(2, 1), [Decimal("0.1"), None]),
    ("-A", {"A": st.Decimal(7, 5)}, [{"A": Decimal("10.12345")}], st.Decimal(7, 5), [Decimal("-10.12345")]),
    ("1.50", {}, [{}], st.Decimal(3, 2), [Decimal("1.50")]),
    ("A = B", {"A": st.Decimal(4, 2), "B": st.Decimal(4, 2)},
     [{"A": Decimal("10.01"), "B": Decimal("10.01")}, {"A": None, "B": Decimal("10.01")}, {}],
     st.BOOLEAN, [True, False, False]),
    ("A < B", {"A": st.Decimal(4, 2), "B": INT}, [{"A": Decimal("10.01"), "B": 12}, {"A": None, "B": 12}],
     st.BOOLEAN, [True, False]),
    # literals
    ("2147483648", {}, [{}], BIGINT, [2**31]),
    ("1.5E3", {}, [{}], DOUBLE, [1500.0]),
    # comparisons are FALSE, not NULL, on NULL operands; IS DISTINCT FROM is null-safe
    ("A <> 'x'", {"A": STRING}, [{"A": None}, {"A": "y"}], st.BOOLEAN, [False, True]),
    ("A IS DISTINCT FROM B", {"A": INT, "B": INT}, [{"A": None, "B": None}, {"A": 1}, {"A": 1, "B": 1}],
     st.BOOLEAN, [False, True, False]),
    ("T > '2020-01-01T00:00:00'", {"T": st.TIMESTAMP}, [{"T": 1_600_000_000_000}, {"T": 0}], st.BOOLEAN, [True, False]),
    # LIKE, IN, BETWEEN
    ("A LIKE 'a_c%'", {"A": STRING}, [{"A": "abcd"}, {"A": "ac"}, {"A": None}], st.BOOLEAN, [True, False, False]),
    ("A LIKE 'a!%%' ESCAPE '!'", {"A": STRING}, [{"A": "a%b"}, {"A": "ab"}], st.BOOLEAN, [True, False]),
    ("A IN (1, 3, NULL)", {"A": INT}, [{"A": 1}, {"A": 2}, {"A": None}], st.BOOLEAN, [True, False, False]),
    ("A NOT IN (1, 3)", {"A": INT}, [{"A": 1}, {"A": 2}], st.BOOLEAN, [False, True]),
    ("A BETWEEN 1 AND 3", {"A": BIGINT}, [{"A": 3}, {"A": 4}, {"A": None}], st.BOOLEAN, [True, False, False]),
    # CASE
    ("CASE WHEN A < 2.0 THEN 'small' WHEN A < 4.0 THEN null ELSE 'large' END", {"A": DOUBLE},
     [{"A": 1.0}, {"A": 3.0}, {"A": 6.0}], STRING, ["small", None, "large"]),
    ("CASE A WHEN 1 THEN 'one' ELSE 'many' END", {"A": INT}, [{"A": 1}, {"A": 5}], STRING, ["one", "many"]),
    # CAST (cast.json, Java conversions)
    ("CAST(A AS STRING)", {"A": DOUBLE}, [{"A": 1.0}, {"A": 1e10}, {"A": 0.0001}, {"A": 12.5}], STRING,
     ["1.0", "1.0E10", "1.0E-4", "12.5"]),
    ("CAST(A AS STRING)", {"A": st.Decimal(4, 2)}, [{"A": Decimal("1.10")}], STRING, ["1.10"]),
    ("CAST(A AS STRING)", {"A": st.BOOLEAN}, [{"A": True}], STRING, ["true"]),
    ("CAST(A AS STRING)", {"A": st.TIMESTAMP}, [{"A": 1_600_000_000_123}], STRING, ["2020-09-13T12:26:40.123"]),
    ("CAST(A AS INT)", {"A": STRING}, [{"A": " 12 "}, {"A": "1.5"}, {"A": "x"}], INT, [12, None, None]),
    ("CAST(A AS INT)", {"A": DOUBLE}, [{"A": -2.7}, {"A": 2.5}], INT, [-2, 2]),
    ("CAST(A AS INT)", {"A": BIGINT}, [{"A": 2**32 + 5}], INT, [5]),
    ("CAST(A AS BOOLEAN)", {"A": STRING}, [{"A": "Y"}, {"A": "tr"}, {"A": "no"}, {"A": ""}], st.BOOLEAN,
     [True, True, False, False]),
    ("CAST(A AS DECIMAL(3, 1))", {"A": DOUBLE}, [{"A": 1.25}, {"A": 1000.0}], st.Decimal(3, 1),
     [Decimal("1.3"), None]),
    ("CAST(A AS ARRAY<STRING>)", {"A": st.Array(INT)}, [{"A": [1, None]}], st.Array(STRING), [["1", None]]),
    # collections (arrayindex.json, map.json, simple-struct.json)
    ("A[1]", {"A": st.Array(INT)}, [{"A": [1, 2, 3]}], INT, [1]),
    ("A[-1]", {"A": st.Array(INT)}, [{"A": [1, 2, 3]}], INT, [3]),
    ("A[0]", {"A": st.Array(INT)}, [{"A": [1, 2, 3]}], INT, [None]),
    ("A[4]", {"A": st.Array(INT)}, [{"A": [1, 2, 3]}, {"A": None}], INT, [None, None]),
    ("M['expected']", {"M": st.Map(STRING, INT)}, [{"M": [("expected", 10)]}, {"M": None}], INT, [10, None]),
    ("S->F1", {"S": st.Struct((st.Field("F1", INT),))}, [{"S": {"F1": 4}}, {"S": None}], INT, [4, None]),
    ("ARRAY[1, 2.5]", {}, [{}], st.Array(st.Decimal(11, 1)), [[Decimal("1.0"), Decimal("2.5")]]),
    ("MAP('a' := 1, 'b' := 2)", {}, [{}], st.Map(STRING, INT), [[("a", 1), ("b", 2)]]),
    ("STRUCT(X := 1, Y := 'y')", {}, [{}], st.Struct((st.Field("X", INT), st.Field("Y", STRING))),
     [{"X": 1, "Y": "y"}]),
    # lambdas (transform-*.json, reduce-*.json, filter)
    ("TRANSFORM(A, x => x * 2)", {"A": st.Array(INT)}, [{"A": [1, 2]}, {"A": None}], st.Array(INT), [[2, 4], None]),
    ("FILTER(A, x => x > 1)", {"A": st.Array(INT)}, [{"A": [1, 2, 3]}], st.Array(INT), [[2, 3]]),
    ("REDUCE(A, 0, (s, x) => s + x)", {"A": st.Array(INT)}, [{"A": [1, 2, 3]}, {"A": []}], INT, [6, 0]),
    ("TRANSFORM(M, (k, v) => UCASE(k), (k, v) => v + 1)", {"M": st.Map(STRING, INT)}, [{"M": [("a", 1)]}],
     st.Map(STRING, INT), [[("A", 2)]]),
    ("FILTER(M, (k, v) => v > 1)", {"M": st.Map(STRING, INT)}, [{"M": [("a", 1), ("b", 2)]}],
     st.Map(STRING, INT), [[("b", 2)]]),
    ("REDUCE(M, 10, (s, k, v) => s + v)", {"M": st.Map(STRING, INT)}, [{"M": [("a", 1), ("b", 2)]}], INT, [13]),
    # arithmetic on a NULL element throws in ksqlDB's Java, and the whole call is NULL; not so in a
    # branch Java skips, nor for string concatenation
    ("TRANSFORM(A, x => x + 1)", {"A": st.Array(INT)}, [{"A": [1, None]}], st.Array(INT), [None]),
    ("TRANSFORM(A, x => CASE WHEN x IS NULL THEN 0 ELSE x + 1 END)", {"A": st.Array(INT)}, [{"A": [1, None]}],
     st.Array(INT), [[2, 0]]),
    ("TRANSFORM(A, x => x + '!')", {"A": st.Array(STRING)}, [{"A": ["a", None]}], st.Array(STRING),
     [["a!", "null!"]]),
    ("FILTER(A, x => x * 2 > 1)", {"A": st.Array(INT)}, [{"A": [1, None]}], st.Array(INT), [None]),
    ("TRANSFORM(M, (k, v) => k, (k, v) => ABS(v))", {"M": st.Map(STRING, INT)}, [{"M": [("a", None)]}],
     st.Map(STRING, INT), [None]),
    # Java's nullable boolean && and ||: a NULL left operand gives NULL
    ("A AND B", {"A": st.BOOLEAN, "B": st.BOOLEAN}, [{"A": None, "B": False}, {"A": False}, {"A": True}],
     st.BOOLEAN, [None, False, None]),
    ("A + B", {"A": STRING, "B": STRING}, [{"A": "x", "B": "y"}, {"A": "x"}], STRING, ["xy", "xnull"]),
]


@pytest.mark.parametrize(("text", "columns", "rows", "expected_type", "expected"), CASES, ids=[c[0] for c in CASES])
def test_expression_value(evaluate, text, columns, rows, expected_type, expected) -> None:  # type: ignore[no-untyped-def]
    actual_type, values = evaluate(text, columns or None, rows)
    assert actual_type == expected_type
    if expected_type == DOUBLE:
        assert [None if v != v else v for v in values] == expected  # NaN stands for Java's 0.0/0
    else:
        assert values == expected
