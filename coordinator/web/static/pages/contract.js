// One contract: versions, schemas (rendered), policy, deprecation, consumers; compare versions.
import { api } from "../api.js";
import { clear, fmtTime, h, registerTeams, teamChip } from "../dom.js";
import { schemaTable } from "../schema.js";
import { sunsetTag } from "./contracts.js";

function ms(v) {
  if (!v) return "—";
  return v % 60000 === 0 ? `${v / 60000}m` : v % 1000 === 0 ? `${v / 1000}s` : `${v}ms`;
}

export async function render(main, args) {
  const name = `${args.team}/${args.name}`;
  const data = await api(`/api/v1/contracts/${encodeURIComponent(args.team)}/${encodeURIComponent(args.name)}`);
  const wanted = new URLSearchParams(location.search).get("version");
  let current = data.versions.find((v) => v.version === wanted) || data.versions[0];
  registerTeams([data.team, ...data.versions.flatMap((v) => v.consumers.map((c) => c.team))]);

  const list = h("nav", { class: "versions" });
  const detail = h("div", { class: "contract-detail" });
  const oldSel = h("select", { id: "diff-old" }, data.versions.map((v, i) => h("option", { value: v.ref, selected: i === 1 }, v.version)));
  const newSel = h("select", { id: "diff-new" }, data.versions.map((v, i) => h("option", { value: v.ref, selected: i === 0 }, v.version)));
  const compare = h("form", { class: "compare", id: "compare-form" }, "Compare ", oldSel, " → ", newSel, " ", h("button", { class: "btn primary", type: "submit" }, "Diff"));
  compare.addEventListener("submit", (e) => {
    e.preventDefault();
    location.assign(`/contracts/diff?old=${encodeURIComponent(oldSel.value)}&new=${encodeURIComponent(newSel.value)}`);
  });

  clear(main).append(
    h("div", { class: "page-head" }, h("h1", { class: "mono" }, name), teamChip(data.team), h("span", { class: "spacer" }), data.versions.length > 1 ? compare : null),
    h("div", { class: "contract-grid" }, list, detail));

  function draw() {
    // DOM append() takes nodes, not arrays or null (h() flattens its children; append does not).
    clear(list).append(h("div", { class: "section-label" }, "versions"), ...data.versions.map((v) =>
      h("a", { href: `?version=${encodeURIComponent(v.version)}`, class: `ver-item${v === current ? " active" : ""}${v.deprecated ? " deprecated" : ""}`, onclick: (e) => { e.preventDefault(); current = v; history.replaceState(null, "", `?version=${encodeURIComponent(v.version)}`); draw(); } },
        h("span", { class: "mono" }, v.version), v.deprecated ? h("span", { class: "small muted" }, ` sunset ${v.deprecated.sunset}`) : null)));
    const c = current;
    const consumers = c.consumers || [];
    const consumerTeams = [...new Set(consumers.map((x) => x.team))].sort();
    clear(detail).append(...[
      h("section", { class: "card" },
        h("h2", {}, h("span", { class: "mono" }, c.ref), " ", sunsetTag(c.deprecated)),
        c.retired_ms ? h("div", { class: "banner error", id: "retired" }, `Retired ${fmtTime(c.retired_ms)}: new runs and workflows can no longer use this version.`) : null,
        c.deprecated ? h("div", { class: "banner warn" }, `Deprecated: sunset ${c.deprecated.sunset}.`, c.deprecated.replacement ? ` Move to ${c.deprecated.replacement}.` : "") : null,
        h("p", {}, c.description || h("span", { class: "muted" }, "no description")),
        h("table", { class: "kv" },
          h("tr", {}, h("th", {}, "visibility"), h("td", {}, c.visibility)),
          h("tr", {}, h("th", {}, "idempotent"), h("td", {}, c.idempotent ? "yes" : "no")),
          h("tr", {}, h("th", {}, "timeouts"), h("td", {}, `start-to-close ${ms(c.timeouts.start_to_close_ms)} · schedule-to-start ${ms(c.timeouts.schedule_to_start_ms)} · heartbeat ${ms(c.timeouts.heartbeat_ms)}`)),
          h("tr", {}, h("th", {}, "retry"), h("td", {}, `max ${c.retry.max_attempts || "—"} attempts · backoff ${ms(c.retry.initial_backoff_ms)} ×${c.retry.backoff_coefficient || "—"}${c.retry.non_retryable.length ? ` · never retried: ${c.retry.non_retryable.join(", ")}` : ""}`)),
          h("tr", {}, h("th", {}, "sensitive"), h("td", { class: "mono small" }, c.sensitive.join(", ") || "—")),
          h("tr", {}, h("th", {}, "registered"), h("td", {}, `${fmtTime(c.registered_ms)} by ${c.registered_by || "—"}`)))),
      h("section", { class: "card" }, h("h2", {}, "Input"), schemaTable(c.input_schema, "input", c.sensitive)),
      h("section", { class: "card" }, h("h2", {}, "Output"), schemaTable(c.output_schema, "output", c.sensitive)),
      h("section", { class: "card", id: "consumers" },
        h("h2", {}, `Consumers of ${c.version} `, h("span", { class: "muted small" }, `${consumers.length} steps in ${new Set(consumers.map((x) => x.workflow)).size} workflows · teams: `), consumerTeams.map((t) => teamChip(t))),
        consumers.length ? h("table", { class: "grid" },
          h("thead", {}, h("tr", {}, ["workflow", "team", "step", "calls", "runs (30 days)"].map((x) => h("th", {}, x)))),
          h("tbody", {}, consumers.map((x) => h("tr", {}, h("td", { class: "mono" }, `${x.workflow} v${x.workflow_version}`), h("td", {}, teamChip(x.team)), h("td", { class: "mono" }, x.step), h("td", { class: "mono small" }, x.field || "—"), h("td", { class: "num" }, String(x.runs_last_30_days || 0))))))
          : h("p", { class: "muted" }, "No registered workflow calls this version.")),
      c.source_text ? h("details", { class: "card" }, h("summary", {}, "contract file as registered"), h("pre", { class: "json" }, c.source_text)) : null].filter(Boolean));
  }
  draw();
}
