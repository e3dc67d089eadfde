// The console page: a SQL editor whose Ctrl/Cmd+Enter runs its statements in order (queries
// through /query-stream, the rest through /ksql), a catalog from SHOW statements (functions and
// the processing log's newest bad records too, catalog.js), the lineage graph, and "trace an
// event" (POST /trace). Only the public REST API is used; see README.md, "Console".

import { info, ksql, ServerError } from "./api.js";
import { FunctionList, ProcessingLogCard } from "./catalog.js";
import { LineageView } from "./lineage.js";
import { planTable } from "./plan.js";
import { el, entityNodes } from "./render.js";
import { http1Full, QueryView } from "./results.js";
import { TraceView } from "./trace.js";
import { errorOffset, sessionCommand, splitStatements, statementKind } from "./statements.js";

const HISTORY_KEY = "ksqlpy.console.history";
const HISTORY_SIZE = 50;
const $ = (id) => document.getElementById(id);

// --- editor ----------------------------------------------------------------------------------

const KEYWORDS = "advance all alter analyze and array as asc assert at beginning between by case cast catalog "
  + "changes column columns connector connectors create day days define delete desc describe distinct drop else "
  + "emit end escape exists explain extended false final from full function functions grace group having header "
  + "headers hopping hour hours if in inner insert interval into is join key left like limit list map millisecond "
  + "milliseconds minute minutes month months not null on or outer partition partitions pause period primary "
  + "print properties queries query replace resume retention right run sample schema script second seconds select "
  + "session set show sink size source stream streams struct table tables terminate then timeout to topic topics "
  + "true tumbling type types undefine unset values variables when where window windowend windowstart with within "
  + "year years zone";
const TYPES = "array bigint boolean bytes date decimal double int integer map string struct time timestamp varchar "
  + "rowtime rowpartition rowoffset";
const words = (text) => Object.fromEntries(text.split(" ").map((w) => [w, true]));

/** `quoted identifiers`, with `` inside (the sql mode's MySQL hook does the same). */
function backQuoted(stream) {
  let ch;
  while ((ch = stream.next()) != null) {
    if (ch === "`" && !stream.eat("`")) return "variable-2";
  }
  return "variable-2";
}

window.CodeMirror.defineMIME("text/x-ksql", {
  name: "sql",
  keywords: words(KEYWORDS),
  builtin: words(TYPES),
  atoms: words("false true null"),
  operatorChars: /^[*+\-%<>!=|/]/,
  dateSQL: {},
  support: words("doubleQuote commentSlashSlash"),
  hooks: { "`": backQuoted },
});

const editor = window.CodeMirror.fromTextArea($("editor"), {
  mode: "text/x-ksql",
  lineNumbers: true,
  indentUnit: 2,
  extraKeys: { "Ctrl-Enter": () => run(), "Cmd-Enter": () => run() },
});
editor.setValue(localStorage.getItem("ksqlpy.console.draft") || "SHOW STREAMS;\n");
editor.on("change", () => {
  localStorage.setItem("ksqlpy.console.draft", editor.getValue());
  clearErrorMarks();
});

let errorMarks = [];
function clearErrorMarks() {
  for (const m of errorMarks) m.clear();
  errorMarks = [];
}

