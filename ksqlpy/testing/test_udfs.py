"""Test-only functions that ksqlDB's conformance cases (QTT) call.

ksqlDB's test harness loads extra UDFs, UDAFs and UDTFs from its test sources (``TEST_UDAF``,
``VAR_ARG``, ``MULTI_ARG``, ...) and many QTT cases exercise the function framework through
them: variadic parameters (first, middle, generic, ``ANY``), literal initialisation arguments,
table aggregation with undo, struct parameters. They are not ksqlDB functions, so a production
engine must never see them: only the QTT runner calls :func:`register_test_functions`.

Each function here reproduces the observable behaviour the QTT cases expect (signatures,
results, error messages); NULL per-row inputs count as zero or are skipped where the cases
show they are.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes as st
from ksqlpy.planner.functions.aggregate import Accumulator
from ksqlpy.planner.functions.aggregates.accumulator import BaseAccumulator
from ksqlpy.planner.functions.aggregates.base import Resolved, Signature, Udaf, register
from ksqlpy.planner.functions.registry import (
    REGISTRY,
    PythonUdf,
    ScalarFunction,
    TableFunction,
    Variant,
    sql_call,
    sql_template,
)

__all__ = ["register_test_functions"]

_LOCK = threading.Lock()
_REGISTERED = False

#: how many variadic literal arguments the literal-variadic factories accept (the aggregate
#: library takes a fixed number of literals per signature, so one signature per count)
_MAX_VARIADIC_LITERALS = 8


def _length(value: str | None) -> int:
    return 0 if value is None else len(value)


# --------------------------------------------------------------------------------------------
# Aggregates


class _Folding(BaseAccumulator):
    """An aggregate defined by a fold ``step(state, args)`` and an optional final ``finish``."""

    def __init__(
        self,
        resolved: Resolved,
        *,
        return_type: st.SqlType,
        initial: Any,
        step: Callable[[Any, tuple[Any, ...]], Any],
        merge: Callable[[Any, Any], Any],
        finish: Callable[[Any], Any] = lambda s: s,
        undo: Callable[[Any, tuple[Any, ...]], Any] | None = None,
        state_type: st.SqlType | None = None,
    ) -> None:
        super().__init__(
            name=resolved.name,
            return_type=return_type,
            state_type=state_type or return_type,
            column_args=tuple(range(resolved.column_count)),
            supports_undo=undo is not None,
        )
        self._initial, self._step, self._merge, self._finish, self._undo = initial, step, merge, finish, undo

    def initial(self) -> Any:
        return self._initial

    def add(self, state: Any, args: tuple[Any, ...]) -> Any:
        return self._step(state, args)

    def undo(self, state: Any, args: tuple[Any, ...]) -> Any:
        if self._undo is None:
            return super().undo(state, args)
        return self._undo(state, args)

    def merge(self, a: Any, b: Any) -> Any:
        return self._merge(a, b)

    def result(self, state: Any) -> Any:
        return self._finish(state)


def _plus(a: Any, b: Any) -> Any:
    return a + b


def _sum_of(t: st.SqlType, *, undoable: bool) -> Callable[[Resolved], Accumulator]:
    """TEST_UDAF over numbers: a plain sum in ``t``; NULL inputs are skipped."""
    zero: Any = 0.0 if t == st.DOUBLE else 0

    def build(resolved: Resolved) -> Accumulator:
        return _Folding(
            resolved,
            return_type=t,
            initial=zero,
            step=lambda s, a: s if a[0] is None else s + a[0],
            undo=(lambda s, a: s if a[0] is None else s - a[0]) if undoable else None,
            merge=_plus,
        )

    return build


def _sum_of_lengths(resolved: Resolved) -> Accumulator:
    """TEST_UDAF(STRING, initial STRING): the initial string's length plus each value's."""
    return _Folding(
        resolved,
        return_type=st.BIGINT,
        initial=_length(resolved.literals[0]),
        step=lambda s, a: s + _length(a[0]),
        merge=_plus,
    )


_AB = st.Struct((st.Field("A", st.INTEGER), st.Field("B", st.INTEGER)))


def _struct_sum(resolved: Resolved) -> Accumulator:
    """TEST_UDAF(STRUCT<A INT, B INT>): field-wise sums."""

    def add(state: dict[str, int], v: dict[str, int]) -> dict[str, int]:
        return {f: (state.get(f) or 0) + (v.get(f) or 0) for f in ("A", "B")}

    return _Folding(
        resolved,
        return_type=_AB,
        initial={"A": 0, "B": 0},
        step=lambda s, a: s if a[0] is None else add(s, a[0]),
        merge=add,
    )


def _multi_arg(resolved: Resolved) -> Accumulator:
    """MULTI_ARG(BIGINT, STRING, INT literal, STRING... literals): starts at the INT plus the
    literal strings' lengths, then adds each row's number and string length."""
    start, *words = resolved.literals
    return _Folding(
        resolved,
        return_type=st.BIGINT,
        initial=start + sum(_length(w) for w in words),
        step=lambda s, a: s + (a[0] or 0) + _length(a[1]),
        merge=_plus,
    )


def _five_arg(resolved: Resolved) -> Accumulator:
    """FIVE_ARG(BIGINT, STRING, STRING, STRING, INT, INT literal, STRING... literals)."""
    start, *words = resolved.literals
    return _Folding(
        resolved,
        return_type=st.BIGINT,
        initial=start + sum(_length(w) for w in words),
        step=lambda s, a: s + (a[0] or 0) + _length(a[1]) + _length(a[2]) + _length(a[3]) + (a[4] or 0),
        merge=_plus,
    )


def _var_arg(resolved: Resolved) -> Accumulator:
    """VAR_ARG(BIGINT, STRING...): the sum of the numbers and of every string's length."""
    return _Folding(
        resolved,
        return_type=st.BIGINT,
        initial=0,
        step=lambda s, a: s + (a[0] or 0) + sum(_length(w) for w in a[1:]),
        merge=_plus,
    )


