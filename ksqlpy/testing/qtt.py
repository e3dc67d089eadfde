"""Loads ksqlDB's query validation test (QTT) files into :class:`QttCase` values.

A QTT file is ``{"tests": [case, ...]}`` (see ``/work/shared/qtt/README.md``). This module turns
each case into one or more immutable :class:`QttCase` objects, expanding the variants the way
ksqlDB's ``TestCaseBuilder`` does:

* ``format``: one case per listed format, with ``{FORMAT}`` replaced in every statement;
* ``config``: one case per listed value, with ``{CONFIG}`` replaced in property values and
  statements (ksqlDB uses it to run a case under each query planner).

A case's stable identity (used in reports and ``tests/qtt/passing.txt``) is::

    <suite>/<file>.json/<case name>[ - <FORMAT>][ - config=<VALUE>]

where ``<suite>`` is the name of the folder holding the file (``query-validation-tests``).

Numbers are read as ``int`` or :class:`decimal.Decimal` so that expected values keep the exact
digits the file gives (``1.10`` stays ``Decimal('1.10')``); :mod:`ksqlpy.testing.compare`
compares them by value.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

#: ksqlDB replaces ``{FORMAT}`` by this text when a case uses the placeholder without a format.
FORMAT_REPLACE_ERROR = "To use {FORMAT} in your statements please set the 'format' test case element"

#: The ksqlDB version whose behaviour ksqlpy follows; cases bounded by ``versions`` are run
#: only when this version lies within the bounds.
TARGET_VERSION = (7, 4, 0)


class QttFormatError(ValueError):
    """A QTT file or case does not follow the format."""


@dataclass(frozen=True, slots=True)
class Window:
    """A windowed key's bounds: ``type`` is ``TIME`` (tumbling/hopping) or ``SESSION``."""

    start: int
    end: int
    type: str

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "type": self.type.lower()}


@dataclass(frozen=True, slots=True)
class Header:
    """A record header; QTT files give the value base64-encoded (``null`` for no value)."""

    key: str
    value: bytes | None

    def to_json(self) -> dict[str, Any]:
        encoded = None if self.value is None else base64.b64encode(self.value).decode("ascii")
        return {"KEY": self.key, "VALUE": encoded}


