"""Runs ksqlDB's stored plans (``../shared/qtt-plans``) as conformance cases.

Each case folder holds ``plan.json`` (the ``ksqlPlanV1`` entries ksqlDB's command topic kept for
the case's statements, and the ``configs`` it ran with) and ``spec.json`` (whose ``testCase`` has
the inputs, expected outputs and topics, in the QTT record format). A case runs as a QTT case
does (:mod:`ksqlpy.testing.runner`) except for one step: instead of executing the statements'
text, the engine applies every stored plan (:meth:`ksqlpy.runtime.engine.Engine.apply_plan`), so
what runs is ksqlDB's plan, not ksqlpy's planning of the text.

A case's id is ``<case folder>/<test case name>``. A plan that cannot be compiled yet fails its
case with the compiler's reason (``OUTER foreign-key joins are not supported: fkTableTableJoinV1 at Join``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ksqlpy.errors import KsqlpyError, PlanError
from ksqlpy.testing.qtt import QttCase, TopicNode, build_case, read_json

#: Configs of a plan that change how ksqlpy runs it; the others (hosts, threads, metrics,
#: feature flags of ksqlDB's own planner) do not apply to a stored plan.
PLAN_CONFIGS = frozenset(
    {
        "ksql.streams.cache.max.bytes.buffering",
        "ksql.timestamp.throw.on.invalid",
        "ksql.rowpartition.rowoffset.enabled",
        "ksql.nested.error.set.null",
        "ksql.cast.strings.preserve.nulls",
    }
)
PLAN_CONFIG_PREFIXES = ("ksql.functions.",)

#: ksqlDB's internal topics (``_confluent-ksql-<service id>query_<id>-<context>-repartition``)
INTERNAL_TOPIC_PREFIX = "_confluent-ksql-"

PLAN_FILE = "plan.json"
SPEC_FILE = "spec.json"


class PlanCaseError(ValueError):
    """A case folder does not hold a readable plan and spec."""


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Case folders under ``paths``: a folder with a ``plan.json`` is one case, any other
    folder is searched for them (one level, as the corpus lays them out), sorted by name."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.name == PLAN_FILE:
            path = path.parent
        if (path / PLAN_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if (p / PLAN_FILE).is_file()))
        else:
            raise FileNotFoundError(f"No such plan case folder: {path}")
    return found


def plan_configs(configs: Mapping[str, Any]) -> dict[str, str]:
    """The configs of ``plan.json`` that matter here, as engine properties."""
    out: dict[str, str] = {}
    for name, value in configs.items():
        if value is None or str(value) == "None":
            continue
        if name in PLAN_CONFIGS or name.startswith(PLAN_CONFIG_PREFIXES):
            out[name] = str(value)
    return out


def load_case(folder: Path) -> QttCase:
    """The test case of one folder, set to run from its stored plans."""
    try:
        spec = read_json(folder / SPEC_FILE)
        with (folder / PLAN_FILE).open(encoding="utf-8") as handle:
            stored = json.load(handle)
        configs = stored.get("configs") or {}
        formats = _topic_formats(stored.get("plan") or [])
    except (OSError, ValueError) as e:
        raise PlanCaseError(f"{folder}: {e}") from e
    node = spec.get("testCase") if isinstance(spec, dict) else None
    if not isinstance(node, dict):
        raise PlanCaseError(f"{folder / SPEC_FILE}: no 'testCase'")
    case = build_case(node, suite="", file_name=folder.name, fmt=None, config=None)
    post = case.post
    if post is not None:
        # The stored post conditions list every topic ksqlDB's harness ended with. Its internal
        # topics (repartition, changelog) are Kafka Streams' own, which ksqlpy's runtime does
        # not have. And the partitions recorded are those of the harness's topics (4): cases
        # here run on one partition per topic, as QTT cases do, so that outputs keep the order
        # the case expects; neither is something the plan decides.
        post = replace(
            post,
            topics=tuple(
                replace(t, partitions=None)
                for t in post.topics
                if not t.name.startswith(INTERNAL_TOPIC_PREFIX)
            ),
        )
    topics = tuple(_consistent_schemas(node, formats.get(node.name)) for node in case.topics)
    return replace(
        case, topics=topics, post=post, plan_file=str(folder / PLAN_FILE), configs=plan_configs(configs)
    )


#: serde options of ksqlDB 5.x/6.x plans and the value features that replaced them
_LEGACY_OPTIONS = {"WRAP_SINGLE_VALUES": "WRAP_SINGLES", "UNWRAP_SINGLE_VALUES": "UNWRAP_SINGLES"}


def _upgraded(node: Any) -> Any:
    """A plan's JSON with the ``options`` of old plans' formats written as the
    ``valueFeatures`` ksqlDB 6.1 replaced them with (the plan loader reads only the latter)."""
    if isinstance(node, list):
        return [_upgraded(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _upgraded(value) for key, value in node.items()}
    options = out.get("options")
    if "valueFormat" in out and isinstance(options, list) and options:
        features = list(out.get("valueFeatures") or [])
        features += [
            _LEGACY_OPTIONS[o] for o in options if o in _LEGACY_OPTIONS and _LEGACY_OPTIONS[o] not in features
        ]
        out["valueFeatures"] = features
    return out


def upgraded_plan(entry: Any) -> Any:
    """A stored plan entry's JSON in the shape the plan loader reads (see :func:`_upgraded`)."""
    return _upgraded(entry)


