"""The machinery every aggregate module shares: signatures, resolution, Java arithmetic, SQL bits.

An aggregate function is registered as a :class:`Udaf`: ksqlDB's name (as its
``@UdafDescription`` spells it, which is also how its error messages print it), a description,
and :class:`Signature` rows. A signature is a parameter list in the registry's UDF type language
(``"val INT, k INT"``), how many of its trailing parameters are literal initialisation arguments
(TOPK's ``k``, LATEST_BY_OFFSET's ``n`` and ``ignoreNulls``), and a ``build`` function making the
:class:`~ksqlpy.planner.functions.aggregate.Accumulator` for a resolved call.

Resolution follows ksqlDB's ``UdfIndex`` exactly as scalar calls do (exact types first, then
implicit numeric widening; the most specific signature wins), reusing the registry's matching
rules, so ``SUM(INT)`` picks the INT signature and ``AVG(DECIMAL)`` the DOUBLE one. An argument
that was widened is converted by the accumulator itself (:func:`coerce_value`, :func:`coerce_sql`).
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError, ExecutionError, Position
from ksqlpy.planner.functions.aggregate import NOT_CONSTANT, Accumulator, AggregateArg
from ksqlpy.planner.functions.registry import (
    REGISTRY,
    AggregateFunction,
    ArgType,
    Call,
    Param,
    Variant,
    accepts,
    arg_type_text,
    expand_params,
    parse_params,
    substitute,
)

# ksqlDB's ``ksql.functions.collect_list.limit`` / ``collect_set.limit`` default.
DEFAULT_COLLECT_LIMIT = 1000
COLLECT_LIST_LIMIT = "ksql.functions.collect_list.limit"
COLLECT_SET_LIMIT = "ksql.functions.collect_set.limit"


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolved:
    """A call matched to one signature: what ``build`` receives."""

    name: str
    #: the declared parameter type of each argument (generics bound), None when undetermined
    param_types: tuple[st.SqlType | None, ...]
    #: the actual SQL type of each argument (None for a NULL literal)
    arg_types: tuple[st.SqlType | None, ...]
    #: the literal values of the trailing initialisation arguments
    literals: tuple[Any, ...]
    #: how many leading arguments are per-row columns
    column_count: int
    #: the ``*`` of ``COUNT(*)``
    star: bool
    config: Mapping[str, Any]

    def column_type(self, i: int) -> st.SqlType:
        """The type a per-row argument is computed in (the declared type, else the actual one)."""
        chosen = self.param_types[i] or self.arg_types[i]
        # a bare NULL for a generic parameter: ksqlDB types it as STRING
        return chosen if chosen is not None else st.STRING


Builder = Callable[[Resolved], Accumulator]

# signatures are parsed on every resolution; their texts are few and fixed
_parse_params = functools.lru_cache(maxsize=None)(parse_params)

_SQL_TYPES = (st.Primitive, st.Decimal, st.Array, st.Map, st.Struct)


@dataclass(frozen=True, slots=True)
class Signature:
    """One factory of a UDAF: column parameters followed by ``literals`` literal parameters."""

    params: str
    returns: str
    build: Builder
    literals: int = 0
    description: str = ""

    @property
    def parsed(self) -> tuple[Param, ...]:
        return _parse_params(self.params)


@dataclass(frozen=True, slots=True)
class Udaf:
    name: str
    description: str
    signatures: tuple[Signature, ...]
    #: whether every signature is a ksqlDB ``TableUdaf`` (has ``undo``)
    table_udaf: bool = False


_UDAFS: dict[str, Udaf] = {}


def _not_scalar(call: Call) -> exp.Expression:
    raise AnalysisError(f"Function '{call.name}' is an aggregate function")


def register(udaf: Udaf) -> Udaf:
    """Add a UDAF to the library and to the function registry (SHOW / DESCRIBE FUNCTION)."""
    _UDAFS[udaf.name.upper()] = udaf
    REGISTRY.register(
        AggregateFunction(
            name=udaf.name,
            description=udaf.description,
            variants=tuple(
                Variant(
                    s.params,
                    returns=_returns_rule(s.returns),
                    returns_text=s.returns,
                    compile=_not_scalar,
                    description=s.description,
                )
                for s in udaf.signatures
            ),
        )
    )
    return udaf


def _returns_rule(text: str) -> Callable[[Sequence[st.SqlType | None]], st.SqlType]:
    # Aggregates compute their return type in ``build``; the registry only displays ``text``.
    def rule(types: Sequence[st.SqlType | None]) -> st.SqlType:
        raise AnalysisError(f"aggregate return type {text} is computed when the call resolves")

    return rule


def is_aggregate(name: str) -> bool:
    return name.upper() in _UDAFS


def udafs() -> tuple[Udaf, ...]:
    return tuple(_UDAFS[k] for k in sorted(_UDAFS))


# --------------------------------------------------------------------------------------------
# Resolution (ksqlDB's UdfIndex over the UDAF's factory signatures)


def _specificity(s: Signature) -> tuple[int, int]:
    params = s.parsed
    return (0 if any(p.variadic for p in params) else 1, len(params))


def resolve(
    name: str,
    args: Sequence[AggregateArg],
    *,
    pos: Position | None = None,
    config: Mapping[str, Any] | None = None,
) -> Accumulator:
    """The accumulator for a call of aggregate ``name`` (see the package docstring)."""
    udaf = _UDAFS.get(name.upper())
    if udaf is None:
        raise AnalysisError(f"Can't find any functions with the name '{name}'", pos=pos)
    star = any(a.star for a in args)
    # ksqlDB rewrites COUNT(*) (and any aggregate called with no argument) to use ROWTIME.
    types: list[ArgType] = [st.BIGINT if a.star else a.type for a in args] or [st.BIGINT]
    star = star or not args
    for allow_cast in (False, True):
        matches: list[tuple[Signature, tuple[Param, ...], dict[str, st.SqlType]]] = []
        for sig in udaf.signatures:
            params = expand_params(sig.parsed, len(types))
            if params is None:
                continue
            bindings: dict[str, st.SqlType] = {}
            if all(accepts(p.type, t, bindings, allow_cast=allow_cast) for p, t in zip(params, types)):
                matches.append((sig, params, bindings))
        if matches:
            matches.sort(key=lambda m: _specificity(m[0]))
            sig, params, bindings = matches[-1]
            return _build(udaf, sig, params, bindings, args, types, star, pos, config or {})
    raise AnalysisError(_no_match(udaf, types), pos=pos)


def _no_match(udaf: Udaf, types: Sequence[ArgType]) -> str:
    alternatives = "\n".join(
        f"{udaf.name}(" + ", ".join(str(p) for p in s.parsed) + ")" for s in udaf.signatures
    )
    return (
        f"Function '{udaf.name}' does not accept parameters "
        f"({', '.join(arg_type_text(t) for t in types)}).\n"
        f"Valid alternatives are:\n{alternatives}\n"
        "For detailed information on a function run: DESCRIBE FUNCTION <Function-Name>;"
    )


def _build(
    udaf: Udaf,
    sig: Signature,
    params: tuple[Param, ...],
    bindings: Mapping[str, st.SqlType],
    args: Sequence[AggregateArg],
    types: Sequence[ArgType],
    star: bool,
    pos: Position | None,
    config: Mapping[str, Any],
) -> Accumulator:
    column_count = len(types) - sig.literals
    literals: list[Any] = []
    for i in range(column_count, len(types)):
        constant = args[i].constant if i < len(args) else NOT_CONSTANT
        if constant is NOT_CONSTANT:
            raise AnalysisError(
                f"Parameter {i + 1} passed to function {udaf.name.upper()} must be a literal constant.",
                pos=pos,
            )
        literals.append(constant)
    resolved = Resolved(
        name=udaf.name.upper(),
        param_types=tuple(substitute(p.type, bindings) for p in params),
        arg_types=tuple(t if isinstance(t, _SQL_TYPES) else None for t in types),
        literals=tuple(literals),
        column_count=column_count,
        star=star,
        config=config,
    )
    return sig.build(resolved)


# --------------------------------------------------------------------------------------------
# Java arithmetic: ksqlDB's UDAFs compute in Java ints and longs, which wrap on overflow


def wrap(value: int, bits: int) -> int:
    """``value`` as a two's-complement integer of ``bits`` bits (Java int/long overflow)."""
    half = 1 << (bits - 1)
    return ((value + half) % (1 << bits)) - half


