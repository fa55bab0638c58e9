// Autonomy: per team, the figures `accord autonomy report` gives (changes, time to deploy,
// changes that needed other teams, cross-team dependencies, platform interventions, overrides,
// refused breaking changes, the four DORA keys), the DORA keys per contract, the same figures per
// day, week or month, the audit of the last changes, and how each figure is computed. Everything
// comes from the coordinator's audit log and run history.
import { api, qs } from "../api.js";
import { clear, h, registerTeams, teamChip } from "../dom.js";

const SINCE = ["7d", "30d", "90d", "365d"];
const BY = ["day", "week", "month"];

function dur(value) {
  return value ? value.text : "—";
}

function rate(value) {
  return value === null || value === undefined ? "—" : `${Math.round(value * 100)}%`;
}

function list(items) {
  return items.length ? items.join(", ") : "—";
}

function teamRow(t) {
  const c = t.changes;
  const d = t.dora;
  const deps = t.cross_team_dependencies;
  return h("tr", { "data-team": t.team, "data-failure-rate": String(d.change_failure_rate) },
    h("td", {}, teamChip(t.team)),
    h("td", { class: "num" }, String(c.contract_versions)),
    h("td", { class: "num" }, String(c.workflow_versions)),
    h("td", { class: "num" }, String(c.agent_binding_changes)),
    h("td", { class: "num" }, dur(t.time_to_deploy)),
    h("td", {}, t.needed_other_teams.map((n) => `${n.change} (${n.teams.join(", ")})`).join("; ") || "—"),
    h("td", { class: "small" }, `calls ${list(deps.calls)}; called by ${list(deps.called_by)}; events from ${list(deps.events_from)}; events to ${list(deps.events_to)}`),
    h("td", { class: "num" }, String(t.platform_interventions)),
    h("td", { class: "num" }, String(c.overrides)),
    h("td", { class: "num" }, String(t.refused_breaking_changes.length)),
    h("td", { class: "num" }, String(d.change_frequency_per_day)),
    h("td", { class: "num" }, dur(d.lead_time)),
    h("td", { class: "num" }, `${rate(d.change_failure_rate)} (${d.failed_changes}/${d.changes_with_runs})`),
    h("td", { class: "num" }, dur(d.time_to_restore)));
}

function contractRows(t) {
  return Object.entries(t.contracts).map(([name, d]) =>
    h("tr", { "data-team": t.team, "data-contract": name, "data-failure-rate": String(d.change_failure_rate) },
      h("td", {}, teamChip(t.team)),
      h("td", { class: "mono" }, name),
      h("td", { class: "num" }, String(d.changes)),
      h("td", { class: "num" }, String(d.change_frequency_per_day)),
      h("td", { class: "num" }, dur(d.lead_time)),
      h("td", { class: "num" }, `${rate(d.change_failure_rate)} (${d.failed_changes}/${d.changes_with_runs})`),
      h("td", { class: "num" }, dur(d.time_to_restore))));
}

function periodRows(t) {
  return t.over_time.map((p) => {
    const c = p.changes;
    const d = p.dora;
    return h("tr", { "data-team": t.team, "data-period": p.period },
      h("td", {}, teamChip(t.team)),
      h("td", { class: "mono" }, p.period),
      h("td", { class: "num" }, String(c.contract_versions)),
      h("td", { class: "num" }, String(c.workflow_versions)),
      h("td", { class: "num" }, String(c.agent_binding_changes)),
      h("td", { class: "num" }, String(c.overrides)),
      h("td", { class: "num" }, String(p.platform_interventions)),
      h("td", { class: "num" }, String(p.refused_breaking_changes)),
      h("td", { class: "num" }, String(d.change_frequency_per_day)),
      h("td", { class: "num" }, dur(d.lead_time)),
      h("td", { class: "num" }, `${rate(d.change_failure_rate)} (${d.failed_changes}/${d.changes_with_runs})`),
      h("td", { class: "num" }, dur(d.time_to_restore)));
  });
}

