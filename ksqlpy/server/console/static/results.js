// A query's result card: rows stream into a table as /query-stream delivers them. A push query
// shows its rate (rows/s, with a small uPlot chart), can be paused (rows are kept, the table
// stops moving) and stopped (POST /close-query ends it on the server).
//
// Rows arriving are not drawn at once: they wait in their view, and one animation frame draws
// every view's waiting rows together, so that many busy push queries cost one DOM update per
// frame rather than one per network chunk, and nothing is drawn while the tab is hidden or for a
// card scrolled out of sight (until it is back). A view
// keeps at most its table's worth of waiting rows (older ones would scroll away unseen anyway).
// Each frame's time, from its DOM update to the end of the style, layout and paint it causes, is
// kept in `window.__renderTimes` (ms, the latest RENDER_SAMPLES), for the load test and devtools.

import { closeQuery, streamQuery } from "./api.js";
import { cellText, el } from "./render.js";

/** Rows a pull query's table keeps at most. */
const MAX_ROWS = 1000;
/** Rows all running push queries' tables keep together, shared out evenly: with one push query
 * its table keeps 1000 rows, with 20 each keeps 100; older ones scroll away (the count goes on).
 * Laying out a table costs by its rows, and the page lays out every changed table each frame. */
const PUSH_ROW_BUDGET = 2000;
const PUSH_ROWS_MIN = 100;
/** Rows drawn in one frame up to which new rows are flashed; a flood is drawn without it. */
const FLASH_ROWS = 20;
/** Frame times kept in window.__renderTimes. */
const RENDER_SAMPLES = 10000;
/** Seconds of rate history the chart shows. */
const RATE_WINDOW = 60;

window.__renderTimes = [];
const waiting = new Set();
/** Push query views still running: they share PUSH_ROW_BUDGET. */
const live = new Set();
/** Connections a browser opens to one server over HTTP/1.1; each running push query holds one. */
export const HTTP1_CONNECTIONS = 6;

/** Whether running push queries hold every connection the page may open (plain http only: over
 * https the page speaks HTTP/2, one connection for everything). */
export function http1Full() {
  return location.protocol === "http:" && live.size >= HTTP1_CONNECTIONS;
}
let frameAsked = false;
// A message posted from an animation frame is handled after that frame's style, layout and paint.
const afterPaint = new MessageChannel();
let frameStart = null;
afterPaint.port1.onmessage = () => {
  if (frameStart === null) return;
  const times = window.__renderTimes;
  times.push(performance.now() - frameStart);
  if (times.length > RENDER_SAMPLES) times.splice(0, times.length - RENDER_SAMPLES);
  frameStart = null;
};

// A push query's card scrolled out of sight keeps its waiting rows (no more than its table holds)
// and draws them when it comes back: with many busy queries only the few on screen build rows.
const sight = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const view = entry.target.queryView;
    if (!view) continue;
    view.onScreen = entry.isIntersecting;
    if (view.onScreen && view.pending.length) drawSoon(view);
  }
});

/** Draw `view`'s waiting rows with the next animation frame. */
function drawSoon(view) {
  waiting.add(view);
  if (frameAsked) return;
  frameAsked = true;
  requestAnimationFrame(drawWaiting);
}

function drawWaiting() {
  frameAsked = false;
  const views = [...waiting];
  waiting.clear();
  frameStart = performance.now();
  for (const view of views) view.draw();
  // Scrolled after all the DOM writes: one layout for every table, not one per table.
  for (const view of views) view.scrollToEnd();
  afterPaint.port2.postMessage(null);
}

/** A row's <tr>, built without el(): a flood of rows makes this the page's hottest loop. */
function rowNode(values, fresh) {
  const tr = document.createElement("tr");
  if (fresh) tr.className = "fresh";
  for (const value of values) {
    const td = document.createElement("td");
    td.textContent = cellText(value);
    tr.append(td);
  }
  return tr;
}