/** Underline the token an error's "line L:C" points at (the rest of the line if no token). */
function markError(message, source, statement) {
  const offset = errorOffset(message, source, statement.start);
  if (offset === null) return;
  const from = editor.posFromIndex(offset);
  const line = editor.getLine(from.line) || "";
  const token = /^(`[^`]*`|'[^']*'|"[^"]*"|\w+|\S)/.exec(line.slice(from.ch));
  const to = token ? { line: from.line, ch: from.ch + token[0].length } : { line: from.line, ch: line.length };
  if (to.ch === from.ch) to.ch = Math.min(line.length, from.ch + 1) || from.ch;
  errorMarks.push(editor.markText(from, to, { className: "cm-error-mark", attributes: { title: message } }));
  editor.scrollIntoView(from, 60);
}

// --- session: properties and variables the console keeps, as ksqlDB's CLI does ---------------

const session = { properties: {}, variables: {} };

function properties() {
  const props = { ...session.properties };
  if ($("earliest").checked && !("auto.offset.reset" in props)) props["auto.offset.reset"] = "earliest";
  return props;
}

function showProperties() {
  const set = Object.entries(session.properties).map(([k, v]) => `${k}=${v}`);
  $("properties").textContent = set.length ? `SET ${set.join(", ")}` : "";
}

// --- running statements ----------------------------------------------------------------------

const results = $("results");
let running = [];

function card(statement, ...children) {
  return el("div", { class: "result" }, el("div", { class: "statement", text: statement }), ...children);
}

function errorCard(statement, error) {
  const node = card(statement, el("div", { class: "message", text: error.message }));
  node.classList.add("error");
  return node;
}

function isPushQuery(text, kind) {
  return kind === "PRINT" || /\bEMIT\s+(CHANGES|FINAL)\b/i.test(text);
}

async function runOne(statement, source) {
  const text = statement.text;
  const kind = statementKind(text);
  const command = sessionCommand(text);
  if (command) {
    if (command.action === "set") session.properties[command.name] = command.value;
    if (command.action === "unset") delete session.properties[command.name];
    if (command.action === "define") session.variables[command.name] = command.value;
    if (command.action === "undefine") delete session.variables[command.name];
    showProperties();
    const said = { set: `Successfully changed local property '${command.name}' to '${command.value}'.`,
      unset: `Successfully unset local property '${command.name}'.`,
      define: `Defined variable ${command.name}.`, undefine: `Undefined variable ${command.name}.` };
    results.append(card(text, el("div", { class: "message", text: said[command.action] })));
    return true;
  }
  try {
    if (kind === "SELECT" || kind === "PRINT" || kind === "WITH") {
      // An ended push query leaves SHOW QUERIES: the catalog follows.
      const waits = isPushQuery(text, kind) && http1Full();
      const view = new QueryView(text, isPushQuery(text, kind), () => refreshCatalog());
      results.append(view.node);
      if (waits) {
        view.onNote("Over HTTP/1.1 a browser opens at most 6 connections to a server and each running push query "
          + "holds one: this query, and any statement run meanwhile, waits until one ends. Served over https, "
          + "the console speaks HTTP/2, which has no such limit.");
      }
      if (view.push) running.push(view);
      try {
        await view.run(properties(), session.variables);
      } catch (e) {
        view.node.remove(); // the query did not start: its error card takes its place
        running = running.filter((v) => v !== view);
        throw e;
      }
      return !view.node.classList.contains("error");
    }
    const entities = await ksql(text, properties(), session.variables);
    results.append(card(text, ...entities.flatMap(entityNodes)));
    return true;
  } catch (e) {
    const error = e instanceof ServerError ? e : new ServerError({ message: String(e.message || e) }, 0);
    results.append(errorCard(text, error));
    markError(error.message, source, statement);
    return false;
  }
}

let busy = false;

async function run() {
  if (busy) return;
  const source = editor.getValue();
  const statements = splitStatements(source);
  if (!statements.length) return;
  busy = true;
  $("run").disabled = true;
  clearErrorMarks();
  // A new run replaces the last one's results; its push queries are ended on the server.
  await Promise.all(running.map((v) => v.stop()));
  running = [];
  results.replaceChildren();
  remember(source.trim());
  $("run-status").textContent = `running ${statements.length} statement${statements.length === 1 ? "" : "s"}…`;
  let done = 0;
  for (const statement of statements) {
    if (!(await runOne(statement, source))) break; // as the CLI: stop at the first failure
    done++;
  }
  $("run-status").textContent = `${done} of ${statements.length} ran`;
  busy = false;
  $("run").disabled = false;
  refreshCatalog();
  if (!$("view-lineage").hidden) lineageView.refresh();
}

// --- history ---------------------------------------------------------------------------------

function history() {
  try {
    return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
  } catch {
    return [];
  }
}

function remember(text) {
  const items = [text, ...history().filter((h) => h !== text)].slice(0, HISTORY_SIZE);
  localStorage.setItem(HISTORY_KEY, JSON.stringify(items));
  showHistory();
}

function showHistory() {
  const select = $("history");
  select.replaceChildren(el("option", { value: "", text: "History…" }),
    ...history().map((h, i) => el("option", { value: String(i), text: h.replace(/\s+/g, " ").slice(0, 80) })));
}

$("history").addEventListener("change", (e) => {
  const item = history()[Number(e.target.value)];
  if (e.target.value !== "" && item !== undefined) editor.setValue(item);
  e.target.value = "";
  editor.focus();
});

// --- catalog sidebar -------------------------------------------------------------------------

async function describeInto(target, statement) {
  try {
    const entities = await ksql(statement, properties(), session.variables);
    target.replaceChildren(card(statement, ...entities.flatMap(entityNodes)));
  } catch (e) {
    target.replaceChildren(errorCard(statement, e));
  }
}

const quoted = (name) => (/^[A-Z_][A-Z0-9_]*$/.test(name) ? name : `\`${name.replace(/`/g, "``")}\``);

function describeInResults(statement) {
  showView("editor");
  const holder = el("div");
  results.prepend(holder);
  describeInto(holder, statement);
}

function fill(list, items, onClick, extra = () => null) {
  list.replaceChildren(...items.map((item) => el("li", { title: item, onclick: () => onClick(item) }, item, extra(item))));
}

