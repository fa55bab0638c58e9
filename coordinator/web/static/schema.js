// JSON Schema as a readable table: one row per field, indented, with type, required,
// constraints, description and a "sensitive" flag. Rows carry their JSON pointer so the diff
// page can highlight the fields a finding is about.
import { h } from "./dom.js";

const CONSTRAINTS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "format", "minItems", "maxItems", "const", "default"];

function typeOf(schema) {
  if (!schema || typeof schema !== "object") return "any";
  if (schema.$ref) return `ref ${schema.$ref}`;
  if (Array.isArray(schema.type)) return schema.type.join(" | ");
  if (schema.type) return schema.type === "array" && schema.items && schema.items.type ? `array of ${schema.items.type}` : schema.type;
  if (schema.enum) return "enum";
  for (const k of ["oneOf", "anyOf", "allOf"]) if (schema[k]) return k;
  return "any";
}

function constraints(schema) {
  const out = [];
  for (const k of CONSTRAINTS) if (schema && schema[k] !== undefined) out.push(`${k}: ${JSON.stringify(schema[k])}`);
  if (schema && schema.enum) out.push(`one of ${schema.enum.map((v) => JSON.stringify(v)).join(", ")}`);
  if (schema && schema.additionalProperties === false) out.push("no other fields");
  return out.join(" · ");
}

function walk(schema, name, pointer, path, depth, required, rows, sensitive) {
  const sens = sensitive.has(path);
  rows.push(h("tr", { class: `schema-row${sens ? " sensitive" : ""}`, dataset: { pointer, path } },
    h("td", { class: "mono", style: `padding-left:${8 + depth * 16}px` }, name, required ? h("span", { class: "req", title: "required" }, " *") : null),
    h("td", { class: "mono small" }, typeOf(schema)),
    h("td", { class: "small" }, constraints(schema)),
    h("td", { class: "small" }, (schema && schema.description) || "", sens ? h("span", { class: "tag sens", title: "redacted from traces, UI, logs and events" }, "sensitive") : null)));
  if (!schema || typeof schema !== "object") return;
  const req = new Set(schema.required || []);
  for (const [key, sub] of Object.entries(schema.properties || {})) {
    walk(sub, key, `${pointer}/properties/${key}`, `${path}.${key}`, depth + 1, req.has(key), rows, sensitive);
  }
  if (schema.items && typeof schema.items === "object" && (schema.items.properties || schema.items.items)) {
    walk(schema.items, "[items]", `${pointer}/items`, `${path}[]`, depth + 1, false, rows, sensitive);
  }
}

// side: "input" | "output"; sensitive: the contract's list ("input.card_token").
export function schemaTable(schema, side, sensitive = []) {
  const rows = [];
  walk(schema, side, `/${side}`, side, 0, false, rows, new Set(sensitive));
  return h("table", { class: "grid schema", dataset: { side } },
    h("thead", {}, h("tr", {}, ["field", "type", "constraints", "description"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
}

// Which rows a finding's pointer is about: the deepest row whose pointer (or dotted path) it names.
export function highlight(table, findings) {
  const rows = [...table.querySelectorAll("tr.schema-row")];
  for (const finding of findings) {
    const p = (finding.pointer || "").replace(/\./g, "/").replace(/^#/, "");
    let best = null;
    for (const row of rows) {
      const ptr = row.dataset.pointer;
      const bare = ptr.replace(/^\/(input|output)/, "");
      const named = p === ptr || p.startsWith(`${ptr}/`) || (bare && (p.endsWith(bare) || p.includes(`${bare}/`)) && p.includes(ptr.split("/")[1]));
      if (named && (!best || ptr.length > best.dataset.pointer.length)) best = row;
    }
    if (best) {
      best.classList.add(finding.breaking ? "changed-breaking" : "changed");
      best.title = finding.message;
    }
  }
}
