"""The function registry: what every ksqlDB function is, how it type-checks and how it compiles.

A function is registered once, as data, and the registry serves three clients:

* ``SHOW FUNCTIONS`` / ``DESCRIBE FUNCTION`` read names, categories, descriptions and each
  variant's parameters and return type (:meth:`FunctionRegistry.functions`, :meth:`get`);
* the expression compiler (``ksqlpy/planner/expressions``) resolves a call against the variants
  (:meth:`FunctionRegistry.resolve`), exactly as ksqlDB's ``UdfIndex`` does: exact types first,
  then with implicit widening (INTEGER -> BIGINT -> DECIMAL -> DOUBLE); generics (``T``) must bind
  to one type; NULL arguments match any parameter; the most specific variant wins (non-variadic
  over variadic, more parameters, fewer generics) and a tie is ambiguous;
* the runtime calls :func:`register_udfs` once per DuckDB connection to install the Python
  vectorized UDFs and SQL macros for functions DuckDB lacks.

Parameter and return types are written as text, in ksqlDB's UDF type language::

    BOOLEAN INT BIGINT DOUBLE DECIMAL STRING|VARCHAR BYTES DATE TIME TIMESTAMP
    ARRAY<T>  MAP<K, V>  STRUCT (any struct)  STRUCT<A INT, B STRING>  ANY  INTERVALUNIT
    LAMBDA<(T) => BOOLEAN>  LAMBDA<(A, T) => A>
    T U K V A B ...        (a single upper-case letter, optionally followed by digits, is a generic)

``DECIMAL`` in a parameter accepts any precision and scale. A parameter written ``T...`` (or
``values STRING...``) is variadic; one variadic parameter is allowed, anywhere in the list.

Example: a complete registration (the compile rule receives compiled, typed arguments and returns
a sqlglot expression; the return rule is a type text over the bound generics, or a function)::

    from ksqlpy import sqltypes as st
    from ksqlpy.planner.functions.registry import (
        Category, PythonUdf, REGISTRY, ScalarFunction, Variant, sql_call, sql_template,
    )

    REGISTRY.register(ScalarFunction(
        name="LCASE",
        category=Category.STRING,
        description="Converts a string to lower case.",
        variants=(
            Variant("input STRING", returns="STRING", compile=sql_call("lower")),
        ),
    ))

    REGISTRY.register(ScalarFunction(
        name="ARRAY_LENGTH",
        category=Category.ARRAY,
        description="Returns the number of elements in an array.",
        variants=(
            Variant("array ARRAY<T>", returns="INT",
                    compile=sql_template("CAST(len({0}) AS INTEGER)")),
        ),
    ))

    # A return type computed from the argument types (e.g. DECIMAL scale rules):
    Variant("value DECIMAL", returns=lambda types: st.Decimal(types[0].precision, 0), ...)

    # A function DuckDB lacks: a vectorized UDF over Arrow arrays, called from the compile rule.
    REGISTRY.register_udf(PythonUdf(
        name="ksql_reverse_words", params=("VARCHAR",), returns="VARCHAR", fn=my_arrow_fn,
    ))
    Variant("input STRING", returns="STRING", compile=sql_call("ksql_reverse_words"))

Names are case-insensitive; the name is kept as registered for display and error messages
(ksqlDB prints e.g. ``Function 'least' does not accept parameters (STRING, INTEGER).``).
Aggregate and table functions are separate kinds (:class:`FunctionKind`); only scalar functions
resolve and compile through this module today.
"""

from __future__ import annotations

import enum
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError, Position

# --------------------------------------------------------------------------------------------
# Parameter types: ksqlDB's UDF type language (io.confluent.ksql.function.types)


@dataclass(frozen=True, slots=True)
class BaseParam:
    """A primitive parameter type; ``DECIMAL`` accepts any precision and scale."""

    base: st.BaseType

    def __str__(self) -> str:
        return _PARAM_NAMES[self.base]


