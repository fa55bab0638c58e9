// Diff of two contract versions: the compatibility verdict and findings (from the coordinator's
// checker), and both schemas side by side with the fields the findings name highlighted.
import { api, qs } from "../api.js";
import { clear, h } from "../dom.js";
import { highlight, schemaTable } from "../schema.js";

export async function render(main) {
  const params = new URLSearchParams(location.search);
  const oldRef = params.get("old") || "";
  const newRef = params.get("new") || "";
  const oldIn = h("input", { name: "old", value: oldRef, placeholder: "team/name@1.0.0", size: 30, class: "mono" });
  const newIn = h("input", { name: "new", value: newRef, placeholder: "team/name@1.1.0", size: 30, class: "mono" });
  const form = h("form", { class: "filters", method: "get", action: "/contracts/diff" },
    h("label", { class: "field" }, h("span", {}, "old"), oldIn), h("label", { class: "field" }, h("span", {}, "new"), newIn),
    h("button", { class: "btn primary", type: "submit" }, "Diff"));
  clear(main).append(h("div", { class: "page-head" }, h("h1", {}, "Contract diff")), form);
  if (!oldRef || !newRef) {
    main.append(h("p", { class: "muted pad" }, "Give two versions, e.g. payments/charge-card@1.0.0 and payments/charge-card@1.1.0."));
    return;
  }
  let data;
  try {
    data = await api(`/api/v1/contracts/diff${qs({ old: oldRef, new: newRef })}`);
  } catch (err) {
    main.append(h("div", { class: "banner error" }, err.message));
    return;
  }
  const breaking = data.findings.filter((f) => f.breaking);
  main.append(
    h("div", { class: `banner ${data.breaking ? "error" : "ok"} big`, id: "verdict" },
      h("b", {}, data.breaking ? "Breaking change" : "Compatible"),
      ` · ${data.old.ref} → ${data.new.ref} · ${data.same_major ? "same major version" : "different major versions (lives side by side)"}`,
      data.breaking ? ` · ${breaking.length} breaking finding${breaking.length === 1 ? "" : "s"}` : ""),
    h("section", { class: "card" }, h("h2", {}, `Findings (${data.findings.length})`),
      data.findings.length ? h("table", { class: "grid findings", id: "findings" },
        h("thead", {}, h("tr", {}, ["", "where", "what"].map((c) => h("th", {}, c)))),
        h("tbody", {}, data.findings.map((f) => h("tr", { class: f.breaking ? "breaking" : "" },
          h("td", {}, h("span", { class: `badge ${f.breaking ? "st-failed" : "st-skipped"}` }, f.breaking ? "breaking" : "note")),
          h("td", { class: "mono small" }, f.pointer || "—"), h("td", {}, f.message)))))
        : h("p", { class: "muted" }, "No differences that matter for compatibility.")));
  for (const side of ["input", "output"]) {
    const oldT = schemaTable(data.old[`${side}_schema`], side, data.old.sensitive);
    const newT = schemaTable(data.new[`${side}_schema`], side, data.new.sensitive);
    highlight(oldT, data.findings);
    highlight(newT, data.findings);
    main.append(h("section", { class: "card" }, h("h2", {}, side === "input" ? "Input schema" : "Output schema"),
      h("div", { class: "side-by-side" },
        h("div", {}, h("div", { class: "section-label" }, data.old.ref), oldT),
        h("div", {}, h("div", { class: "section-label" }, data.new.ref), newT))));
  }
}
