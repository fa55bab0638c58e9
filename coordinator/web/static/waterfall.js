// The trace waterfall: one row per span, bars coloured by team, errors outlined in red, the
// critical path underlined. Rows are virtualised (only what is on screen is in the DOM), so a
// trace of thousands of spans scrolls smoothly. Drag across the axis, the overview or the bars
// to zoom into a time range; "Reset zoom" (or Escape) shows everything again.
import { clear, fmtDuration, h, s, teamChip, teamColor } from "./dom.js";

const ROW_H = 22;
const LABEL_W = 360;
const OVERVIEW_H = 34;
const AXIS_H = 22;
const OVERSCAN = 12;
const ERROR = "#d62728";

function niceStep(range, target) {
  const raw = range / target;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 5, 10]) if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

export function waterfall(container, trace, { onSelect } = {}) {
  let spans = trace.spans;
  let total = Math.max(trace.duration_ms, 0.001);
  let view = [0, total];
  let selected = null;
  let width = 800;

  const legend = h("div", { class: "wf-legend" });
  const zoomInfo = h("span", { class: "muted small" });
  const reset = h("button", { type: "button", class: "btn small", id: "wf-reset", disabled: true }, "Reset zoom");
  const toolbar = h("div", { class: "wf-toolbar" }, legend, h("span", { class: "spacer" }), zoomInfo, reset);
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
    return LABEL_W + ((ms - view[0]) / (view[1] - view[0])) * (width - LABEL_W - 70);
  }
  function msAt(px) {
    return view[0] + ((px - LABEL_W) / (width - LABEL_W - 70)) * (view[1] - view[0]);
  }
  function overviewX(ms) {
    return LABEL_W + (ms / total) * (width - LABEL_W - 70);
  }
  function overviewMsAt(px) {
    return ((px - LABEL_W) / (width - LABEL_W - 70)) * total;
  }

  function drawLegend() {
    clear(legend);
    for (const team of trace.teams) legend.append(teamChip(team));
    legend.append(h("span", { class: "legend-item" }, h("span", { class: "legend-crit" }), "critical path"));
    legend.append(h("span", { class: "legend-item" }, h("span", { class: "legend-err" }), `error (${trace.error_count})`));
    legend.append(h("span", { class: "muted small" }, `${trace.span_count} spans · ${fmtDuration(trace.duration_ms)}`));
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
      axis.append(s("text", { x: px + 3, y: 11, class: "wf-tick-label" }, fmtDuration(t)));
    }
  }

  function drawOverview() {
    clear(overview);
    overview.setAttribute("width", width);
    overview.append(s("text", { x: 8, y: 20, class: "wf-axis-label" }, "overview: drag to zoom"));
    const n = Math.max(spans.length, 1);
    const rowH = Math.max(OVERVIEW_H / n, 1);
    for (const span of spans) {
      const x0 = overviewX(span.offset_ms);
      overview.append(s("rect", {
        x: x0, y: (span.row / n) * OVERVIEW_H, width: Math.max(overviewX(span.offset_ms + span.duration_ms) - x0, 1), height: rowH,
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

  function drawRow(span, y) {
    const error = span.status === "error";
    const g = s("g", {
      class: `wf-row${span.span_id === selected ? " selected" : ""}${error ? " error" : ""}${span.critical ? " critical" : ""}`,
      transform: `translate(0,${y})`,
      dataset: { spanId: span.span_id, status: span.status, team: span.team || "" },
    });
    g.append(s("rect", { class: "wf-row-bg", x: 0, y: 0, width, height: ROW_H }));
    const indent = 8 + span.depth * 14;
    const label = s("g", { "clip-path": "url(#wf-label-clip)" });
    label.append(s("rect", { x: indent, y: 6, width: 10, height: 10, rx: 2, fill: teamColor(span.team) }));
    const name = span.redacted ? `${span.name}  (${span.team || "other team"})` : span.name;
    label.append(s("text", { x: indent + 15, y: 15, class: `wf-label${span.redacted ? " redacted-span" : ""}` }, name));
    if (error) label.append(s("text", { x: indent - 12 < 0 ? 0 : indent - 12, y: 15, class: "wf-err-mark" }, "✕"));
    g.append(label);
    g.append(s("title", {}, `${span.name}\nteam: ${span.team || "coordinator"} · ${span.service}\n${fmtDuration(span.duration_ms)}${error ? `\nERROR: ${span.status_message}` : ""}`));

    const start = span.offset_ms;
    const end = start + span.duration_ms;
    if (end >= view[0] && start <= view[1]) {
      const x0 = Math.max(x(start), LABEL_W - 2);
      const x1 = Math.min(x(end), width - 60);
      const barW = Math.max(x1 - x0, 2);
      g.append(s("rect", {
        class: `wf-bar${span.open ? " open" : ""}`, x: x0, y: 4, width: barW, height: ROW_H - 9, rx: 2,
        fill: teamColor(span.team), stroke: error ? ERROR : "none", "stroke-width": error ? 2.5 : 0,
      }));
      if (span.critical) g.append(s("rect", { class: "wf-crit", x: x0, y: ROW_H - 4, width: barW, height: 3 }));
      const text = fmtDuration(span.duration_ms) + (span.open ? " …" : "");
      const tx = x0 + barW + 4;
      g.append(s("text", { x: tx, y: 15, class: `wf-dur${error ? " err" : ""}` }, text));
    }
    return g;
  }

  function drawAll() {
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
      // On the label column: a plain click selects.
      const row = e.target.closest(".wf-row");
      if (row) select(row.dataset.spanId, { notify: true });
      return;
    }
    e.preventDefault();
    startBrush({ currentTarget: rowsSvg, target: e.target, button: e.button, clientX: e.clientX }, msAt);
  });

  function select(spanId, { notify = false, scroll = false } = {}) {
    selected = spanId;
    const span = spans.find((sp) => sp.span_id === spanId);
    if (span && scroll) {
      const top = span.row * ROW_H;
      if (top < bodyEl.scrollTop || top > bodyEl.scrollTop + bodyEl.clientHeight - ROW_H) bodyEl.scrollTop = Math.max(top - 3 * ROW_H, 0);
    }
    drawRows();
    if (span && notify && onSelect) onSelect(span);
  }

  function update(next) {
    const wasFull = view[0] === 0 && view[1] === total;
    trace = next;
    spans = next.spans;
    total = Math.max(next.duration_ms, 0.001);
    if (wasFull) view = [0, total];
    drawAll();
  }

  requestAnimationFrame(drawAll);
  return { select, update, setView, get view() { return view; } };
}
