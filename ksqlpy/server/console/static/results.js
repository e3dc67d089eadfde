// A query's result card: rows stream into a table as /query-stream delivers them. A push query
// shows its rate (rows/s, with a small uPlot chart), can be paused (rows are kept, the table
// stops moving) and stopped (POST /close-query ends it on the server).

import { closeQuery, streamQuery } from "./api.js";
import { cellText, el } from "./render.js";

/** Rows the table keeps at most; older ones scroll away (the count keeps going). */
const MAX_ROWS = 1000;
/** Seconds of rate history the chart shows. */
const RATE_WINDOW = 60;

export class QueryView {
  constructor(statement, push, onEnd = () => {}) {
    this.statement = statement;
    this.whenEnded = onEnd;
    this.push = push;
    this.queryId = null;
    this.count = 0;
    this.paused = false;
    this.held = [];
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

  onRows(rows) {
    this.count += rows.length;
    this.countText.textContent = `${this.count} row${this.count === 1 ? "" : "s"}`;
    if (this.paused) { this.held.push(...rows); return; }
    this.append(rows);
  }

  append(rows) {
    const fragment = document.createDocumentFragment();
    for (const r of rows.slice(-MAX_ROWS)) {
      fragment.append(el("tr", { class: this.push ? "fresh" : "" }, ...r.map((c) => el("td", { text: cellText(c) }))));
    }
    this.tbody.append(fragment);
    while (this.tbody.childElementCount > MAX_ROWS) this.tbody.firstElementChild.remove();
    const box = this.rowsBox;
    if (this.push) box.scrollTop = box.scrollHeight;
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
    clearInterval(this.timer);
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
    if (this.held.length) this.append(this.held.splice(0));
  }

  /** End the query on the server, then stop reading its stream. */
  async stop() {
    if (this.ended) return;
    this.stopButton.disabled = true;
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