@dataclass(frozen=True, slots=True)
class GenericParam:
    """A generic type variable (``T``); every use in one call binds to the same SQL type."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ArrayParam:
    element: ParamType

    def __str__(self) -> str:
        return f"ARRAY<{self.element}>"


@dataclass(frozen=True, slots=True)
class MapParam:
    key: ParamType
    value: ParamType

    def __str__(self) -> str:
        return f"MAP<{self.key}, {self.value}>"


@dataclass(frozen=True, slots=True)
class StructParam:
    """A struct with exactly these fields; no fields accepts any struct."""

    fields: tuple[tuple[str, ParamType], ...] = ()

    def __str__(self) -> str:
        return "STRUCT<" + ", ".join(f"{n} {t}" for n, t in self.fields) + ">"


@dataclass(frozen=True, slots=True)
class LambdaParam:
    inputs: tuple[ParamType, ...]
    result: ParamType

    def __str__(self) -> str:
        return "LAMBDA (" + ", ".join(str(t) for t in self.inputs) + f") => {self.result}"


@dataclass(frozen=True, slots=True)
class AnyParam:
    """Any argument at all (ksqlDB's ``ANY``)."""

    def __str__(self) -> str:
        return "ANY"


@dataclass(frozen=True, slots=True)
class IntervalUnitParam:
    """A bare time unit such as ``SECONDS`` (``TIMESTAMPADD(SECONDS, 5, ts)``)."""

    def __str__(self) -> str:
        return "INTERVAL UNIT"


ParamType: TypeAlias = (
    BaseParam | GenericParam | ArrayParam | MapParam | StructParam | LambdaParam | AnyParam | IntervalUnitParam
)

# ksqlDB prints parameter types with its Java-side names (INT, VARCHAR) in DESCRIBE FUNCTION.
_PARAM_NAMES: dict[st.BaseType, str] = {
    st.BaseType.BOOLEAN: "BOOLEAN",
    st.BaseType.INTEGER: "INT",
    st.BaseType.BIGINT: "BIGINT",
    st.BaseType.DOUBLE: "DOUBLE",
    st.BaseType.DECIMAL: "DECIMAL",
    st.BaseType.STRING: "VARCHAR",
    st.BaseType.BYTES: "BYTES",
    st.BaseType.DATE: "DATE",
    st.BaseType.TIME: "TIME",
    st.BaseType.TIMESTAMP: "TIMESTAMP",
}

_BASE_WORDS: dict[str, st.BaseType] = {
    "BOOLEAN": st.BaseType.BOOLEAN,
    "INT": st.BaseType.INTEGER,
    "INTEGER": st.BaseType.INTEGER,
    "BIGINT": st.BaseType.BIGINT,
    "DOUBLE": st.BaseType.DOUBLE,
    "DECIMAL": st.BaseType.DECIMAL,
    "STRING": st.BaseType.STRING,
    "VARCHAR": st.BaseType.STRING,
    "BYTES": st.BaseType.BYTES,
    "DATE": st.BaseType.DATE,
    "TIME": st.BaseType.TIME,
    "TIMESTAMP": st.BaseType.TIMESTAMP,
}

_TOKEN = re.compile(r"\s*(=>|\.\.\.|[A-Za-z_][A-Za-z_0-9]*|\d+|[<>(),])")
_GENERIC = re.compile(r"[A-Z][0-9]*")


class _TypeText:
    """A small recursive-descent reader for the type language above."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _TOKEN.findall(text)
        if "".join(self.tokens) != re.sub(r"\s+", "", text):
            raise ValueError(f"bad type text: {text!r}")
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok.upper() != expected):
            raise ValueError(f"bad type text {self.text!r}: expected {expected or 'more'} at {tok!r}")
        self.i += 1
        return tok

    def type(self) -> ParamType:
        word = self.take().upper()
        match word:
            case "ARRAY":
                self.take("<")
                element = self.type()
                self.take(">")
                return ArrayParam(element)
            case "MAP":
                self.take("<")
                key = self.type()
                self.take(",")
                value = self.type()
                self.take(">")
                return MapParam(key, value)
            case "STRUCT":
                if self.peek() != "<":
                    return StructParam()
                self.take("<")
                fields: list[tuple[str, ParamType]] = []
                while self.peek() != ">":
                    name = self.take()
                    fields.append((name, self.type()))
                    if self.peek() == ",":
                        self.take(",")
                self.take(">")
                return StructParam(tuple(fields))
            case "LAMBDA":
                self.take("<")
                self.take("(")
                inputs: list[ParamType] = []
                while self.peek() != ")":
                    inputs.append(self.type())
                    if self.peek() == ",":
                        self.take(",")
                self.take(")")
                self.take("=>")
                result = self.type()
                self.take(">")
                return LambdaParam(tuple(inputs), result)
            case "ANY":
                return AnyParam()
            case "INTERVALUNIT":
                return IntervalUnitParam()
            case _ if word in _BASE_WORDS:
                if word == "DECIMAL" and self.peek() == "(":  # precision is not part of a UDF type
                    while self.take() != ")":
                        pass
                return BaseParam(_BASE_WORDS[word])
            case _ if _GENERIC.fullmatch(word):
                return GenericParam(word)
        raise ValueError(f"bad type text {self.text!r}: unknown type {word!r}")


def parse_param_type(text: str) -> ParamType:
    """Read one type of the UDF type language, e.g. ``ARRAY<T>`` or ``LAMBDA<(K, V) => BOOLEAN>``."""
    reader = _TypeText(text)
    result = reader.type()
    if reader.peek() is not None:
        raise ValueError(f"bad type text {text!r}: trailing {reader.peek()!r}")
    return result


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: ParamType
    variadic: bool = False
    description: str = ""

    def __str__(self) -> str:
        return f"{self.type}{'...' if self.variadic else ''} {self.name}".rstrip()


def parse_params(text: str) -> tuple[Param, ...]:
    """Read a parameter list: ``"str STRING, start INT, values T..."``; empty text is no params."""
    reader = _TypeText(text)
    params: list[Param] = []
    while reader.peek() is not None:
        name = reader.take()
        ptype = reader.type()
        variadic = reader.peek() == "..."
        if variadic:
            reader.take("...")
        params.append(Param(name, ptype, variadic))
        if reader.peek() is not None:
            reader.take(",")
    if sum(p.variadic for p in params) > 1:
        raise ValueError(f"more than one variadic parameter in {text!r}")
    return tuple(params)


# --------------------------------------------------------------------------------------------
# Compiled arguments, calls and rules


class _NoValue(enum.Enum):
    NO_VALUE = enum.auto()


NO_VALUE = _NoValue.NO_VALUE


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled expression: DuckDB SQL as a sqlglot tree, and its ksqlDB type.

    ``type`` is None for an untyped NULL literal and for an interval unit (then ``unit`` holds the
    unit as written, e.g. ``SECONDS``). ``value`` is the Python value of a constant literal
    argument (useful for format patterns that must be translated at compile time), else NO_VALUE.
    """

    sql: exp.Expression
    type: st.SqlType | None
    value: Any = NO_VALUE
    unit: str | None = None

    @property
    def is_constant(self) -> bool:
        return self.value is not NO_VALUE


# Key of a compiled lambda's ``exp.Lambda.meta``: a boolean over its parameters, true where the
# Java ksqlDB generates for its body would throw (a NULL unboxed by arithmetic). A lambda function
# whose lambda throws for any element is NULL, as ksqlDB's failed evaluation is.
LAMBDA_THROWS = "ksqlpy_throws"


@dataclass(frozen=True, slots=True)
class Call:
    """What a compile rule receives: the call's arguments, compiled and typed, and its result type.

    Arguments bound to a concrete parameter type (``INT``, ``DOUBLE``, ...) have already been cast
    to it when they needed widening, so rules can rely on the declared parameter types.
    """

    name: str
    args: tuple[Compiled, ...]
    return_type: st.SqlType
    bindings: Mapping[str, st.SqlType]

    @property
    def sql(self) -> tuple[exp.Expression, ...]:
        return tuple(a.sql for a in self.args)


CompileRule: TypeAlias = Callable[[Call], exp.Expression]
ReturnRule: TypeAlias = Callable[[Sequence[st.SqlType | None]], st.SqlType]


def sql_call(duckdb_name: str) -> CompileRule:
    """A rule that calls a DuckDB function with the arguments unchanged: ``name(a0, a1, ...)``."""

    def compile_call(call: Call) -> exp.Expression:
        return exp.Anonymous(this=duckdb_name, expressions=list(call.sql))

    return compile_call


_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def sql_template(template: str) -> CompileRule:
    """A rule from DuckDB SQL text where ``{0}``, ``{1}`` stand for the arguments.

    ``{*}`` stands for all arguments, comma separated (for variadic functions). The template is
    parsed once, at registration; each argument is substituted as a tree, never as text.
    """
    text = _PLACEHOLDER.sub(lambda m: f"__ksqlpy_arg_{m.group(1)}", template)
    text = text.replace("{*}", "__ksqlpy_args")
    tree = sqlglot.parse_one(text, read="duckdb")

    def compile_template(call: Call) -> exp.Expression:
        def substitute(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column) and not node.table:
                name = node.name
                if name.startswith("__ksqlpy_arg_"):
                    return call.args[int(name.removeprefix("__ksqlpy_arg_"))].sql.copy()
            return node

        result = tree.copy().transform(substitute)
        if "{*}" in template:
            for node in list(result.find_all(exp.Column)):
                if node.name == "__ksqlpy_args" and isinstance(node.parent, exp.Func):
                    parent = node.parent
                    args = [a.sql.copy() for a in call.args]
                    key = node.arg_key
                    assert key is not None  # a node with a parent hangs under one of its args
                    parent.set(key, args if isinstance(parent.args.get(key), list) else args[0])
        return result

    return compile_template


class Category(enum.Enum):
    """ksqlDB's function categories, as SHOW FUNCTIONS prints them."""

    STRING = "STRING"
    MATHEMATICAL = "MATHEMATICAL"
    DATE_TIME = "DATE / TIME"
    JSON = "JSON"
    ARRAY = "ARRAY"
    MAP = "MAP"
    STRUCT = "STRUCT"
    CONVERSIONS = "CONVERSIONS"
    CONDITIONAL = "CONDITIONAL"
    LAMBDA = "LAMBDA"
    URL = "URL"
    REGULAR_EXPRESSION = "REGULAR EXPRESSION"
    AGGREGATE = "AGGREGATE"
    TABLE = "TABLE"
    OTHER = "OTHER"


class FunctionKind(enum.Enum):
    SCALAR = "SCALAR"
    AGGREGATE = "AGGREGATE"
    TABLE = "TABLE"


@dataclass(frozen=True, slots=True, init=False)
class Variant:
    """One signature of a function: parameters, a return rule, a compile rule.

    ``params`` is parameter-list text (``"str STRING, len INT"``) or a tuple of :class:`Param`.
    ``returns`` is type text over the generics (``"ARRAY<T>"``, ``"BIGINT"``) or a function of the
    argument types (None for NULL arguments) when the result depends on them (DECIMAL scales).
    """

    params: tuple[Param, ...]
    returns: ParamType | ReturnRule
    compile: CompileRule
    description: str
    returns_text: str

    def __init__(
        self,
        params: str | Sequence[Param],
        *,
        returns: str | ReturnRule,
        compile: CompileRule,
        description: str = "",
        returns_text: str | None = None,
    ) -> None:
        parsed = parse_params(params) if isinstance(params, str) else tuple(params)
        rule = parse_param_type(returns) if isinstance(returns, str) else returns
        shown = returns_text or (str(rule) if isinstance(returns, str) else "")
        object.__setattr__(self, "params", parsed)
        object.__setattr__(self, "returns", rule)
        object.__setattr__(self, "compile", compile)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "returns_text", shown)

    @property
    def variadic(self) -> bool:
        return any(p.variadic for p in self.params)

    @property
    def generic_count(self) -> int:
        return sum(_has_generics(p.type) for p in self.params)

    def signature_text(self, name: str) -> str:
        """The variant as ksqlDB lists it in errors: ``explode(ARRAY<T> list)``."""
        return f"{name}(" + ", ".join(str(p) for p in self.params) + ")"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScalarFunction:
    name: str
    description: str
    variants: tuple[Variant, ...]
    category: Category = Category.OTHER
    author: str = "Confluent"
    version: str = ""

    @property
    def kind(self) -> FunctionKind:
        return FunctionKind.SCALAR


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateFunction:
    """Reserved for aggregate functions; their resolution and compilation come with GROUP BY."""

    name: str
    description: str
    variants: tuple[Variant, ...] = ()
    category: Category = Category.AGGREGATE
    author: str = "Confluent"
    version: str = ""

    @property
    def kind(self) -> FunctionKind:
        return FunctionKind.AGGREGATE


