// The lineage graph from GET /lineage, laid out left to right by dagre and drawn as SVG: topics,
// streams, tables and queries as boxes, data flowing along the edges. Clicking a node calls
// `onSelect(node)` (the console describes it); when the graph is redrawn with the selected node
// still in it, `onUpdate(node)` gets its new version (a query's counts moved).

import { lineage } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const NODE_HEIGHT = 42;

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

/** The second line of a node's box: what the graph knows about it beyond its name. */
function subtitle(node) {
  switch (node.kind) {
    case "topic": return `topic · ${node.partitions} partition${node.partitions === 1 ? "" : "s"}${node.missing ? " · missing" : ""}`;
    case "query": return `${node.state} · in ${node.recordsIn} · out ${node.recordsOut}`;
    default: return `${node.kind} · ${node.valueFormat}${node.windowed ? " · windowed" : ""}`;
  }
}

const FONT = (size) => `${size}px ui-monospace, "DejaVu Sans Mono", monospace`;
const measure = document.createElement("canvas").getContext("2d");

/** A box wide enough for the node's two lines in the fonts console.css gives them. */
function width(node) {
  measure.font = FONT(12);
  const name = measure.measureText(node.name).width;
  measure.font = FONT(10);
  const sub = measure.measureText(subtitle(node)).width;
  return Math.ceil(Math.max(name, sub, 80)) + 18;
}

export class LineageView {
  constructor(container, status, onSelect, onUpdate = null) {
    this.container = container;
    this.status = status;
    this.onSelect = onSelect;
    this.onUpdate = onUpdate;
    this.selected = null;
  }

  /** Fetch the graph and draw it; `quiet` (live updates) redraws only when it changed. */
  async refresh(quiet = false) {
    if (!quiet) this.status.textContent = "loading…";
    let graph;
    try {
      graph = await lineage();
    } catch (e) {
      this.status.textContent = `could not load the lineage: ${e.message}`;
      return;
    }
    const text = JSON.stringify(graph);
    if (quiet && text === this.drawn) return;
    this.graph = graph;
    this.drawn = text;
    this.draw();
    const selected = this.selected && this.graph.nodes.find((n) => n.id === this.selected);
    if (selected && this.onUpdate) this.onUpdate(selected);
    const count = (k) => this.graph.nodes.filter((n) => n.kind === k).length;
    this.status.textContent = `${count("topic")} topics, ${count("stream")} streams, ${count("table")} tables, `
      + `${count("query")} queries`;
  }

  draw() {
    const g = new window.dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 56, marginx: 16, marginy: 16 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const n of this.graph.nodes) g.setNode(n.id, { width: width(n), height: NODE_HEIGHT, data: n });
    for (const e of this.graph.edges) g.setEdge(e.source, e.target, { data: e });
    window.dagre.layout(g);

    const { width: w, height: h } = g.graph();
    // Drawn at its size, shrunk (never grown) to the panel's width: a wide graph stays whole.
    const root = svg("svg", { width: Math.max(w, 200), height: Math.max(h, 100), id: "lineage-svg",
      viewBox: `0 0 ${Math.max(w, 200)} ${Math.max(h, 100)}`, style: "max-width: 100%; height: auto" });
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7,
      markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#6b7280" }));
    defs.append(marker);
    root.append(defs);

    for (const e of g.edges()) {
      const edge = g.edge(e);
      const d = edge.points.map((p, i) => `${i ? "L" : "M"} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`).join(" ");
      root.append(svg("path", { class: "edge", d, "marker-end": "url(#arrow)", "data-source": e.v,
        "data-target": e.w, "data-kind": edge.data.kind }));
    }
    for (const id of g.nodes()) {
      const box = g.node(id);
      const n = box.data;
      const group = svg("g", { class: `node ${n.kind}`, "data-id": n.id, "data-kind": n.kind, "data-name": n.name,
        transform: `translate(${(box.x - box.width / 2).toFixed(1)}, ${(box.y - box.height / 2).toFixed(1)})` });
      group.append(svg("rect", { width: box.width, height: box.height, rx: n.kind === "query" ? 14 : 4 }));
      group.append(svg("text", { x: 8, y: 17 }, n.name));
      group.append(svg("text", { x: 8, y: 33, class: "sub" }, subtitle(n)));
      group.append(svg("title", {}, n.kind === "query" ? n.statement : `${n.kind} ${n.name}`));
      group.addEventListener("click", () => this.select(n.id));
      root.append(group);
    }
    this.container.replaceChildren(root);
    if (this.selected) this.highlight(this.selected);
  }

  highlight(id) {
    for (const node of this.container.querySelectorAll("g.node")) {
      node.classList.toggle("selected", node.dataset.id === id);
    }
  }

  select(id) {
    const node = this.graph.nodes.find((n) => n.id === id);
    if (!node) return;
    this.selected = id;
    this.highlight(id);
    this.onSelect(node);
  }
}
