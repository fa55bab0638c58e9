import { api, ApiError } from "../api.js";
import { sameOriginUrl } from "../dom.js";

const form = document.getElementById("signin-form");
const error = document.getElementById("signin-error");
const next = sameOriginUrl(new URLSearchParams(location.search).get("next"));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  const token = document.getElementById("token").value.trim();
  try {
    await api("/api/v1/session", { method: "POST", body: { token } });
    location.assign(next);
  } catch (err) {
    error.textContent = err instanceof ApiError && err.status === 401 ? "That token is not valid here." : err.message;
    error.hidden = false;
  }
});