async function refreshCatalog() {
  let entities;
  try {
    entities = await ksql("SHOW STREAMS; SHOW TABLES; SHOW QUERIES; SHOW TOPICS;");
  } catch {
    return;
  }
  const byType = Object.fromEntries(entities.map((e) => [e["@type"], e]));
  const names = (key, field) => ((byType[key] || {})[field] || []).map((s) => s.name);
  // On the trace view a click on a stream or table picks it to trace; elsewhere it describes it.
  const pick = (n) => ($("view-trace").hidden ? describeInResults(`DESCRIBE ${quoted(n)};`) : traceView.prefill(n));
  fill($("catalog-streams"), names("streams", "streams"), pick);
  fill($("catalog-tables"), names("tables", "tables"), pick);
  traceView.setSources([...names("streams", "streams"), ...names("tables", "tables")]);
  const queries = (byType.queries || {}).queries || [];
  const states = Object.fromEntries(queries.map((q) => [q.id, q.state]));
  fill($("catalog-queries"), queries.map((q) => q.id), (id) => describeInResults(`EXPLAIN ${id};`),
    (id) => el("span", { class: "state", text: states[id] || "" }));
  fill($("catalog-topics"), names("kafka_topics", "topics"), (t) => {
    editor.setValue(`PRINT '${t.replace(/'/g, "''")}' FROM BEGINNING LIMIT 10;\n`);
    showView("editor");
    editor.focus();
  });
}

const functionList = new FunctionList({ list: $("catalog-functions"), filter: $("functions-filter"),
  count: $("functions-count"), onPick: (name) => describeInResults(`DESCRIBE FUNCTION ${name};`) });

/** The functions change only with the server's version: read once, and on Refresh. */
async function refreshFunctions() {
  try {
    const [shown] = await ksql("SHOW FUNCTIONS;");
    functionList.set(shown.functions || []);
  } catch {
    // the catalog keeps what it had
  }
}

/** The processing log's newest bad records, in a card on top of the editor's results. */
function showProcessingLog() {
  showView("editor");
  const log = new ProcessingLogCard();
  results.prepend(log.node);
  log.load();
}

$("catalog-refresh").addEventListener("click", () => {
  refreshCatalog();
  refreshFunctions();
});
$("plog-open").addEventListener("click", showProcessingLog);

// --- views -----------------------------------------------------------------------------------

const lineageView = new LineageView($("lineage-graph"), $("lineage-status"), (node) => {
  const detail = $("lineage-detail");
  if (node.kind === "topic") {
    detail.replaceChildren(card(`topic ${node.name}`, el("pre", { class: "text",
      text: `Kafka topic : ${node.name}\nPartitions  : ${node.partitions}${node.missing ? "\n(missing)" : ""}` })));
    return;
  }
  if (node.kind === "query") {
    detail.replaceChildren(queryPlanCard(node));
    return;
  }
  describeInto(detail, `DESCRIBE ${quoted(node.name)};`);
}, (node) => {
  // the live graph moved: a query's plan card on screen follows its counts (not its EXPLAIN)
  const detail = $("lineage-detail");
  if (node.kind === "query" && detail.firstElementChild?.dataset.planOf === node.name) {
    detail.replaceChildren(queryPlanCard(node));
  }
});

/** A query node's plan with per-step record counts; EXPLAIN (a click on its title) has the rest. */
function queryPlanCard(node) {
  const explain = el("button", { class: "link", text: `EXPLAIN ${node.name}`,
    onclick: () => describeInto($("lineage-detail"), `EXPLAIN ${node.name};`) });
  const shown = card(`plan of ${node.name} · ${node.state} · in ${node.recordsIn} · out ${node.recordsOut}`,
    planTable(node), el("div", { class: "muted plan-note" }, "Records through each step since the query started. ",
      explain));
  shown.dataset.planOf = node.name;
  return shown;
}

const traceView = new TraceView({ form: $("trace-form"), source: $("trace-source"), key: $("trace-key"),
  from: $("trace-from"), to: $("trace-to"), status: $("trace-status"), output: $("trace-output") });

function showView(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === name);
  $("view-editor").hidden = name !== "editor";
  $("view-lineage").hidden = name !== "lineage";
  $("view-trace").hidden = name !== "trace";
  if (name === "lineage") lineageView.refresh();
  else if (name === "editor") editor.refresh();
}

for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
$("lineage-refresh").addEventListener("click", () => lineageView.refresh());
// Live: the graph is fetched again every few seconds while it is on screen, so that query
// states and record counts move; it is redrawn only when something changed.
setInterval(() => {
  if ($("lineage-live").checked && !$("view-lineage").hidden && !document.hidden) lineageView.refresh(true);
}, 3000);
$("run").addEventListener("click", run);

// --- start -----------------------------------------------------------------------------------

showHistory();
refreshCatalog();
refreshFunctions();
info().then(
  (i) => { $("server-info").textContent = `ksqlpy ${i.version} · ${i.ksqlServiceId} · ${i.serverStatus}`; },
  (e) => { $("server-info").textContent = `server unreachable: ${e.message}`; },
);
document.body.dataset.ready = "true";
editor.focus();
