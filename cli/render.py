"""Turn ``/ksql`` entities into the text ksqlDB's CLI prints.

Pure functions from JSON (as the server sent it) to lines of text, so they can be tested
without a terminal. Tables follow ksqlDB's CLI layout: a space-padded header row, a dashed
separator, the rows, a closing separator; each entity kind has a renderer in ``_RENDERERS``
(a table of data, as ksqlDB's ``Console.PRINT_HANDLERS``). ``OUTPUT JSON`` prints the
entities as indented JSON instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any

Entity = Mapping[str, Any]
Lines = list[str]


class OutputFormat(Enum):
    """How results are printed (``OUTPUT JSON`` / ``OUTPUT TABULAR``)."""

    TABULAR = "TABULAR"
    JSON = "JSON"


def java_text(value: Any) -> str:
    """A JSON value written as ksqlDB's CLI writes it (Java ``toString`` of the decoded value)."""
    match value:
        case None:
            return "null"
        case bool():
            return "true" if value else "false"
        case str():
            return value
        case list() | tuple():
            return "[" + ", ".join(java_text(item) for item in value) + "]"
        case dict():
            return "{" + ", ".join(f"{key}={java_text(item)}" for key, item in value.items()) + "}"
        case _:
            return str(value)


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None = None,
    header_lines: Sequence[str] = (),
    footer_lines: Sequence[str] = (),
) -> Lines:
    """ksqlDB's CLI table: `` A | B `` rows, a dashed line under the header and at the end.

    Columns are as wide as their widest cell; the separator is capped at the terminal width.
    """
    lines = list(header_lines)
    if headers:
        widths = [
            max([len(header), *(_cell_width(row[i]) for row in rows)]) for i, header in enumerate(headers)
        ]
        separator = "-" * min(sum(widths) + 3 * len(widths) - 1, width or 10**6)
        lines.append(_table_row(headers, widths))
        lines.append(separator)
        lines.extend(_table_row(row, widths) for row in rows)
        lines.append(separator)
    lines.extend(footer_lines)
    return lines


def _cell_width(cell: str) -> int:
    return max((len(part) for part in cell.split("\n")), default=0)


def _table_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return " " + " | ".join(cell.ljust(size) for cell, size in zip(cells, widths, strict=True)) + " "


def type_text(schema: Mapping[str, Any] | None) -> str:
    """A DESCRIBE field schema as ksqlDB's CLI names it (``VARCHAR(STRING)``, ``ARRAY<INTEGER>``)."""
    if not schema:
        return "UNKNOWN"
    kind = str(schema.get("type", "UNKNOWN"))
    member = schema.get("memberSchema")
    match kind:
        case "STRING":
            return "VARCHAR(STRING)"
        case "ARRAY":
            return f"ARRAY<{type_text(member)}>"
        case "MAP":
            return f"MAP<STRING, {type_text(member)}>"
        case "STRUCT":
            fields = schema.get("fields") or ()
            return "STRUCT<" + ", ".join(f"{f['name']} {type_text(f.get('schema'))}" for f in fields) + ">"
        case "DECIMAL":
            params = schema.get("parameters") or {}
            return f"DECIMAL({params.get('precision', '?')}, {params.get('scale', '?')})"
        case _:
            return kind


def _field_type(field: Mapping[str, Any], window_type: str | None, is_table: bool) -> str:
    """The Type cell of a DESCRIBE row: key and header columns are marked as ksqlDB marks them."""
    text = type_text(field.get("schema"))
    match field.get("type"):
        case "KEY":
            window = f" (Window type: {window_type})" if window_type else ""
            return f"{text:<16} {'(primary key)' if is_table else '(key)'}{window}"
        case "HEADER":
            key = field.get("headerKey")
            return f"{text:<16} " + (f"(header('{key}'))" if key else "(headers)")
        case _:
            return text


def _labelled(label: str, value: Any) -> str:
    return f"{label:<20} : {java_text(value)}"