BITS: dict[st.BaseType, int] = {st.BaseType.INTEGER: 32, st.BaseType.BIGINT: 64}


def wrap_sql(sql: str, bits: int) -> str:
    """DuckDB SQL wrapping an integer expression to ``bits`` bits, computed in HUGEINT."""
    half, full = 1 << (bits - 1), 1 << bits
    target = "INTEGER" if bits == 32 else "BIGINT"
    return f"CAST(((CAST({sql} AS HUGEINT) + {half}) % {full} + {full}) % {full} - {half} AS {target})"


def decimal_overflow(t: st.Decimal, value: decimal.Decimal) -> None:
    """ksqlDB's DecimalSumKudaf check: the sum must stay below 10^(precision - scale)."""
    digits = t.precision - t.scale
    if value.copy_abs() >= decimal.Decimal(f"1E{digits}"):  # copy_abs: abs() would round to 28 digits
        raise ExecutionError(
            f"Numeric field overflow: A field with precision {t.precision} and scale {t.scale} "
            f"must round to an absolute value less than 10^{digits}. Got {value:f}"
        )


def decimal_overflow_sql(t: st.Decimal, sql: str) -> str:
    """DuckDB SQL of ``sql`` (a wide DECIMAL) cast to ``t``, raising ksqlDB's overflow error."""
    digits = t.precision - t.scale
    bound = "1" + "0" * digits
    return (
        f"(CASE WHEN abs({sql}) >= {bound} THEN error('Numeric field overflow: A field with "
        f"precision {t.precision} and scale {t.scale} must round to an absolute value less than "
        f"10^{digits}. Got ' || CAST({sql} AS VARCHAR)) ELSE CAST({sql} AS {st.to_duckdb(t)}) END)"
    )


