"""The small value objects plans are made of: formats, timestamp columns, windows.

They mirror ksqlDB's ``FormatInfo``/``Formats``, ``TimestampColumn``, ``WindowInfo`` and
``KsqlWindowExpression`` JSON. Durations in ``WindowInfo`` and the join windows are written by
ksqlDB as (fractional) seconds; a window expression keeps ``{"value", "timeUnit"}`` pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ksqlpy.planner.steps.json import (
    Field,
    f_obj,
    f_str,
    f_strs,
    f_value,
    ident,
    string_load,
)


def _props_load(v: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(v, Mapping):
        raise ValueError(f"expected an object of properties, got {v!r}")
    return tuple((str(k), str(x)) for k, x in v.items())


def _props_dump(v: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(v)


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatInfo:
    """A serialization format and its properties (``delimiter``, ``fullSchemaName``...)."""

    format: str
    properties: tuple[tuple[str, str], ...] = ()

    JSON_FIELDS: ClassVar[tuple[Field, ...]] = (
        f_str("format", "format"),
        Field("properties", "properties", _props_load, _props_dump, default=()),
    )

    def property(self, name: str) -> str | None:
        return dict(self.properties).get(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Formats:
    """Key and value formats with their serde features (``UNWRAP_SINGLES``, ``WRAP_SINGLES``)."""

    key_format: FormatInfo
    value_format: FormatInfo
    key_features: tuple[str, ...] = ()
    value_features: tuple[str, ...] = ()

    JSON_FIELDS: ClassVar[tuple[Field, ...]] = (
        f_obj("keyFormat", "key_format", FormatInfo, optional=False),
        f_obj("valueFormat", "value_format", FormatInfo, optional=False),
        Field("keyFeatures", "key_features", lambda v: tuple(v), list, default=(), omit_empty=True),
        Field("valueFeatures", "value_features", lambda v: tuple(v), list, default=(), omit_empty=True),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TimestampColumn:
    """The column a source or sink takes record timestamps from, with its string format."""

    column: str
    format: str | None = None

    JSON_FIELDS: ClassVar[tuple[Field, ...]] = (
        f_str("column", "column"),
        Field("format", "format", string_load, ident),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowInfo:
    """The window of a windowed source or sink: type, size in seconds, emit strategy."""

    type: str  # TUMBLING, HOPPING, SESSION
    size: float | None = None
    emit_strategy: str | None = None

    JSON_FIELDS: ClassVar[tuple[Field, ...]] = (
        f_str("type", "type"),
        f_value("size", "size"),
        f_value("emitStrategy", "emit_strategy"),
    )

    @property
    def size_ms(self) -> int | None:
        return None if self.size is None else round(self.size * 1000)


_UNIT_MS = {
    "MILLISECONDS": 1,
    "SECONDS": 1000,
    "MINUTES": 60_000,
    "HOURS": 3_600_000,
    "DAYS": 86_400_000,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowTime:
    """A duration as a window expression writes it: ``{"value": 30, "timeUnit": "SECONDS"}``."""

    value: int
    time_unit: str

    JSON_FIELDS: ClassVar[tuple[Field, ...]] = (
        f_value("value", "value", optional=False),
        f_str("timeUnit", "time_unit"),
    )

    @property
    def millis(self) -> int:
        return int(self.value) * _UNIT_MS[self.time_unit]


def _window_time(key: str, attr: str) -> Field:
    return f_obj(key, attr, WindowTime)


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowExpression:
    """A WINDOW clause: TUMBLING (size), HOPPING (size, advanceBy) or SESSION (gap), with
    retention, grace period and emit strategy when given."""

    window_type: str
    size: WindowTime | None = None
    advance_by: WindowTime | None = None
    gap: WindowTime | None = None
    retention: WindowTime | None = None
    grace_period: WindowTime | None = None
    emit_strategy: str | None = None

    JSON_FIELDS: ClassVar[tuple[Field, ...]] = ()  # written by window_expression_dump

    def to_json(self) -> dict[str, Any]:
        from ksqlpy.planner.steps.json import dump

        out: dict[str, Any] = {}
        if self.window_type == "SESSION":
            out["gap"] = dump(self.gap) if self.gap else None
        else:
            out["size"] = dump(self.size) if self.size else None
            if self.window_type == "HOPPING":
                out["advanceBy"] = dump(self.advance_by) if self.advance_by else None
        out["retention"] = dump(self.retention) if self.retention else None
        out["gracePeriod"] = dump(self.grace_period) if self.grace_period else None
        out["emitStrategy"] = self.emit_strategy
        out["windowType"] = self.window_type
        return out

    @classmethod
    def from_json(cls, obj: Any) -> WindowExpression:
        from ksqlpy.planner.steps.json import load

        if isinstance(obj, str):  # plans of ksqlDB 5.x kept the clause's text
            return _parse_window_text(obj)

        def t(key: str) -> WindowTime | None:
            v = obj.get(key)
            return None if v is None else load(WindowTime, v, key)

        return cls(
            window_type=str(obj["windowType"]),
            size=t("size"),
            advance_by=t("advanceBy"),
            gap=t("gap"),
            retention=t("retention"),
            grace_period=t("gracePeriod"),
            emit_strategy=obj.get("emitStrategy"),
        )


def _parse_window_text(text: str) -> WindowExpression:
    """`` TUMBLING ( SIZE 30 SECONDS ) ``, as ksqlDB 5.x wrote window expressions."""
    words = text.replace("(", " ").replace(")", " ").replace(",", " ").split()
    kind = words[0].upper()
    times: list[WindowTime] = []
    i = 1
    while i < len(words):
        if words[i].lstrip("-").isdigit() and i + 1 < len(words):
            unit = words[i + 1].upper()
            unit = unit if unit.endswith("S") else unit + "S"
            times.append(WindowTime(value=int(words[i]), time_unit=unit))
            i += 2
        else:
            i += 1
    if kind == "SESSION":
        return WindowExpression(window_type=kind, gap=times[0])
    if kind == "HOPPING":
        return WindowExpression(window_type=kind, size=times[0], advance_by=times[1])
    return WindowExpression(window_type=kind, size=times[0])


def f_window_expression(key: str, attr: str) -> Field:
    return Field(key, attr, WindowExpression.from_json, lambda w: w.to_json(), optional=False)


def f_formats(key: str, attr: str, *, optional: bool = False) -> Field:
    return f_obj(key, attr, Formats, optional=optional)


__all__ = [
    "FormatInfo",
    "Formats",
    "TimestampColumn",
    "WindowExpression",
    "WindowInfo",
    "WindowTime",
    "f_formats",
    "f_strs",
    "f_window_expression",
]