@dataclass(frozen=True, slots=True, kw_only=True)
class QttRecord:
    """An input or expected output record, with key and value at JSON level."""

    topic: str
    key: Any = None
    value: Any = None
    timestamp: int | None = None
    partition: int | None = None
    window: Window | None = None
    headers: tuple[Header, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicNode:
    """A topic the case creates before running its statements."""

    name: str
    partitions: int | None = None
    replicas: int | None = None
    key_format: str | None = None
    value_format: str | None = None
    has_schema: bool = False
    #: schemas to register under ``<name>-key`` / ``<name>-value`` before the statements run,
    #: as the file gives them (Avro and JSON schemas as JSON values, Protobuf as text)
    key_schema: Any = None
    value_schema: Any = None
    key_schema_id: int | None = None
    value_schema_id: int | None = None
    #: schemas the key / value schema imports: ``(name, format, schema text)``
    key_references: tuple[tuple[str, str, str], ...] = ()
    value_references: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedException:
    """The statements or processing must fail: ``message`` is a substring of the error text."""

    type: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedError:
    """REST suite: the server must answer with an error (``status`` is the HTTP status)."""

    type: str | None = None
    message: str | None = None
    status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceCondition:
    """A ``post.sources`` entry: a stream or table that must exist after the statements."""

    name: str
    type: str | None = None
    schema: str | None = None
    key_format: Mapping[str, Any] | None = None
    value_format: str | None = None
    key_features: tuple[str, ...] | None = None
    value_features: tuple[str, ...] | None = None
    is_source: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicCondition:
    """A ``post.topics.topics`` entry: a topic that must exist, with these properties."""

    name: str
    partitions: int | None = None
    key_format: Mapping[str, Any] | None = None
    value_format: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PostConditions:
    sources: tuple[SourceCondition, ...] = ()
    topics: tuple[TopicCondition, ...] = ()
    blacklist: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QttCase:
    """One runnable case: a file's case with its ``format`` / ``config`` variant applied."""

    suite: str
    file_name: str
    name: str
    format: str | None = None
    config: str | None = None
    statements: tuple[str, ...]
    properties: Mapping[str, Any] = field(default_factory=dict)
    topics: tuple[TopicNode, ...] = ()
    inputs: tuple[QttRecord, ...] = ()
    outputs: tuple[QttRecord, ...] = ()
    expected_exception: ExpectedException | None = None
    expected_error: ExpectedError | None = None
    post: PostConditions | None = None
    responses: tuple[Mapping[str, Any], ...] | None = None
    wait_for_query_header: bool = False
    #: compare a query response's rows in order; otherwise their ``columns`` as a multiset
    #: (ksqlDB's ``outputConditions.verifyOrder``, off unless a case turns it on)
    verify_order: bool = False
    enabled: bool = True
    skip_reason: str | None = None
    #: run from ksqlDB's stored plans in this ``plan.json`` instead of the statements' text
    #: (see :mod:`ksqlpy.testing.plans`)
    plan_file: str | None = None
    #: engine configs the case brings besides its ``properties`` (a stored plan's configs)
    configs: Mapping[str, str] = field(default_factory=dict)

    @property
    def file(self) -> str:
        """``<suite>/<file>.json``, as in the JSON report."""
        return f"{self.suite}/{self.file_name}" if self.suite else self.file_name

    @property
    def case_id(self) -> str:
        """The stable name used in reports and ``passing.txt``."""
        text = f"{self.file}/{self.name}"
        if self.format is not None:
            text += f" - {self.format}"
        if self.config is not None:
            text += f" - config={self.config}"
        return text

    @property
    def is_rest(self) -> bool:
        return self.responses is not None or self.expected_error is not None


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """Parse JSON keeping decimals exact (``Decimal``) and integers as ``int``."""
    with path.open(encoding="utf-8") as handle:
        return json.load(handle, parse_float=Decimal)


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """QTT files under ``paths`` (files as given, folders searched recursively), sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"No such QTT file or folder: {path}")
    return found


def load_file(path: Path, *, suite: str | None = None) -> list[QttCase]:
    """All cases of one file, variants expanded; disabled cases come back with ``skip_reason``."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise QttFormatError(f"{path}: expected an object with a 'tests' array")
    suite_name = path.parent.name if suite is None else suite
    cases: list[QttCase] = []
    for node in data["tests"]:
        cases.extend(expand_case(node, suite=suite_name, file_name=path.name))
    return cases


def load_cases(paths: Iterable[str | os.PathLike[str]], *, filter: str | None = None) -> list[QttCase]:
    """Cases of every file under ``paths``; ``filter`` keeps those whose id contains it."""
    cases = [case for path in discover(paths) for case in load_file(path)]
    if filter:
        cases = [case for case in cases if filter in case.case_id]
    return cases


# ---------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------


def expand_case(node: Mapping[str, Any], *, suite: str, file_name: str) -> Iterator[QttCase]:
    """Yield one case per ``format`` x ``config`` variant of a case node."""
    name = node.get("name")
    if not isinstance(name, str) or not name:
        raise QttFormatError(f"{file_name}: a case has no name")
    formats: Sequence[str | None] = _str_list(node.get("format")) or [None]
    configs: Sequence[str | None] = _str_list(node.get("config")) or [None]
    for fmt in formats:
        for config in configs:
            yield build_case(node, suite=suite, file_name=file_name, fmt=fmt, config=config)


def substitute(text: str, fmt: str | None, config: str | None) -> str:
    """Replace ``{FORMAT}`` (and ``{CONFIG}``) as ksqlDB's ``TestCaseBuilderUtil`` does."""
    text = text.replace("{FORMAT}", fmt if fmt is not None else FORMAT_REPLACE_ERROR)
    if config is not None:
        text = text.replace("{CONFIG}", config)
    return text


def build_case(
    node: Mapping[str, Any], *, suite: str, file_name: str, fmt: str | None, config: str | None
) -> QttCase:
    statements = tuple(substitute(s, fmt, config) for s in node.get("statements") or ())
    properties = {
        key: substitute(value, fmt, config) if isinstance(value, str) else value
        for key, value in (node.get("properties") or {}).items()
    }
    topics = tuple(_topic_node(t) for t in node.get("topics") or ())
    enabled = node.get("enabled", True) is not False
    case = QttCase(
        suite=suite,
        file_name=file_name,
        name=node["name"],
        format=fmt,
        config=config,
        statements=statements,
        properties=properties,
        topics=topics,
        inputs=tuple(_record(r) for r in node.get("inputs") or ()),
        outputs=tuple(_record(r) for r in node.get("outputs") or ()),
        expected_exception=_expected_exception(node.get("expectedException")),
        expected_error=_expected_error(node.get("expectedError")),
        post=_post(node.get("post")),
        responses=tuple(node["responses"]) if "responses" in node else None,
        wait_for_query_header=bool((node.get("inputConditions") or {}).get("waitForActivePushQuery")),
        verify_order=bool((node.get("outputConditions") or {}).get("verifyOrder")),
        enabled=enabled,
    )
    reason = skip_reason(case, node)
    return case if reason is None else replace(case, skip_reason=reason)


def skip_reason(case: QttCase, node: Mapping[str, Any]) -> str | None:
    """Why a case is not run, or None: disabled or out of version bounds."""
    if not case.enabled:
        return "disabled in the QTT file"
    versions = node.get("versions") or {}
    low, high = versions.get("min"), versions.get("max")
    if low is not None and _version(low) > TARGET_VERSION:
        return f"needs ksqlDB >= {low}"
    if high is not None and _version(high) < TARGET_VERSION:
        return f"only for ksqlDB <= {high}"
    if node.get("testPullWithProtoFormat"):
        return "protobuf pull query responses are not supported"
    lossy = _lossy_decimal_input(case)
    if lossy is not None:
        return (
            f"input number {lossy} is a double's text: the exact DECIMAL the case was written with "
            "(ksqlDB's own file gives all its digits) is lost"
        )
    return None


#: Past this magnitude a double keeps no digit after the decimal point, nor every integer.
_DOUBLE_EXACT_LIMIT = 2**53


def _lossy_decimal_input(case: QttCase) -> Decimal | None:
    """An input number of a case that declares DECIMAL columns, written as a fractional literal
    yet integral and past 2**53 (``1.2345678987654322e+16``): the text of a double, which an
    exact decimal went through when the corpus was written."""
    if not any("DECIMAL" in statement.upper() for statement in case.statements):
        return None
    for record in case.inputs:
        for number in _numbers(record.value):
            if isinstance(number, Decimal) and abs(number) >= _DOUBLE_EXACT_LIMIT and number == number.to_integral():
                return number
    return None


def _numbers(value: Any) -> Iterator[Any]:
    match value:
        case Mapping():
            for item in value.values():
                yield from _numbers(item)
        case list() | tuple():
            for item in value:
                yield from _numbers(item)
        case Decimal() | int():
            yield value


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in str(text).split("-")[0].split("."):
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)


