// Runs: filters in the URL (shareable), newest first, keyset pages, auto-refresh while live.
import { api, qs } from "../api.js";
import { clear, fmtAgo, fmtDuration, fmtTime, h, statusBadge, teamChip } from "../dom.js";

const RANGES = [
  ["", "any time"],
  ["1h", "last hour"],
  ["24h", "last 24 h"],
  ["7d", "last 7 days"],
  ["30d", "last 30 days"],
  ["custom", "custom…"],
];
const RANGE_MS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const LIVE_REFRESH_MS = 2000;
const IDLE_REFRESH_MS = 15000;

function localInput(ms) {
  if (!ms) return "";
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

export async function render(main) {
  const params = new URLSearchParams(location.search);
  const state = {
    workflow: params.get("workflow") || "",
    status: params.get("status") || "",
    team: params.get("team") || "",
    range: params.get("range") || "",
    after: params.get("after") || "",
    before: params.get("before") || "",
    q: params.get("q") || "",
  };
  let cursors = [""]; // cursor of each page visited, for "newer"
  let timer = null;
  let inFlight = false;

  const field = (name, label, attrs = {}) =>
    h("label", { class: "field" }, h("span", {}, label), h("input", { name, value: state[name], ...attrs }));
  const statusSelect = h("select", { name: "status" },
    ["", "pending", "running", "succeeded", "failed", "cancelled"].map((s) =>
      h("option", { value: s, selected: s === state.status }, s || "any status")));
  const rangeSelect = h("select", { name: "range" },
    RANGES.map(([v, label]) => h("option", { value: v, selected: v === state.range }, label)));
  const afterInput = h("input", { type: "datetime-local", name: "after", value: localInput(Number(state.after)) });
  const beforeInput = h("input", { type: "datetime-local", name: "before", value: localInput(Number(state.before)) });
  const custom = h("span", { class: "custom-range", hidden: state.range !== "custom" },
    h("label", { class: "field" }, h("span", {}, "from"), afterInput),
    h("label", { class: "field" }, h("span", {}, "to"), beforeInput));
  rangeSelect.addEventListener("change", () => { custom.hidden = rangeSelect.value !== "custom"; });

  const form = h("form", { class: "filters", id: "run-filters" },
    field("q", "run id / idempotency key", { placeholder: "search", type: "search", size: 22 }),
    field("workflow", "workflow", { placeholder: "team/name", size: 22 }),
    h("label", { class: "field" }, h("span", {}, "status"), statusSelect),
    field("team", "team involved", { placeholder: "team", size: 12 }),
    h("label", { class: "field" }, h("span", {}, "created"), rangeSelect),
    custom,
    h("button", { type: "submit", class: "btn primary" }, "Filter"),
    h("a", { href: "/runs", class: "btn" }, "Clear"));

  const liveDot = h("span", { class: "live-dot", hidden: true, title: "auto-refreshing" }, "● live");
  const meta = h("span", { class: "muted" });
  const tbody = h("tbody");
  const table = h("table", { class: "grid runs", id: "runs-table" },
    h("thead", {}, h("tr", {}, ["status", "run", "workflow", "owner", "created", "duration", "error"].map((c) => h("th", {}, c)))),
    tbody);
  const newer = h("button", { class: "btn", type: "button", disabled: true }, "← newer");
  const older = h("button", { class: "btn", type: "button", disabled: true, id: "older" }, "older →");
  const newest = h("button", { class: "btn", type: "button", disabled: true }, "newest");
  const errorBox = h("div", { class: "banner error", hidden: true });

  clear(main).append(
    h("div", { class: "page-head" }, h("h1", {}, "Runs"), liveDot, h("span", { class: "spacer" }), meta),
    form, errorBox, table,
    h("div", { class: "pager" }, newest, newer, older));

  function query(cursor) {
    const q = { workflow: state.workflow, status: state.status, team: state.team, q: state.q, cursor, limit: 50 };
    if (RANGE_MS[state.range]) q.after = String(Date.now() - RANGE_MS[state.range]);
    if (state.range === "custom") {
      q.after = state.after;
      q.before = state.before;
    }
    return qs(q);
  }

  async function load() {
    if (inFlight) return;
    inFlight = true;
    clearTimeout(timer);
    const page = cursors.length - 1;
    let data;
    try {
      data = await api(`/api/v1/runs${query(cursors[page])}`);
      errorBox.hidden = true;
    } catch (err) {
      errorBox.textContent = err.message;
      errorBox.hidden = false;
      inFlight = false;
      timer = setTimeout(load, IDLE_REFRESH_MS);
      return;
    }
    inFlight = false;
    clear(tbody);
    if (!data.runs.length) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "muted pad" }, "No runs match these filters.")));
    for (const run of data.runs) {
      const err = run.error;
      tbody.append(h("tr", { class: `row-${run.status}`, dataset: { runId: run.run_id } },
        h("td", {}, statusBadge(run.status)),
        h("td", { class: "mono" }, h("a", { href: `/runs/${encodeURIComponent(run.run_id)}` }, run.run_id),
          run.idempotency_key ? h("div", { class: "muted small mono", title: "idempotency key" }, run.idempotency_key) : null),
        h("td", {}, h("span", { class: "mono" }, run.workflow), h("span", { class: "muted" }, ` v${run.workflow_version}`)),
        h("td", {}, teamChip(run.team)),
        h("td", { title: fmtTime(run.created_ms) }, fmtAgo(run.created_ms)),
        h("td", { class: "num" }, fmtDuration(run.duration_ms)),
        h("td", { class: "err-cell" }, err ? h("span", { title: err.message }, h("b", {}, err.type), ": ", err.message) : "")));
    }
    meta.textContent = `${data.runs.length} shown · ${data.server_ms} ms · updated ${new Date().toLocaleTimeString()}`;
    older.disabled = !data.next_cursor;
    older.onclick = () => { cursors.push(data.next_cursor); load(); };
    newer.disabled = page === 0;
    newest.disabled = page === 0;
    const firstPage = page === 0;
    liveDot.hidden = !(data.live && firstPage);
    // Keep refreshing the first page (new runs appear); fast while something is live.
    if (firstPage || data.live) timer = setTimeout(load, data.live ? LIVE_REFRESH_MS : IDLE_REFRESH_MS);
  }

  newer.addEventListener("click", () => { cursors.pop(); load(); });
  newest.addEventListener("click", () => { cursors = [""]; load(); });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    for (const key of ["workflow", "status", "team", "range", "q"]) state[key] = (data.get(key) || "").trim();
    state.after = afterInput.value ? String(new Date(afterInput.value).getTime()) : "";
    state.before = beforeInput.value ? String(new Date(beforeInput.value).getTime()) : "";
    const url = new URLSearchParams();
    for (const [k, v] of Object.entries(state)) if (v && (state.range === "custom" || (k !== "after" && k !== "before"))) url.set(k, v);
    history.replaceState(null, "", `/runs${url.toString() ? `?${url}` : ""}`);
    cursors = [""];
    load();
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) load(); });
  await load();
}
