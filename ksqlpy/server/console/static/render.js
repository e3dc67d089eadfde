// Statement results as ksqlDB's CLI prints them: a message for commands, a table for lists,
// the DESCRIBE / EXPLAIN layout for descriptions, and indented JSON for anything else.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

/** A cell's text the way the CLI shows values: null, JSON for structures. */
export function cellText(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function table(headers, rows, types = null) {
  const head = el("tr", {}, ...headers.map((h, i) =>
    el("th", {}, h, types && types[i] ? el("small", { text: types[i] }) : null)));
  const body = el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", { text: cellText(c) })))));
  return el("table", { class: "rows" }, el("thead", {}, head), body);
}

function text(lines) {
  return el("pre", { class: "text", text: lines.join("\n") });
}

function typeText(schema) {
  if (!schema) return "";
  switch (schema.type) {
    case "STRING": return "VARCHAR(STRING)";
    case "ARRAY": return `ARRAY<${typeText(schema.memberSchema)}>`;
    case "MAP": return `MAP<STRING, ${typeText(schema.memberSchema)}>`;
    case "STRUCT": return `STRUCT<${(schema.fields || []).map((f) => `${f.name} ${typeText(f.schema)}`).join(", ")}>`;
    default: return schema.type;
  }
}

function fieldRows(fields, isTable) {
  return (fields || []).map((f) => {
    let type = typeText(f.schema);
    if (f.type === "KEY") type += isTable ? "  (primary key)" : "  (key)";
    if (f.type === "HEADER") type += `  (header${f.headerKey ? `('${f.headerKey}')` : "s"})`;
    return [f.name, type];
  });
}

function sourceDescription(d) {
  const isTable = d.type === "TABLE";
  const info = [
    `Name                 : ${d.name}`,
    `Type                 : ${d.type}`,
    `Key format           : ${d.keyFormat}`,
    `Value format         : ${d.valueFormat}`,
    `Kafka topic          : ${d.topic} (partitions: ${d.partitions}, replication: ${d.replication})`,
  ];
  if (d.windowType) info.push(`Window type          : ${d.windowType}`);
  if (d.timestamp) info.push(`Timestamp field      : ${d.timestamp}`);
  if (d.statement) info.push(`Statement            : ${d.statement}`);
  const parts = [text(info), table(["Field", "Type"], fieldRows(d.fields, isTable))];
  const queries = [...(d.readQueries || []).map((q) => ["reads", q.id, q.queryString]),
    ...(d.writeQueries || []).map((q) => ["writes", q.id, q.queryString])];
  if (queries.length) parts.push(table(["", "Query", "Statement"], queries));
  if (d.statistics) parts.push(text([`Statistics: ${d.statistics}`]));
  return parts;
}

function queryDescription(q) {
  const info = [
    `ID                   : ${q.id}`,
    `Query type           : ${q.queryType || "PERSISTENT"}`,
    `SQL                  : ${q.statementText || q.queryString || ""}`,
    `Sources              : ${(q.sources || []).join(", ")}`,
    `Sinks                : ${(q.sinks || []).join(", ")}`,
    `State                : ${q.state || ""}`,
  ];
  return [text(info), table(["Field", "Type"], fieldRows(q.fields, false)),
    text(["", "Execution plan", "--------------", q.executionPlan || "", "", "Processing topology",
      "-------------------", q.topology || ""])];
}

/** DESCRIBE FUNCTION as the shell prints it: the function, then each variation with its arguments. */
function functionDescription(f) {
  const lines = [
    `Name        : ${f.name}`,
    `Author      : ${f.author || ""}`,
    ...(f.version ? [`Version     : ${f.version}`] : []),
    `Overview    : ${f.description || ""}`,
    `Type        : ${f.type || ""}`,
    `Jar         : ${f.path || ""}`,
    "Variations  :",
  ];
  for (const v of f.functions || []) {
    const args = (v.arguments || []).map((a) => `${a.name} ${a.isVariadic ? `${a.type}...` : a.type}`);
    lines.push("", `\tVariation   : ${f.name}(${args.join(", ")})`, `\tReturns     : ${v.returnType}`);
    if (v.description) lines.push(`\tDescription : ${v.description}`);
    for (const a of v.arguments || []) if (a.description) lines.push(`\t${a.name.padEnd(12)}: ${a.description}`);
  }
  return [text(lines)];
}

const RENDERERS = {
  currentStatus: (e) => [el("div", { class: "message", text: e.commandStatus ? e.commandStatus.message : "" })],
  streams: (e) => [table(["Stream Name", "Kafka Topic", "Key Format", "Value Format", "Windowed"],
    e.streams.map((s) => [s.name, s.topic, s.keyFormat, s.valueFormat, s.isWindowed]))],
  tables: (e) => [table(["Table Name", "Kafka Topic", "Key Format", "Value Format", "Windowed"],
    e.tables.map((s) => [s.name, s.topic, s.keyFormat, s.valueFormat, s.isWindowed]))],
  queries: (e) => [table(["Query ID", "Query Type", "Status", "Sink Name", "Sink Kafka Topic", "Query String"],
    e.queries.map((q) => [q.id, q.queryType, q.state || "N/A", (q.sinks || []).join(","),
      (q.sinkKafkaTopics || []).join(","), (q.queryString || "").replace(/\s+/g, " ")]))],
  kafka_topics: (e) => [table(["Kafka Topic", "Partitions", "Partition Replicas"],
    e.topics.map((t) => [t.name, (t.replicaInfo || []).length, (t.replicaInfo || [])[0] ?? 0]))],
  properties: (e) => [table(["Property", "Scope", "Value"],
    (e.properties || []).map((p) => [p.name, p.scope || "", p.value]))],
  function_names: (e) => [table(["Function Name", "Category"],
    (e.functions || []).map((f) => [f.name, f.category || f.type]))],
  describe_function: functionDescription,
  sourceDescription: (e) => sourceDescription(e.sourceDescription),
  source_descriptions: (e) => e.sourceDescriptions.flatMap(sourceDescription),
  queryDescription: (e) => queryDescription(e.queryDescription),
  query_descriptions: (e) => e.queryDescriptions.flatMap(queryDescription),
  terminate_query: (e) => [el("div", { class: "message", text: `Terminated query "${e.queryId}"` })],
  warning_entity: (e) => [el("div", { class: "message", text: e.message })],
};
RENDERERS.kafka_topics_extended = RENDERERS.kafka_topics;

/** One /ksql entity as DOM nodes, followed by its warnings. */
export function entityNodes(entity) {
  const render = RENDERERS[entity["@type"]];
  const nodes = render ? render(entity) : [text(JSON.stringify(entity, null, 2).split("\n"))];
  for (const w of entity.warnings || []) nodes.push(el("div", { class: "message", text: `WARNING: ${w.message}` }));
  return nodes;
}
