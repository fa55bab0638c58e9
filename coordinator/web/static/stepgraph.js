// The workflow's step graph: one box per step (for_each items folded into their step), edges
// from the data each step references, columns by dependency depth.
import { h, s, teamColor } from "./dom.js";

const W = 250;
const H = 60;
const COL = 70;
const ROW = 18;
const PAD = 14;
const STATUS_STROKE = {
  failed: "#d62728", running: "#1f6feb", scheduled: "#1f6feb", succeeded: "#6a9f58",
  cancelled: "#8a6d3b", "not started": "#b0b6bf", skipped: "#b0b6bf", pending: "#b0b6bf",
};

// Text that fits a node (monospace-ish estimate): cut with an ellipsis rather than drawn over
// the box's edge.
function fit(text, px, charPx) {
  const max = Math.floor(px / charPx);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function stepGraph(graph, { onSelect } = {}) {
  const pos = new Map();
  let rows = 0;
  for (const node of graph.nodes) {
    pos.set(node.id, { x: PAD + node.layer * (W + COL), y: PAD + node.order * (H + ROW) });
    rows = Math.max(rows, node.order + 1);
  }
  const width = PAD * 2 + Math.max(graph.layers, 1) * (W + COL) - COL;
  const height = PAD * 2 + Math.max(rows, 1) * (H + ROW) - ROW;
  // Scaled down to the card's width when wider (never clipped nor scrolled out of sight).
  const svg = s("svg", { class: "step-graph", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "step graph", style: `max-width: 100%; height: auto;` });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#7d8590" }))));
  for (const edge of graph.edges) {
    const a = pos.get(edge.from);
    const b = pos.get(edge.to);
    if (!a || !b) continue;
    const x1 = a.x + W;
    const y1 = a.y + H / 2;
    const x2 = b.x - 2;
    const y2 = b.y + H / 2;
    const mid = (x1 + x2) / 2;
    svg.append(s("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
  }
  for (const node of graph.nodes) {
    const p = pos.get(node.id);
    const state = node.state ?? node.status; // "" on a workflow's page: no run, no state
    const g = s("g", { class: `node st-${node.status}`, transform: `translate(${p.x},${p.y})`, dataset: { step: node.id, status: node.status, state, items: String(node.items), team: node.team, reused: String(node.reused || 0) }, tabindex: 0 });
    g.append(s("rect", { class: "node-box", width: W, height: H, rx: 6, stroke: STATUS_STROKE[node.status] || "#b0b6bf", "stroke-width": node.status === "failed" ? 3 : 1.5 }));
    g.append(s("rect", { width: 7, height: H, rx: 3, fill: teamColor(node.team) }));
    g.append(s("text", { x: 16, y: 19, class: "node-id" }, fit(node.id, W - 80, 8) + (node.items > 1 || node.for_each ? `  ×${node.items}` : "")));
    const version = node.contract_version ? `@${node.contract_version}` : node.version_range ? `@${node.version_range}` : "";
    const what = node.wait_for ? `waits for ${node.wait_for}` : `${node.contract}${version}`;
    g.append(s("text", { x: 16, y: 35, class: "node-contract" }, fit(what, W - 24, 7)));
    const counts = Object.entries(node.item_statuses || {});
    const statusText = (node.items > 1 ? counts.map(([k, v]) => `${v} ${k}`).join(", ") : state) + (node.reused ? " · reused" : "");
    const team = fit(node.team, 100, 6.5);
    g.append(s("text", { x: 16, y: 51, class: "node-team" }, statusText ? `${team} · ` : team, s("tspan", { class: `node-status st-${node.status}` }, fit(statusText, W - 34 - (team.length + 3) * 6.5, 6.3))));
    if (node.status === "failed") g.append(s("text", { x: W - 20, y: 20, class: "node-err" }, "✕"));
    g.append(s("title", {}, `${node.id}: ${what}\nteam ${node.team} · ${statusText}${node.when ? "\nconditional (when)" : ""}`));
    const choose = () => onSelect && onSelect(node);
    g.addEventListener("click", choose);
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") choose(); });
    svg.append(g);
  }
  return h("div", { class: "graph-wrap" }, svg);
}