def _schema_lines(fields: Sequence[Mapping[str, Any]], window_type: str | None, is_table: bool) -> Lines:
    if not fields:
        return []
    rows = [(str(f.get("name", "")), _field_type(f, window_type, is_table)) for f in fields]
    return render_table(("Field", "Type"), rows)


def _query_list_lines(queries: Sequence[Mapping[str, Any]], kind: str, operation: str) -> Lines:
    if not queries:
        return []
    lines = ["", f"Queries that {operation} from this {kind}", "-----------------------------------"]
    for query in queries:
        one_line = " ".join(str(query.get("queryString", "")).split())
        lines.append(f"{query.get('id')} ({query.get('state') or 'N/A'}) : {one_line}")
    lines.append("")
    lines.append("For query topology and execution plan please run: EXPLAIN <QueryId>")
    return lines


def source_description_lines(source: Mapping[str, Any]) -> Lines:
    """DESCRIBE [EXTENDED] output of one source."""
    is_table = str(source.get("type", "")).upper() == "TABLE"
    window_type = source.get("windowType")
    fields = source.get("fields") or ()
    lines = [_labelled("Name", source.get("name"))]
    if not source.get("extended"):
        lines += _schema_lines(fields, window_type, is_table)
        lines.append("For runtime statistics and query details run: DESCRIBE <Stream,Table> EXTENDED;")
        return lines
    topic = source.get("topic") or ""
    if source.get("partitions"):
        topic += f" (partitions: {source['partitions']}, replication: {source.get('replication', 0)})"
    lines += [
        _labelled("Type", source.get("type")),
        _labelled("Timestamp field", source.get("timestamp") or "Not set - using <ROWTIME>"),
        _labelled("Key format", source.get("keyFormat")),
        _labelled("Value format", source.get("valueFormat")),
        _labelled("Kafka topic", topic),
        _labelled("Statement", source.get("statement")),
        "",
    ]
    lines += _schema_lines(fields, window_type, is_table)
    lines += _query_list_lines(source.get("readQueries") or (), str(source.get("type", "")), "read")
    lines += _query_list_lines(source.get("writeQueries") or (), str(source.get("type", "")), "write")
    lines += ["", "Local runtime statistics", "------------------------"]
    lines += [str(source.get("statistics", "")), str(source.get("errorStats", ""))]
    lines.append(
        f"(Statistics of the local KSQL server interaction with the Kafka topic {source.get('topic')})"
    )
    return lines


def query_description_lines(query: Mapping[str, Any]) -> Lines:
    """EXPLAIN output."""
    lines = [_labelled("ID", query.get("id")), _labelled("Query Type", query.get("queryType"))]
    if query.get("statementText"):
        lines.append(_labelled("SQL", query["statementText"]))
    if query.get("ksqlHostQueryStatus"):
        lines.append(_labelled("Host Query Status", query["ksqlHostQueryStatus"]))
    lines.append("")
    lines += _schema_lines(query.get("fields") or (), query.get("windowType"), False)
    for title, key, hint in (
        (
            "Sources that this query reads from: ",
            "sources",
            "For source description please run: DESCRIBE [EXTENDED] <SourceId>",
        ),
        (
            "Sinks that this query writes to: ",
            "sinks",
            "For sink description please run: DESCRIBE [EXTENDED] <SinkId>",
        ),
    ):
        if query.get(key):
            lines += ["", title, "-----------------------------------", *map(str, query[key]), "", hint]
    for title, key in (("Execution plan", "executionPlan"), ("Processing topology", "topology")):
        if query.get(key):
            lines += ["", title, "-" * len(title), str(query[key])]
    overridden = query.get("overriddenProperties") or {}
    if overridden:
        rows = [(name, java_text(value)) for name, value in sorted(overridden.items())]
        lines += render_table(
            ("Property", "Value"), rows, header_lines=("", "Overridden Properties", "---------------------")
        )
    return lines


