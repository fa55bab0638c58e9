// Agents: who serves which contracts, whether they are heard from, what they run now.
// ?agent=ID (the run page's attempts link here) marks that agent; ?team=T shows one team's.
import { api, qs } from "../api.js";
import { clear, fmtAgo, fmtTime, h, registerTeams, teamChip } from "../dom.js";

export async function render(main) {
  const params = new URLSearchParams(location.search);
  const team = params.get("team") || "";
  const marked = params.get("agent") || "";
  const data = await api(`/api/v1/agents${qs({ team })}`);
  registerTeams(data.agents.map((a) => a.team));
  clear(main).append(h("div", { class: "page-head" }, h("h1", {}, "Agents"),
    h("span", { class: "muted" }, `${data.agents.length} registered, ${data.agents.filter((a) => a.alive).length} heard from lately`)));
  if (!data.agents.length) {
    main.append(h("p", { class: "muted pad" }, "No agents registered."));
    return;
  }
  main.append(h("section", { class: "card" }, h("table", { class: "grid agents", id: "agents-table" },
    h("thead", {}, h("tr", {}, ["agent", "team", "contracts served", "last heard from", "in flight", "version", "registered"].map((c) => h("th", {}, c)))),
    h("tbody", {}, data.agents.map((a) => h("tr", { class: a.agent_id === marked ? "marked" : "", dataset: { agent: a.agent_id, alive: String(a.alive) } },
      h("td", { class: "mono" }, a.agent_id, a.hostname ? h("div", { class: "small muted" }, a.hostname) : null),
      h("td", {}, teamChip(a.team)),
      h("td", {}, a.contracts.map((c) => h("div", {}, h("a", { class: "mono small", href: `/contracts/${c.split("@")[0]}` }, c)))),
      h("td", { class: a.alive ? "" : "stale" }, a.alive ? "● " : "○ ", a.last_seen_ms ? fmtAgo(a.last_seen_ms) : "not since the coordinator started"),
      h("td", { class: "num" }, `${a.in_flight} / ${a.concurrency}`),
      h("td", { class: "mono small" }, a.version || "—"),
      h("td", { class: "small muted" }, fmtTime(a.registered_ms))))))));
  const row = marked && main.querySelector(`tr[data-agent="${CSS.escape(marked)}"]`);
  if (row) row.scrollIntoView({ block: "center" });
}
