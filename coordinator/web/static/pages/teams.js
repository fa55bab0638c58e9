// Teams: which teams' workflows call which teams' contracts.
import { api } from "../api.js";
import { clear, h, registerTeams, s, teamChip, teamColor } from "../dom.js";

export async function render(main) {
  const data = await api("/api/v1/teams/graph");
  registerTeams(data.teams.map((t) => t.name));
  const n = data.teams.length;
  const size = Math.max(420, Math.min(760, 160 + n * 60));
  const cx = size / 2;
  const cy = size / 2;
  const radius = size / 2 - 80;
  const pos = new Map();
  data.teams.forEach((t, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(n, 1);
    pos.set(t.name, { x: cx + radius * Math.cos(angle), y: cy + radius * Math.sin(angle) });
  });
  const svg = s("svg", { class: "team-graph", width: size, height: size, viewBox: `0 0 ${size} ${size}`, role: "img", "aria-label": "team dependency graph" });
  svg.append(s("defs", {}, s("marker", { id: "tarrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" },
    s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#59636e" }))));
  const R = 34;
  const detail = h("div", { class: "edge-detail muted" }, "Click an arrow for the workflows and contracts behind it.");
  for (const edge of data.edges) {
    const a = pos.get(edge.from);
    const b = pos.get(edge.to);
    let path;
    if (edge.from === edge.to) {
      path = `M${a.x - 12},${a.y - R} C${a.x - 60},${a.y - R - 70} ${a.x + 60},${a.y - R - 70} ${a.x + 12},${a.y - R}`;
    } else {
      const dx = b.x - a.x;
      const dy = b.y - a.y;
      const len = Math.hypot(dx, dy) || 1;
      const ux = dx / len;
      const uy = dy / len;
      // Bend each direction to its own side, so A→B and B→A do not overlap.
      const mx = (a.x + b.x) / 2 - uy * 30;
      const my = (a.y + b.y) / 2 + ux * 30;
      path = `M${a.x + ux * R},${a.y + uy * R} Q${mx},${my} ${b.x - ux * (R + 2)},${b.y - uy * (R + 2)}`;
    }
    const width = 1.5 + Math.min(edge.workflows.length, 5);
    const g = s("g", { class: "tedge", dataset: { from: edge.from, to: edge.to }, tabindex: 0 });
    g.append(s("path", { d: path, "stroke-width": width, "marker-end": "url(#tarrow)" }));
    g.append(s("title", {}, `${edge.from} → ${edge.to}\nworkflows: ${edge.workflows.join(", ")}\ncontracts: ${edge.contracts.join(", ")}`));
    g.addEventListener("click", () => {
      clear(detail).append(h("b", {}, `${edge.from} → ${edge.to}`), h("div", {}, "workflows: ", edge.workflows.map((w) => h("code", {}, w, " "))),
        h("div", {}, "contracts: ", edge.contracts.map((c) => h("a", { href: `/contracts/${c}`, class: "mono" }, c, " "))));
    });
    svg.append(g);
  }
  // Event edges: a team's events start another team's workflows (dashed, from the publisher).
  for (const edge of data.event_edges || []) {
    const a = pos.get(edge.from);
    const b = pos.get(edge.to);
    let path;
    if (edge.from === edge.to) {
      path = `M${a.x + 12},${a.y + R} C${a.x + 60},${a.y + R + 70} ${a.x - 60},${a.y + R + 70} ${a.x - 12},${a.y + R}`;
    } else {
      const dx = b.x - a.x;
      const dy = b.y - a.y;
      const len = Math.hypot(dx, dy) || 1;
      const ux = dx / len;
      const uy = dy / len;
      const mx = (a.x + b.x) / 2 + uy * 45;
      const my = (a.y + b.y) / 2 - ux * 45;
      path = `M${a.x + ux * R},${a.y + uy * R} Q${mx},${my} ${b.x - ux * (R + 2)},${b.y - uy * (R + 2)}`;
    }
    const g = s("g", { class: "tedge tedge-event", dataset: { from: edge.from, to: edge.to, kind: "event" }, tabindex: 0 });
    g.append(s("path", { d: path, "stroke-width": 2, "stroke-dasharray": "6 4", "marker-end": "url(#tarrow)" }));
    g.append(s("title", {}, `${edge.from} ⇢ ${edge.to}\nevents: ${edge.events.join(", ")}\ntriggered workflows: ${edge.workflows.join(", ")}`));
    g.addEventListener("click", () => {
      clear(detail).append(h("b", {}, `${edge.from} ⇢ ${edge.to} (events)`), h("div", {}, "events: ", edge.events.map((e) => h("a", { href: `/contracts/${e}`, class: "mono" }, e, " "))),
        h("div", {}, "triggered workflows: ", edge.workflows.map((w) => h("code", {}, w, " "))));
    });
    svg.append(g);
  }
  for (const team of data.teams) {
    const p = pos.get(team.name);
    svg.append(s("g", { class: "tnode", dataset: { team: team.name } },
      s("circle", { cx: p.x, cy: p.y, r: R, fill: teamColor(team.name) }),
      s("text", { x: p.x, y: p.y + 5, class: "tnode-count" }, String(team.workflows)),
      s("text", { x: p.x, y: p.y + R + 16, class: "tnode-label" }, team.name),
      s("text", { x: p.x, y: p.y + R + 30, class: "tnode-sub" }, `${team.workflows} workflow${team.workflows === 1 ? "" : "s"}`)));
  }
  clear(main).append(
    h("div", { class: "page-head" }, h("h1", {}, "Teams"), h("span", { class: "muted" }, "arrow: a team's workflows call another team's contracts (thicker = more workflows); dashed: a team's events trigger another team's workflows")),
    h("div", { class: "teams-grid" }, h("section", { class: "card" }, svg, detail),
      h("section", { class: "card" }, h("h2", {}, "Dependencies"),
        data.edges.length ? h("table", { class: "grid", id: "team-edges" },
          h("thead", {}, h("tr", {}, ["caller", "", "callee", "workflows", "contracts"].map((c) => h("th", {}, c)))),
          h("tbody", {}, data.edges.map((e) => h("tr", {}, h("td", {}, teamChip(e.from)), h("td", {}, "→"), h("td", {}, teamChip(e.to)),
            h("td", { class: "mono small" }, e.workflows.join(", ")),
            h("td", { class: "small" }, e.contracts.map((c) => h("a", { href: `/contracts/${c}`, class: "mono" }, c, " ")))))))
          : h("p", { class: "muted" }, "No workflows registered yet."),
        h("h2", {}, "Events"),
        (data.event_edges || []).length ? h("table", { class: "grid", id: "team-event-edges" },
          h("thead", {}, h("tr", {}, ["publisher", "", "listener", "events", "triggered workflows"].map((c) => h("th", {}, c)))),
          h("tbody", {}, data.event_edges.map((e) => h("tr", {}, h("td", {}, teamChip(e.from)), h("td", {}, "⇢"), h("td", {}, teamChip(e.to)),
            h("td", { class: "small" }, e.events.map((c) => h("a", { href: `/contracts/${c}`, class: "mono" }, c, " "))),
            h("td", { class: "mono small" }, e.workflows.join(", "))))))
          : h("p", { class: "muted" }, "No workflow is triggered by an event."))));
}
