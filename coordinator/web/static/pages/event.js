// An event (the run page's "started by event" links here): its contract, the team that published
// it, when the event bus took it and when its triggers ran, the run whose step published it
// (a contract's `emits:`), and the runs its triggers started. No payload: every team sees that an
// event happened and what it started; its payload is its team's (`accord event show ID`).
import { api } from "../api.js";
import { clear, fmtTime, h, registerTeams, teamChip } from "../dom.js";

function contractLink(ref, version) {
  const [team, name] = ref.split("/");
  return h("a", { class: "mono", id: "event-contract", href: `/contracts/${encodeURIComponent(team)}/${encodeURIComponent(name)}?version=${encodeURIComponent(version)}` }, `${ref}@${version}`);
}

function runLink(runId, id) {
  return h("a", { class: "mono", href: `/runs/${encodeURIComponent(runId)}`, ...(id ? { id } : {}) }, runId);
}

export async function render(main, args) {
  const data = await api(`/api/v1/events/${encodeURIComponent(args.event_id)}`);
  const ev = data.event;
  registerTeams([ev.team]);
  // Triggers run once the event bus has taken the event; until then the list may still grow.
  const started = ev.triggered_runs.length
    ? h("ul", { id: "event-runs", class: "plain" }, ev.triggered_runs.map((r) => h("li", {}, runLink(r))))
    : h("span", { id: "event-runs", class: "muted" }, ev.handled_ms ? "none (no workflow's trigger matched)" : "none yet (its triggers have not run)");
  clear(main).append(
    h("div", { class: "page-head" }, h("h1", {}, "Event ", h("span", { class: "mono" }, ev.event_id))),
    h("section", { class: "card pad" }, h("table", { class: "kv", id: "event-facts" },
      h("tr", {}, h("th", {}, "contract"), h("td", {}, contractLink(ev.contract, ev.contract_version))),
      h("tr", {}, h("th", {}, "team"), h("td", {}, teamChip(ev.team))),
      h("tr", {}, h("th", {}, "published"), h("td", {}, fmtTime(ev.published_ms))),
      h("tr", {}, h("th", {}, "published by run"), h("td", {}, ev.source_run ? runLink(ev.source_run, "event-source") : h("span", { class: "muted" }, "none (published with accord event publish)"))),
      h("tr", {}, h("th", {}, "taken by the event bus"), h("td", {}, ev.delivered_ms ? fmtTime(ev.delivered_ms) : "not yet")),
      h("tr", {}, h("th", {}, "triggers ran"), h("td", {}, ev.handled_ms ? fmtTime(ev.handled_ms) : "not yet")),
      h("tr", {}, h("th", {}, "runs started"), h("td", {}, started)))));
}