def _mid_var_arg(resolved: Resolved) -> Accumulator:
    """MID_VAR_ARG(BIGINT, STRING..., INT literal, INT literal): like VAR_ARG, plus both
    literals, which are added to the result (not the state)."""
    constant = sum(resolved.literals)
    return _Folding(
        resolved,
        return_type=st.BIGINT,
        initial=0,
        step=lambda s, a: s + (a[0] or 0) + sum(_length(w) for w in a[1:]),
        merge=_plus,
        finish=lambda s: s + constant,
    )


def _keep_first_when_all_present(resolved: Resolved) -> Accumulator:
    """GENERIC_VAR_ARG / OBJ_COL_ARG: collects the first argument of each row whose arguments
    are all non-NULL."""
    return _Folding(
        resolved,
        return_type=st.Array(resolved.column_type(0)),
        initial=[],
        step=lambda s, a: [*s, a[0]] if all(v is not None for v in a) else s,
        merge=lambda x, y: [*x, *y],
    )


def _literal_variadic(
    params: str,
    fixed_literals: str,
    variadic_literal: str,
    returns: str,
    build: Callable[[Resolved], Accumulator],
) -> tuple[Signature, ...]:
    """Signatures for a factory whose literal arguments end with a variadic one."""
    return tuple(
        Signature(
            ", ".join([params, fixed_literals, *(f"{variadic_literal}{i} STRING" for i in range(n))]),
            returns,
            build,
            literals=1 + n,
        )
        for n in range(_MAX_VARIADIC_LITERALS + 1)
    )


def _udafs() -> tuple[Udaf, ...]:
    return (
        Udaf(
            "test_udaf",
            "test_udaf",
            (
                Signature(
                    "val BIGINT", "BIGINT", _sum_of(st.BIGINT, undoable=True), description="sums longs"
                ),
                Signature("val INT", "BIGINT", _sum_of(st.BIGINT, undoable=True), description="sums int"),
                Signature(
                    "val DOUBLE", "DOUBLE", _sum_of(st.DOUBLE, undoable=False), description="sums double"
                ),
                Signature(
                    "val STRING, initial STRING",
                    "BIGINT",
                    _sum_of_lengths,
                    literals=1,
                    description="sums the length of strings",
                ),
                Signature(
                    "val STRUCT<A INT, B INT>",
                    "STRUCT<A INT, B INT>",
                    _struct_sum,
                    description="returns a struct with {SUM(in->A), SUM(in->B)}",
                ),
            ),
        ),
        Udaf(
            "MULTI_ARG",
            "Testing multiple arguments",
            _literal_variadic("first BIGINT, second STRING", "init INT", "extra", "DOUBLE", _multi_arg),
        ),
        Udaf(
            "FIVE_ARG",
            "Returns the sum of the provided longs, lengths of strings, and integers.",
            _literal_variadic(
                "a BIGINT, b STRING, c STRING, d STRING, e INT", "init INT", "extra", "BIGINT", _five_arg
            ),
        ),
        Udaf(
            "VAR_ARG",
            "Testing multiple and variadic arguments",
            (Signature("first BIGINT, rest STRING...", "DOUBLE", _var_arg),),
        ),
        Udaf(
            "MID_VAR_ARG",
            "Returns the sum of the provided longs, lengths of strings, and initial arguments.",
            (Signature("first BIGINT, rest STRING..., a INT, b INT", "BIGINT", _mid_var_arg, literals=2),),
        ),
        Udaf(
            "GENERIC_VAR_ARG",
            "Returns an array of rows where all the given columns are non-null.",
            (Signature("first A, second B, rest C...", "ARRAY<A>", _keep_first_when_all_present),),
        ),
        Udaf(
            "OBJ_COL_ARG",
            "Returns an array of rows where all the given columns are non-null.",
            (Signature("first INT, rest ANY...", "ARRAY<INT>", _keep_first_when_all_present),),
        ),
    )