@dataclass(frozen=True, slots=True, kw_only=True)
class TableFunction(ScalarFunction):
    """A table function (UDTF): resolved like a scalar function, but each call yields any number
    of output rows per input row. Its compile rule returns a DuckDB ``unnest(list)``, so a select
    list with several table functions zips them, the shorter padded with NULLs, as ksqlDB does."""

    category: Category = Category.TABLE

    @property
    def kind(self) -> FunctionKind:
        return FunctionKind.TABLE


Function: TypeAlias = ScalarFunction | AggregateFunction


# --------------------------------------------------------------------------------------------
# Resolution: ksqlDB's UdfIndex rules


@dataclass(frozen=True, slots=True)
class LambdaArg:
    """A lambda argument before its body is typed: only its arity is known."""

    arity: int


@dataclass(frozen=True, slots=True)
class UnitArg:
    """An interval-unit argument (``SECONDS``)."""

    unit: str


ArgType: TypeAlias = st.SqlType | None | LambdaArg | UnitArg


def arg_type_text(arg: ArgType) -> str:
    match arg:
        case None:
            return "null"
        case LambdaArg(arity=n):
            return "LAMBDA"  # ksqlDB prints the lambda's shape; arity is the only thing known here
        case UnitArg():
            return "INTERVAL UNIT"
        case _:
            return str(arg)