function when(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

function changeRow(c) {
  return h("tr", { "data-kind": c.kind, "data-bottleneck": String(c.bottleneck) },
    h("td", { class: "mono small" }, when(c.at_ms)),
    h("td", {}, c.kind),
    h("td", { class: "mono" }, c.change, c.bindings && c.bindings.length ? ` (${c.bindings.join(", ")})` : ""),
    h("td", {}, c.teams_involved.join(", ")),
    h("td", { class: "small" }, c.by_others.join("; ") || "—"),
    h("td", { class: "num" }, c.kind === "retire" ? "—" : (c.in_production ? dur(c.time_to_production) : "not yet")),
    h("td", { class: c.bottleneck ? "sunset-passed" : "" }, c.bottleneck ? `bottleneck: ${c.bottleneck_reasons.join("; ")}` : "—"));
}

export async function render(main, _args, viewer) {
  const params = new URLSearchParams(location.search);
  const team = params.get("team") || "";
  const since = params.get("since") || "30d";
  const by = params.get("by") || "week";
  const data = await api(`/api/v1/autonomy${qs({ team, since, by })}`);
  const report = data.report;
  registerTeams(report.teams.map((t) => t.team));
  const form = h("form", { id: "autonomy-filters", class: "filters" },
    viewer.admin ? h("input", { name: "team", placeholder: "team", value: team }) : null,
    h("select", { name: "since" }, SINCE.map((s) => h("option", { value: s, selected: s === since ? "" : null }, `last ${s}`))),
    h("select", { name: "by" }, BY.map((b) => h("option", { value: b, selected: b === by ? "" : null }, `by ${b}`))),
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    location.assign(`/autonomy${qs({ team: f.get("team") || "", since: f.get("since"), by: f.get("by") })}`);
  });
  clear(main).append(h("div", { class: "page-head" }, h("h1", {}, "Autonomy"),
    h("span", { class: "muted", id: "autonomy-scope" }, viewer.admin ? (team ? `team ${team}` : "every team") : `team ${viewer.label}`)), form);
  const cut = report.truncated;
  if (cut) {
    main.append(h("div", { class: "banner warn", id: "autonomy-truncated", "data-covered-from": String(cut.covered_from_ms) },
      `Truncated: these figures cover ${when(cut.covered_from_ms)} to ${when(report.until_ms)} UTC only, not from ${when(cut.requested_since_ms)}. ${cut.why}`));
  }
  main.append(h("section", { class: "card", id: "autonomy-teams" }, h("h2", {}, "Per team"),
    report.teams.length
      ? h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, ["team", "contract versions", "workflow versions", "binding changes", "time to deploy",
          "needed other teams", "cross-team dependencies", "platform interventions", "overrides", "refused breaking",
          "changes/day", "lead time", "change failure rate", "time to restore"].map((c) => h("th", {}, c)))),
        h("tbody", {}, report.teams.map(teamRow)))
      : h("p", { class: "muted pad" }, "No changes in this period.")));
  const contracts = report.teams.flatMap(contractRows);
  main.append(h("section", { class: "card", id: "autonomy-contracts" }, h("h2", {}, "DORA keys per contract"),
    contracts.length
      ? h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, ["team", "contract", "changes", "changes/day", "lead time", "change failure rate",
          "time to restore"].map((c) => h("th", {}, c)))),
        h("tbody", {}, contracts))
      : h("p", { class: "muted pad" }, "No contract changes in this period.")));
  const periods = report.teams.flatMap(periodRows);
  main.append(h("section", { class: "card", id: "autonomy-over-time" }, h("h2", {}, `Over time, by ${report.by}`),
    periods.length
      ? h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, ["team", report.by, "contract versions", "workflow versions", "binding changes",
          "overrides", "platform interventions", "refused breaking", "changes/day", "lead time", "change failure rate",
          "time to restore"].map((c) => h("th", {}, c)))),
        h("tbody", {}, periods))
      : h("p", { class: "muted pad" }, "No changes in this period.")));
  main.append(h("section", { class: "card", id: "autonomy-changes" }, h("h2", {}, `The last ${data.changes.length} changes`),
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["when", "kind", "change", "teams involved", "by others", "to production", "flag"].map((c) => h("th", {}, c)))),
      h("tbody", {}, data.changes.map(changeRow)))));
  main.append(h("section", { class: "card", id: "autonomy-how" }, h("h2", {}, "How each figure is computed"),
    h("dl", {}, Object.entries(report.how).flatMap(([k, v]) => [h("dt", { class: "mono" }, k), h("dd", {}, v)]))));
}
