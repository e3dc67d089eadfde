"""Result entities and query schemas -> ksqlDB's JSON, byte for byte where clients care.

:func:`entity_json` maps each :mod:`ksqlpy.runtime.results` dataclass to the object ksqlDB's
``/ksql`` returns (``@type``, ``statementText``, payload, ``warnings``); the other functions
build the pieces of ``/info``, ``/healthcheck``, ``/status`` and the query endpoints' headers.
:func:`dumps` (from ``server/wire.py``) is the one JSON encoder of the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ksqlpy import sqltypes
from ksqlpy.runtime import results as r

# --- schemas ---------------------------------------------------------------------------------


def schema_json(t: sqltypes.SqlType) -> dict[str, Any]:
    """ksqlDB's ``SchemaInfo``: ``{"type", "fields", "memberSchema"}`` (+ DECIMAL parameters)."""
    out: dict[str, Any] = {"type": t.base.value, "fields": None, "memberSchema": None}
    match t:
        case sqltypes.Decimal(precision=p, scale=s):
            out["parameters"] = {"precision": p, "scale": s}
        case sqltypes.Array(element=e):
            out["memberSchema"] = schema_json(e)
        case sqltypes.Map(value=v):
            out["memberSchema"] = schema_json(v)
        case sqltypes.Struct(fields=fs):
            out["fields"] = [{"name": f.name, "schema": schema_json(f.type)} for f in fs]
    return out


def field_json(f: r.FieldInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "schema": schema_json(f.type)}
    if f.kind is not None:
        out["type"] = f.kind.value
    if f.header_key is not None:
        out["headerKey"] = f.header_key
    return out


def schema_text(
    columns: Iterable[sqltypes.Field],
    key_columns: Iterable[str] = (),
    header_columns: Iterable[tuple[str, str | None]] = (),
) -> str:
    """``/query`` header schema: `` `A` STRING KEY, `B` INTEGER`` (KEY only for pull queries).

    ``header_columns`` (name, header key) are listed after the keys, marked ``HEADER('k')`` or
    ``HEADERS``, as ksqlDB's pull ``SELECT *`` schema lists them, though rows carry them last."""
    keys = frozenset(key_columns)
    headers = dict(header_columns)
    fields = list(columns)
    listed = [c for c in fields if c.name in keys]
    listed += [c for c in fields if c.name in headers and c.name not in keys]
    listed += [c for c in fields if c.name not in keys and c.name not in headers]
    return ", ".join(f"{c}{_schema_marker(c.name, keys, headers)}" for c in listed)


def _schema_marker(name: str, keys: frozenset[str], headers: dict[str, str | None]) -> str:
    if name in keys:
        return " KEY"
    if name not in headers:
        return ""
    key = headers[name]
    return " HEADERS" if key is None else f" HEADER('{key}')"


# --- entity pieces ---------------------------------------------------------------------------


def running_query_json(q: r.RunningQuery) -> dict[str, Any]:
    status_count = {s.value: n for s, n in q.status_count.items()} or {q.state.value: 1}
    return {
        "queryString": q.query_string,
        "sinks": list(q.sinks),
        "sinkKafkaTopics": list(q.sink_topics),
        "id": q.id,
        "statusCount": status_count,
        "queryType": q.query_type.value,
        "state": q.state.value,
    }


def source_info_json(kind: r.SourceKind, s: r.SourceInfo) -> dict[str, Any]:
    return {
        "type": kind.value,
        "name": s.name,
        "topic": s.topic,
        "keyFormat": s.key_format,
        "valueFormat": s.value_format,
        "isWindowed": s.is_windowed,
    }


def source_description_json(d: r.SourceDescription) -> dict[str, Any]:
    return {
        "name": d.name,
        "windowType": d.window_type,
        "readQueries": [running_query_json(q) for q in d.read_queries],
        "writeQueries": [running_query_json(q) for q in d.write_queries],
        "fields": [field_json(f) for f in d.fields],
        "type": d.kind.value,
        "timestamp": d.timestamp,
        "statistics": d.statistics,
        "errorStats": d.error_stats,
        "extended": d.extended,
        "keyFormat": d.key_format,
        "valueFormat": d.value_format,
        "topic": d.topic,
        "partitions": d.partitions,
        "replication": d.replication,
        "statement": d.statement,
        "queryOffsetSummaries": [],
        "sourceConstraints": list(d.source_constraints),
        "clusterStatistics": [],
        "clusterErrorStats": [],
    }


def query_description_json(d: r.QueryDescription, host: str) -> dict[str, Any]:
    return {
        "id": d.id,
        "statementText": d.query_string,
        "windowType": d.window_type,
        "fields": [field_json(f) for f in d.fields],
        "sources": list(d.sources),
        "sinks": list(d.sinks),
        "topology": d.topology,
        "executionPlan": d.execution_plan,
        "overriddenProperties": dict(d.overridden_properties),
        "ksqlHostQueryStatus": {host: d.state.value},
        "queryType": d.query_type.value,
        "queryErrors": list(d.query_errors),
        "tasksMetadata": [],
        "consumerGroupId": d.consumer_group_id,
        "state": d.state.value,
    }


