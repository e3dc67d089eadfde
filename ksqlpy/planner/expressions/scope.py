"""Name resolution for expressions: which DuckDB column a ksqlDB column reference denotes.

The analyzer builds a :class:`Scope` from a query's sources (including the pseudo columns
ROWTIME BIGINT, ROWPARTITION INTEGER, ROWOFFSET BIGINT, which are ordinary columns here); the
compiler asks it to resolve each :class:`~ksqlpy.parser.ast.ColumnRef`. Lambda parameters shadow
columns through :meth:`Scope.with_lambda`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlglot import exp

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError
from ksqlpy.parser import ast


@dataclass(frozen=True, slots=True)
class Resolved:
    """A resolved name: the DuckDB expression that reads it and its ksqlDB type."""

    sql: exp.Expression
    type: st.SqlType


class Scope(Protocol):
    """Anything that resolves column references: the analyzer's own scopes implement this."""

    def resolve(self, ref: ast.ColumnRef) -> Resolved: ...


#: Ends a DuckDB column name that is not its ksqlDB name as is (see :func:`duckdb_name`).
NAME_MARK = "~"


def duckdb_name(name: str) -> str:
    """The DuckDB column name of the ksqlDB column ``name``.

    ksqlDB names are case-sensitive once stored (`` `pageid` `` and ``PAGEID`` are two
    columns); DuckDB's are not, even quoted, and it folds ASCII letters only. A name without
    ASCII lower-case letters (every unquoted ksqlDB name) is itself; any other gets ``~`` and
    the hex bitmask of its lower-case positions appended, so names that differ only in case
    stay apart in DuckDB (a name holding ``~`` gets the suffix too, so no two names ever
    meet). The name stays in front, readable in plans and errors; :func:`ksql_name` drops
    the suffix."""
    if NAME_MARK not in name and not any("a" <= ch <= "z" for ch in name):
        return name
    mask = sum(1 << i for i, ch in enumerate(name) if "a" <= ch <= "z")
    return f"{name}{NAME_MARK}{mask:x}"


def ksql_name(name: str) -> str:
    """The ksqlDB column name of a DuckDB column name made by :func:`duckdb_name`."""
    head, mark, _ = name.rpartition(NAME_MARK)
    return head if mark else name


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def struct_field_names(names: Sequence[str]) -> tuple[str, ...]:
    """The DuckDB field names of a struct whose ksqlDB field names are ``names``.

    DuckDB refuses a struct whose field names differ only in case (``STRUCT(FOO := 1, `foo`
    := 2)`` is a ksqlDB struct of two fields): such a struct's fields take their
    :func:`duckdb_name`; any other struct's fields keep their names."""
    folded = {n.translate(_ASCII_LOWER) for n in names}
    if len(folded) == len(names):
        return tuple(names)
    return tuple(duckdb_name(n) for n in names)


def struct_field_name(struct: st.Struct, name: str) -> str:
    """The DuckDB name of the field ``name`` of ``struct`` (see :func:`struct_field_names`)."""
    names = [f.name for f in struct.fields]
    return struct_field_names(names)[names.index(name)]


def duckdb_column(name: str, table: str | None = None) -> exp.Column:
    """A quoted DuckDB reference to the ksqlDB column ``name`` (see :func:`duckdb_name`)."""
    return exp.Column(
        this=exp.to_identifier(duckdb_name(name), quoted=True),
        table=exp.to_identifier(table, quoted=True) if table is not None else None,
    )


@dataclass(frozen=True, slots=True)
class ScopeColumn:
    """A column visible to expressions, optionally belonging to a named source (or alias)."""

    name: str
    type: st.SqlType
    source: str | None = None
    sql: exp.Expression | None = None  # defaults to the quoted column name itself

    def expression(self) -> exp.Expression:
        return self.sql.copy() if self.sql is not None else duckdb_column(self.name)


def unresolved_column(ref: ast.ColumnRef, clause: str | None = None) -> AnalysisError:
    """ksqlDB's wording: ``Column 'X' cannot be resolved.`` or ``SELECT column 'S.X' cannot ...``."""
    name = f"{ref.source}.{ref.name}" if ref.source else ref.name
    prefix = f"{clause} column" if clause else "Column"
    return AnalysisError(f"{prefix} '{name}' cannot be resolved.", pos=ref.pos)


@dataclass(frozen=True, slots=True)
class ColumnScope:
    """A scope over a flat list of columns; ``clause`` names the clause in error messages."""

    columns: tuple[ScopeColumn, ...]
    clause: str | None = None
    _by_name: Mapping[tuple[str | None, str], ScopeColumn] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str | None, str], ScopeColumn] = {}
        for col in self.columns:
            index.setdefault((None, col.name), col)
            if col.source is not None:
                index[(col.source, col.name)] = col
        object.__setattr__(self, "_by_name", index)

    @classmethod
    def of(cls, columns: Mapping[str, st.SqlType] | Iterable[ScopeColumn], clause: str | None = None) -> ColumnScope:
        if isinstance(columns, Mapping):
            return cls(tuple(ScopeColumn(n, t) for n, t in columns.items()), clause)
        return cls(tuple(columns), clause)

    def resolve(self, ref: ast.ColumnRef) -> Resolved:
        col = self._by_name.get((ref.source, ref.name))
        if col is None:
            raise unresolved_column(ref, self.clause)
        return Resolved(col.expression(), col.type)


@dataclass(frozen=True, slots=True)
class LambdaScope:
    """Lambda parameters over an enclosing scope; parameters shadow columns of the same name."""

    params: Mapping[str, Resolved]
    parent: Scope

    def resolve(self, ref: ast.ColumnRef) -> Resolved:
        if ref.source is None and ref.name in self.params:
            bound = self.params[ref.name]
            return Resolved(bound.sql.copy(), bound.type)
        return self.parent.resolve(ref)
