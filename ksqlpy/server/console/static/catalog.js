// The catalog's functions and processing log. Functions come from SHOW FUNCTIONS, filtered as
// typed; a click describes one (DESCRIBE FUNCTION, printed as the shell prints it, see render.js).
// The processing log's newest bad records come from a pull query over the KSQL_PROCESSING_LOG
// stream, bounded by ROWTIME; the page keeps only the newest PLOG_ROWS of the rows it streams.

import { streamQuery } from "./api.js";
import { cellText, el } from "./render.js";
import { timeText } from "./trace.js";

/** Bad records the processing log card shows, newest first. */
export const PLOG_ROWS = 20;
export const PLOG_STREAM = "KSQL_PROCESSING_LOG";
/** How far back the card looks, by ROWTIME: the log can be long, and it is read to its end. */
const PLOG_WINDOWS = [["last hour", 3600e3], ["last 24 hours", 86400e3], ["last 7 days", 7 * 86400e3], ["all", null]];
const PLOG_DEFAULT = 1;

/** ksqlDB's processing log message types (MESSAGE->TYPE) and the struct each fills. */
const KINDS = {
  0: ["deserialization", "DESERIALIZATIONERROR"],
  1: ["record processing", "RECORDPROCESSINGERROR"],
  2: ["production", null],
  3: ["serialization", "SERIALIZATIONERROR"],
};

export class FunctionList {
  constructor({ list, filter, count, onPick }) {
    Object.assign(this, { list, filter, count, onPick, functions: [] });
    filter.addEventListener("input", () => this.draw());
  }

  /** SHOW FUNCTIONS' entries ({name, type, category}). */
  set(functions) {
    this.functions = functions;
    this.draw();
  }

  draw() {
    const needle = this.filter.value.trim().toUpperCase();
    const shown = this.functions.filter((f) => !needle || f.name.includes(needle)
      || (f.category || "").toUpperCase().includes(needle));
    this.count.textContent = needle ? `${shown.length} of ${this.functions.length}` : String(this.functions.length);
    this.list.replaceChildren(...shown.map((f) => el("li", { title: `${f.name} (${f.type}, ${f.category || ""})`,
      "data-name": f.name, onclick: () => this.onPick(f.name) }, f.name,
    el("span", { class: "state", text: (f.category || f.type || "").toLowerCase() }))));
  }
}

/** One processing log row ([LOGGER, LEVEL, TIME, MESSAGE]) as the card's cells. */
export function plogCells(row) {
  const [logger, level, time, message] = row;
  const [kind, field] = KINDS[message && message.TYPE] || [`type ${message && message.TYPE}`, null];
  const detail = (field && message[field]) || {};
  // CAUSE names the record ("topic t, partition 0, offset 5"); its topic has a column of its own
  const topic = detail.topic || "";
  const where = (detail.CAUSE || []).map((c) => (topic && c.startsWith(`topic ${topic}, `)
    ? c.slice(topic.length + 8) : c)).join("; ");
  return [timeText(time), logger, level, kind, topic, where, cellText(detail.ERRORMESSAGE ?? "")];
}

export class ProcessingLogCard {
  constructor() {
    this.window = el("select", { class: "plog-window", title: "Records of the log by ROWTIME" },
      ...PLOG_WINDOWS.map(([label], i) => el("option", { value: String(i), text: label })));
    this.window.value = String(PLOG_DEFAULT);
    this.window.addEventListener("change", () => this.load());
    this.status = el("span", { class: "muted plog-status" });
    this.body = el("div", { class: "plog-body" });
    this.node = el("div", { class: "result plog" },
      el("div", { class: "push-head" }, el("b", { text: `${PLOG_STREAM}: newest bad records` }), this.window,
        el("button", { class: "refresh", text: "Refresh", onclick: () => this.load() }), this.status),
      this.body);
  }

  /** The pull query for the chosen window. */
  sql() {
    const [, span] = PLOG_WINDOWS[Number(this.window.value)];
    return span === null ? `SELECT * FROM ${PLOG_STREAM};`
      : `SELECT * FROM ${PLOG_STREAM} WHERE ROWTIME >= ${Date.now() - span};`;
  }

  async load() {
    const controller = new AbortController();
    if (this.controller) this.controller.abort();
    this.controller = controller;
    this.node.dataset.state = "running";
    this.status.textContent = "reading…";
    let newest = [];
    let seen = 0;
    let failure = null;
    try {
      await streamQuery(this.sql(), {}, {}, {
        header: () => {},
        // only the newest few are kept, whatever the window holds
        rows: (rows) => {
          seen += rows.length;
          newest = newest.concat(rows).slice(-PLOG_ROWS);
        },
        text: () => {},
        error: (e) => { failure = e; },
      }, controller.signal);
    } catch (e) {
      failure = e;
    }
    if (controller !== this.controller) return;
    if (failure) {
      this.status.textContent = "";
      this.body.replaceChildren(el("div", { class: "message error-text", text: failure.message }));
      this.node.dataset.state = "error";
      return;
    }
    // newest first: arrival (offset) order breaks ties of TIME
    newest.reverse();
    newest.sort((a, b) => b[2] - a[2]);
    this.status.textContent = seen > newest.length ? `${newest.length} newest of ${seen}`
      : `${seen} record${seen === 1 ? "" : "s"}`;
    const headers = ["TIME", "query", "level", "error", "topic", "where", "message"];
    this.body.replaceChildren(newest.length
      ? el("table", { class: "rows" }, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
        el("tbody", {}, ...newest.map((r) => el("tr", {}, ...plogCells(r).map((c) => el("td", { text: c }))))))
      : el("div", { class: "muted", text: "No bad records." }));
    this.node.dataset.state = "done";
  }
}
