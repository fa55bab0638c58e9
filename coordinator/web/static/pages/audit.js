// Audit log: every change made through the coordinator, newest first. Filters in the URL
// (shareable); a team sees the entries it owns or made, the admin every team's.
import { api, qs } from "../api.js";
import { clear, fmtAgo, fmtTime, h, teamChip } from "../dom.js";

const RANGES = [
  ["", "any time"],
  ["1h", "last hour"],
  ["24h", "last 24 h"],
  ["7d", "last 7 days"],
  ["30d", "last 30 days"],
];

// Where an entry's object can be looked at, when the UI has a page for it.
function objectLink(entry) {
  const { action, object, details } = entry;
  if (action.startsWith("run.")) return `/runs/${encodeURIComponent(object)}`;
  if (action.startsWith("task.") && details.run_id) return `/runs/${encodeURIComponent(details.run_id)}`;
  if (action.startsWith("contract.") && !action.endsWith(".refused")) {
    const name = object.split("@")[0];
    const [team, short] = name.split("/");
    if (team && short) return `/contracts/${encodeURIComponent(team)}/${encodeURIComponent(short)}`;
  }
  return "";
}

function detailsText(details) {
  const parts = [];
  for (const [key, value] of Object.entries(details || {})) {
    if (value === "" || value === null || (Array.isArray(value) && !value.length)) continue;
    if (typeof value === "object" && !Array.isArray(value) && !Object.keys(value).length) continue;
    parts.push(`${key}=${typeof value === "string" ? value : JSON.stringify(value)}`);
  }
  return parts.join("; ");
}

export async function render(main, _args, viewer) {
  const params = new URLSearchParams(location.search);
  const state = { team: params.get("team") || "", since: params.get("since") || "" };
  let cursors = [""];

  const teamInput = h("input", { name: "team", value: state.team, placeholder: viewer.admin ? "any team" : viewer.label, size: 14 });
  const sinceSelect = h("select", { name: "since" },
    RANGES.map(([v, label]) => h("option", { value: v, selected: v === state.since }, label)));
  if (state.since && !RANGES.some(([v]) => v === state.since)) {
    sinceSelect.append(h("option", { value: state.since, selected: true }, `last ${state.since}`));
  }
  const form = h("form", { class: "filters", id: "audit-filters" },
    h("label", { class: "field" }, h("span", {}, "team (owner or actor)"), teamInput),
    h("label", { class: "field" }, h("span", {}, "when"), sinceSelect),
    h("button", { type: "submit", class: "btn primary" }, "Filter"),
    h("a", { href: "/audit", class: "btn" }, "Clear"));

  const scope = h("span", { class: "muted", id: "audit-scope" },
    viewer.admin ? "Every team's entries." : `Entries team ${viewer.label} owns or made.`);
  const meta = h("span", { class: "muted" });
  const errorBox = h("div", { class: "banner error", id: "audit-error", hidden: true });
  const tbody = h("tbody");
  const table = h("table", { class: "grid audit", id: "audit-table" },
    h("thead", {}, h("tr", {}, ["when", "actor", "team", "action", "object", "details"].map((c) => h("th", {}, c)))),
    tbody);
  const older = h("button", { class: "btn", type: "button", disabled: true, id: "audit-older" }, "older →");
  const newer = h("button", { class: "btn", type: "button", disabled: true }, "← newer");
  const newest = h("button", { class: "btn", type: "button", disabled: true }, "newest");

  clear(main).append(
    h("div", { class: "page-head" }, h("h1", {}, "Audit log"), scope, h("span", { class: "spacer" }), meta),
    form, errorBox, table,
    h("div", { class: "pager" }, newest, newer, older));

  async function load() {
    const page = cursors.length - 1;
    let data;
    try {
      data = await api(`/api/v1/audit${qs({ team: state.team, since: state.since, cursor: cursors[page] })}`);
      errorBox.hidden = true;
    } catch (err) {
      clear(tbody);
      errorBox.textContent = err.message;
      errorBox.hidden = false;
      meta.textContent = "";
      older.disabled = true;
      return;
    }
    clear(tbody);
    if (!data.entries.length) tbody.append(h("tr", {}, h("td", { colspan: 6, class: "muted pad" }, "No audit entries match these filters.")));
    for (const entry of data.entries) {
      const link = objectLink(entry);
      const details = detailsText(entry.details);
      tbody.append(h("tr", {
        class: entry.platform_intervention ? "row-intervention" : "",
        dataset: {
          id: String(entry.id), action: entry.action, actor: entry.actor, owner: entry.owner_team,
          intervention: String(entry.platform_intervention),
        },
      },
      h("td", { title: fmtTime(entry.at_ms), class: "nowrap" }, fmtTime(entry.at_ms), h("div", { class: "muted small" }, fmtAgo(entry.at_ms))),
      h("td", {}, entry.actor === "admin" ? h("b", {}, "admin") : teamChip(entry.actor)),
      h("td", {}, entry.owner_team ? teamChip(entry.owner_team) : h("span", { class: "muted" }, "—")),
      h("td", { class: "mono" }, entry.action,
        entry.platform_intervention ? h("span", { class: "tag intervention", title: "the admin acted on a team's object" }, "platform intervention") : null),
      h("td", { class: "mono" }, link ? h("a", { href: link }, entry.object) : entry.object),
      h("td", { class: "small audit-details", title: details }, details)));
    }
    meta.textContent = `${data.entries.length} shown · ${data.server_ms} ms`;
    older.disabled = !data.next_cursor;
    older.onclick = () => { cursors.push(data.next_cursor); load(); };
    newer.disabled = page === 0;
    newest.disabled = page === 0;
  }

  newer.addEventListener("click", () => { cursors.pop(); load(); });
  newest.addEventListener("click", () => { cursors = [""]; load(); });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.team = teamInput.value.trim();
    state.since = sinceSelect.value;
    history.replaceState(null, "", `/audit${qs(state)}`);
    cursors = [""];
    load();
  });
  await load();
}
