// Notices: the deprecations and retirements that concern the viewer's team. As a caller: the
// deprecated or retired contract versions its workflows call (sunset, replacement). As an owner:
// for each deprecated version it owns, which teams still call it and how often (last 30 days).
import { api, qs } from "../api.js";
import { clear, h, registerTeams, teamChip } from "../dom.js";

const KINDS = {
  deprecated: "Your workflows call deprecated versions",
  retired: "Your workflows call retired versions (new runs are refused)",
  callers: "Teams still calling your deprecated versions",
};

function contractLink(ref) {
  const [team, rest] = ref.split("/");
  const [name, version] = (rest || "").split("@");
  return h("a", { class: "mono", href: `/contracts/${encodeURIComponent(team)}/${encodeURIComponent(name)}${qs({ version })}` }, ref);
}

function sunsetCell(n) {
  if (!n.sunset) return h("td", {}, "—");
  return h("td", { class: n.past_sunset ? "sunset-passed" : "" }, n.sunset, n.past_sunset ? " (passed)" : "");
}

export async function render(main, _args, viewer) {
  const team = new URLSearchParams(location.search).get("team") || "";
  const data = await api(`/api/v1/notices${qs({ team })}`);
  registerTeams(data.notices.map((n) => n.team));
  clear(main).append(h("div", { class: "page-head" }, h("h1", {}, "Notices"),
    h("span", { class: "muted" }, viewer.admin ? (team ? `team ${team}` : "every team") : `team ${viewer.label}`)));
  if (!data.notices.length) {
    main.append(h("p", { class: "muted pad", id: "notices-empty" }, "Nothing to act on: no deprecated or retired contract version concerns this team."));
    return;
  }
  for (const [kind, title] of Object.entries(KINDS)) {
    const rows = data.notices.filter((n) => n.kind === kind);
    if (!rows.length) continue;
    const head = kind === "callers"
      ? ["contract", "sunset", "replacement", "calling team", "workflow", "runs (30 days)"]
      : ["contract", "sunset", "replacement", "workflow", "step", "runs (30 days)"];
    main.append(h("section", { class: "card", id: `notices-${kind}` }, h("h2", {}, title),
      h("table", { class: "grid notices" },
        h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
        h("tbody", {}, rows.map((n) => h("tr", { title: n.message },
          h("td", {}, contractLink(n.contract)),
          sunsetCell(n),
          h("td", { class: "mono small" }, n.replacement || "—"),
          kind === "callers" ? h("td", {}, teamChip(n.team)) : null,
          h("td", { class: "mono" }, `${n.workflow} v${n.workflow_version}`),
          kind === "callers" ? null : h("td", { class: "mono" }, n.step),
          h("td", { class: "num" }, String(n.runs_last_30_days))))))));
  }
}
