// Contracts catalog, by team: every contract with its versions and deprecations.
import { api, qs } from "../api.js";
import { clear, fmtTime, h, registerTeams, teamColor } from "../dom.js";

function sunsetTag(dep) {
  if (!dep) return null;
  const days = dep.sunset ? Math.ceil((new Date(dep.sunset).getTime() - Date.now()) / 86400e3) : null;
  const when = days === null ? "" : days < 0 ? ` (sunset passed ${-days}d ago)` : ` (in ${days}d)`;
  return h("span", { class: `tag dep${days !== null && days < 30 ? " soon" : ""}`, title: dep.replacement ? `replacement: ${dep.replacement}` : "" }, `deprecated · sunset ${dep.sunset}${when}`);
}

export { sunsetTag };

export async function render(main) {
  const team = new URLSearchParams(location.search).get("team") || "";
  const data = await api(`/api/v1/contracts${qs({ team })}`);
  registerTeams(data.teams.map((t) => t.team));
  clear(main).append(h("div", { class: "page-head" }, h("h1", {}, "Contracts"), h("span", { class: "muted" }, `${data.count} versions in ${data.teams.length} teams`),
    h("span", { class: "spacer" }), h("a", { class: "btn", href: "/contracts/diff" }, "Compare two versions…")));
  if (!data.teams.length) main.append(h("p", { class: "muted pad" }, "No contracts registered (or none visible to you)."));
  for (const group of data.teams) {
    main.append(h("section", { class: "card team-section", dataset: { team: group.team } },
      h("h2", {}, h("span", { class: "swatch big", style: `background:${teamColor(group.team)}` }), group.team, h("span", { class: "muted small" }, ` ${group.contracts.length} contracts`)),
      h("table", { class: "grid contracts" },
        h("thead", {}, h("tr", {}, ["contract", "latest", "versions", "description", "registered"].map((c) => h("th", {}, c)))),
        h("tbody", {}, group.contracts.map((c) => {
          const latest = c.versions[0];
          return h("tr", { dataset: { contract: c.name } },
            h("td", {}, h("a", { class: "mono", href: `/contracts/${c.name}` }, c.name), latest.visibility === "team" ? h("span", { class: "tag" }, "team-only") : null),
            h("td", { class: "mono" }, c.latest),
            h("td", {}, c.versions.map((v) => h("a", { href: `/contracts/${c.name}?version=${encodeURIComponent(v.version)}`, class: `ver${v.deprecated ? " deprecated" : ""}${v.retired_ms ? " retired" : ""}`, title: v.retired_ms ? "retired" : v.deprecated ? `deprecated, sunset ${v.deprecated.sunset}` : "" }, v.version))),
            h("td", {}, latest.description, " ", sunsetTag(latest.deprecated)),
            h("td", { class: "small muted" }, fmtTime(latest.registered_ms)));
        })))));
  }
}