# ---------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------


def _str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _record(node: Mapping[str, Any]) -> QttRecord:
    if "topic" not in node:
        raise QttFormatError(f"record without topic: {node}")
    window = node.get("window")
    headers = node.get("headers")
    return QttRecord(
        topic=node["topic"],
        key=node.get("key"),
        value=node.get("value"),
        timestamp=_int_or_none(node.get("timestamp")),
        partition=_int_or_none(node.get("partition")),
        window=None
        if window is None
        else Window(int(window["start"]), int(window["end"]), str(window["type"]).upper()),
        headers=None if headers is None else tuple(_header(h) for h in headers),
    )


def _header(node: Mapping[str, Any]) -> Header:
    key = node.get("KEY", node.get("key"))
    value = node.get("VALUE", node.get("value"))
    return Header(str(key), None if value is None else base64.b64decode(value))


def _format_name(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return str(value.get("format")).upper() if value.get("format") else None
    return str(value).upper()


def _topic_node(node: Mapping[str, Any]) -> TopicNode:
    fmt = _format_name(node.get("format"))
    return TopicNode(
        name=node["name"],
        partitions=_int_or_none(node.get("partitions")),
        replicas=_int_or_none(node.get("replicas")),
        key_format=_format_name(node.get("keyFormat")),
        value_format=_format_name(node.get("valueFormat")) or fmt,
        has_schema=any(
            node.get(k) is not None for k in ("keySchema", "valueSchema", "schema", "valueSchemaId")
        ),
        key_schema=node.get("keySchema"),
        value_schema=node.get("valueSchema", node.get("schema")),
        key_schema_id=_int_or_none(node.get("keySchemaId")),
        value_schema_id=_int_or_none(node.get("valueSchemaId")),
        key_references=_references(node.get("keySchemaReferences")),
        value_references=_references(node.get("valueSchemaReferences")),
    )


def _references(nodes: Any) -> tuple[tuple[str, str, str], ...]:
    return tuple(
        (str(n["name"]), str(n.get("format", "")).upper(), n["schema"] if isinstance(n["schema"], str) else json.dumps(n["schema"]))
        for n in nodes or ()
    )


def _expected_exception(node: Mapping[str, Any] | None) -> ExpectedException | None:
    if node is None:
        return None
    return ExpectedException(type=node.get("type"), message=node.get("message"))


def _expected_error(node: Mapping[str, Any] | None) -> ExpectedError | None:
    if node is None:
        return None
    return ExpectedError(type=node.get("type"), message=node.get("message"), status=node.get("status"))


def _post(node: Mapping[str, Any] | None) -> PostConditions | None:
    if node is None:
        return None
    sources = tuple(
        SourceCondition(
            name=s["name"],
            type=s.get("type"),
            schema=s.get("schema"),
            key_format=s.get("keyFormat"),
            value_format=_format_name(s.get("valueFormat")),
            key_features=None if s.get("keyFeatures") is None else tuple(s["keyFeatures"]),
            value_features=None if s.get("valueFeatures") is None else tuple(s["valueFeatures"]),
            is_source=s.get("isSource"),
        )
        for s in node.get("sources") or ()
    )
    topics_node = node.get("topics") or {}
    topics = tuple(
        TopicCondition(
            name=t["name"],
            partitions=_int_or_none(t.get("partitions")),
            key_format=t.get("keyFormat"),
            value_format=t.get("valueFormat"),
        )
        for t in topics_node.get("topics") or ()
    )
    return PostConditions(sources=sources, topics=topics, blacklist=topics_node.get("blacklist"))