def _has_generics(p: ParamType) -> bool:
    match p:
        case GenericParam():
            return True
        case ArrayParam(element=e):
            return _has_generics(e)
        case MapParam(key=k, value=v):
            return _has_generics(k) or _has_generics(v)
        case StructParam(fields=fs):
            return any(_has_generics(t) for _, t in fs)
        case LambdaParam(inputs=ins, result=r):
            return any(_has_generics(t) for t in ins) or _has_generics(r)
    return False


def _base_rank_ok(actual: st.SqlType, declared: st.BaseType, allow_cast: bool) -> bool:
    if actual.base == declared:
        return True
    return allow_cast and st.is_numeric(actual) and declared in _WIDER[actual.base]


_WIDER: dict[st.BaseType, frozenset[st.BaseType]] = {
    st.BaseType.INTEGER: frozenset({st.BaseType.BIGINT, st.BaseType.DECIMAL, st.BaseType.DOUBLE}),
    st.BaseType.BIGINT: frozenset({st.BaseType.DECIMAL, st.BaseType.DOUBLE}),
    st.BaseType.DECIMAL: frozenset({st.BaseType.DOUBLE}),
    st.BaseType.DOUBLE: frozenset(),
}


def bind_generics(declared: ParamType, actual: st.SqlType, bindings: dict[str, st.SqlType]) -> bool:
    """Bind the generics of ``declared`` from ``actual``; False on a shape mismatch or conflict."""
    match declared, actual:
        case GenericParam(name=n), _:
            old = bindings.setdefault(n, actual)
            return old == actual
        case ArrayParam(element=e), st.Array(element=ae):
            return bind_generics(e, ae, bindings)
        case MapParam(key=k, value=v), st.Map(key=ak, value=av):
            return bind_generics(k, ak, bindings) and bind_generics(v, av, bindings)
        case _ if _has_generics(declared):
            return False  # a different shape (e.g. MAP<K, V> given an ARRAY) binds nothing
        case _:
            return accepts(declared, actual, bindings, allow_cast=False)