def _source_list(kind: str) -> Callable[[Entity], Lines]:
    """SHOW STREAMS / SHOW TABLES."""

    def render(entity: Entity) -> Lines:
        sources = entity.get(kind.lower() + "s") or ()
        rows = [
            (
                str(s.get("name", "")),
                str(s.get("topic", "")),
                str(s.get("keyFormat", "")),
                str(s.get("valueFormat") or s.get("format", "")),
                java_text(bool(s.get("isWindowed"))),
            )
            for s in sources
        ]
        return render_table((f"{kind} Name", "Kafka Topic", "Key Format", "Value Format", "Windowed"), rows)

    return render


def _queries(entity: Entity) -> Lines:
    rows = [
        (
            str(q.get("id", "")),
            str(q.get("queryType", "")),
            str(q.get("state") or "N/A"),
            ",".join(q.get("sinks") or ()),
            ",".join(q.get("sinkKafkaTopics") or ()),
            " ".join(str(q.get("queryString", "")).split()),
        )
        for q in entity.get("queries") or ()
    ]
    return render_table(
        ("Query ID", "Query Type", "Status", "Sink Name", "Sink Kafka Topic", "Query String"),
        rows,
        footer_lines=("For detailed information on a Query run: EXPLAIN <Query ID>;",),
    )


def _replicas(replica_info: Sequence[int]) -> str:
    if not replica_info:
        return "0"
    if len(set(replica_info)) == 1:
        return str(replica_info[0])
    return ", ".join(map(str, replica_info))


def _topics(entity: Entity) -> Lines:
    rows = [
        (str(t.get("name", "")), str(len(t.get("replicaInfo") or ())), _replicas(t.get("replicaInfo") or ()))
        for t in entity.get("topics") or ()
    ]
    return render_table(("Kafka Topic", "Partitions", "Partition Replicas"), rows)


def _properties(entity: Entity) -> Lines:
    overwritten = set(entity.get("overwrittenProperties") or ())
    defaults = set(entity.get("defaultProperties") or ())
    rows = []
    for prop in sorted(entity.get("properties") or (), key=lambda p: str(p.get("name", ""))):
        name = str(prop.get("name", ""))
        override = "SESSION" if name in overwritten else "" if name in defaults else "SERVER"
        value = "NULL" if prop.get("value") is None else java_text(prop["value"])
        rows.append((name, str(prop.get("scope", "")), override, value))
    return render_table(("Property", "Scope", "Default override", "Effective Value"), rows)


def _functions(entity: Entity) -> Lines:
    functions = sorted(
        entity.get("functions") or (), key=lambda f: (str(f.get("category", "")), str(f.get("name", "")))
    )
    rows: list[tuple[str, str]] = []
    previous = None
    for function in functions:
        category = str(function.get("category") or function.get("type", ""))
        if previous is not None and category != previous:
            rows.append((" ", " "))  # ksqlDB leaves a blank row between categories
        rows.append((str(function.get("name", "")), category))
        previous = category
    return render_table(
        ("Function Name", "Category"),
        rows,
        footer_lines=("For detailed information about a function, run: DESCRIBE FUNCTION <Function Name>;",),
    )


def _describe_function(entity: Entity) -> Lines:
    lines = [
        _labelled("Name", entity.get("name")),
        _labelled("Author", entity.get("author") or ""),
        _labelled("Version", entity.get("version") or ""),
        _labelled("Overview", entity.get("description") or ""),
        _labelled("Type", entity.get("type") or ""),
        _labelled("Jar", entity.get("path") or ""),
        "Variations",
    ]
    for variation in entity.get("functions") or ():
        arguments = ", ".join(
            f"{a.get('name', '')} {a.get('type', '')}".strip() for a in variation.get("arguments") or ()
        )
        lines += [
            "",
            f"\t{'Variation':<12} : {entity.get('name')}({arguments})",
            f"\t{'Returns':<12} : {variation.get('returnType', '')}",
            f"\t{'Description':<12} : {variation.get('description', '')}",
        ]
    return lines