export class QueryView {
  constructor(statement, push, onEnd = () => {}) {
    this.statement = statement;
    this.whenEnded = onEnd;
    this.push = push;
    this.queryId = null;
    this.count = 0;
    this.paused = false;
    this.held = [];
    this.pending = [];
    if (push) live.add(this);
    this.ended = false;
    this.abort = new AbortController();
    this.rates = [[], []];
    this.lastCount = 0;
    this.lastTick = performance.now();
    this.started = this.lastTick;

    this.state = el("span", { class: "state", text: push ? "starting" : "running" });
    this.countText = el("span", { class: "count", text: "0 rows" });
    this.rateText = el("span", { class: "rate muted", text: "" });
    this.pauseButton = el("button", { class: "pause", text: "Pause", onclick: () => this.togglePause() });
    this.stopButton = el("button", { class: "stop", text: "Stop", onclick: () => this.stop() });
    this.qid = el("span", { class: "qid muted" });
    this.thead = el("thead");
    this.tbody = el("tbody");
    this.rowsBox = el("div", { class: "push-rows" }, el("table", { class: "rows" }, this.thead, this.tbody));
    this.chartBox = el("div", { class: "rate-chart" });
    this.notes = el("div", { class: "notes muted" });
    const head = el("div", { class: "push-head" }, this.state, this.qid, this.countText, this.rateText,
      push ? this.pauseButton : null, push ? this.stopButton : null);
    this.node = el("div", { class: push ? "result push" : "result pull" },
      el("div", { class: "statement", text: statement }), head, this.notes,
      el("div", { class: "push-body" }, this.rowsBox, push ? this.chartBox : null));
    this.onScreen = true; // until the observer's first report
    if (push) {
      this.node.queryView = this;
      sight.observe(this.node);
    }
  }

  /** Run the query; resolves once its header arrived (push) or when it ended (pull). */
  run(properties, variables) {
    let started;
    const header = new Promise((resolve) => { started = resolve; });
    const handlers = {
      header: (h) => { this.onHeader(h); started(); },
      rows: (rows) => this.onRows(rows),
      // PRINT says the formats it guessed before its records: a note, not rows.
      text: (line) => (/^(Key|Value) format: /.test(line) ? this.onNote(line) : this.onRows([[line]])),
      error: (e) => this.onError(e),
    };
    if (this.push) this.timer = setInterval(() => this.tick(), 1000);
    const done = streamQuery(this.statement, properties, variables, handlers, this.abort.signal)
      .finally(() => this.onEnd());
    if (!this.push) return done;
    // A push query runs on: the run goes on to its next statement once this one has started.
    done.catch((e) => { if (this.queryId !== null) this.onError(e); });
    return Promise.race([header, done]);
  }

  onHeader(h) {
    this.queryId = h.queryId;
    this.qid.textContent = h.queryId || "";
    const names = h.columnNames && h.columnNames.length ? h.columnNames : ["PRINT"];
    const types = h.columnTypes || [];
    this.thead.replaceChildren(el("tr", {}, ...names.map((n, i) => el("th", {}, el("span", { class: "col", text: n }), types[i] ? el("small", { text: types[i] }) : null))));
    if (this.push) this.setState("running");
    if (this.push && window.uPlot) this.makeChart();
  }

  /** Rows this view's table keeps at most. */
  get maxRows() {
    if (!this.push) return MAX_ROWS;
    return Math.min(MAX_ROWS, Math.max(PUSH_ROWS_MIN, Math.floor(PUSH_ROW_BUDGET / Math.max(1, live.size))));
  }

  onRows(rows) {
    this.count += rows.length;
    keepLast(this.paused ? this.held : this.pending, rows, this.maxRows);
    drawSoon(this);
  }

  /** Draw the waiting rows and the count (called from the animation frame, or with `all` to
   * flush now, on screen or not). */
  draw(all = false) {
    this.countText.textContent = `${this.count} row${this.count === 1 ? "" : "s"}`;
    if (this.pending.length && (this.onScreen || all)) this.append(this.pending.splice(0));
  }