# --------------------------------------------------------------------------------------------
# Widened arguments


def coerce_value(value: Any, actual: st.SqlType | None, target: st.SqlType) -> Any:
    """A per-row value of type ``actual`` as the declared parameter type ``target``."""
    if value is None or actual is None or actual == target:
        return value
    match target.base:
        case st.BaseType.DOUBLE:
            return float(value)
        case st.BaseType.BIGINT | st.BaseType.INTEGER:
            return int(value)
        case st.BaseType.DECIMAL:
            return decimal.Decimal(value)
    return value


def coerce_sql(sql: str, actual: st.SqlType | None, target: st.SqlType) -> str:
    if actual is None or actual == target:
        return f"CAST({sql} AS {st.to_duckdb(target)})" if actual is None else sql
    return f"CAST({sql} AS {st.to_duckdb(target)})"


def struct_type(**fields: st.SqlType) -> st.Struct:
    return st.Struct(tuple(st.Field(n, t) for n, t in fields.items()))


def sql_literal_struct(**fields: str) -> str:
    return "struct_pack(" + ", ".join(f'"{n}" := {v}' for n, v in fields.items()) + ")"


def field_sql(struct_sql: str, name: str) -> str:
    return f"struct_extract({struct_sql}, '{name}')"


def typed_null(t: st.SqlType) -> str:
    return f"CAST(NULL AS {st.to_duckdb(t)})"


def int_literal(resolved: Resolved, index: int, what: str) -> int:
    """A literal INT initialisation argument (TOPK's k, LATEST_BY_OFFSET's n)."""
    value = resolved.literals[index]
    if not isinstance(value, int) or isinstance(value, bool):
        raise AnalysisError(f"{resolved.name}: {what} must be an INT literal, got {value!r}")
    return value
