// The JSON API client of the pages: session cookie + the per-session CSRF header.

const csrfMeta = document.querySelector('meta[name="accord-csrf"]');

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (csrfMeta) headers["X-Accord-CSRF"] = csrfMeta.content;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (err) {
    throw new ApiError(0, "network", `The UI server did not answer (${err.message}).`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.status === 401 && !path.startsWith("/api/v1/session")) {
    const next = location.pathname + location.search;
    location.assign(`/signin?next=${encodeURIComponent(next)}`);
    throw new ApiError(401, "unauthenticated", "Signed out.");
  }
  if (!response.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(response.status, err.code || "error", err.message || `HTTP ${response.status}`);
  }
  return data;
}

export function qs(params) {
  const out = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") out.set(k, v);
  const text = out.toString();
  return text ? `?${text}` : "";
}
