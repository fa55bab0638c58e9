// Workflows: every workflow you may see (its newest version), its steps and the teams it calls.
import { api, qs } from "../api.js";
import { clear, fmtTime, h, registerTeams, teamChip } from "../dom.js";

export async function render(main) {
  const team = new URLSearchParams(location.search).get("team") || "";
  const data = await api(`/api/v1/workflows${qs({ team })}`);
  registerTeams(data.workflows.flatMap((w) => [w.team, ...w.calls.map(([t]) => t)]));
  clear(main).append(h("div", { class: "page-head" }, h("h1", {}, "Workflows"), h("span", { class: "muted" }, `${data.workflows.length} workflows`)));
  if (!data.workflows.length) {
    main.append(h("p", { class: "muted pad" }, "No workflows registered (or none visible to you)."));
    return;
  }
  main.append(h("section", { class: "card" }, h("table", { class: "grid workflows", id: "workflows-table" },
    h("thead", {}, h("tr", {}, ["workflow", "team", "version", "steps", "calls", "registered"].map((c) => h("th", {}, c)))),
    h("tbody", {}, data.workflows.map((w) => h("tr", { dataset: { workflow: w.name } },
      h("td", {}, h("a", { class: "mono", href: `/workflows/${w.name}` }, w.name), w.disabled_ms ? h("span", { class: "tag" }, "disabled") : null,
        w.description ? h("div", { class: "small muted" }, w.description) : null),
      h("td", {}, teamChip(w.team)),
      h("td", { class: "mono" }, `v${w.version}`),
      h("td", { class: "num" }, String(w.steps.length)),
      h("td", {}, w.calls.map(([t, contract]) => h("span", { class: "call" }, teamChip(t), " ", h("a", { class: "mono small", href: `/contracts/${contract}` }, contract), " "))),
      h("td", { class: "small muted" }, fmtTime(w.registered_ms))))))));
}