  append(rows) {
    const max = this.maxRows;
    const shown = rows.length > max ? rows.slice(-max) : rows;
    const flash = this.push && shown.length <= FLASH_ROWS;
    const fragment = document.createDocumentFragment();
    for (const r of shown) fragment.append(rowNode(r, flash));
    const body = this.tbody;
    const excess = body.childElementCount + shown.length - max;
    if (excess >= body.childElementCount) body.replaceChildren(fragment);
    else {
      if (excess > 0) {
        // The oldest rows go in one range deletion, not one removal each.
        const range = document.createRange();
        range.setStartBefore(body.firstElementChild);
        range.setEndBefore(body.children[excess]);
        range.deleteContents();
      }
      body.append(fragment);
    }
    this.scrolled = false;
  }

  scrollToEnd() {
    // Past the end is clamped: no need to read scrollHeight (which would force a layout now).
    if (this.push && !this.scrolled) this.rowsBox.scrollTop = 1e9;
    this.scrolled = true;
  }

  onNote(line) {
    this.notes.append(el("div", { text: line }));
  }

  onError(e) {
    this.node.classList.add("error");
    this.node.append(el("div", { class: "message", text: e.message }));
  }

  onEnd() {
    this.ended = true;
    live.delete(this);
    clearInterval(this.timer);
    if (this.push) sight.unobserve(this.node);
    this.draw(true); // the last rows are in the table when the state says so
    this.scrollToEnd();
    this.setState(this.push ? "ended" : "done");
    this.flushHeld();
    this.pauseButton.disabled = true;
    this.stopButton.disabled = true;
    if (this.push) this.whenEnded(this);
  }

  setState(state) {
    this.state.textContent = state;
    this.state.className = `state ${state}`;
  }

  togglePause() {
    this.paused = !this.paused;
    this.pauseButton.textContent = this.paused ? "Resume" : "Pause";
    this.setState(this.paused ? "paused" : "running");
    if (!this.paused) this.flushHeld();
  }

  flushHeld() {
    if (this.held.length) {
      this.draw(true);
      this.append(this.held.splice(0));
      this.scrollToEnd();
    }
  }

  /** End the query on the server, then stop reading its stream. */
  async stop() {
    if (this.ended) return;
    this.stopButton.disabled = true;
    if (http1Full()) {
      // Every connection is held by a push query: /close-query could not be sent before one is
      // let go, so this one's stream goes first (the server ends a query whose client left).
      this.abort.abort();
      return;
    }
    if (this.queryId) await closeQuery(this.queryId);
    this.abort.abort();
  }

  tick() {
    const now = performance.now();
    const rate = ((this.count - this.lastCount) * 1000) / (now - this.lastTick);
    this.lastCount = this.count;
    this.lastTick = now;
    this.rateText.textContent = `${rate.toFixed(1)} rows/s`;
    const [xs, ys] = this.rates;
    xs.push(Math.round((now - this.started) / 1000));
    ys.push(rate);
    if (xs.length > RATE_WINDOW) { xs.shift(); ys.shift(); }
    if (this.chart) this.chart.setData(this.rates);
  }

  makeChart() {
    this.chart = new window.uPlot({
      width: 240, height: 110, legend: { show: false }, cursor: { show: false },
      scales: {
        x: { time: false, range: (u, min, max) => [Math.max(0, max - RATE_WINDOW), Math.max(max, 10)] },
        y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
      },
      axes: [{ size: 22, font: "10px sans-serif", values: (u, ticks) => ticks.map((t) => `${t}s`) },
        { size: 40, font: "10px sans-serif", label: "rows/s", labelSize: 12, labelFont: "10px sans-serif" }],
      series: [{}, { label: "rows/s", stroke: "#2563eb", fill: "rgba(37,99,235,.12)", width: 1.5 }],
    }, this.rates, this.chartBox);
  }
}

/** Append `rows` to `list`, keeping only its last `limit` items (no spread: a burst may be large). */
function keepLast(list, rows, limit) {
  for (let i = Math.max(0, rows.length - limit); i < rows.length; i++) list.push(rows[i]);
  if (list.length > limit) list.splice(0, list.length - limit);
}
