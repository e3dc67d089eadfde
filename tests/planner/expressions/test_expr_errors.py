"""Mistakes in expressions raise AnalysisError with ksqlDB's wording."""

from __future__ import annotations

import pytest

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError
from ksqlpy.parser import parse_expression
from ksqlpy.planner.expressions import ColumnScope, compile_expression, infer_type

SCOPE = ColumnScope.of(
    {"ID": st.INTEGER, "S": st.STRING, "A": st.Array(st.INTEGER), "ST": st.Struct((st.Field("F1", st.INTEGER),))}
)

ERRORS = [
    ("BOB + 1", "Column 'BOB' cannot be resolved."),
    ("ID >= 'not an int'", "Cannot compare ID (INTEGER) to 'not an int' (STRING) with GREATER_THAN_OR_EQUAL."),
    ("NULL <> NULL", "Comparison with NULL not supported: NULL <> NULL"),
    ("TRUE + 1.5", "Error processing expression: (true + 1.5). Unsupported arithmetic types. BOOLEAN DECIMAL"),
    ("5.0 / null", "Error processing expression: (5.0 / null). Arithmetic on types DECIMAL(2, 1) and null are not supported."),
    ("ARRAY[1, 2, 3] + null", "Arithmetic on types ARRAY<INTEGER> and null are not supported."),
    ("CAST(S AS ARRAY<INT>)", "Cast of STRING to ARRAY<INTEGER> is not supported"),
    ("CAST(S AS STRUCT<F0 STRING, F1 INT>)", "Cast of STRING to STRUCT<`F0` STRING, `F1` INTEGER> is not supported"),
    ("ARRAY[NULL]", "Cannot construct an array with all NULL elements"),
    ("CASE WHEN ID > 0 THEN 1 ELSE 'x' END", "Type for the default clause should be the same as for 'THEN' clauses."),
    ("ST['F1']", "Use the dereference operator for STRUCTS"),
    ("COALESCE()", "Function 'COALESCE' does not accept parameters ()"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_error_wording(text: str, message: str) -> None:
    with pytest.raises(AnalysisError) as err:
        compile_expression(parse_expression(text), SCOPE)
    assert message in str(err.value)


def test_errors_carry_the_position() -> None:
    with pytest.raises(AnalysisError) as err:
        compile_expression(parse_expression("ID + BOB"), SCOPE)
    assert err.value.pos is not None and err.value.pos.column == 6


def test_infer_type_without_running() -> None:
    assert infer_type(parse_expression("TRANSFORM(A, x => CAST(x AS STRING))"), SCOPE) == st.Array(st.STRING)
    assert infer_type(parse_expression("ST->F1 * 2.0"), SCOPE) == st.Decimal(13, 1)
