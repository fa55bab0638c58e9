// Small DOM helpers. Everything is built with createElement/textContent: no innerHTML, so
// payloads and names from the API can never inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") {
      // Through the CSSOM: the CSP forbids style attributes, not style properties.
      for (const decl of String(value).split(";")) {
        const at = decl.indexOf(":");
        if (at > 0) el.style.setProperty(decl.slice(0, at).trim(), decl.slice(at + 1).trim());
      }
    }
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function h(tag, attrs, ...children) {
  return append(apply(document.createElement(tag), attrs), children);
}

export function s(tag, attrs, ...children) {
  return append(apply(document.createElementNS(SVG_NS, tag), attrs), children);
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function pad2(n) {
  return String(n).padStart(2, "0");
}

export function fmtTime(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

export function fmtAgo(ms) {
  if (!ms) return "—";
  const sec = Math.round((Date.now() - ms) / 1000);
  if (sec < 60) return `${Math.max(sec, 0)}s ago`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m ago`;
  if (sec < 86400) return `${Math.floor(sec / 3600)}h ago`;
  return `${Math.floor(sec / 86400)}d ago`;
}

export function fmtDuration(ms) {
  if (ms === undefined || ms === null || ms < 0) return "—";
  if (ms < 1) return `${(ms * 1000).toFixed(0)}µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : ms.toFixed(0)}ms`;
  const sec = ms / 1000;
  if (sec < 60) return `${sec < 10 ? sec.toFixed(2) : sec.toFixed(1)}s`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min}m${pad2(Math.round(sec % 60))}s`;
  return `${Math.floor(min / 60)}h${pad2(min % 60)}m`;
}

// Team colours: a palette without red (red means "failed"). A team gets the slot its name hashes
// to; teams seen on one page that collide move to the next free slot, in name order.
const PALETTE = ["#3f7cc4", "#f28e2b", "#2ca6a4", "#59a14f", "#b07aa1", "#c9a227", "#9c755f", "#e377c2", "#17becf", "#8c8c3a"];
export const COORDINATOR_COLOR = "#8a93a0";
const assigned = new Map();

function hash(text) {
  let x = 2166136261;
  for (let i = 0; i < text.length; i++) {
    x ^= text.charCodeAt(i);
    x = Math.imul(x, 16777619);
  }
  return x >>> 0;
}

export function registerTeams(teams) {
  for (const team of [...teams].filter(Boolean).sort()) {
    if (assigned.has(team)) continue;
    const used = new Set(assigned.values());
    let slot = hash(team) % PALETTE.length;
    for (let i = 0; i < PALETTE.length && used.has(slot); i++) slot = (slot + 1) % PALETTE.length;
    assigned.set(team, slot);
  }
}

export function teamColor(team) {
  if (!team) return COORDINATOR_COLOR;
  if (!assigned.has(team)) registerTeams([team]);
  return PALETTE[assigned.get(team)];
}

export function teamChip(team, opts = {}) {
  const label = team || "coordinator";
  return h("span", { class: "team-chip", title: opts.title || `team ${label}` },
    h("span", { class: "swatch", style: `background:${teamColor(team)}` }), label);
}

export function statusBadge(status) {
  return h("span", { class: `badge st-${status.replaceAll(" ", "-")}` }, status.replace("_", " "));
}

export function jsonText(value) {
  return JSON.stringify(value, null, 2);
}

// A JSON value as a <pre>, with redacted values marked so nobody mistakes them for data.
export function jsonBlock(value) {
  const text = jsonText(value);
  const pre = h("pre", { class: "json" });
  const parts = text.split(/("(?:\*{3,}|\[redacted\]|<redacted>|REDACTED)")/);
  for (const part of parts) {
    if (/^"(?:\*{3,}|\[redacted\]|<redacted>|REDACTED)"$/.test(part)) pre.append(h("span", { class: "redacted", title: "sensitive field: redacted by the owning team's agent" }, part));
    else pre.append(part);
  }
  return pre;
}

// Where to go after signing in: ``next`` only if the browser's own URL parser puts it on this
// origin, else /runs. A check of the text misses what the parser does to it: it drops tabs and
// newlines and reads "\\" as "/", so "/\t/evil.example" is "//evil.example", another origin.
// The answer is the parsed absolute URL, never the path alone, which would be parsed again
// ("/.//evil.example" has the path "//evil.example").
export function sameOriginUrl(next, origin = location.origin) {
  if (typeof next !== "string" || !next.startsWith("/")) return new URL("/runs", origin).href;
  let url;
  try {
    url = new URL(next, origin);
  } catch {
    return new URL("/runs", origin).href;
  }
  return url.origin === origin ? url.href : new URL("/runs", origin).href;
}
