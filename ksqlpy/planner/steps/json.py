"""How a step or command reads and writes itself in ksqlDB's plan JSON.

Each plan class lists its JSON fields in ksqlDB's order (``JSON_FIELDS``); :func:`dump` and
:func:`load` walk that list, so the classes stay plain frozen dataclasses and the wire format is
data next to them. Polymorphic objects carry ksqlDB's ``"@type"`` name (``streamSelectV1``...);
:func:`load_typed` finds the class by it and refuses a name this build does not know, naming it,
so a plan written by a newer version is never half-run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from ksqlpy.errors import PlanError


class PlanFormatError(PlanError):
    """A serialized plan that this build cannot read (unknown step type or version, bad shape)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One JSON field: its key, the dataclass attribute and how its value is converted.

    ``optional`` fields may be absent from the JSON (older ksqlDB versions left them out) and
    then take ``default``; ``omit_empty`` fields are written only when not empty, as ksqlDB
    writes serde features."""

    key: str
    attr: str
    load: Callable[[Any], Any]
    dump: Callable[[Any], Any]
    optional: bool = True
    default: Any = None
    omit_empty: bool = False


class Serializable(Protocol):
    JSON_FIELDS: ClassVar[tuple[Field, ...]]


T = TypeVar("T")

#: "@type" name → class, for every class registered with :func:`typed`
_TYPES: dict[str, type[Any]] = {}


def typed(name: str) -> Callable[[type[T]], type[T]]:
    """Register a class under its ksqlDB ``@type`` name."""

    def register(cls: type[T]) -> type[T]:
        _TYPES[name] = cls
        cls.TYPE = name  # type: ignore[attr-defined]
        return cls

    return register


def known_types() -> frozenset[str]:
    return frozenset(_TYPES)


def dump(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    type_name = getattr(type(obj), "TYPE", None)
    if type_name is not None:
        out["@type"] = type_name
    for f in type(obj).JSON_FIELDS:
        value = getattr(obj, f.attr)
        if f.omit_empty and not value:
            continue
        out[f.key] = None if value is None else f.dump(value)
    return out


def load(cls: type[T], obj: Any, where: str = "") -> T:
    if not isinstance(obj, Mapping):
        raise PlanFormatError(f"Expected a JSON object for {cls.__name__}{_at(where)}, got: {_short(obj)}")
    kwargs: dict[str, Any] = {}
    for f in cls.JSON_FIELDS:  # type: ignore[attr-defined]
        if f.key not in obj:
            if not f.optional:
                raise PlanFormatError(f"Missing field '{f.key}' in {cls.__name__}{_at(where)}.")
            kwargs[f.attr] = f.default
            continue
        value = obj[f.key]
        try:
            kwargs[f.attr] = None if value is None else f.load(value)
        except PlanFormatError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise PlanFormatError(f"Bad value for '{f.key}' in {cls.__name__}{_at(where)}: {e}") from None
    return cls(**kwargs)


def load_typed(obj: Any, where: str = "") -> Any:
    """An object of the class registered under its ``@type``."""
    if not isinstance(obj, Mapping) or "@type" not in obj:
        raise PlanFormatError(f"Expected a plan object with an '@type'{_at(where)}, got: {_short(obj)}")
    name = obj["@type"]
    cls = _TYPES.get(name)
    if cls is None:
        raise PlanFormatError(
            f"Unknown plan element type '{name}'{_at(where)}: this version of ksqlpy cannot run it. "
            f"Known types: {', '.join(sorted(_TYPES))}."
        )
    return load(cls, obj, where or name)


def _at(where: str) -> str:
    return f" (in {where})" if where else ""


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


# ------------------------------------------------------------------------------ field kinds


def ident(v: Any) -> Any:
    return v


def strings_load(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ValueError(f"expected a list of strings, got {_short(v)}")
    return tuple(v)


def strings_dump(v: tuple[str, ...]) -> list[str]:
    return list(v)


def string_load(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {_short(v)}")
    return v


def f_str(key: str, attr: str, *, optional: bool = False) -> Field:
    return Field(key, attr, string_load, ident, optional=optional)


def f_strs(key: str, attr: str, *, optional: bool = True, default: Any = None) -> Field:
    return Field(key, attr, strings_load, strings_dump, optional=optional, default=default)


def f_value(key: str, attr: str, *, optional: bool = True, default: Any = None) -> Field:
    """A JSON scalar kept as it is (numbers, booleans)."""
    return Field(key, attr, ident, ident, optional=optional, default=default)


def f_obj(key: str, attr: str, cls: type[Any], *, optional: bool = True) -> Field:
    return Field(key, attr, lambda v: load(cls, v, key), dump, optional=optional)


def f_step(key: str, attr: str) -> Field:
    return Field(key, attr, lambda v: load_typed(v, key), dump, optional=False)