def accepts(declared: ParamType, actual: ArgType, bindings: dict[str, st.SqlType], *, allow_cast: bool) -> bool:
    """Whether an argument of type ``actual`` may be passed for ``declared`` (binding generics)."""
    match declared, actual:
        case AnyParam(), _:
            return True
        case _, None:
            return True
        case IntervalUnitParam(), UnitArg():
            return True
        case _, UnitArg():
            return False
        case IntervalUnitParam(), _:
            return False
        case LambdaParam(inputs=ins), LambdaArg(arity=n):
            return len(ins) == n
        case _, LambdaArg():
            return False
        case LambdaParam(), _:
            return False
        case _ if _has_generics(declared):
            assert not isinstance(actual, LambdaArg | UnitArg) and actual is not None
            return bind_generics(declared, actual, bindings)
        case ArrayParam(element=e), st.Array(element=ae):
            return accepts(e, ae, bindings, allow_cast=allow_cast)
        case MapParam(key=k, value=v), st.Map(key=ak, value=av):
            return accepts(k, ak, bindings, allow_cast=allow_cast) and accepts(
                v, av, bindings, allow_cast=allow_cast
            )
        case StructParam(fields=fs), st.Struct(fields=afs):
            if not fs:
                return True
            return len(fs) == len(afs) and all(
                (f := actual.field(n)) is not None and accepts(t, f.type, bindings, allow_cast=False)
                for n, t in fs
            )
        case BaseParam(base=b), (st.Primitive() | st.Decimal()):
            return _base_rank_ok(actual, b, allow_cast)
    return False


