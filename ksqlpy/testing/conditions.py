"""``post`` conditions: the sources and topics that must exist after a case ran.

Sources are checked against the engine's catalog: kind, schema (compared after normalising
type spellings, quoting and spacing: ``ID INT KEY`` equals ```ID` INTEGER KEY``), key and
value format names, and the ``WRAP_SINGLES``/``UNWRAP_SINGLES`` features where the catalog
records an explicit choice. Topics are checked against the store: none may match the
``blacklist`` pattern, and each listed topic must exist with the given partition count and,
when a source reads it, the given format names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ksqlpy.testing.qtt import PostConditions, SourceCondition, TopicCondition

#: Type spellings ksqlDB accepts -> the one schemas print.
_TYPE_ALIASES = {"INT": "INTEGER", "VARCHAR": "STRING"}


def normalise_schema(text: str) -> str:
    """A schema string in one canonical spelling, for comparison."""
    text = text.replace("`", "").upper()
    text = re.sub(r"\bPRIMARY\s+KEY\b", "KEY", text)
    text = re.sub(r"\b(" + "|".join(_TYPE_ALIASES) + r")\b", lambda m: _TYPE_ALIASES[m.group(1)], text)
    text = re.sub(r"\s*([,<>()])\s*", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def schema_of(source: Any) -> str:
    """The source's columns as ksqlDB prints a logical schema."""
    parts = []
    for column in source.columns:
        text = f"`{column.name}` {column.type}"
        namespace = column.namespace.value
        if namespace == "KEY":
            text += " KEY"
        elif namespace == "HEADERS":
            text += f" HEADER('{column.header_key}')" if column.header_key is not None else " HEADERS"
        parts.append(text)
    return ", ".join(parts)


def _format_name(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        name = value.get("format")
        return None if name is None else str(name).upper()
    return str(value).upper()


def _features_problem(what: str, expected: tuple[str, ...] | None, wrap: bool | None) -> str | None:
    """Compare expected serde features with the catalog's explicit wrapping choice."""
    if expected is None or wrap is None:
        return None
    features = set(expected)
    if wrap and "UNWRAP_SINGLES" in features or not wrap and "WRAP_SINGLES" in features:
        return f"{what} features: expected {sorted(features)} but WRAP_SINGLE_VALUE is {str(wrap).lower()}"
    return None


def check_source(engine: Any, condition: SourceCondition) -> str | None:
    source = engine.catalog.find(condition.name)
    if source is None:
        known = ", ".join(sorted(engine.catalog.sources)) or "none"
        return f"post: source {condition.name} does not exist (sources: {known})"
    where = f"post: source {condition.name}"
    if condition.type is not None and source.kind.value.upper() != condition.type.upper():
        return f"{where}: expected a {condition.type.lower()} but it is a {source.kind.value.lower()}"
    if condition.schema is not None:
        actual = schema_of(source)
        if normalise_schema(actual) != normalise_schema(condition.schema):
            return f"{where}: expected schema {condition.schema} but was {actual}"
    key_format = _format_name(condition.key_format)
    if key_format is not None and source.key_format.format.upper() != key_format:
        return f"{where}: expected key format {key_format} but was {source.key_format.format}"
    if condition.value_format is not None and source.value_format.format.upper() != condition.value_format:
        return f"{where}: expected value format {condition.value_format} but was {source.value_format.format}"
    key_features = condition.key_features
    if key_features is None and isinstance(condition.key_format, Mapping):
        features = condition.key_format.get("features")
        key_features = None if features is None else tuple(features)
    return _features_problem(f"{where}: key", key_features, source.key_format.wrap_single_value) or (
        _features_problem(f"{where}: value", condition.value_features, source.value_format.wrap_single_value)
    )


def check_topic(engine: Any, condition: TopicCondition) -> str | None:
    spec = engine.store.describe_topic(condition.name)
    if spec is None:
        return f"post: topic {condition.name} does not exist"
    if condition.partitions is not None and spec.partitions != condition.partitions:
        return (
            f"post: topic {condition.name}: expected {condition.partitions} partitions "
            f"but it has {spec.partitions}"
        )
    readers = [s for s in engine.catalog.sources.values() if s.topic == condition.name]
    if readers:
        source = readers[-1]
        for what, expected, actual in (
            ("key", _format_name(condition.key_format), source.key_format.format),
            ("value", _format_name(condition.value_format), source.value_format.format),
        ):
            if expected is not None and actual.upper() != expected:
                return f"post: topic {condition.name}: expected {what} format {expected} but was {actual}"
    return None


def check_post_conditions(engine: Any, post: PostConditions) -> str | None:
    """``None`` when every post condition holds, else the first that does not."""
    for source in post.sources:
        problem = check_source(engine, source)
        if problem is not None:
            return problem
    if post.blacklist:
        pattern = re.compile(post.blacklist)
        listed = [t.name for t in engine.store.list_topics() if pattern.search(t.name)]
        if listed:
            return f"post: blacklisted topics found: {listed}"
    for topic in post.topics:
        problem = check_topic(engine, topic)
        if problem is not None:
            return problem
    return None