# --------------------------------------------------------------------------------------------
# Scalar functions


class DeliberateFailure(Exception):
    """What the deliberately failing test functions raise (ksqlDB's RuntimeException)."""


def _constant(text: str) -> Callable[..., Any]:
    return sql_template(f"'{text}'")


def _test_udf() -> ScalarFunction:
    """TEST_UDF: each variant returns its own name, so cases can see which one resolved."""
    named = (
        ("arg1 INT, arg2 STRING", "doStuffIntString"),
        ("arg1 BIGINT, arg2 STRING", "doStuffLongString"),
        ("arg1 BIGINT, arg2 BIGINT, arg3 STRING", "doStuffLongLongString"),
        ("longs BIGINT...", "doStuffLongVarargs"),
    )
    return ScalarFunction(
        name="test_udf",
        description="test",
        variants=(
            *(Variant(params, returns="STRING", compile=_constant(name)) for params, name in named),
            Variant(
                "struct STRUCT<A STRING>", returns="STRING", compile=sql_template("struct_extract({0}, 'A')")
            ),
            Variant("", returns="STRUCT<A STRING>", compile=sql_template("struct_pack(\"A\" := 'foo')")),
        ),
    )


def _raise_where(condition: pa.Array, message: str) -> None:
    if pc.any(pc.fill_null(condition, False)).as_py():
        raise DeliberateFailure(message)


def _blow_up(values: pa.Array) -> pa.Array:
    _raise_where(pc.is_valid(values), "boom!")
    return pa.nulls(len(values), pa.string())


def _might_throw(flags: pa.Array) -> pa.Array:
    _raise_where(flags, "You asked me to throw...")
    return pc.if_else(pc.is_valid(flags), 0, pa.scalar(None, pa.int32()))


_CALLS = itertools.count()


def _every_other_null(values: pa.Array) -> pa.Array:
    # ksqlDB's BAD_UDF(STRING) keeps a counter across calls: even calls return NULL
    keep = [next(_CALLS) % 2 == 1 for _ in range(len(values))]
    return pc.if_else(pa.array(keep), values, pa.scalar(None, pa.string()))


def _lazy_check(message: str, type_: pa.DataType) -> Callable[[pa.Array, pa.Array], pa.Array]:
    """WHENCONDITION / WHENRESULT: the first argument, unless the second says this call should
    never have happened (a CASE branch evaluated eagerly)."""

    def check(value: pa.Array, should_run: pa.Array) -> pa.Array:
        _raise_where(pc.invert(should_run), message)
        return value.cast(type_)

    return check


_UDFS = (
    PythonUdf(
        name="ksqlpy_test_blow_up", params=("INTEGER",), returns="VARCHAR", fn=_blow_up, side_effects=True
    ),
    PythonUdf(
        name="ksqlpy_test_might_throw",
        params=("BOOLEAN",),
        returns="INTEGER",
        fn=_might_throw,
        side_effects=True,
    ),
    PythonUdf(
        name="ksqlpy_test_every_other_null",
        params=("VARCHAR",),
        returns="VARCHAR",
        fn=_every_other_null,
        side_effects=True,
    ),
    PythonUdf(
        name="ksqlpy_test_when_condition",
        params=("BOOLEAN", "BOOLEAN"),
        returns="BOOLEAN",
        fn=_lazy_check("When condition in case is not running lazily!", pa.bool_()),
        side_effects=True,
    ),
    PythonUdf(
        name="ksqlpy_test_when_result",
        params=("INTEGER", "BOOLEAN"),
        returns="INTEGER",
        fn=_lazy_check("Then expression in case is not running lazily!", pa.int32()),
        side_effects=True,
    ),
)


