// The detail panel of the run page: a span's attributes, a step's attempts, errors with their
// engine specifics, and payloads (or why they are hidden).
import { fmtDuration, fmtTime, h, jsonBlock, statusBadge, teamChip } from "./dom.js";

const LINK_LABELS = {
  dag_run_url: "Airflow DAG run", airflow_run_url: "Airflow DAG run", run_url: "Engine run", log_url: "Task log",
  build_url: "Jenkins build", jenkins_build_url: "Jenkins build", console_url: "Jenkins console", url: "Engine link",
};

function isUrl(value) {
  return typeof value === "string" && /^https?:\/\//.test(value);
}

function isLongText(key, value) {
  return typeof value === "string" && (value.includes("\n") || /tail|console|log|stderr|stdout|trace/.test(key));
}

function kv(rows) {
  return h("table", { class: "kv" }, rows.filter(Boolean).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))));
}

// details_json of a TaskError: links first, then failed tasks, then console/log tails, then the rest.
export function engineDetails(details) {
  if (!details || typeof details !== "object" || !Object.keys(details).length) return null;
  const links = [];
  const tails = [];
  const rest = [];
  for (const [key, value] of Object.entries(details)) {
    if (isUrl(value)) links.push(h("a", { href: value, target: "_blank", rel: "noopener noreferrer", class: "ext-link" }, `${LINK_LABELS[key] || key} ↗`));
    else if (isLongText(key, value)) tails.push(h("div", { class: "tail" }, h("div", { class: "tail-head" }, key.replaceAll("_", " ")), h("pre", { class: "console" }, value)));
    else if (/failed_task/.test(key)) {
      const tasks = Array.isArray(value) ? value : [value];
      rest.push([key.replaceAll("_", " "), h("span", { class: "failed-tasks" }, tasks.map((t) => h("code", { class: "failed-task" }, typeof t === "object" ? JSON.stringify(t) : String(t))))]);
    } else rest.push([key.replaceAll("_", " "), typeof value === "object" ? jsonBlock(value) : String(value)]);
  }
  return h("div", { class: "engine-details" }, h("div", { class: "section-label" }, "engine details"),
    links.length ? h("div", { class: "links" }, links) : null, rest.length ? kv(rest) : null, tails);
}

// ``showRetryable``: whether the error's own retryable flag means something here. An attempt's
// error: yes. A step's or run's final error is always marked not retryable, also when the step
// gave up after its retries, so a badge there would contradict its message.
export function errorBox(error, heading, { showRetryable = false } = {}) {
  if (!error) return null;
  return h("div", { class: "error-box" },
    h("div", { class: "error-title" }, heading ? h("span", { class: "muted" }, `${heading} `) : null,
      h("b", { class: "error-type" }, error.type || "Error"), showRetryable && error.retryable === false ? h("span", { class: "tag" }, "not retryable") : null),
    h("div", { class: "error-message" }, error.message || "(no message)"),
    engineDetails(error.details));
}

function payload(title, value, step, viewer) {
  if (step.payload_hidden) {
    return h("div", { class: "payload hidden-payload" }, h("div", { class: "section-label" }, title),
      h("p", { class: "notice" }, `Hidden: this step belongs to team ${step.team}. Only ${step.team} (and the platform admin) can see its payloads${viewer.admin ? "" : "; you see the contract-level view"}.`));
  }
  if (value === null || value === undefined) {
    // "none yet" only while the step may still produce one; an ended step without it has none.
    const ended = ["succeeded", "failed", "cancelled", "skipped"].includes(step.status);
    return h("div", { class: "payload" }, h("div", { class: "section-label" }, title), h("p", { class: "muted" }, ended ? "none" : "none yet"));
  }
  return h("div", { class: "payload" }, h("div", { class: "section-label" }, title), jsonBlock(value));
}

// The items of a for_each step (``notify[0]``...): their states and attempts, for its panel.
function itemsTable(items) {
  return h("table", { class: "grid items" },
    h("thead", {}, h("tr", {}, ["item", "status", "attempts", "error"].map((c) => h("th", {}, c)))),
    h("tbody", {}, items.map((it) => h("tr", { class: `row-${it.status}`, dataset: { step: it.id } },
      h("td", { class: "mono" }, it.id), h("td", {}, statusBadge(it.state || it.status)),
      h("td", { class: "num" }, String(it.attempts.length)),
      h("td", { class: "small" }, it.error ? h("span", {}, h("b", {}, it.error.type), ": ", it.error.message) : "")))));
}

