// A query's plan as the lineage graph gives it (GET /lineage, a query node's `plan`): the step
// tree indented as EXPLAIN prints it, each step with the records that went through it since the
// query started. Rows are data-* tagged so that tests (and users' scripts) can read them.

import { el } from "./render.js";

/** The step tree of `node` (a query node of the lineage graph) as a table. */
export function planTable(node) {
  const steps = node.plan || [];
  if (!steps.length) return el("p", { class: "muted", text: "This query has no stored plan." });
  const rows = steps.map((s) => el("tr", { class: "plan-step", "data-id": s.id, "data-type": s.type,
    "data-operation": s.operation, "data-depth": String(s.depth),
    "data-records": s.records === null ? "" : String(s.records) },
  el("td", { class: "plan-op", style: `padding-left: ${8 + 18 * s.depth}px`, title: s.type },
    el("span", { class: "plan-arrow", text: "> " }), `[ ${s.operation} ]`),
  el("td", { class: "plan-id", text: s.id }),
  el("td", { class: "plan-records", text: s.records === null ? "–" : s.records.toLocaleString("en-US") })));
  const head = el("tr", {}, el("th", { text: "step" }), el("th", { text: "query context" }),
    el("th", { text: "records" }));
  return el("table", { class: "rows plan", id: "plan-steps", "data-query": node.name },
    el("thead", {}, head), el("tbody", {}, ...rows));
}