def _topic_formats(entries: Iterable[Any]) -> dict[str, tuple[str, str]]:
    """Topic → (key format, value format) of the streams and tables the plans declare."""
    out: dict[str, tuple[str, str]] = {}
    for entry in entries:
        command = entry.get("ddlCommand") if isinstance(entry, dict) else None
        if not isinstance(command, dict) or "topicName" not in command:
            continue
        formats = command.get("formats") or {}
        key = str((formats.get("keyFormat") or {}).get("format", "")).upper()
        value = str((formats.get("valueFormat") or {}).get("format", "")).upper()
        out.setdefault(str(command["topicName"]), (key, value))
    return out


#: the schema type ksqlDB's plan recorder writes as a topic's format (``ParsedSchema.schemaType``)
#: for the formats whose name differs from it
_RECORDED_SCHEMA_TYPE = {"JSON_SR": "JSON"}


def _consistent_schemas(node: TopicNode, formats: tuple[str, str] | None) -> TopicNode:
    """A topic's recorded schemas, kept only where they are in the format the plans read the
    topic with. ksqlDB's plan recorder wrote some schemas in another format than the topic's
    (an Avro schema for a JSON topic); its harness never used those to write records. It
    records a format as its schema type: a JSON_SR topic's schema says ``JSON``."""
    if formats is None:
        return node
    key_format, value_format = (_RECORDED_SCHEMA_TYPE.get(f, f) for f in formats)
    if node.value_schema is not None and node.value_format is not None and node.value_format != value_format:
        node = replace(node, value_schema=None, value_schema_id=None, value_references=(), value_format=None)
    if node.key_schema is not None and node.key_format is not None and node.key_format != key_format:
        node = replace(node, key_schema=None, key_schema_id=None, key_references=(), key_format=None)
    return node


def load_plan_cases(paths: Iterable[str | os.PathLike[str]], *, filter: str | None = None) -> list[QttCase]:
    cases = [load_case(folder) for folder in discover(paths)]
    if filter:
        cases = [case for case in cases if filter in case.case_id]
    return cases


def apply_plans(engine: Any, case: QttCase) -> None:
    """Apply every stored plan of ``case`` in order. A plan the compiler refuses fails the case
    with the compiler's reason; other errors propagate as a statement's would."""
    from ksqlpy.planner.steps.commands import KsqlPlan
    from ksqlpy.testing.runner import CaseFailure

    assert case.plan_file is not None
    with open(case.plan_file, encoding="utf-8") as handle:
        entries = json.load(handle)["plan"]
    properties = dict(case.properties)
    for generation, entry in enumerate(entries):
        try:
            plan = KsqlPlan.from_json(_upgraded(entry))
            engine.apply_plan(plan, properties, generation=generation)
        except PlanError as e:
            raise CaseFailure(str(e)) from e
        except KsqlpyError as e:
            if e.statement_text is None:
                e.statement_text = plan.statement_text
            raise


__all__ = [
    "PLAN_CONFIGS",
    "apply_plans",
    "discover",
    "load_case",
    "load_plan_cases",
    "plan_configs",
    "upgraded_plan",
]