export function stepPanel(step, viewer, items = []) {
  const dur = step.duration_ms ? fmtDuration(step.duration_ms) : "—";
  const attempts = h("table", { class: "grid attempts" },
    h("thead", {}, h("tr", {}, ["#", "status", "agent", "started", "took", "error"].map((c) => h("th", {}, c)))),
    h("tbody", {}, step.attempts.map((a) => h("tr", { class: `row-${a.status}` },
      h("td", {}, String(a.number)), h("td", {}, statusBadge(a.status)), h("td", { class: "mono small" }, a.agent_id ? h("a", { class: "agent-link", href: `/agents?agent=${encodeURIComponent(a.agent_id)}` }, a.agent_id) : "—"),
      h("td", { class: "small" }, fmtTime(a.started_ms || a.scheduled_ms)),
      h("td", { class: "num" }, a.started_ms && a.finished_ms ? fmtDuration(a.finished_ms - a.started_ms) : "—"),
      h("td", { class: "small" }, a.error ? h("span", {}, h("b", {}, a.error.type), ": ", a.error.message) : "")))));
  const lastFailed = [...step.attempts].reverse().find((a) => a.error);
  const error = step.error || (step.status === "failed" && lastFailed ? lastFailed.error : null);
  return h("div", { class: "panel-body", dataset: { step: step.id } },
    h("div", { class: "panel-title" }, h("span", { class: "kind" }, "step"), h("b", { class: "mono" }, step.id), statusBadge(step.state || step.status)),
    kv([
      step.waiting_for
        ? ["waits for", step.waiting_for]
        : ["contract", h("a", { href: `/contracts/${step.contract}`, class: "mono" }, `${step.contract}@${step.contract_version}`)],
      step.reused_from ? ["reused", h("span", {}, "output reused from run ", h("a", { href: `/runs/${encodeURIComponent(step.reused_from)}`, class: "mono" }, step.reused_from))] : null,
      ["team", teamChip(step.team)],
      ["timing", `${fmtTime(step.started_ms)} · ${dur}`],
      step.waiting_reason ? ["waiting", step.waiting_reason] : null,
      step.next_attempt_ms ? ["next attempt", fmtTime(step.next_attempt_ms)] : null,
      ["idempotency key", h("span", { class: "mono small" }, step.idempotency_key || "—")],
    ]),
    mappingBlame(error),
    errorBox(error, "error"),
    // A for_each step makes no attempts of its own: its items do.
    items.length ? h("div", {}, h("div", { class: "section-label" }, `items (${items.length}) · attempts (${items.reduce((n, it) => n + it.attempts.length, 0)})`), itemsTable(items))
      : h("div", {}, h("div", { class: "section-label" }, `attempts (${step.attempts.length})`), attempts),
    // An attempt's own engine details (e.g. the Airflow run of attempt 2) when the step error has none.
    step.attempts.filter((a) => a.error && a.error.details && Object.keys(a.error.details).length && JSON.stringify(a.error) !== JSON.stringify(error))
      .map((a) => h("details", { class: "attempt-err" }, h("summary", {}, `attempt ${a.number}: ${a.error.type}`), errorBox(a.error, "", { showRetryable: true }))),
    payload("input", step.input, step, viewer),
    payload("output", step.output, step, viewer));
}

// A step error caused by the workflow's own mapping: whose it is (the workflow's team), not the
// contract's team, which never saw the task.
export function mappingBlame(error) {
  const d = error && error.details;
  if (!d || d.failed_in !== "mapping") return null;
  return h("p", { class: "notice blame", id: "mapping-blame" }, "Failed in the mapping ", h("code", {}, d.mapping), " of workflow ",
    h("span", { class: "mono" }, d.workflow), ", owned by ", teamChip(d.team), ": the step never reached its contract's team.");
}

// The message of a failed span: its own, else the error of the attempt or step it stands for
// (another team's spans come without theirs; the step's error is what `runs show` says).
function spanMessage(span, step) {
  if (span.status_message) return span.status_message;
  if (!step) return "";
  const attempt = Number((span.attributes || {})["accord.attempt"] || 0);
  const err = (attempt && step.attempts.find((a) => a.number === attempt)?.error) || step.error
    || [...step.attempts].reverse().find((a) => a.error)?.error;
  return err ? `${err.type}: ${err.message}` : "";
}

export function spanPanel(span, step = null) {
  const attrs = Object.entries(span.attributes || {}).sort(([a], [b]) => a.localeCompare(b));
  const failed = span.status === "error" || span.state === "error";
  const title = span.label || span.name;
  return h("div", { class: "panel-body", dataset: { span: span.span_id } },
    h("div", { class: "panel-title" }, h("span", { class: "kind" }, span.role === "step" ? "hop" : span.role || "span"), h("b", {}, title),
      statusBadge(span.state && span.state !== "-" ? span.state : span.status), span.critical ? h("span", { class: "tag crit" }, "critical path") : null),
    failed ? h("div", { class: "error-box span-error" }, h("div", { class: "error-title" }, h("b", {}, "error")), h("div", { class: "error-message" }, spanMessage(span, step) || "(no message)")) : null,
    span.redacted ? h("p", { class: "notice" }, `Another team's hop (${span.team}): you see it as a contract-level box (contract, step, attempt, timing, status). Its inner spans and attributes are visible to ${span.team} only.`) : null,
    kv([
      ["team", teamChip(span.team)],
      ["service", span.service || "—"],
      ["kind", span.kind || "—"],
      ["start", `+${fmtDuration(span.offset_ms)}`],
      ["duration", fmtDuration(span.duration_ms) + (span.open ? " (still open)" : "")],
      ["span id", h("span", { class: "mono small" }, span.span_id)],
    ]),
    attrs.length ? h("div", {}, h("div", { class: "section-label" }, "attributes"),
      kv(attrs.map(([k, v]) => [h("span", { class: "mono small" }, k), typeof v === "object" ? jsonBlock(v) : h("span", { class: "mono small" }, String(v))]))) : null,
    span.events && span.events.length ? h("div", {}, h("div", { class: "section-label" }, "events"), jsonBlock(span.events)) : null);
}
