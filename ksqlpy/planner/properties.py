"""WITH-clause properties of CREATE and INSERT statements, validated as ksqlDB does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ksqlpy.errors import AnalysisError
from ksqlpy.parser import ast

KNOWN_PROPERTIES = frozenset(
    {
        "KAFKA_TOPIC",
        "VALUE_FORMAT",
        "KEY_FORMAT",
        "FORMAT",
        "PARTITIONS",
        "REPLICAS",
        "TIMESTAMP",
        "TIMESTAMP_FORMAT",
        "VALUE_DELIMITER",
        "KEY_DELIMITER",
        "WRAP_SINGLE_VALUE",
        "WINDOW_TYPE",
        "WINDOW_SIZE",
        "KEY_SCHEMA_ID",
        "VALUE_SCHEMA_ID",
        "KEY_SCHEMA_FULL_NAME",
        "VALUE_SCHEMA_FULL_NAME",
        "VALUE_AVRO_SCHEMA_FULL_NAME",
        "KEY_PROTOBUF_NULLABLE_REPRESENTATION",
        "VALUE_PROTOBUF_NULLABLE_REPRESENTATION",
        "RETENTION_MS",
        "CLEANUP_POLICY",
        "SOURCE_CONNECTOR",
        "QUERY_ID",
    }
)


def literal_value(lit: ast.Literal) -> Any:
    match lit:
        case ast.NullLiteral():
            return None
        case ast.BooleanLiteral(value=v) | ast.IntegerLiteral(value=v) | ast.StringLiteral(value=v):
            return v
        case ast.DoubleLiteral(value=v):
            return v
        case ast.DecimalLiteral(text=t):
            return float(t)
    raise TypeError(lit)


@dataclass(frozen=True, slots=True)
class WithClause:
    """Property values keyed by upper-case name."""

    values: Mapping[str, Any]

    @classmethod
    def of(cls, props: tuple[ast.Property, ...]) -> WithClause:
        values: dict[str, Any] = {}
        for p in props:
            if p.name not in KNOWN_PROPERTIES:
                raise AnalysisError(f"Invalid config variable(s) in the WITH clause: {p.name}", pos=p.pos)
            values[p.name] = literal_value(p.value)
        return cls(values)

    def get(self, name: str) -> Any:
        return self.values.get(name)

    def string(self, name: str) -> str | None:
        v = self.values.get(name)
        return None if v is None else str(v)

    def integer(self, name: str) -> int | None:
        v = self.values.get(name)
        if v is None:
            return None
        try:
            return int(v)
        except (TypeError, ValueError):
            raise AnalysisError(f"Invalid value {v} for property {name}: expected an integer") from None

    def boolean(self, name: str) -> bool | None:
        v = self.values.get(name)
        if v is None:
            return None
        if isinstance(v, bool):
            return v
        text = str(v).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        raise AnalysisError(f"Invalid value {v} for property {name}: expected a boolean")

    def __contains__(self, name: str) -> bool:
        return name in self.values