def substitute(p: ParamType, bindings: Mapping[str, st.SqlType]) -> st.SqlType | None:
    """The SQL type ``p`` denotes under ``bindings``; None when it is not fully determined."""
    match p:
        case GenericParam(name=n):
            return bindings.get(n)
        case ArrayParam(element=e):
            inner = substitute(e, bindings)
            return None if inner is None else st.Array(inner)
        case MapParam(key=k, value=v):
            sk, sv = substitute(k, bindings), substitute(v, bindings)
            return None if sk is None or sv is None else st.Map(sk, sv)
        case StructParam(fields=fs) if fs:
            typed = [(n, substitute(t, bindings)) for n, t in fs]
            if any(t is None for _, t in typed):
                return None
            return st.Struct(tuple(st.Field(n, t) for n, t in typed if t is not None))
        case BaseParam(base=b) if b != st.BaseType.DECIMAL:
            return st.Primitive(b)
    return None


def expand_params(params: Sequence[Param], count: int) -> tuple[Param, ...] | None:
    """The parameter for each of ``count`` arguments, expanding the variadic one; None if no fit."""
    fixed = [p for p in params if not p.variadic]
    if not any(p.variadic for p in params):
        return tuple(params) if count == len(params) else None
    if count < len(fixed):
        return None
    out: list[Param] = []
    for p in params:
        out.extend([p] * (count - len(fixed)) if p.variadic else [p])
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Resolution:
    """The variant a call resolved to, with generics bound from its non-lambda arguments.

    For lambda arguments the compiler asks :meth:`lambda_inputs` for the parameter types, types
    the body, then calls :meth:`with_lambda_result` before :meth:`return_type`.
    """

    function: ScalarFunction
    variant: Variant
    params: tuple[Param, ...]  # one per argument, variadics expanded
    bindings: Mapping[str, st.SqlType]

    def lambda_inputs(self, index: int) -> tuple[st.SqlType, ...] | None:
        declared = self.params[index].type
        assert isinstance(declared, LambdaParam)
        types = [substitute(t, self.bindings) for t in declared.inputs]
        if any(t is None for t in types):
            return None
        return tuple(t for t in types if t is not None)

    def with_lambda_result(self, index: int, body: st.SqlType) -> Resolution | None:
        declared = self.params[index].type
        assert isinstance(declared, LambdaParam)
        bindings = dict(self.bindings)
        if not accepts(declared.result, body, bindings, allow_cast=True):
            return None
        return Resolution(self.function, self.variant, self.params, bindings)

    def param_type(self, index: int) -> st.SqlType | None:
        """The concrete SQL type the argument is declared as, when fully determined."""
        return substitute(self.params[index].type, self.bindings)

    def return_type(self, arg_types: Sequence[st.SqlType | None]) -> st.SqlType:
        rule = self.variant.returns
        if callable(rule):
            return rule(arg_types)
        result = substitute(rule, self.bindings)
        if result is None:
            raise AnalysisError(
                f"Cannot infer the return type of {self.function.name}: "
                f"{rule} is not bound by the arguments ({', '.join(arg_type_text(t) for t in arg_types)})."
            )
        return result


