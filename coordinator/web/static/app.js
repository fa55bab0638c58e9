// Boots the page named by <body data-page>: imports ./pages/<name>.js and calls its render().
import { api } from "./api.js";
import { clear, h } from "./dom.js";

const body = document.body;
const page = body.dataset.page;
const args = JSON.parse(body.dataset.args || "{}");
const viewer = { label: body.dataset.user, admin: body.dataset.admin === "true" };

for (const link of document.querySelectorAll("nav a[data-nav]")) {
  if (link.dataset.nav.split(" ").includes(page)) link.classList.add("active");
}

document.getElementById("signout").addEventListener("click", async () => {
  try {
    await api("/api/v1/session", { method: "DELETE" });
  } finally {
    location.assign("/signin");
  }
});

const main = document.getElementById("main");
try {
  const module = await import(`./pages/${page}.js`);
  await module.render(main, args, viewer);
} catch (err) {
  clear(main).append(h("div", { class: "banner error pad" }, h("b", {}, "Could not load this page. "), err.message || String(err)));
  throw err;
}
