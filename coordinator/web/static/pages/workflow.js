// One workflow: its versions, the steps of the one shown (contract, range, team, what each
// depends on), who it calls, its step graph, its source and its latest runs.
import { api, qs } from "../api.js";
import { clear, fmtTime, h, registerTeams, statusBadge, teamChip } from "../dom.js";
import { stepGraph } from "../stepgraph.js";

export async function render(main, args) {
  const name = `${args.team}/${args.name}`;
  const version = new URLSearchParams(location.search).get("version") || "";
  const data = await api(`/api/v1/workflows/${encodeURIComponent(args.team)}/${encodeURIComponent(args.name)}${qs({ version })}`);
  const wf = data.current;
  registerTeams([data.team, ...wf.steps.map((s) => s.team)]);
  const versions = h("nav", { class: "versions", id: "workflow-versions" }, h("div", { class: "section-label" }, "versions"),
    data.versions.map((v) => h("a", { href: `?version=${v.version}`, class: `ver-item${v.version === wf.version ? " active" : ""}`, dataset: { version: String(v.version) } },
      h("span", { class: "mono" }, `v${v.version}`), h("span", { class: "small muted" }, ` ${fmtTime(v.registered_ms)}${v.registered_by ? ` by ${v.registered_by}` : ""}`))));
  const steps = h("table", { class: "grid steps", id: "workflow-steps" },
    h("thead", {}, h("tr", {}, ["step", "contract", "team", "depends on", ""].map((c) => h("th", {}, c)))),
    h("tbody", {}, wf.steps.map((s) => h("tr", { dataset: { step: s.id } },
      h("td", { class: "mono" }, s.id),
      h("td", {}, h("a", { class: "mono", href: `/contracts/${s.contract}` }, `${s.contract}@${s.version_range}`)),
      h("td", {}, teamChip(s.team)),
      h("td", { class: "mono small" }, s.depends_on.join(", ") || "—"),
      h("td", { class: "small muted" }, [s.for_each ? "for_each" : "", s.when ? "when" : ""].filter(Boolean).join(", "))))));
  const calls = h("ul", { id: "workflow-calls" }, wf.calls.map(([team, contract]) => h("li", {}, teamChip(team), " ", h("a", { class: "mono", href: `/contracts/${contract}` }, contract))));
  const runs = h("table", { class: "grid runs", id: "workflow-runs" },
    h("thead", {}, h("tr", {}, ["run", "status", "version", "started"].map((c) => h("th", {}, c)))),
    h("tbody", {}, data.runs.map((r) => h("tr", {},
      h("td", {}, h("a", { class: "mono", href: `/runs/${r.run_id}` }, r.run_id)), h("td", {}, statusBadge(r.status)),
      h("td", { class: "mono" }, `v${r.workflow_version}`), h("td", { class: "small muted" }, fmtTime(r.created_ms))))));
  clear(main).append(
    h("div", { class: "page-head" }, h("h1", { class: "mono" }, name), teamChip(data.team), h("span", { class: "mono muted" }, ` v${wf.version}`),
      wf.version !== data.newest_version ? h("span", { class: "tag" }, `newest is v${data.newest_version}`) : null,
      wf.disabled_ms ? h("span", { class: "tag" }, "disabled") : null),
    wf.description ? h("p", { class: "muted" }, wf.description) : null,
    h("div", { class: "contract-grid" }, versions,
      h("div", {},
        h("section", { class: "card" }, h("h2", {}, "Steps"), stepGraph(data.graph), steps),
        h("section", { class: "card" }, h("h2", {}, "Calls ", h("span", { class: "muted small" }, "the contracts its steps call, and their teams")), calls,
          wf.triggers.length ? h("p", {}, "Started by the events ", wf.triggers.map((t) => h("code", {}, `${t} `))) : null),
        h("section", { class: "card" }, h("h2", {}, "Latest runs"), data.runs.length ? runs : h("p", { class: "muted" }, "No runs yet.")),
        h("section", { class: "card" }, h("details", {}, h("summary", {}, "Source"), h("pre", { class: "console" }, wf.source_text))))));
}
