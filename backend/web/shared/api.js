// The API client of the apps (shared): the user's token (kept on the device, sent only in
// the Authorization header, never in a URL), the chosen language, and errors as the API
// words them. Each app has its own `i18n.js` beside this file, and names its token's key on
// the page (`<html data-token-key>`).
import { lang, t } from "./i18n.js";

const TOKEN = document.documentElement.dataset.tokenKey || "iparking.token";

export function token() {
  return localStorage.getItem(TOKEN);
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN, value);
  else localStorage.removeItem(TOKEN);
}

/** An API refusal: the status, the stable code and the message in the chosen language. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

/**
 * Calls the API. `key` is the Idempotency-Key of a state-changing call: the caller keeps it
 * across retries of the same action, so a retry never does the thing twice.
 */
export async function api(method, path, body, { key, form } = {}) {
  const headers = { "Accept": "application/json", "Accept-Language": lang() };
  const tok = token();
  if (tok) headers["Authorization"] = "Bearer " + tok;
  if (body !== undefined && !form) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  // The browser knows it is offline: nothing is sent (and nothing is queued).
  if (navigator.onLine === false) throw new ApiError(0, "network", t("error_network"), { sent: false });
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : form ? body : JSON.stringify(body) });
  } catch {
    // The request may or may not have reached the server: a retry must reuse its key.
    throw new ApiError(0, "network", t("error_network"), { sent: true });
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const err = json && json.error;
    if (res.status === 401 && tok) {
      setToken(null);
      window.dispatchEvent(new CustomEvent("iparking:logged-out", { detail: (err && err.message) || "" }));
    }
    throw new ApiError(res.status, (err && err.code) || "http_" + res.status, (err && err.message) || t("error_unknown"), err && err.details);
  }
  return json;
}

/** A fresh Idempotency-Key. */
export function newKey() {
  // getRandomValues works on plain http too (randomUUID needs a secure context).
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