def _specificity(v: Variant) -> tuple[int, int, int, int]:
    """ksqlDB's ranking of matching variants: higher wins; equal top ranks are ambiguous."""
    first_variadic = next((i for i, p in enumerate(v.params) if p.variadic), -1)
    return (0 if v.variadic else 1, len(v.params), -v.generic_count, first_variadic)


class FunctionRegistry:
    """All functions by upper-case name, plus the DuckDB UDFs and macros they rely on."""

    def __init__(self) -> None:
        self._functions: dict[str, Function] = {}
        self._udfs: dict[str, PythonUdf | SqlMacro] = {}
        #: the UDF names installed on each connection, so a later call installs only what was
        #: registered since (the runtime's one evaluation database outlives registrations)
        self._installed: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, set[str]] = (
            weakref.WeakKeyDictionary()
        )

    # ---- registration

    def register(self, function: Function) -> Function:
        """Add a function; a second registration of a name adds its variants to the first."""
        key = function.name.upper()
        existing = self._functions.get(key)
        if existing is not None:
            if existing.kind != function.kind:
                raise ValueError(f"{function.name} is already a {existing.kind.value} function")
            merged = type(existing)(
                name=existing.name,
                description=existing.description,
                category=existing.category,
                variants=existing.variants + function.variants,
            )
            self._functions[key] = merged
            return merged
        self._functions[key] = function
        return function

    def register_udf(self, udf: PythonUdf | SqlMacro) -> None:
        """Add a DuckDB-level helper installed by :meth:`install`; names must be unique."""
        if udf.name in self._udfs and self._udfs[udf.name] != udf:
            raise ValueError(f"a different DuckDB UDF named {udf.name} is already registered")
        self._udfs[udf.name] = udf

    # ---- lookup

    def get(self, name: str) -> Function | None:
        return self._functions.get(name.upper())

    def functions(self) -> tuple[Function, ...]:
        """Every function, sorted by name (as SHOW FUNCTIONS lists them)."""
        return tuple(sorted(self._functions.values(), key=lambda f: f.name.upper()))

    def is_table_function(self, name: str) -> bool:
        fn = self.get(name)
        return fn is not None and fn.kind == FunctionKind.TABLE

    def is_aggregate(self, name: str) -> bool:
        fn = self.get(name)
        return fn is not None and fn.kind == FunctionKind.AGGREGATE

    def resolve(self, name: str, args: Sequence[ArgType], *, pos: Position | None = None) -> Resolution:
        """Choose the variant of scalar function ``name`` for arguments of these types.

        Raises AnalysisError with ksqlDB's wording when the name is unknown, when no variant
        accepts the arguments, or when several accept them equally well.
        """
        fn = self.get(name)
        if fn is None:
            raise AnalysisError(f"Can't find any functions with the name '{name}'", pos=pos)
        if not isinstance(fn, ScalarFunction):
            raise AnalysisError(f"Function '{fn.name}' is an aggregate function", pos=pos)
        for allow_cast in (False, True):
            matches: list[Resolution] = []
            for variant in fn.variants:
                params = expand_params(variant.params, len(args))
                if params is None:
                    continue
                bindings: dict[str, st.SqlType] = {}
                if all(accepts(p.type, a, bindings, allow_cast=allow_cast) for p, a in zip(params, args)):
                    matches.append(Resolution(fn, variant, params, bindings))
            if matches:
                matches.sort(key=lambda r: _specificity(r.variant))
                if len(matches) > 1 and _specificity(matches[-1].variant) == _specificity(matches[-2].variant):
                    raise AnalysisError(_ambiguous_message(fn, args), pos=pos)
                return matches[-1]
        raise AnalysisError(_no_match_message(fn, args), pos=pos)

    # ---- DuckDB installation

    def install(self, con: duckdb.DuckDBPyConnection) -> None:
        """Install every registered UDF and macro on ``con`` that is not installed there yet."""
        installed = self._installed.setdefault(con, set())
        if len(installed) == len(self._udfs):
            return
        for name, udf in list(self._udfs.items()):
            if name not in installed:
                udf.install(con)
                installed.add(name)


