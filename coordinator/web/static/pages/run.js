// Run page: what failed, where, and whose. Header + failure banner, step graph, trace waterfall,
// and a detail panel for the selected span or step.
import { api } from "../api.js";
import { spanPanel, stepPanel, errorBox, mappingBlame } from "../details.js";
import { clear, fmtDuration, fmtTime, h, jsonBlock, registerTeams, statusBadge, teamChip } from "../dom.js";
import { stepGraph } from "../stepgraph.js";
import { waterfall } from "../waterfall.js";

const REFRESH_MS = 2000;

export async function render(main, args, viewer) {
  const runId = args.run_id;
  const url = `/api/v1/runs/${encodeURIComponent(runId)}`;
  let data;
  let trace;
  try {
    [data, trace] = await Promise.all([api(url), api(`${url}/trace`)]);
  } catch (err) {
    clear(main).append(h("div", { class: "pad" }, h("h1", {}, "Run ", h("span", { class: "mono" }, runId)), h("div", { class: "banner error" }, err.message)));
    return;
  }
  registerTeams([...data.teams, ...trace.teams]);

  const head = h("div", { class: "run-head" });
  const banner = h("div", { id: "failure" });
  const graphBox = h("section", { class: "card" });
  const wfBox = h("div", { id: "waterfall" });
  const panel = h("aside", { class: "panel", id: "detail" });
  clear(main).append(
    head, banner,
    h("div", { class: "run-grid" },
      h("div", { class: "run-left" },
        h("section", { class: "card" }, h("h2", {}, "Steps ", h("span", { class: "muted small" }, "click a step for attempts, errors and payloads")), graphBox),
        h("section", { class: "card" }, h("h2", {}, "Trace ", h("span", { class: "muted small" }, "drag across the bars to zoom · click a row for details")), wfBox)),
      panel));

  let selection = null; // {kind: "span"|"step"|"run", id}

  function stepById(id) {
    return data.run.steps.find((s) => s.id === id);
  }

  // The items of a for_each step (notify[0], notify[1], ...).
  function itemsOf(step) {
    return data.run.steps.filter((s) => s.id.startsWith(`${step.id}[`));
  }

  // Another team's hop comes as a contract-level box without a step id: match it by contract.
  function stepOfBox(span) {
    const contract = (span.attributes || {})["accord.contract"];
    const steps = contract ? data.run.steps.filter((s) => s.contract === contract) : [];
    return steps.length === 1 ? steps[0] : null;
  }

  function showPanel() {
    clear(panel);
    if (selection && selection.kind === "span") {
      const span = trace.spans.find((sp) => sp.span_id === selection.id);
      if (span) {
        const step = span.step_id ? stepById(span.step_id) : stepOfBox(span);
        panel.append(spanPanel(span, step));
        if (step) panel.append(h("hr"), stepPanel(step, viewer, itemsOf(step)));
        return;
      }
    }
    if (selection && selection.kind === "step") {
      const step = stepById(selection.id);
      if (step) {
        panel.append(stepPanel(step, viewer, itemsOf(step)));
        return;
      }
    }
    const run = data.run;
    panel.append(h("div", { class: "panel-body" },
      h("div", { class: "panel-title" }, h("span", { class: "kind" }, "run"), h("b", { class: "mono" }, run.run_id)),
      errorBox(run.error, "run error"),
      run.payload_hidden ? h("p", { class: "notice" }, `Hidden: the run's input and output belong to team ${run.team}.`) : null,
      !run.payload_hidden ? h("div", {}, h("div", { class: "section-label" }, "input"), run.input == null ? h("p", { class: "muted" }, "none") : jsonBlock(run.input)) : null,
      !run.payload_hidden ? h("div", {}, h("div", { class: "section-label" }, "output"), run.output == null ? h("p", { class: "muted" }, ["succeeded", "failed", "cancelled"].includes(run.status) ? "none" : "none yet") : jsonBlock(run.output)) : null,
      h("div", { class: "section-label" }, "pinned contract versions"),
      h("table", { class: "kv" }, Object.entries(run.pinned_versions || {}).map(([k, v]) => h("tr", {}, h("th", { class: "mono small" }, k), h("td", { class: "mono small" }, v))))));
  }

  function selectSpan(span) {
    selection = { kind: "span", id: span.span_id };
    showPanel();
  }

  function selectStep(node) {
    // A for_each node: the step itself, with its items and their attempts.
    const items = node.step_ids.map(stepById).filter(Boolean);
    const step = (node.for_each && stepById(node.id)) || items.find((s) => s.status === "failed") || items[0];
    if (!step) return;
    selection = { kind: "step", id: step.id };
    const span = trace.spans.find((sp) => sp.step_id === step.id);
    if (span) wf.select(span.span_id, { scroll: true });
    showPanel();
  }

  function drawHead() {
    const run = data.run;
    const actions = h("div", { class: "actions" });
    if (data.permissions.cancel) {
      const confirmBox = h("span", { class: "confirm", hidden: true },
        "Cancel this run? ",
        h("button", { class: "btn danger", id: "confirm-cancel", onclick: doCancel }, "Yes, cancel run"),
        h("button", { class: "btn", onclick: () => { confirmBox.hidden = true; } }, "No"));
      actions.append(h("button", { class: "btn danger", id: "cancel-run", onclick: () => { confirmBox.hidden = false; } }, "Cancel run"), confirmBox);
    }
    for (const stepId of data.permissions.answer || []) {
      actions.append(
        h("button", { class: "btn", id: `approve-${stepId}`, title: `Approve step ${stepId}`, onclick: () => doAnswer(stepId, true) }, `Approve ${stepId}`),
        h("button", { class: "btn danger", id: `reject-${stepId}`, title: `Reject step ${stepId}`, onclick: () => doAnswer(stepId, false) }, `Reject ${stepId}`));
    }
    if (data.permissions.rerun) actions.append(h("button", { class: "btn", id: "rerun", title: "Start a new run of this workflow with the same input", onclick: doRerun }, "Re-run"));
    const duration = (run.finished_ms || Date.now()) - run.created_ms;
    clear(head).append(
      h("div", { class: "run-title" },
        statusBadge(run.status),
        h("h1", {}, h("a", { class: "mono", id: "workflow-link", href: `/workflows/${run.workflow}?version=${run.workflow_version}` }, run.workflow), h("span", { class: "muted" }, ` v${run.workflow_version}`)),
        h("span", { class: "mono muted run-id", id: "run-id" }, run.run_id),
        h("span", { class: "spacer" }), actions),
      h("div", { class: "run-meta" },
        h("span", {}, "owner ", teamChip(run.team)),
        h("span", {}, "teams ", data.teams.map((t) => teamChip(t))),
        h("span", {}, `started ${fmtTime(run.created_ms)}`),
        h("span", {}, `took ${fmtDuration(duration)}${data.live ? " so far" : ""}`),
        run.started_by ? h("span", {}, `by ${run.started_by}`) : null,
        // A retry (accord runs retry): the run it retries, whose outputs its reused steps carry.
        run.retry_of ? h("span", { id: "retry-of" }, "retry of run ", h("a", { class: "mono", href: `/runs/${encodeURIComponent(run.retry_of)}` }, run.retry_of),
          ` (${run.steps.filter((st) => st.reused_from).length} step outputs reused)`) : null,
        run.idempotency_key ? h("span", { class: "mono small" }, `key ${run.idempotency_key}`) : null,
        data.started_by_event ? startedByEvent(data.started_by_event) : null,
        h("span", { class: "mono small muted" }, `trace ${run.trace_id}`),
        data.live ? h("span", { class: "live-dot" }, "● live") : null),
      h("div", { id: "action-error", class: "banner error", hidden: true }),
      // What the caller should know about the contract versions the run pinned: a deprecation
      // (sunset, replacement), a sunset overridden (docs/ui.md, "Run page").
      (run.warnings || []).length
        ? h("div", { class: "banner warn", id: "run-warnings" }, run.warnings.map((w) => h("div", { class: "run-warning" }, w)))
        : ""); // DOM append() prints null as the text "null"
  }

  // A run an event started: the event (accord event show ID) and the run whose step published it.
  function startedByEvent(ev) {
    return h("span", { id: "started-by-event" }, "started by event ",
      h("a", { class: "mono", id: "event-link", href: `/events/${encodeURIComponent(ev.event_id)}`, title: "accord event show " + ev.event_id }, ev.event_id),
      ev.contract ? h("span", {}, " (", h("a", { href: `/contracts/${ev.contract}`, class: "mono" }, `${ev.contract}@${ev.contract_version}`), ")") : null,
      ev.source_run ? h("span", {}, " published by run ", h("a", { href: `/runs/${ev.source_run}`, class: "mono", id: "event-source-run" }, ev.source_run)) : null);
  }

  function drawBanner() {
    const run = data.run;
    clear(banner);
    if (run.status !== "failed" && !run.error) return;
    const failedSteps = run.steps.filter((s) => s.status === "failed");
    const failing = trace.spans.find((sp) => sp.span_id === trace.failing_span_id);
    // A step whose own mapping failed is the workflow's team's failure, not the contract team's.
    const blamed = (s) => (s.error && s.error.details && s.error.details.failed_in === "mapping" ? s.error.details.team : s.team);
    const where = failedSteps.map((s) => h("span", { class: "failed-step", dataset: { step: s.id, team: blamed(s) } }, h("b", { class: "mono" }, s.id), " (", teamChip(blamed(s)), ") "));
    const err = run.error || (failedSteps[0] && failedSteps[0].error);
    banner.append(h("div", { class: "banner error big" },
      h("div", {}, h("b", {}, run.status === "cancelled" ? "Cancelled" : "Failed"), failedSteps.length ? h("span", {}, " at step ", where) : null),
      err ? h("div", { class: "banner-msg" }, h("b", {}, `${err.type}: `), err.message) : null,
      mappingBlame(err),
      failing ? h("button", { class: "btn small", id: "show-failing", onclick: () => { wf.select(failing.span_id, { notify: true, scroll: true }); } }, `Show failing span: ${failing.label || failing.name}`) : null));
  }

  async function doCancel() {
    try {
      await api(`${url}/cancel`, { method: "POST", body: { reason: `cancelled from the UI by ${viewer.label}` } });
      await refresh(true);
    } catch (err) {
      showActionError(err);
    }
  }

  async function doAnswer(stepId, approve) {
    try {
      const body = { approve, comment: `${approve ? "approved" : "rejected"} in the UI by ${viewer.label}`, request_id: crypto.randomUUID() };
      await api(`${url}/steps/${encodeURIComponent(stepId)}/answer`, { method: "POST", body });
      await refresh(true);
    } catch (err) {
      showActionError(err);
    }
  }

  async function doRerun() {
    try {
      const result = await api(`${url}/rerun`, { method: "POST", body: { request_id: crypto.randomUUID() } });
      location.assign(`/runs/${encodeURIComponent(result.run.run_id)}`);
    } catch (err) {
      showActionError(err);
    }
  }

  function showActionError(err) {
    const box = document.getElementById("action-error");
    box.textContent = err.message;
    box.hidden = false;
  }

  function drawGraph() {
    clear(graphBox).append(stepGraph(data.graph, { onSelect: selectStep }));
  }

  drawHead();
  drawGraph();
  const wf = waterfall(wfBox, trace, { onSelect: selectSpan });
  drawBanner();
  // The failing hop (its row in the one-row-per-hop view) is selected to begin with.
  const firstFailing = trace.failing_hop_id || trace.failing_span_id;
  if (firstFailing) {
    selection = { kind: "span", id: firstFailing };
    requestAnimationFrame(() => wf.select(firstFailing, { scroll: true }));
  }
  showPanel();

  let timer = null;
  async function refresh(force = false) {
    clearTimeout(timer);
    if (!force && document.hidden) {
      timer = setTimeout(refresh, REFRESH_MS);
      return;
    }
    try {
      [data, trace] = await Promise.all([api(url), api(`${url}/trace`)]);
    } catch {
      timer = setTimeout(refresh, REFRESH_MS * 3);
      return;
    }
    registerTeams([...data.teams, ...trace.teams]);
    drawHead();
    drawGraph();
    drawBanner();
    wf.update(trace);
    if (selection && selection.kind === "span") wf.select(selection.id);
    showPanel();
    if (data.live) timer = setTimeout(refresh, REFRESH_MS);
  }
  if (data.live) timer = setTimeout(refresh, REFRESH_MS);
}