def topic_json(t: r.TopicInfo, extended: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": t.name, "replicaInfo": list(t.replica_info)}
    if extended:
        out["consumerCount"] = t.consumer_count
        out["consumerGroupCount"] = t.consumer_group_count
    return out


def function_variant_json(v: r.FunctionVariant) -> dict[str, Any]:
    return {
        "arguments": [
            {"name": a.name, "type": a.type, "description": a.description, "isVariadic": a.is_variadic}
            for a in v.arguments
        ],
        "returnType": v.return_type,
        "description": v.description,
    }


# --- entities --------------------------------------------------------------------------------


def _payload(entity: r.KsqlEntity, host: str) -> tuple[str, dict[str, Any]]:
    """``@type`` and the entity-specific fields."""
    match entity:
        case r.CommandStatusEntity():
            return "currentStatus", {
                "commandId": entity.command_id,
                "commandStatus": command_status_json(entity.command_status),
                "commandSequenceNumber": entity.sequence_number,
            }
        case r.SourceList(kind=kind, sources=sources):
            plural = "streams" if kind is r.SourceKind.STREAM else "tables"
            return plural, {plural: [source_info_json(kind, s) for s in sources]}
        case r.SourceDescriptionList(descriptions=ds):
            return "source_descriptions", {"sourceDescriptions": [source_description_json(d) for d in ds]}
        case r.SourceDescription():
            return "sourceDescription", {"sourceDescription": source_description_json(entity)}
        case r.QueryList(queries=qs):
            return "queries", {"queries": [running_query_json(q) for q in qs]}
        case r.QueryDescriptionList(descriptions=ds):
            return "query_descriptions", {
                "queryDescriptions": [query_description_json(d, host) for d in ds]
            }
        case r.QueryDescription():
            return "queryDescription", {"queryDescription": query_description_json(entity, host)}
        case r.TopicList(topics=ts, extended=ext):
            return ("kafka_topics_extended" if ext else "kafka_topics"), {
                "topics": [topic_json(t, ext) for t in ts]
            }
        case r.PropertyList():
            return "properties", {
                "properties": [
                    {"name": p.name, "scope": p.scope, "value": p.value, "editable": p.editable,
                     "level": p.level}
                    for p in entity.properties
                ],
                "overwrittenProperties": list(entity.overwritten),
                "defaultProperties": list(entity.defaults),
            }
        case r.FunctionList(functions=fs):
            return "function_names", {
                "functions": [{"name": f.name, "type": f.type.value, "category": f.category} for f in fs]
            }
        case r.FunctionDescription():
            return "describe_function", {
                "name": entity.name,
                "description": entity.description,
                "author": entity.author,
                "version": entity.version,
                "path": entity.path,
                "functions": [function_variant_json(v) for v in entity.variants],
                "type": entity.type.value,
            }
        case r.TypeList(types=types):
            return "type_list", {"types": {name: schema_json(t) for name, t in types.items()}}
        case r.VariableList(variables=vs):
            return "variables", {"variables": [{"name": k, "value": v} for k, v in vs.items()]}
        case r.TerminateQueryEntity():
            return "terminate_query", {"queryId": entity.query_id, "wasTerminated": entity.was_terminated}
        case r.WarningEntity(message=m):
            return "warning_entity", {"message": m}
        case r.AssertTopicEntity():
            return "assert_topic", {"topicName": entity.topic_name, "exists": entity.exists}
        case r.AssertSchemaEntity():
            return "assert_schema", {"subject": entity.subject, "id": entity.schema_id,
                                     "exists": entity.exists}
        case r.ConnectorList(connectors=cs):
            return "connector_list", {
                "connectors": [
                    {"name": c.name, "type": c.type, "className": c.class_name, "state": c.state}
                    for c in cs
                ]
            }
    raise TypeError(f"No REST mapping for result {type(entity).__name__}")


def entity_json(entity: r.KsqlEntity, host: str = "localhost:8088") -> dict[str, Any]:
    """One ``/ksql`` array element. ``host`` names this server in per-host status maps."""
    kind, payload = _payload(entity, host)
    return {
        "@type": kind,
        "statementText": entity.statement_text,
        **payload,
        "warnings": [{"message": w} for w in entity.warnings],
    }


# --- non-entity responses --------------------------------------------------------------------


def command_status_json(s: r.CommandStatus) -> dict[str, Any]:
    return {"status": s.status.value, "message": s.message, "queryId": s.query_id}


def server_info_json(info: r.ServerInfo) -> dict[str, Any]:
    return {
        "KsqlServerInfo": {
            "version": info.version,
            "kafkaClusterId": info.kafka_cluster_id,
            "ksqlServiceId": info.service_id,
            "serverStatus": info.status,
        }
    }


def cluster_id_json(info: r.ServerInfo) -> dict[str, Any]:
    return {
        "scope": {
            "path": [],
            "clusters": {"kafka-cluster": info.kafka_cluster_id, "ksql-cluster": info.service_id},
        }
    }


def health_json(h: r.Health) -> dict[str, Any]:
    return {
        "isHealthy": h.is_healthy,
        "details": {name: {"isHealthy": ok} for name, ok in h.details.items()},
        "serverState": h.server_state,
    }


def command_statuses_json(statuses: Mapping[str, r.CommandStatus]) -> dict[str, Any]:
    return {"commandStatuses": {cid: s.status.value for cid, s in statuses.items()}}