def _args_text(args: Sequence[ArgType]) -> str:
    return "(" + ", ".join(arg_type_text(a) for a in args) + ")"


def _alternatives(fn: ScalarFunction) -> str:
    return "\n".join(v.signature_text(fn.name) for v in fn.variants)


_DESCRIBE_HINT = "For detailed information on a function run: DESCRIBE FUNCTION <Function-Name>;"


def _no_match_message(fn: ScalarFunction, args: Sequence[ArgType]) -> str:
    return (
        f"Function '{fn.name}' does not accept parameters {_args_text(args)}.\n"
        f"Valid alternatives are:\n{_alternatives(fn)}\n{_DESCRIBE_HINT}"
    )


def _ambiguous_message(fn: ScalarFunction, args: Sequence[ArgType]) -> str:
    return (
        f"Function '{fn.name}' cannot be resolved due to ambiguous method parameters {_args_text(args)}.\n"
        "Use CAST() to explicitly cast your parameters to one of the supported function calls.\n"
        f"Valid function calls are:\n{_alternatives(fn)}\n{_DESCRIBE_HINT}"
    )


# --------------------------------------------------------------------------------------------
# DuckDB-level helpers: Python vectorized UDFs and SQL macros


@dataclass(frozen=True, slots=True, kw_only=True)
class PythonUdf:
    """A vectorized Python function installed on DuckDB connections.

    ``fn`` takes one ``pyarrow.Array`` per parameter and returns a ``pyarrow.Array`` of the same
    length (DuckDB's ``type='arrow'`` UDFs). ``params`` and ``returns`` are DuckDB type names
    (``VARCHAR``, ``BIGINT``, ``DECIMAL(38, 10)``, ``VARCHAR[]``). With ``null_handling="special"``
    the function sees NULLs; with ``"default"`` DuckDB returns NULL for any NULL argument.
    Prefer Arrow compute kernels (``pyarrow.compute``) inside ``fn``; avoid per-row Python.
    """

    name: str
    params: tuple[str, ...]
    returns: str
    fn: Callable[..., pa.Array | pa.ChunkedArray]
    null_handling: Literal["default", "special"] = "default"
    side_effects: bool = False

    def install(self, con: duckdb.DuckDBPyConnection) -> None:
        # DuckDB takes the UDF type and NULL handling as strings too (its documented form); the
        # stubs list only the enums, which moved between releases (duckdb.functional -> duckdb.func).
        # The types come from ``con``: the module's ``duckdb.sqltype`` opens DuckDB's default
        # in-memory database (~6 MiB and a thread pool) for nothing else.
        con.create_function(  # type: ignore[call-overload]
            self.name,
            self.fn,
            [con.sqltype(p) for p in self.params],
            con.sqltype(self.returns),
            type="arrow",
            null_handling=self.null_handling,
            side_effects=self.side_effects,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlMacro:
    """A DuckDB SQL macro: ``CREATE MACRO name(params) AS body`` (scalar; types are generic)."""

    name: str
    params: tuple[str, ...]
    body: str

    def install(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"CREATE OR REPLACE TEMP MACRO {self.name}({', '.join(self.params)}) AS {self.body}")


# The process-wide registry. Function modules register into it when ksqlpy.planner.functions is
# imported.
REGISTRY = FunctionRegistry()


def register_udfs(con: duckdb.DuckDBPyConnection) -> None:
    """Install all Python UDFs and macros on ``con`` (idempotent per connection)."""
    REGISTRY.install(con)
