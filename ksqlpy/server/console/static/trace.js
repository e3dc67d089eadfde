// "Trace an event": a form (source, key, optional time range) sent to POST /trace, answered by
// the path the key's records took: one card per hop (a topic, with the query that wrote it and
// the keys searched there) holding that topic's records in time order, and a timeline of every
// record, oldest first. Data is put in the page as text only.

import { trace } from "./api.js";
import { cellText, el } from "./render.js";

/** ROWTIME as the console shows it: UTC, to the millisecond. */
export function timeText(ms) {
  const when = new Date(ms);
  return Number.isNaN(when.getTime()) ? String(ms) : when.toISOString().replace("T", " ").replace("Z", " Z");
}

/** A datetime-local field's value (read as UTC) in epoch milliseconds; empty: null. */
function millis(value) {
  if (!value) return null;
  const ms = Date.parse(`${value}Z`);
  if (Number.isNaN(ms)) throw new Error(`not a time: ${value}`);
  return ms;
}

/** The key typed in the form: a JSON object for several key columns, else the text itself. */
function keyOf(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith("{")) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return trimmed;
    }
  }
  return trimmed;
}

const fields = (object) => (object === null ? "null" : Object.entries(object)
  .map(([k, v]) => `${k}=${cellText(v)}`).join(", "));

export class TraceView {
  constructor({ form, source, key, from, to, status, output }) {
    Object.assign(this, { form, source, key, from, to, status, output });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.run();
    });
  }

  /** Offer the catalog's streams and tables in the source field. */
  setSources(names) {
    const list = document.getElementById(this.source.getAttribute("list"));
    if (list) list.replaceChildren(...names.map((n) => el("option", { value: n })));
  }

  /** Fill the form (a click in the catalog) without running it. */
  prefill(source) {
    this.source.value = source;
    this.key.focus();
  }

  async run() {
    let request;
    try {
      request = { source: this.source.value.trim(), key: keyOf(this.key.value),
        from: millis(this.from.value), to: millis(this.to.value) };
    } catch (e) {
      this.fail(e.message);
      return;
    }
    this.status.textContent = "tracing…";
    this.output.dataset.state = "running";
    let answer;
    try {
      answer = await trace(request);
    } catch (e) {
      this.fail(e.message);
      return;
    }
    this.show(answer);
  }

  fail(message) {
    this.status.textContent = "";
    this.output.dataset.state = "error";
    this.output.replaceChildren(el("div", { class: "result error" }, el("div", { class: "message", text: message })));
  }

  show(answer) {
    const n = answer.records.length;
    const reached = answer.hops.filter((h) => h.records > 0).length;
    this.status.textContent = `${n} record${n === 1 ? "" : "s"} in ${reached} of ${answer.hops.length} `
      + `topic${answer.hops.length === 1 ? "" : "s"}${answer.truncated ? " (truncated)" : ""}`;
    const parts = [this.path(answer), ...answer.hops.map((h, i) => this.hopCard(answer, h, i))];
    for (const skipped of answer.notFollowed) {
      parts.push(el("div", { class: "result not-followed" }, el("div", { class: "message",
        text: `${skipped.query} (${skipped.source} → ${skipped.sink}) not followed: ${skipped.reason}` })));
    }
    parts.push(this.timeline(answer));
    this.output.replaceChildren(...parts);
    this.output.dataset.state = "done";
  }

  /** The hops as a chain: source → query → sink, each with its record count. */
  path(answer) {
    const items = answer.hops.map((h, i) => el("li", { "data-hop": String(i) },
      h.query ? el("span", { class: "via", text: `${h.upstream} ─${h.query}→ ` }) : null,
      el("b", { text: h.source }), el("span", { class: "muted", text: ` (${h.kind}, ${h.records})` })));
    return el("ol", { class: "trace-path" }, ...items);
  }

  hopCard(answer, hop, index) {
    const rows = answer.records.filter((r) => r.hop === index);
    const head = hop.query
      ? `topic ${hop.topic} · ${hop.kind} ${hop.source} · written by ${hop.query} from ${hop.upstream}`
        + ((hop.joinedWith || []).length ? ` joined with ${hop.joinedWith.join(", ")}` : "")
      : `topic ${hop.topic} · ${hop.kind} ${hop.source} · traced key ${keyText(answer.key)}`;
    const searched = hop.keys.map((k) => k.map(cellText).join(", ")).join(" | ");
    const keys = hop.query ? el("div", { class: "muted keys", text: hop.keys.length
      ? `searched for key${hop.keys.length === 1 ? "" : "s"} ${searched}`
      : "no traced record passed the query's WHERE" }) : null;
    const statement = hop.statement ? el("div", { class: "statement", text: hop.statement }) : null;
    const body = rows.length
      ? recordTable(rows, false)
      : el("div", { class: "muted", text: "no records" });
    return el("div", { class: "result trace-hop", "data-source": hop.source, "data-topic": hop.topic,
      "data-query": hop.query || "" }, el("div", { class: "hop-head", text: head }), statement, keys, body);
  }

  timeline(answer) {
    return el("details", { class: "result trace-timeline", open: "" },
      el("summary", { text: answer.records.length === 1 ? "The record in time order"
        : `All ${answer.records.length} records in time order` }),
      recordTable(answer.records, true));
  }
}

function keyText(key) {
  return key !== null && typeof key === "object" ? fields(key) : cellText(key);
}

function recordTable(records, withTopic) {
  const headers = ["ROWTIME", ...(withTopic ? ["topic", "query"] : []), "partition", "offset", "key", "value"];
  const body = el("tbody", {}, ...records.map((r) => el("tr", {},
    ...[timeText(r.rowtime), ...(withTopic ? [r.topic, r.query || "(source)"] : []), r.partition, r.offset,
      fields(r.key), r.value === null ? "(deleted)" : fields(r.value)].map((c) => el("td", { text: String(c) })))));
  return el("table", { class: "rows" }, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
    body);
}
