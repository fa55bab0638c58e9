// The trace waterfall: one row per hop by default (the run, each step, each for_each item [0],
// [1]; click ▸ to see a hop's attempts and, for your own team, the spans inside), or every span
// with "All spans". Bars coloured by team, errors outlined in red, the critical path underlined.
// Hops come labelled from the server (coordinator/telemetry/hops.py). Rows are virtualised (only what is on screen is in the DOM), so a
// trace of thousands of spans scrolls smoothly. Drag across the axis, the overview or the bars
// to zoom into a time range; "Reset zoom" (or Escape) shows everything again.
import { clear, fmtDuration, h, s, teamChip, teamColor } from "./dom.js";

const ROW_H = 22;
const LABEL_W = 360;
const OVERVIEW_H = 34;
const AXIS_H = 22;
const OVERSCAN = 12;
const ERROR = "#d62728";
const RIGHT = 150; // room right of the bars for "164ms · 3 attempts" or "55ms cancelled"

// A tick label precise enough that neighbouring ticks differ ("0ms 2ms 4ms", "0µs 200µs",
// never "0µs 0µs 1µs").
export function fmtTick(ms, step) {
  const units = [[60000, "m"], [1000, "s"], [1, "ms"], [0.001, "µs"]];
  const [size, unit] = units.find(([u]) => step >= u) || units[units.length - 1];
  const decimals = Math.max(0, Math.min(3, Math.ceil(-Math.log10(step / size) - 1e-9)));
  return `${(ms / size).toFixed(decimals)}${unit}`;
}

function niceStep(range, target) {
  const raw = range / target;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 5, 10]) if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