def _scalars() -> tuple[ScalarFunction, ...]:
    return (
        _test_udf(),
        ScalarFunction(
            name="bad_udf",
            description="throws exceptions when called",
            variants=(
                Variant("arg1 INT", returns="STRING", compile=sql_call("ksqlpy_test_blow_up")),
                Variant("arg BOOLEAN", returns="INT", compile=sql_call("ksqlpy_test_might_throw")),
                Variant("arg STRING", returns="STRING", compile=sql_call("ksqlpy_test_every_other_null")),
            ),
        ),
        ScalarFunction(
            name="WhenCondition",
            description="UDF used in case-expression.json",
            variants=(
                Variant(
                    "retValue BOOLEAN, shouldBeEvaluated BOOLEAN",
                    returns="BOOLEAN",
                    compile=sql_call("ksqlpy_test_when_condition"),
                ),
            ),
        ),
        ScalarFunction(
            name="WhenResult",
            description="UDF used in case-expression.json",
            variants=(
                Variant(
                    "retValue INT, shouldBeEvaluated BOOLEAN",
                    returns="INT",
                    compile=sql_call("ksqlpy_test_when_result"),
                ),
            ),
        ),
    )


# --------------------------------------------------------------------------------------------
# Table functions


def _java_text(item: str, param: str) -> str:
    """DuckDB SQL of a value as Java's ``String.valueOf`` prints it (a struct as Connect does)."""
    if param.startswith("STRUCT"):
        return f"('Struct{{A=' || struct_extract({item}, 'A') || '}}')"
    return f"CAST({item} AS VARCHAR)"


_SEVEN = ("INT", "BIGINT", "DOUBLE", "BOOLEAN", "STRING", "DECIMAL", "STRUCT<A STRING>")


def _seven_params(shape: str, first_of: str) -> Variant:
    """TEST_UDTF over seven values of every kind (or arrays / maps of them): their first
    element of each, as strings."""
    params = ", ".join(f"p{i} {shape.format(t)}" for i, t in enumerate(_SEVEN))
    items = ", ".join(_java_text(first_of.format(f"{{{i}}}"), t) for i, t in enumerate(_SEVEN))
    return Variant(params, returns="STRING", compile=sql_template(f"unnest([{items}])"))


def _single(param: str, returns: str | Callable[..., Any]) -> Variant:
    return Variant(f"value {param}", returns=returns, compile=sql_template("unnest([{0}])"))


def _throw_if_true(flags: pa.Array) -> pa.Array:
    _raise_where(flags, "You asked me to throw...")
    return pa.array([None if f is None else [f] for f in flags.to_pylist()], pa.list_(pa.bool_()))


_UDTF_UDFS = (
    PythonUdf(
        name="ksqlpy_test_throw_if_true",
        params=("BOOLEAN",),
        returns="BOOLEAN[]",
        fn=_throw_if_true,
        side_effects=True,
    ),
)


def _udtfs() -> tuple[TableFunction, ...]:
    return (
        TableFunction(
            name="test_udtf",
            description="test",
            variants=(
                _seven_params("{}", "{}"),
                _seven_params("ARRAY<{}>", "{}[1]"),
                _seven_params("MAP<STRING, {}>", "map_values({})[1]"),
                _single("INT", "INT"),
                _single("BIGINT", "BIGINT"),
                _single("DOUBLE", "DOUBLE"),
                _single("BOOLEAN", "BOOLEAN"),
                _single("STRING", "STRING"),
                _single("DECIMAL", lambda types: st.Decimal(30, 10)),
                _single("STRUCT<A STRING>", "STRUCT<A STRING>"),
            ),
        ),
        TableFunction(
            name="throwing_udtf",
            description="test UDTF that throws if param is true",
            variants=(
                Variant(
                    "shouldThrow BOOLEAN",
                    returns="BOOLEAN",
                    compile=sql_template("unnest(ksqlpy_test_throw_if_true({0}))"),
                ),
            ),
        ),
    )


# --------------------------------------------------------------------------------------------
# Registration


def register_test_functions() -> None:
    """Add the test-only functions to the process's registries; later calls do nothing."""
    global _REGISTERED
    with _LOCK:
        if _REGISTERED:
            return
        for udf in (*_UDFS, *_UDTF_UDFS):
            REGISTRY.register_udf(udf)
        for function in (*_scalars(), *_udtfs()):
            REGISTRY.register(function)
        for udaf in _udafs():
            register(udaf)
        _REGISTERED = True


def registered_names() -> Sequence[str]:
    """The names :func:`register_test_functions` adds (upper case)."""
    functions: list[ScalarFunction] = [*_scalars(), *_udtfs()]
    return (*(f.name.upper() for f in functions), *(u.name.upper() for u in _udafs()))