def _message(text: Callable[[Entity], str]) -> Callable[[Entity], Lines]:
    """A one-cell ``Message`` table, as ksqlDB prints command results."""
    return lambda entity: render_table(("Message",), [(text(entity),)])


def _command_message(entity: Entity) -> str:
    status = entity.get("commandStatus") or {}
    return str(status.get("message", "")).split("\n", 1)[0]


def _types(entity: Entity) -> Lines:
    types = entity.get("types") or {}
    return render_table(("Type Name", "Schema"), [(name, type_text(types[name])) for name in sorted(types)])


def _variables(entity: Entity) -> Lines:
    rows = [(str(v.get("name", "")), java_text(v.get("value"))) for v in entity.get("variables") or ()]
    return render_table(("Variable Name", "Value"), rows)


def _source_descriptions(entity: Entity) -> Lines:
    lines: Lines = []
    for source in entity.get("sourceDescriptions") or ():
        lines += [*source_description_lines(source), ""]
    return lines


def _query_descriptions(entity: Entity) -> Lines:
    lines: Lines = []
    for query in entity.get("queryDescriptions") or ():
        lines += [*query_description_lines(query), ""]
    return lines


def _assert(kind: str, key: str) -> Callable[[Entity], Lines]:
    def render(entity: Entity) -> Lines:
        verb = "exists" if entity.get("exists") else "does not exist"
        return [f"{kind} {entity.get(key)} {verb}"]

    return render


_RENDERERS: dict[str, Callable[[Entity], Lines]] = {
    "currentStatus": _message(_command_message),
    "streams": _source_list("Stream"),
    "tables": _source_list("Table"),
    "queries": _queries,
    "kafka_topics": _topics,
    "kafka_topics_extended": _topics,
    "properties": _properties,
    "function_names": _functions,
    "describe_function": _describe_function,
    "variables": _variables,
    "type_list": _types,
    "sourceDescription": lambda e: source_description_lines(e.get("sourceDescription") or {}),
    "source_descriptions": _source_descriptions,
    "queryDescription": lambda e: query_description_lines(e.get("queryDescription") or {}),
    "query_descriptions": _query_descriptions,
    "terminate_query": _message(lambda e: f'Terminated query "{e.get("queryId")}"'),
    "warning_entity": _message(lambda e: str(e.get("message", ""))),
    "assert_topic": _assert("Topic", "topicName"),
    "assert_schema": _assert("Schema", "subject"),
}


def entity_lines(entity: Entity) -> Lines:
    """One entity as table text, followed by its warnings."""
    renderer = _RENDERERS.get(str(entity.get("@type")))
    lines = renderer(entity) if renderer else json.dumps(entity, indent=2).split("\n")
    lines += [f"WARNING: {w.get('message', '')}" for w in entity.get("warnings") or ()]
    return lines


def entities_lines(entities: Sequence[Entity], output: OutputFormat = OutputFormat.TABULAR) -> Lines:
    """A ``/ksql`` answer as ksqlDB's CLI prints it.

    Tabular: a blank line before each entity, and its statement when there are several.
    """
    if output is OutputFormat.JSON:
        return json.dumps(list(entities), indent=2).split("\n")
    lines: Lines = []
    for entity in entities:
        lines.append("")
        if len(entities) > 1:
            lines.append(str(entity.get("statementText", "")))
        lines += entity_lines(entity)
    return lines


def source_names(entities: Sequence[Entity]) -> tuple[str, ...]:
    """Names of streams and tables in SHOW STREAMS / SHOW TABLES answers (for completion)."""
    names = []
    for entity in entities:
        for key in ("streams", "tables"):
            names += [str(s["name"]) for s in entity.get(key) or () if "name" in s]
    return tuple(names)