export function waterfall(container, trace, { onSelect } = {}) {
  let allSpans = false;
  const expanded = new Set();
  let spans = [];
  // A trace shorter than a millisecond (a run that failed at once) still gets a readable axis.
  let total = Math.max(trace.duration_ms, 1);
  let view = [0, total];
  let selected = null;
  let width = 800;

  const legend = h("div", { class: "wf-legend" });
  const zoomInfo = h("span", { class: "muted small" });
  const reset = h("button", { type: "button", class: "btn small", id: "wf-reset", disabled: true }, "Reset zoom");
  const allBox = h("input", { type: "checkbox", id: "wf-all-spans" });
  const allToggle = h("label", { class: "small wf-all", title: "every span, not one row per hop" }, allBox, " All spans");
  const toolbar = h("div", { class: "wf-toolbar" }, legend, h("span", { class: "spacer" }), zoomInfo, allToggle, reset);
  const overview = s("svg", { class: "wf-overview", height: OVERVIEW_H });
  const axis = s("svg", { class: "wf-axis", height: AXIS_H });
  const head = h("div", { class: "wf-head" }, overview, axis);
  const rowsSvg = s("svg", { class: "wf-rows" });
  const spacer = h("div", { class: "wf-spacer" });
  const bodyEl = h("div", { class: "wf-body", tabindex: 0 }, spacer, rowsSvg);
  const brush = h("div", { class: "wf-brush", hidden: true });
  const root = h("div", { class: "wf" }, toolbar, head, bodyEl, brush);
  clear(container).append(root);

  function x(ms) {
    return LABEL_W + ((ms - view[0]) / (view[1] - view[0])) * (width - LABEL_W - RIGHT);
  }
  function msAt(px) {
    return view[0] + ((px - LABEL_W) / (width - LABEL_W - RIGHT)) * (view[1] - view[0]);
  }
  function overviewX(ms) {
    return LABEL_W + (ms / total) * (width - LABEL_W - RIGHT);
  }
  function overviewMsAt(px) {
    return ((px - LABEL_W) / (width - LABEL_W - RIGHT)) * total;
  }

  function drawLegend() {
    clear(legend);
    for (const team of trace.teams) legend.append(teamChip(team));
    legend.append(h("span", { class: "legend-item" }, h("span", { class: "legend-crit" }), "critical path"));
    legend.append(h("span", { class: "legend-item" }, h("span", { class: "legend-err" }), `error (${trace.error_count})`));
    legend.append(h("span", { class: "muted small", id: "wf-count" }, `${allSpans ? `${trace.span_count} spans` : `${trace.hop_count} hops of ${trace.span_count} spans`} · ${fmtDuration(trace.duration_ms)}`));
  }

  function drawAxis() {
    clear(axis);
    axis.setAttribute("width", width);
    const step = niceStep(view[1] - view[0], 8);
    const first = Math.ceil(view[0] / step) * step;
    axis.append(s("text", { x: 8, y: 15, class: "wf-axis-label" }, "span"));
    for (let t = first; t <= view[1] + 1e-9; t += step) {
      const px = x(t);
      axis.append(s("line", { x1: px, x2: px, y1: 14, y2: AXIS_H, class: "wf-tick" }));
      axis.append(s("text", { x: px + 3, y: 11, class: "wf-tick-label" }, fmtTick(t, step)));
    }
  }

  function drawOverview() {
    clear(overview);
    overview.setAttribute("width", width);
    overview.append(s("text", { x: 8, y: 20, class: "wf-axis-label" }, "overview: drag to zoom"));
    const n = Math.max(spans.length, 1);
    const rowH = Math.max(OVERVIEW_H / n, 1);
    for (const [i, span] of spans.entries()) {
      const x0 = overviewX(span.offset_ms);
      overview.append(s("rect", {
        x: x0, y: (i / n) * OVERVIEW_H, width: Math.max(overviewX(span.offset_ms + span.duration_ms) - x0, 1), height: rowH,
        fill: span.status === "error" ? ERROR : teamColor(span.team),
      }));
    }
    const zoomed = view[0] > 0 || view[1] < total;
    if (zoomed) {
      overview.append(s("rect", { class: "wf-window", x: overviewX(view[0]), y: 0, width: Math.max(overviewX(view[1]) - overviewX(view[0]), 2), height: OVERVIEW_H }));
    }
    reset.disabled = !zoomed;
    zoomInfo.textContent = zoomed ? `showing ${fmtDuration(view[0])} – ${fmtDuration(view[1])} of ${fmtDuration(total)}` : "";
  }

  function drawRows() {
    const top = bodyEl.scrollTop;
    const height = bodyEl.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(spans.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    clear(rowsSvg);
    rowsSvg.setAttribute("width", width);
    rowsSvg.setAttribute("height", (last - first) * ROW_H);
    rowsSvg.style.top = `${first * ROW_H}px`;
    const clip = s("clipPath", { id: "wf-label-clip" }, s("rect", { x: 0, y: 0, width: LABEL_W - 10, height: 100000 }));
    rowsSvg.append(s("defs", {}, clip));
    for (let i = first; i < last; i++) rowsSvg.append(drawRow(spans[i], (i - first) * ROW_H));
  }

  function labelOf(span) {
    const label = span.label || span.name;
    // Steps and attempts name their team in the colour chip; another team's inner span says so.
    if (span.redacted && span.role !== "step" && span.role !== "attempt") return `${label}  (${span.team || "other team"})`;
    return label;
  }

  function drawRow(span, y) {
    const error = span.status === "error" || span.state === "error";
    const notRun = span.state === "not started" || span.state === "skipped";
    const canExpand = !allSpans && span.hop_row && hasInside.has(span.span_id);
    const open = canExpand && expanded.has(span.span_id);
    const g = s("g", {
      class: `wf-row${span.span_id === selected ? " selected" : ""}${error ? " error" : ""}${span.critical ? " critical" : ""}`,
      transform: `translate(0,${y})`,
      dataset: { spanId: span.span_id, status: error ? "error" : span.status, state: span.state || "", role: span.role || "", team: span.team || "", label: span.label || span.name },
    });
    g.append(s("rect", { class: "wf-row-bg", x: 0, y: 0, width, height: ROW_H }));
    const indent = 8 + span.depth * 14 + (allSpans ? 0 : 12);
    const label = s("g", { "clip-path": "url(#wf-label-clip)" });
    if (canExpand) label.append(s("text", { x: indent - 13, y: 15, class: "wf-toggle", dataset: { hop: span.span_id } }, open ? "▾" : "▸"));
    label.append(s("rect", { x: indent, y: 6, width: 10, height: 10, rx: 2, fill: teamColor(span.team) }));
    label.append(s("text", { x: indent + 15, y: 15, class: `wf-label${span.redacted ? " redacted-span" : ""}` }, labelOf(span)));
    const summary = !allSpans && span.summary ? ` · ${span.summary}` : "";
    if (error && !canExpand) label.append(s("text", { x: indent - 12 < 0 ? 0 : indent - 12, y: 15, class: "wf-err-mark" }, "✕"));
    g.append(label);
    g.append(s("title", {}, `${labelOf(span)}\nteam: ${span.team || "coordinator"}${span.service ? ` · ${span.service}` : ""}\n${notRun ? span.state : fmtDuration(span.duration_ms)}${error && span.status_message ? `\nERROR: ${span.status_message}` : ""}`));

    const start = span.offset_ms;
    const end = start + span.duration_ms;
    if (notRun) {
      // Never ran: no bar (a zero-length one would say it ran for 0µs), the state instead.
      g.append(s("text", { x: Math.min(Math.max(x(start), LABEL_W), width - RIGHT + 14), y: 15, class: "wf-dur wf-state" }, span.state + summary));
    } else if (end >= view[0] && start <= view[1]) {
      const x0 = Math.max(x(start), LABEL_W - 2);
      const x1 = Math.min(x(end), width - RIGHT + 10);
      const barW = Math.max(x1 - x0, 2);
      g.append(s("rect", {
        class: `wf-bar${span.open ? " open" : ""}`, x: x0, y: 4, width: barW, height: ROW_H - 9, rx: 2,
        fill: teamColor(span.team), stroke: error ? ERROR : "none", "stroke-width": error ? 2.5 : 0,
      }));
      if (span.critical) g.append(s("rect", { class: "wf-crit", x: x0, y: ROW_H - 4, width: barW, height: 3 }));
      const state = span.state && !["ok", "error", "-"].includes(span.state) ? ` ${span.state}` : "";
      const text = fmtDuration(span.duration_ms) + (span.open ? " …" : "") + state + summary;
      const tx = x0 + barW + 4;
      g.append(s("text", { x: tx, y: 15, class: `wf-dur${error ? " err" : ""}` }, text));
    }
    return g;
  }

  let hasInside = new Set();
  function computeRows() {
    hasInside = new Set(trace.spans.filter((sp) => !sp.hop_row && sp.hop_span_id).map((sp) => sp.hop_span_id));
    spans = allSpans ? trace.spans : trace.spans.filter((sp) => sp.hop_row || expanded.has(sp.hop_span_id));
  }

  function drawAll() {
    computeRows();
    width = Math.max(bodyEl.clientWidth, 600);
    spacer.style.height = `${spans.length * ROW_H}px`;
    drawLegend();
    drawAxis();
    drawOverview();
    drawRows();
  }

  function setView(a, b) {
    const lo = Math.max(0, Math.min(a, b));
    const hi = Math.min(total, Math.max(a, b));
    if (hi - lo < total / 100000) return;
    view = [lo, hi];
    drawAxis();
    drawOverview();
    drawRows();
  }

  let scheduled = false;
  bodyEl.addEventListener("scroll", () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; drawRows(); });
  });
  reset.addEventListener("click", () => setView(0, total));
  allBox.addEventListener("change", () => { allSpans = allBox.checked; drawAll(); });
  function toggle(hopId) {
    if (expanded.has(hopId)) expanded.delete(hopId);
    else expanded.add(hopId);
    drawAll();
  }
  root.addEventListener("keydown", (e) => { if (e.key === "Escape") setView(0, total); });
  new ResizeObserver(() => drawAll()).observe(bodyEl);

  // Brushing: drag horizontally over the overview, the axis or the bars to zoom.
  function startBrush(event, toMs) {
    if (event.button !== 0) return;
    const rootBox = root.getBoundingClientRect();
    const originX = event.clientX;
    let moved = false;
    const move = (e) => {
      if (Math.abs(e.clientX - originX) < 4 && !moved) return;
      moved = true;
      const a = Math.max(Math.min(originX, e.clientX), rootBox.left + LABEL_W);
      const b = Math.min(Math.max(originX, e.clientX), rootBox.left + width);
      Object.assign(brush.style, { left: `${a - rootBox.left}px`, width: `${Math.max(b - a, 1)}px`, top: `${head.offsetTop}px`, height: `${head.offsetHeight + bodyEl.offsetHeight}px` });
      brush.hidden = false;
    };
    const up = (e) => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
      brush.hidden = true;
      if (moved) {
        const box = (event.currentTarget || bodyEl).getBoundingClientRect();
        setView(toMs(originX - box.left), toMs(e.clientX - box.left));
      } else if (event.target.closest && event.target.closest(".wf-row")) {
        const row = event.target.closest(".wf-row");
        const span = spans.find((sp) => sp.span_id === row.dataset.spanId);
        if (span) select(span.span_id, { notify: true });
      }
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
  }
  overview.addEventListener("mousedown", (e) => { e.preventDefault(); startBrush({ currentTarget: overview, target: e.target, button: e.button, clientX: e.clientX }, overviewMsAt); });
  axis.addEventListener("mousedown", (e) => { e.preventDefault(); startBrush({ currentTarget: axis, target: e.target, button: e.button, clientX: e.clientX }, msAt); });
  rowsSvg.addEventListener("mousedown", (e) => {
    const box = rowsSvg.getBoundingClientRect();
    if (e.clientX - box.left < LABEL_W) {
      // On the label column: ▸ opens the hop, a plain click selects.
      const tog = e.target.closest(".wf-toggle");
      if (tog) { toggle(tog.dataset.hop); return; }
      const row = e.target.closest(".wf-row");
      if (row) select(row.dataset.spanId, { notify: true });
      return;
    }
    e.preventDefault();
    startBrush({ currentTarget: rowsSvg, target: e.target, button: e.button, clientX: e.clientX }, msAt);
  });

  function select(spanId, { notify = false, scroll = false } = {}) {
    selected = spanId;
    let span = spans.find((sp) => sp.span_id === spanId);
    if (!span) {
      // Inside a closed hop: open it.
      const inner = trace.spans.find((sp) => sp.span_id === spanId);
      if (inner && inner.hop_span_id && !allSpans) {
        expanded.add(inner.hop_span_id);
        computeRows();
        spacer.style.height = `${spans.length * ROW_H}px`;
        drawOverview();
        span = spans.find((sp) => sp.span_id === spanId);
      }
    }
    if (span && scroll) {
      const top = spans.indexOf(span) * ROW_H;
      if (top < bodyEl.scrollTop || top > bodyEl.scrollTop + bodyEl.clientHeight - ROW_H) bodyEl.scrollTop = Math.max(top - 3 * ROW_H, 0);
    }
    drawRows();
    if (span && notify && onSelect) onSelect(span);
  }

  function update(next) {
    const wasFull = view[0] === 0 && view[1] === total;
    trace = next;
    total = Math.max(next.duration_ms, 1);
    if (wasFull) view = [0, total];
    drawAll();
  }

  requestAnimationFrame(drawAll);
  computeRows();
  return { select, update, setView, toggle, get view() { return view; } };
}
